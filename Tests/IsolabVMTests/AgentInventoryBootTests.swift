import Foundation
import IsolabModel
import IsolabProtocol
import IsolabVM
import XCTest

/// Boots catalog fabrics through the embedded driver and checks that the guest enumerates every
/// PCI function where the model says, with ACS present or absent as declared, grouped as predicted.
final class AgentInventoryBootTests: XCTestCase {
    static let fabrics = ["switch-no-acs", "pcie-pci-bridge-aliases", "rootports-multifunction", "integrated-endpoints",
                          "nested-switches", "pci-bridge-nested", "rootport-no-acs", "rootports-acs"]

    func testGuestEnumeratesTheModelsFabric() throws {
        let topologies = try Self.fabrics.map(BootSupport.topology)
        let observations = try BootSupport.run(topologies.map { try BootSupport.request($0, kernel: "6.1", scenario: nil) })
        for (topology, obs) in zip(topologies, observations) {
            XCTAssertEqual(obs.outcome, .completed, "\(topology.name): \(obs.problem ?? "")\n\(obs.consoleTail.joined(separator: "\n"))")
            guard let inventory = obs.inventory else { XCTFail("\(topology.name): no inventory"); continue }
            let prediction = Predictor.predict(topology, kernel: .v6_1)
            let model = Dictionary(uniqueKeysWithValues: prediction.fabric.functions.map { ($0.path, $0) })
            let seen = Dictionary(uniqueKeysWithValues: inventory.functions.map { ($0.path, $0) })
            XCTAssertEqual(Set(seen.keys), Set(model.keys), "\(topology.name): guest paths differ from the model's")
            for (path, f) in model {
                guard let g = seen[path] else { continue }
                XCTAssertEqual(g.vendorDevice, f.vendorDevice, "\(topology.name) \(path)")
                XCTAssertEqual(g.acs != nil, f.hasACSCapability, "\(topology.name) \(path): ACS capability")
                XCTAssertEqual(g.multifunction, f.multifunction, "\(topology.name) \(path): multifunction")
            }
            let predicted = Set(prediction.groups.map { Set($0.map(\.path)) })
            let observed = Set(inventory.groups.map { Set($0.members) })
            XCTAssertEqual(observed, predicted, "\(topology.name): groups")
        }
        XCTAssertEqual(BootSupport.leftoverQEMU(), [])
    }
}
