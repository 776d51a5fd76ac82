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
                        file: StaticString = #filePath, line: UInt = #line) throws {
        var topology = try VMTestSupport.topology(name)
        if let iommu { topology.iommu = iommu }
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
        var expected = Dictionary(uniqueKeysWithValues: fabric.functions.map { ($0.path, $0.vendorDevice) })
        for f in fabric.functions where f.origin == .viommu("AMDVI-PCI") && f.vendorDevice == "1022:0000" {
            // The model says 1022:0000; QEMU 7.2's AMDVI-PCI is 1022:0008 (class 0806), as the
            // 6.1 guest logs "pci 0000:00:01.0: [1022:0008] type 00 class 0x080600".
            expected[f.path] = "1022:0008"
        }
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

    /// Every realizable catalog fabric with its own vIOMMU; long, so only with ISOLAB_BOOT_ALL=1.
    func testEveryCatalogFabricEnumeratesAsTheModelSays() throws {
        guard ProcessInfo.processInfo.environment["ISOLAB_BOOT_ALL"] == "1" else { throw XCTSkip("set ISOLAB_BOOT_ALL=1") }
        for t in try VMTestSupport.catalog() where Realizability.check(t).isEmpty {
            // virtio-iommu needs 6.12 (5.10 and 6.1 do not build it).
            try bootAndCompare(t.name, kernel: t.iommu == .virtio ? "6.12" : "6.1", allGroupsLogged: t.iommu != .virtio)
        }
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
        try bootAndCompare("rootports-acs", iommu: .amd)
    }

    func testVirtioIOMMUFunctionSitsAtTheModelsSlotOn6_12() throws {
        try bootAndCompare("virtio-iommu", kernel: "6.12", allGroupsLogged: false)
    }
}
