import IsolabModel
import XCTest

/// PCIe peer-to-peer routing, emulated reachability, hazards and realizability.
final class ReachabilityTests: XCTestCase {
    // The kernel's upstream walk never looks at sibling DSPs (pci_device_group()), but a DSP
    // without ACS P2P Request Redirect routes A's write straight to B.
    func testEndpointsUnderACSlessDownstreamPortsAreAHazard() throws {
        let p = try predict(switchYAML)
        XCTAssertEqual(p.hazardPairs(), ["A->B", "B->A"])
    }

    // With ACS (declared) on the DSPs and the root port, the request is redirected to the IOMMU.
    func testDownstreamPortsWithACSAreNoHazardButUnrealizable() throws {
        let yaml = switchYAML.replacingOccurrences(of: "          - port: dp0\n", with: "          - port: dp0\n            acs: true\n")
            .replacingOccurrences(of: "          - port: dp1\n", with: "          - port: dp1\n            acs: true\n")
        let p = try predict(yaml)
        XCTAssertEqual(p.hazardPairs(), [])
        XCTAssertEqual(p.group("A"), ["A"])
        XCTAssertEqual(Set(p.unrealizable.map(\.node)), ["dp0", "dp1"])
    }

    // Separate ACS root ports meet only in the root complex, which routes through the IOMMU.
    func testSeparateRootPortsAreNotReachableAroundTheIOMMU() throws {
        let p = try predict("""
        name: t
        fabric:
          - root-port: r0
            children:
              - device: A
                model: edu
          - root-port: r1
            acs: false
            children:
              - device: B
                model: edu
        """)
        let r = PCIeReachability(fabric: p.fabric, acs: ACSEvaluator(fabric: p.fabric, acsEnabledByKernel: true))
        XCTAssertFalse(r.route(from: p.fabric.function(of: "A")!, to: p.fabric.function(of: "B")!).bypassesIOMMU)
        XCTAssertEqual(p.hazardPairs(), [])
    }

    // A shared conventional bus reaches everything on it; the kernel groups it as one: no hazard.
    func testConventionalBusIsReachableButGroupedTogether() throws {
        let p = try predict("""
        name: t
        fabric:
          - pcie-pci-bridge: br0
            children:
              - device: D
                model: edu
              - device: E
                model: edu
        """)
        let r = PCIeReachability(fabric: p.fabric, acs: ACSEvaluator(fabric: p.fabric, acsEnabledByKernel: true))
        XCTAssertTrue(r.route(from: p.fabric.function(of: "D")!, to: p.fabric.function(of: "E")!).bypassesIOMMU)
        XCTAssertEqual(p.hazardPairs(), [])
    }

    // QEMU translates everything in the requester's aliased address space (pci_device_iommu_address_space()).
    func testEmulatedRouteSharesTheAliasAddressSpace() throws {
        let p = try predict("""
        name: t
        fabric:
          - pcie-pci-bridge: br0
            slot: 3
            children:
              - device: D
                model: edu
              - device: E
                model: edu
        """)
        let route = p.fabric.emulatedRoute(from: p.fabric.function(of: "D")!, translated: true)
        XCTAssertEqual(route.requester, "03.0/00.0")
        XCTAssertEqual(route.sharesAddressSpaceWith, ["E"])
        XCTAssertFalse(route.reachesPeersDirectly)
        XCTAssertTrue(p.fabric.emulatedRoute(from: p.fabric.function(of: "D")!, translated: false).reachesPeersDirectly)
    }

    // only_one_child(): Linux scans only device 0 below a port.
    func testSlotOtherThanZeroBelowAPortIsUnrealizable() throws {
        let p = try predict("name: t\nfabric:\n  - root-port: r\n    children:\n      - device: A\n        model: edu\n        slot: 3\n")
        XCTAssertEqual(p.unrealizable.map(\.node), ["A"])
        XCTAssertTrue(p.unrealizable[0].reason.contains("only_one_child"))
    }
}
