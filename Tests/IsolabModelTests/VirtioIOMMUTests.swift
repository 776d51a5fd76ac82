import IsolabModel
import XCTest

/// virtio-iommu (ACPI VIOT) on 6.12 and 7.3 with QEMU 7.2: when functions are probed into
/// groups, and what an endpoint behind a bridge to conventional PCI does (KERNEL-NOTES §5.7).
final class VirtioIOMMUTests: XCTestCase {
    /// catalog pcie-pci-bridge-aliases with `iommu: virtio` (flow style keeps the fixtures short).
    let bridgeYAML = """
    name: t
    iommu: virtio
    fabric:
      - {root-port: rp0, slot: 2, children: [{pcie-pci-bridge: br0, children: [{device: D, model: edu}, {device: E, model: edu}]}]}
    scenarios:
      - {name: alias-partners-share-a-container, steps: [{vfio-bind: D}, {vfio-bind: E}, {vfio-open: D}, {vfio-open: E},
         {dma: {from: D, to: memory}}, {dma: {from: E, to: unmapped}}]}
      - {name: claim-after-releasing-the-bridge, steps: [{vfio-bind: D}, {unbind: br0}, {vfio-open: D},
         {dma: {from: D, to: memory}}, {dma: {from: D, to: E}}]}
    """

    /// catalog rootports-acs with `iommu: virtio`: one single-function and one two-function slot.
    let rootPortsYAML = """
    name: t
    iommu: virtio
    fabric:
      - {root-port: rp0, slot: 2, children: [{device: A, model: edu}]}
      - {root-port: rp1, slot: 3, children: [{device: B0, model: edu, function: 0}, {device: B1, model: edu, function: 1}]}
    scenarios:
      - {name: half-bound-multifunction-slot, steps: [{vfio-bind: B0}, {vfio-open: B0}, {vfio-open: B1}, {vfio-bind: B1}, {vfio-open: B1}]}
    """

    func paths(_ p: KernelPrediction) -> Set<Set<String>> {
        Set(p.groupsAtBoot.map { Set($0.map(\.path)) })
    }

    // 6.12 viommu_probe_endpoint(): QEMU 7.2 knows D and E only by their alias (02:00.0), so their
    // PROBE gets S_NOENT and they never get a group; the bridge, probed by pcieport/shpchp at
    // boot, the port and the host bridge (agpgart-intel) are grouped (observed on 6.12.118).
    func testEndpointsBehindPCIePCIBridgeAreNeverGroupedOn612() throws {
        let p = try predict(bridgeYAML, kernel: .v6_12)
        XCTAssertTrue(p.iommuActive)
        XCTAssertEqual(paths(p), [["00.0"], ["02.0"], ["02.0/00.0"]])
        XCTAssertEqual(p.virtio?.unknownEndpoints.map { p.fabric.functions[$0].displayName }, ["D", "E"])
        XCTAssertEqual(p.results("alias-partners-share-a-container"),
                       ["EINVAL", "EINVAL", "ENOENT", "ENOENT", "delivered", "unsupported"])
        XCTAssertEqual(p.scenarios[0].steps[2].substeps.map(\.name.rawValue), ["find-group"])
        XCTAssertEqual(p.results("claim-after-releasing-the-bridge"), ["EINVAL", "ENOENT", "ENOENT", "delivered", "delivered"])
        let why = p.grouping!.reasons[p.fabric.function(of: "D")!.index]!.last!
        XCTAssertEqual(why.kernelFunction, "viommu_probe_endpoint()")
        XCTAssertTrue(why.text.contains("VIRTIO_IOMMU_S_NOENT"), why.text)
    }

    // 7.3 bus_iommu_probe(): the unknown endpoint fails the registration, iommu_device_register()
    // unregisters the IOMMU: nothing is grouped and every bind defers (EAGAIN); ACS is still on.
    func testUnknownEndpointUnregistersVirtioIOMMUOn73() throws {
        let p = try predict(bridgeYAML, kernel: .v7_3)
        XCTAssertFalse(p.iommuActive)
        XCTAssertTrue(p.groups.isEmpty)
        XCTAssertEqual(p.virtio?.registrationFailed, true)
        XCTAssertTrue(p.iommuNote?.contains("bus_iommu_probe() fails") ?? false, p.iommuNote ?? "")
        XCTAssertEqual(p.results("alias-partners-share-a-container"),
                       ["EAGAIN", "EAGAIN", "ENOENT", "ENOENT", "delivered", "unsupported"])
        XCTAssertEqual(p.results("claim-after-releasing-the-bridge"), ["EAGAIN", "ENOENT", "ENOENT", "delivered", "delivered"])
        XCTAssertEqual(p.scenarios[0].steps[0].rule.kernelFunction, "iommu_fwspec_init()")
    }

    // Nested: a pci-bridge behind the pcie-pci-bridge is itself known only by the alias.
    func testNestedBridgeFoldsEverythingButTheTopBridgeOutOfGroupsOn612() throws {
        let yaml = """
        name: t
        iommu: virtio
        fabric:
          - {pcie-pci-bridge: br0, slot: 7, children: [{device: D, model: edu}, {pci-bridge: br1, children: [{device: F, model: edu}]}]}
        scenarios:
          - {name: s, steps: [{unbind: br0}, {vfio-bind: F}, {vfio-bind: D}, {vfio-open: F}]}
        """
        let p612 = try predict(yaml, kernel: .v6_12)
        XCTAssertEqual(paths(p612), [["00.0"], ["07.0"]])
        XCTAssertEqual(p612.results("s"), ["ENOENT", "EINVAL", "EINVAL", "ENOENT"])
        let p73 = try predict(yaml, kernel: .v7_3)
        XCTAssertTrue(p73.groups.isEmpty)
        XCTAssertEqual(p73.results("s"), ["ENOENT", "EAGAIN", "EAGAIN", "ENOENT"])
    }

    // A device at devfn 00.0 behind the bridge is its own alias: QEMU knows it.
    func testDeviceAtTheAliasDevfnIsKnown() throws {
        let yaml = "name: t\niommu: virtio\nfabric:\n  - pcie-pci-bridge: br0\n    children:\n      - device: Z\n        model: edu\n        slot: 0\n"
        let p = try predict(yaml, kernel: .v7_3)
        XCTAssertEqual(p.virtio?.unknownEndpoints, [])
        XCTAssertTrue(p.iommuActive)
        XCTAssertEqual(p.group("Z"), ["br0", "Z"])
    }

    // 6.12 acpi_dma_configure(): function 1 of a slot nobody probed has no group until its own
    // bind; then it joins function 0's group (get_pci_function_alias_group()).
    func testUnprobedFunctionHasNoGroupUntilBoundOn612() throws {
        let p = try predict(rootPortsYAML, kernel: .v6_12)
        XCTAssertEqual(paths(p), [["00.0"], ["02.0"], ["03.0"]])
        XCTAssertEqual(p.results("half-bound-multifunction-slot"), ["ok", "EPERM", "ENOENT", "ok", "EPERM"])
        XCTAssertEqual(p.scenarios[0].steps[2].substeps.map(\.name.rawValue), ["find-group"])
        XCTAssertEqual(p.scenarios[0].steps[4].substeps.last?.name.rawValue, "set-iommu")
        let p73 = try predict(rootPortsYAML, kernel: .v7_3)
        XCTAssertTrue(paths(p73).contains(["03.0/00.0", "03.0/00.1"]))
        XCTAssertEqual(p73.results("half-bound-multifunction-slot"), ["ok", "EPERM", "EPERM", "ok", "EPERM"])
    }

    // A probe on 6.12 groups against the groups that exist then: an endpoint under a port
    // without ACS joins the port's group (rootports-multifunction).
    func testLateProbeJoinsTheNonACSPortsGroupOn612() throws {
        let yaml = """
        name: t
        iommu: virtio
        fabric:
          - {root-port: rp0, slot: 5, acs: false, children: [{device: A, model: edu}]}
          - {root-port: rp1, slot: 5, function: 1, acs: false, children: [{device: B, model: edu}]}
        scenarios:
          - {name: s, steps: [{vfio-bind: A}, {vfio-open: A}, {vfio-open: B}, {vfio-bind: B}, {vfio-open: B}]}
        """
        let p = try predict(yaml, kernel: .v6_12)
        XCTAssertEqual(paths(p), [["00.0"], ["05.0", "05.1"]])
        XCTAssertEqual(p.results("s"), ["ok", "EPERM", "ENOENT", "ok", "EPERM"])
    }

    // intel-iommu probes everything at registration: none of this applies.
    func testIntelGroupsEveryFunctionBehindTheBridge() throws {
        let intel = bridgeYAML.replacingOccurrences(of: "iommu: virtio", with: "iommu: intel")
        for k in [KernelGeneration.v6_12, .v7_3] {
            let p = try predict(intel, kernel: k)
            XCTAssertNil(p.virtio)
            XCTAssertEqual(p.group("D"), ["br0", "D", "E"])
        }
    }
}
