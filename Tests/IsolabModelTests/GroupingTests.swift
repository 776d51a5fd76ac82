import IsolabModel
import XCTest

/// pci_device_group() and the ACS rules of drivers/pci/pci.c and quirks.c (KERNEL-NOTES §1).
final class GroupingTests: XCTestCase {
    // pci_device_group(): root-bus devices skip the upstream walk; single-function -> alone.
    func testChipsetGroupsAreHostBridgeAloneAndICH9Together() throws {
        let p = try predict("name: t\nfabric:\n  - device: F\n    model: edu\n    slot: 9\n")
        XCTAssertEqual(p.group("F"), ["F"])
        let ich9 = p.groups.first { $0.contains { $0.displayName == "ICH9 LPC" } }!.map(\.displayName)
        XCTAssertEqual(Set(ich9), ["ICH9 LPC", "ICH9 AHCI", "ICH9 SMBus"])
        XCTAssertTrue(p.groups.contains { $0.map(\.displayName) == ["q35 host bridge"] })
    }

    // pci_acs_path_enabled(): a pcie-root-port with ACS stops the upstream walk.
    func testEndpointBehindACSRootPortIsAlone() throws {
        let p = try predict("name: t\nfabric:\n  - root-port: rp0\n    children:\n      - device: A\n        model: edu\n")
        XCTAssertEqual(p.group("A"), ["A"])
        XCTAssertEqual(p.group("rp0"), ["rp0"])
        XCTAssertEqual(p.fabric.function(of: "A")!.path, "01.0/00.0")
    }

    // pci_acs_enabled() on ROOT_PORT without the capability (disable-acs) is false: the port absorbs its subtree.
    func testRootPortWithoutACSAbsorbsItsSubtree() throws {
        let p = try predict("name: t\nfabric:\n  - root-port: rp0\n    acs: false\n    children:\n      - device: A\n        model: edu\n")
        XCTAssertEqual(p.group("A"), ["rp0", "A"])
    }

    // get_pci_function_alias_group(): non-ACS functions of one slot share a group.
    func testMultifunctionSlotWithoutACSSharesAGroup() throws {
        let p = try predict("""
        name: t
        fabric:
          - root-port: rp0
            children:
              - device: N
                model: e1000e
                function: 0
              - device: C
                model: edu
                function: 1
        """)
        XCTAssertEqual(p.group("C"), ["N", "C"])
        XCTAssertEqual(p.fabric.function(of: "C")!.path, "01.0/00.1")
    }

    // pci_quirk_rciep_acs(): an Intel RC_END (e1000e on pcie.0) passes even in a multifunction slot.
    func testIntegratedE1000eIsIsolatedByRCiEPQuirk() throws {
        let p = try predict("""
        name: t
        fabric:
          - device: mnic
            model: e1000e
            slot: 11
          - device: medu
            model: edu
            slot: 11
            function: 1
          - device: mdisk
            model: nvme
            slot: 11
            function: 2
        """)
        XCTAssertEqual(p.group("mnic"), ["mnic"])
        XCTAssertEqual(p.group("medu"), ["medu", "mdisk"])
        XCTAssertEqual(p.fabric.function(of: "mnic")!.pcieType, .rcEndpoint)
    }

    // xio3130 downstream ports have no ACS: each DSP forms a group with its subtree; USP alone.
    func testEndpointsUnderACSlessDownstreamPortsAreGroupedWithTheirPortOnly() throws {
        let p = try predict(switchYAML)
        XCTAssertEqual(p.group("A"), ["dp0", "A"])
        XCTAssertEqual(p.group("B"), ["dp1", "B"])
        XCTAssertEqual(p.group("sw0"), ["sw0"])
        XCTAssertEqual(p.fabric.function(of: "A")!.path, "04.0/00.0/00.0/00.0")
        XCTAssertEqual(p.fabric.function(of: "B")!.path, "04.0/00.0/01.0/00.0")
    }

    // Same switch below a port without ACS: everything in the port's group.
    func testSwitchBelowNonACSRootPortJoinsThePortsGroup() throws {
        let p = try predict(switchYAML.replacingOccurrences(of: "    slot: 4\n", with: "    slot: 4\n    acs: false\n"))
        XCTAssertEqual(p.group("A"), ["rp0", "sw0", "dp0", "dp1", "A", "B"])
    }

    // Downstream ports as functions of one slot: step 4 on the DSPs merges both subtrees.
    func testDownstreamPortsSharingASlotShareAGroup() throws {
        let yaml = switchYAML
            .replacingOccurrences(of: "          - port: dp0\n", with: "          - port: dp0\n            slot: 0\n")
            .replacingOccurrences(of: "          - port: dp1\n", with: "          - port: dp1\n            slot: 0\n            function: 1\n")
        let p = try predict(yaml)
        XCTAssertEqual(p.group("A"), ["dp0", "dp1", "A", "B"])
    }

    // pci_for_each_dma_alias(): behind a PCIe-to-PCI bridge the alias walk returns the bridge's group.
    func testDevicesBehindPCIePCIBridgeJoinTheBridgesGroup() throws {
        let p = try predict("""
        name: t
        fabric:
          - root-port: rp0
            children:
              - pcie-pci-bridge: br0
                children:
                  - device: D
                    model: edu
                  - pci-bridge: br1
                    children:
                      - device: F
                        model: edu
        """)
        XCTAssertEqual(p.group("D"), ["br0", "D", "br1", "F"])
        XCTAssertEqual(p.group("rp0"), ["rp0"])
        let f = p.fabric.function(of: "F")!
        XCTAssertEqual(DMAAlias.requesterPath(of: f, in: p.fabric), "01.0/00.0/00.0")
        XCTAssertEqual(p.fabric.function(of: "D")!.path, "01.0/00.0/01.0")
    }

    // Root ports packed as functions of one slot: non-ACS ones together, ACS ones alone.
    func testRootPortsInOneSlot() throws {
        let p = try predict("""
        name: t
        fabric:
          - root-port: a
            slot: 5
            acs: false
          - root-port: b
            slot: 5
            function: 1
            acs: false
          - root-port: c
            slot: 6
          - root-port: d
            slot: 6
            function: 1
        """)
        XCTAssertEqual(p.group("a"), ["a", "b"])
        XCTAssertEqual(p.group("c"), ["c"])
        XCTAssertEqual(p.group("d"), ["d"])
    }

    // pci_request_acs() only from an IOMMU driver: without one, no groups at all.
    func testNoIOMMUMeansNoGroupsAndVirtioIsUndrivenBefore612() throws {
        let none = try predict("name: t\niommu: none\nfabric:\n  - device: F\n    model: edu\n")
        XCTAssertFalse(none.iommuActive)
        XCTAssertTrue(none.groups.isEmpty)
        let yaml = "name: t\niommu: virtio\nfabric:\n  - root-port: r\n    children:\n      - device: F\n        model: edu\n"
        XCTAssertFalse(try predict(yaml, kernel: .v6_1).iommuActive)
        let p612 = try predict(yaml, kernel: .v6_12)
        XCTAssertTrue(p612.iommuActive)
        XCTAssertEqual(p612.group("r"), ["r"])
        XCTAssertEqual(p612.group("F"), [], "6.12 groups F only when a driver probes it (VirtioIOMMUTests)")
        let p73 = try predict(yaml, kernel: .v7_3)
        XCTAssertEqual(p73.group("F"), ["F"])
        XCTAssertNil(p73.grouping?.groupOf[p73.fabric.functions.first { $0.vendorDevice == "1af4:1057" }!.index],
                     "virtio-iommu does not translate itself")
    }

    // Grouping is identical across the catalog kernels (KERNEL-NOTES §0.1).
    func testGroupingIsTheSameForEveryCatalogKernel() throws {
        let groups = try KernelGeneration.catalog.map { k in
            try predict(switchYAML, kernel: k).groups.map { $0.map(\.path) }
        }
        XCTAssertTrue(groups.allSatisfy { $0 == groups[0] })
    }

    func testEveryGroupingReasonNamesAKernelFunction() throws {
        let p = try predict(switchYAML)
        for f in p.fabric.functions {
            let rs = p.grouping!.reasons[f.index]!
            XCTAssertFalse(rs.isEmpty)
            XCTAssertTrue(rs.allSatisfy { $0.kernelFunction.hasSuffix("()") }, "\(rs)")
        }
    }
}

let switchYAML = """
name: t
fabric:
  - root-port: rp0
    slot: 4
    children:
      - switch: sw0
        downstream:
          - port: dp0
            children:
              - device: A
                model: edu
          - port: dp1
            children:
              - device: B
                model: edu
scenarios:
  - name: s
    steps:
      - vfio-bind: A
      - vfio-open: A
"""
