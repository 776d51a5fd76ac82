import XCTest
@testable import IsolabAgentCore

final class GuestPathTests: XCTestCase {
    func testSysfsDevicePathBecomesSlotFunctionChain() {
        XCTAssertEqual(GuestPath.fromSysfs("/sys/devices/pci0000:00/0000:00:04.0/0000:01:00.0"), "04.0/00.0")
        XCTAssertEqual(GuestPath.fromSysfs("/sys/devices/pci0000:00/0000:00:1f.2"), "1f.2")
        XCTAssertEqual(GuestPath.fromSysfs("/sys/devices/pci0000:00/0000:00:02.0/0000:01:00.0/0000:02:01.0/0000:03:00.0/"),
                       "02.0/00.0/01.0/00.0")
    }

    func testNonPCIComponentsAreSkippedAndNothingPCIIsNil() {
        XCTAssertNil(GuestPath.fromSysfs("/sys/devices/platform/serial8250"))
        XCTAssertNil(GuestPath.fromSysfs(""))
        XCTAssertEqual(GuestPath.fromSysfs("/sys/devices/pci0000:00/0000:00:0b.7/virtio3"), "0b.7")
    }

    func testMalformedAddressesAreNotPCIAddresses() {
        for bad in ["0000:00:20.0", "0000:00:01.8", "000:00:01.0", "0000:0:01.0", "0000:00:1.0", "zz:00.0",
                    "0000:00:01.0.1", "0000::01.0", ":", "0000:00:01.", "0000:00:01.00"] {
            XCTAssertNil(PCIAddress(bad), bad)
        }
    }

    func testAddressesRoundTripWithAndWithoutDomain() {
        XCTAssertEqual(PCIAddress("02:1f.7")?.description, "0000:02:1f.7")
        XCTAssertEqual(PCIAddress("0001:a0:00.1")?.description, "0001:a0:00.1")
        XCTAssertEqual(GuestPath.parent("04.0/00.0"), "04.0")
        XCTAssertNil(GuestPath.parent("04.0"))
    }

    func testHexParsing() {
        XCTAssertEqual(Hex.parse("0x1234\n"), 0x1234)
        XCTAssertEqual(Hex.parse("ffffffffffffffff"), UInt64.max)
        XCTAssertNil(Hex.parse("1ffffffffffffffff"))
        XCTAssertNil(Hex.parse("0x"))
        XCTAssertNil(Hex.parse("12g"))
        XCTAssertEqual(Hex.digits(0xa, width: 4), "000a")
        XCTAssertEqual(Hex.bytes([0xde, 0xad, 0x00]), "dead00")
    }
}
