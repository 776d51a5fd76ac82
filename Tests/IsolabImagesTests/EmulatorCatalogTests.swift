@testable import IsolabImages
import IsolabModel
import XCTest

/// The emulator catalog's located errors, and the facts read from a QEMU's own answers.
final class EmulatorCatalogTests: XCTestCase {
    func testTheShippedCatalogHasTheHostAndAPinnedDebianQEMU() throws {
        let catalog = try EmulatorCatalog.load(from: TestSupport.vmImages + "/emulators.yaml")
        XCTAssertEqual(catalog.host?.id, "7.2")
        let ten = try catalog.emulator(id: "10.0")
        XCTAssertEqual(ten.packages.first, "qemu-system-x86")
        XCTAssertNotNil(ten.version)
        XCTAssertThrowsError(try catalog.emulator(id: "9.9")) { XCTAssertTrue("\($0)".contains("accepted: 7.2, 10.0")) }
    }

    func testBadEntriesAreOneLocatedError() {
        let cases: [(String, String)] = [
            ("emulators:\n  - id: a\n    host: q\n    suite: s\n", "give either host"),
            ("emulators:\n  - id: a\n    host: q\n    version: \"1\"\n", "a host emulator takes no packages or version"),
            ("emulators:\n  - id: a\n    host: q\n  - id: a\n    host: q\n", "duplicate emulator id 'a'"),
            ("emulators:\n  - id: a\n    suite: s\n    version: \"1\"\n", "packages: missing required field"),
            ("emulators:\n  - id: a\n    colour: red\n", "colour: unknown field"),
            ("emulators:\n  - host: q\n", "id: missing required field"),
        ]
        for (text, expected) in cases {
            XCTAssertThrowsError(try EmulatorCatalog.parse(text, file: "e.yaml")) { e in
                XCTAssertTrue("\(e)".hasPrefix("e.yaml:"), "\(e)")
                XCTAssertTrue("\(e)".contains(expected), "\(e)")
            }
        }
    }

    func testDeviceListsAndPropertiesAreReadAsQEMUPrintsThem() {
        let devices = EmulatorProbe.parseDeviceList("""
            Controller/Bridge/Hub devices:
            name "ioh3420", bus PCI, desc "Intel IOH device id 3420 PCIE Root Port"
            name "pcie-root-port", bus PCI, desc "PCI Express Root Port"

            Misc devices:
            name "edu", bus PCI
            """)
        XCTAssertEqual(devices, ["ioh3420", "pcie-root-port", "edu"])
        let props = EmulatorProbe.parseProperties("""
            pcie-root-port options:
              acpi-index=<uint32>    -  (default: 0)
              disable-acs=<bool>     - on/off (default: off)
              x-speed=<PCIELinkSpeed> - 2_5/5/8/16/32/64 (default: 16)
            """)
        XCTAssertEqual(props, ["acpi-index", "disable-acs", "x-speed"])
        let facts = EmulatorFacts(version: "QEMU emulator version 11.1.3 (Debian)", devices: devices, properties: ["pcie-root-port": ["acpi-index"]])
        XCTAssertFalse(facts.rootPortCanDisableACS)
        XCTAssertEqual(facts.shortVersion, "11.1.3")
        XCTAssertFalse(facts.has("igb"))
    }

    func testTheHostQEMUIsProbedWithoutStartingAGuest() throws {
        let facts = try EmulatorProbe.probe("/usr/bin/qemu-system-x86_64")
        XCTAssertTrue(facts.version.hasPrefix("QEMU emulator version 7.2"), facts.version)
        XCTAssertTrue(facts.has("edu") && facts.has("xio3130-downstream"))
        XCTAssertFalse(facts.has("igb"), "QEMU 7.2 has no igb (it came with 8.0)")
        XCTAssertTrue(facts.rootPortCanDisableACS)
        XCTAssertTrue(facts.has(property: "sriov_max_vfs", of: "nvme"))
    }
}

/// A Debian QEMU unpacked into the cache runs wherever the cache is now.
final class EmulatorRelocationTests: XCTestCase {
    /// Its wrapper names the unpacked binary by path; a cache copied under another home (a daemon
    /// user's, a CI cache restored elsewhere) used to exec the old home's QEMU. Now the wrapper is
    /// rewritten for where it is, and the copy runs.
    func testACopiedEmulatorRunsFromItsNewFolder() throws {
        let ten = try EmulatorCatalog.load(from: TestSupport.vmImages + "/emulators.yaml").emulator(id: "10.0")
        let original = try EmulatorProvider(cache: TestSupport.sharedCache).provide(ten)
        let key = ((try XCTUnwrap(original.binary) as NSString).deletingLastPathComponent as NSString).deletingLastPathComponent
        let root = try TestSupport.temporaryDirectory("moved-cache")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let moved = ImageCache(root: root)
        for dir in ["emulators", "resolved"] { try FileManager.default.createDirectory(atPath: moved.path(dir), withIntermediateDirectories: true) }
        XCTAssertEqual(try TestSupport.run(["cp", "-a", key, moved.path("emulators")]).0, 0)
        XCTAssertEqual(try TestSupport.run(["cp", "-a", TestSupport.sharedCache.path("resolved", "emulator-10.0.json"), moved.path("resolved")]).0, 0)

        let copy = try EmulatorProvider(cache: moved).provide(ten)
        let wrapper = try XCTUnwrap(copy.binary)
        XCTAssertTrue(wrapper.hasPrefix(root), wrapper)
        let text = try String(contentsOfFile: wrapper, encoding: .utf8)
        XCTAssertTrue(text.contains(root + "/emulators/"), text)
        XCTAssertFalse(text.contains(TestSupport.sharedCache.root), text)
        let (status, version) = try TestSupport.run([wrapper, "--version"])
        XCTAssertEqual(status, 0, version)
        XCTAssertTrue(version.contains("version 10.0"), version)
        XCTAssertEqual(copy.facts.version, original.facts.version)
    }
}
