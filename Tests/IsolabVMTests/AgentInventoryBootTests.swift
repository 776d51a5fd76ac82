import Foundation
import IsolabModel
import IsolabProtocol
import IsolabVM
import XCTest

/// Boots catalog fabrics through the embedded driver and checks that the guest enumerates every
/// PCI function where the model says, with ACS present or absent as declared, grouped as predicted.
final class AgentInventoryBootTests: XCTestCase {
    /// Every realizable catalog fabric with its own vIOMMU, on 6.1 (virtio-iommu: 6.12 and 7.3,
    /// the kernels that build it), and switch-no-acs on every catalog kernel.
    func testGuestEnumeratesTheModelsFabric() throws {
        var runs: [(Topology, String)] = []
        for t in try BootSupport.catalogTopologies where Realizability.check(t).isEmpty {
            if t.iommu == .virtio { runs += [(t, "6.12"), (t, "7.3")] } else { runs.append((t, "6.1")) }
            if t.name == "switch-no-acs" { runs += [(t, "5.10"), (t, "6.12"), (t, "7.3")] }
        }
        let observations = try BootSupport.run(runs.map { try BootSupport.request($0.0, kernel: $0.1, scenario: nil) })
        for ((topology, kernel), obs) in zip(runs, observations) {
            XCTAssertEqual(obs.outcome, .completed, "\(topology.name): \(obs.problem ?? "")\n\(obs.consoleTail.joined(separator: "\n"))")
            guard let inventory = obs.inventory else { XCTFail("\(topology.name): no inventory"); continue }
            let prediction = Predictor.predict(topology, kernel: KernelGeneration.resolve(kernel)!)
            let model = Dictionary(uniqueKeysWithValues: prediction.fabric.bootFunctions.map { ($0.path, $0) })
            let seen = Dictionary(uniqueKeysWithValues: inventory.functions.map { ($0.path, $0) })
            XCTAssertEqual(Set(seen.keys), Set(model.keys), "\(topology.name) on \(kernel): guest paths differ from the model's")
            for (path, f) in model {
                guard let g = seen[path] else { continue }
                XCTAssertEqual(g.vendorDevice, f.vendorDevice, "\(topology.name) \(path)")
                XCTAssertEqual(g.acs != nil, f.hasACSCapability, "\(topology.name) \(path): ACS capability")
                XCTAssertEqual(g.multifunction, f.multifunction, "\(topology.name) \(path): multifunction")
            }
            let predicted = Set(prediction.groupsAtBoot.map { Set($0.map(\.path)) })
            let observed = Set(inventory.groups.map { Set($0.members) })
            XCTAssertEqual(observed, predicted, "\(topology.name) on \(kernel): groups")
            XCTAssertEqual(inventory.iommufd, prediction.kernel.hasIOMMUFD, "\(topology.name) on \(kernel): iommufd")
            XCTAssertEqual(inventory.vfioCdev, false, "\(topology.name) on \(kernel): no catalog kernel builds VFIO cdevs")
            XCTAssertEqual(inventory.iommu, prediction.iommuActive ? topology.iommu.rawValue : nil, "\(topology.name) on \(kernel): active IOMMU")
        }
        XCTAssertEqual(BootSupport.leftoverQEMU(), [])
    }
}
