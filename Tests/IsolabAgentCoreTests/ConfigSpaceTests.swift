import XCTest
import IsolabProtocol
@testable import IsolabAgentCore

final class ConfigSpaceTests: XCTestCase {
    /// A pcie-root-port's config space as QEMU builds it: PCIe capability at 0x40 (type 4),
    /// AER at 0x100, ACS at 0x148 with capability 0x5f and control 0x1d.
    static func rootPort() -> [UInt8] {
        var b = [UInt8](repeating: 0, count: 4096)
        b[0x06] = 0x10; b[0x0e] = 0x01; b[0x34] = 0x40
        b[0x40] = 0x10; b[0x41] = 0x00; b[0x42] = 0x42; b[0x43] = 0x01
        put32(&b, 0x100, 0x0001 | 1 << 16 | 0x148 << 20)
        put32(&b, 0x148, 0x000d | 1 << 16)
        b[0x14c] = 0x5f; b[0x14e] = 0x1d
        return b
    }

    static func put32(_ b: inout [UInt8], _ off: Int, _ v: Int) {
        for i in 0..<4 { b[off + i] = UInt8((v >> (8 * i)) & 0xff) }
    }

    func testRootPortTypeAndACS() {
        let c = ConfigSpace(Self.rootPort())
        XCTAssertEqual(c.pcieType, "root-port")
        XCTAssertEqual(c.headerType, 1)
        XCTAssertFalse(c.multifunction)
        XCTAssertEqual(c.acs?.offset, 0x148)
        XCTAssertEqual(c.acs?.capability, 0x5f)
        XCTAssertEqual(c.acs?.control, 0x1d)
    }

    func testConventionalFunctionHasNoPCIeTypeAndNoACS() {
        var b = [UInt8](repeating: 0, count: 256)
        b[0x0e] = 0x80
        let c = ConfigSpace(b)
        XCTAssertNil(c.pcieType)
        XCTAssertNil(c.acs)
        XCTAssertTrue(c.multifunction)
        XCTAssertEqual(c.headerType, 0)
    }

    func testLoopingAndTruncatedCapabilityListsEnd() {
        var b = Self.rootPort()
        b[0x41] = 0x40; b[0x40] = 0x05           // standard list points at itself, no PCIe cap
        Self.put32(&b, 0x148, 0x0001 | 0x100 << 20) // extended list loops back to 0x100
        let c = ConfigSpace(b)
        XCTAssertNil(c.pcieType)
        XCTAssertNil(c.acs)
        XCTAssertNil(ConfigSpace([]).headerType)
        XCTAssertNil(ConfigSpace(Array(Self.rootPort().prefix(0x42))).pcieType)
        XCTAssertNil(ConfigSpace(Array(Self.rootPort().prefix(0x14a))).acs)
    }

    func testPCIeTypeNames() {
        XCTAssertEqual((0...10).map { PCIExpressType.name(code: $0) },
                       ["endpoint", "legacy-endpoint", "type-2", "type-3", "root-port", "upstream-port",
                        "downstream-port", "pcie-pci-bridge", "pci-pcie-bridge", "rc-endpoint", "rc-event-collector"])
    }

    func testDriversModulesAndIOMMUNames() {
        XCTAssertEqual(Drivers.module(forDriver: "pci-stub"), "pci_stub")
        XCTAssertEqual(Drivers.module(forDriver: "vfio-pci"), "vfio_pci")
        XCTAssertEqual(Drivers.module(forDriver: "virtio-pci"), "virtio_pci")
        XCTAssertEqual(Drivers.iommuKind(classEntries: ["dmar0"]), "intel")
        XCTAssertEqual(Drivers.iommuKind(classEntries: ["ivhd0"]), "amd")
        XCTAssertNil(Drivers.iommuKind(classEntries: []))
        XCTAssertEqual(Drivers.iommuKind(classEntries: ["0000:00:01.0"], vendorOf: { $0 == "0000:00:01.0" ? 0x1af4 : nil }), "virtio")
    }
}
