import XCTest
@testable import IsolabAgentCore

final class ModuleAliasesTests: XCTestCase {
    let text = """
        # Aliases extracted from modules themselves.
        alias pci:v00008086d000010D3sv*sd*bc*sc*i* e1000e
        alias pci:v*d*sv*sd*bc01sc08i02* nvme
        alias vfio_pci:v*d*sv*sd*bc*sc*i* vfio_pci
        alias pci:v00001AF4d*sv*sd*bc*sc*i* virtio_pci
        """

    func testE1000eMatchesItsDeviceAndNotEdu() {
        let a = ModuleAliases(text: text)
        XCTAssertTrue(a.matches(module: "e1000e", modalias: "pci:v00008086d000010D3sv00008086sd00000000bc02sc00i00"))
        XCTAssertFalse(a.matches(module: "e1000e", modalias: "pci:v00001234d000011E8sv00001AF4sd00001100bc00scFFi00"))
    }

    func testClassPatternsAndModuleNamesWithDashes() {
        let a = ModuleAliases(text: text)
        XCTAssertTrue(a.matches(module: "nvme", modalias: "pci:v00001B36d00000010sv00001AF4sd00001100bc01sc08i02"))
        XCTAssertTrue(a.matches(module: "virtio-pci", modalias: "pci:v00001AF4d00001041sv00001AF4sd00001100bc02sc00i00"))
        // vfio-pci's table matches only driver_override's `vfio_pci:` aliases, never a pci: modalias.
        XCTAssertFalse(a.matches(module: "vfio_pci", modalias: "pci:v00001234d000011E8sv00001AF4sd00001100bc00scFFi00"))
        XCTAssertFalse(a.matches(module: "pci_stub", modalias: "pci:v00001234d000011E8sv00001AF4sd00001100bc00scFFi00"))
    }

    func testGlobClassesAndStars() {
        XCTAssertTrue(Glob.matches("a[0-9]c*", "a5cde"))
        XCTAssertFalse(Glob.matches("a[!0-9]c", "a5c"))
        XCTAssertTrue(Glob.matches("*x*y", "axxby"))
        XCTAssertFalse(Glob.matches("*x*y", "axxb"))
        XCTAssertTrue(Glob.matches("a?c", "abc"))
    }
}
