import Foundation
import IsolabLibvirt
import IsolabModel
import IsolabVM
import XCTest

/// Boots catalog fabrics through the embedded libvirt connection (kernel 6.1, TCG) and
/// checks the guest kernel's own enumeration against the model: every function at the
/// model's guest path with the model's vendor:device, and the IOMMU groups the model
/// predicts (which is where ACS present or absent shows).
final class FabricBootTests: XCTestCase {
    /// - Parameter allGroupsLogged: false where the guest powers off before the kernel has
    ///   logged every group (virtio-iommu loads as a module just before the ready marker);
    ///   the groups logged must then be among the predicted ones.
    func bootAndCompare(_ name: String, iommu: IOMMUModel? = nil, kernel: String = "6.1", allGroupsLogged: Bool = true,
                        emulator: EmulatorFacts? = nil, file: StaticString = #filePath, line: UInt = #line) throws {
        var topology = try VMTestSupport.topology(name)
        if let iommu { topology.iommu = iommu }
        topology.emulator = emulator
        let outcome = try GuestBootSupport.boot(topology, kernel: kernel)
        let label = "\(name)/\(topology.iommu.rawValue)/\(kernel)"
        print(String(format: "boot %@: create %.2f s, wall %.2f s, power-down→stopped %@, shutdown→stopped %@, events %@", label,
                     outcome.createSeconds, outcome.wallSeconds,
                     outcome.powerDownToStopped.map { String(format: "%.3f s", $0) } ?? "-",
                     outcome.shutdownToStopped.map { String(format: "%.3f s", $0) } ?? "-",
                     "\(outcome.events)"))
        XCTAssertFalse(outcome.timedOut, "\(label): no stopped event before the deadline; tail:\n\(outcome.tail())", file: file, line: line)
        XCTAssertEqual(outcome.stopped, .stopped(.shutdown), "\(label): \(outcome.events)", file: file, line: line)
        XCTAssertTrue(outcome.console.contains("ISOLAB-INIT: ready"), "\(label): no ready marker; tail:\n\(outcome.tail())", file: file, line: line)
        XCTAssertEqual(GuestBootSupport.leftoverQEMUs(outcome.name), [], "\(label): QEMU left running", file: file, line: line)

        // Enumeration: path -> vendor:device, exactly the model's functions.
        let fabric = Fabric(topology)
        let seen = ConsoleEnumeration(console: outcome.console)
        if ProcessInfo.processInfo.environment["ISOLAB_PRINT_CONSOLE"] != nil { print(outcome.console) }
        let expected = Dictionary(uniqueKeysWithValues: fabric.bootFunctions.map { ($0.path, $0.vendorDevice) })
        XCTAssertEqual(seen.byPath, expected, "\(label): guest enumeration differs from the model", file: file, line: line)

        // Groups: the model's prediction for this kernel generation.
        if let generation = KernelGeneration.resolve(kernel) {
            let prediction = Predictor.predict(topology, kernel: generation)
            let predicted = Set(prediction.groups.map { Set($0.map(\.path)) })
            let observed = Set(seen.groups.values)
            if allGroupsLogged {
                XCTAssertEqual(observed, predicted, "\(label): IOMMU groups differ from the model", file: file, line: line)
            } else {
                XCTAssertFalse(observed.isEmpty, "\(label): no IOMMU group logged", file: file, line: line)
                XCTAssertEqual(observed.subtracting(predicted), [], "\(label): groups the model does not predict", file: file, line: line)
            }
        }
    }

    /// An emulator without pcie-root-port's disable-acs (QEMU 11) builds an ACS-less root port
    /// as an ioh3420: the guest finds 8086:3420 at the same paths, with the same groups as the
    /// disable-acs port gives (both checked against the model, whose groups are the same).
    func testAnACSLessRootPortBuiltAsIOH3420HasTheSamePathsAndGroups() throws {
        var facts = EmulatorFacts.assumedHostQEMU72
        facts.properties["pcie-root-port"] = []
        let topology = try VMTestSupport.topology("rootports-multifunction")
        var ioh = topology
        ioh.emulator = facts
        XCTAssertTrue(ioh.buildsRootPortWithoutACSAsIOH3420)
        XCTAssertEqual(Realizability.check(ioh), [])
        let a = Predictor.predict(topology, kernel: .v6_1), b = Predictor.predict(ioh, kernel: .v6_1)
        XCTAssertEqual(a.groupsAtBoot.map { $0.map(\.path) }, b.groupsAtBoot.map { $0.map(\.path) })
        XCTAssertTrue(Fabric(ioh).functions.contains { $0.vendorDevice == Fabric.ioh3420 })
        try bootAndCompare("rootports-multifunction")
        try bootAndCompare("rootports-multifunction", emulator: facts)
    }

    func testSwitchNoACSEnumeratesAtTheModelsPathsWithOneGroupPerDownstreamPort() throws {
        try bootAndCompare("switch-no-acs")
    }

    func testRootportsMultifunctionWithoutACSShareOneGroupAndWithACSStayApart() throws {
        try bootAndCompare("rootports-multifunction")
    }

    func testPCIePCIBridgeAliasesPutTheBridgeAndBothEdusInOneGroup() throws {
        try bootAndCompare("pcie-pci-bridge-aliases")
    }

    func testIntegratedEndpointsEnumerateOnPCIe0AtTheirSlots() throws {
        try bootAndCompare("integrated-endpoints")
    }

    func testPCIBridgeNestedBuiltOnTheQEMUCommandLineEnumeratesAsTheModelSays() throws {
        try bootAndCompare("pci-bridge-nested")
    }

    func testAMDVIOMMUFunctionLandsInSlot01WhichIsTheModelsSlotHere() throws {
        try bootAndCompare("amd-viommu")  // the catalog's amd fabric (rootports-acs has DMA probes, unrealizable under 7.2's amd-iommu)
    }

    func testVirtioIOMMUFunctionSitsAtTheModelsSlotOn6_12() throws {
        try bootAndCompare("virtio-iommu", kernel: "6.12", allGroupsLogged: false)
    }
}
