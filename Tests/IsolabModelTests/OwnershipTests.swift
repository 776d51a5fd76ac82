import IsolabModel
import XCTest

/// DMA ownership: iommu_device_use_default_domain() / iommu_group_claim_dma_owner() (≥5.19)
/// and VFIO viability with the group notifier's BUG_ON (5.10). KERNEL-NOTES §2–§3.
final class OwnershipTests: XCTestCase {
    let mf = multifunctionNICAndEdu + """
    scenarios:
      - name: blocks
        steps:
          - load-driver: e1000e
          - vfio-bind: C
          - vfio-open: C
          - unbind: nic0
          - vfio-open: C
          - bind: nic0
          - vfio-close: C
          - bind: nic0
      - name: modprobe
        steps:
          - vfio-bind: C
          - vfio-open: C
          - load-driver: e1000e
          - vfio-close: C
          - unbind: C
    """

    // iommu_device_use_default_domain(): -EBUSY into a user-owned group; iommu_group_claim_dma_owner(): -EPERM.
    func testDriverBindIntoUserOwnedGroupIsEBUSYSince519() throws {
        for k in [KernelGeneration.v6_1, .v6_12, .v7_3] {
            let p = try predict(mf, kernel: k)
            XCTAssertEqual(p.results("blocks"), ["ok", "ok", "EPERM", "ok", "ok", "EBUSY", "ok", "ok"], k.id)
            let s = p.scenarios[0].steps
            XCTAssertEqual(s[2].rule.kernelFunction, "iommu_group_claim_dma_owner()")
            XCTAssertEqual(s[2].substeps.map(\.name.rawValue), ["open-container", "open-group", "get-status", "set-container"])
            XCTAssertEqual(s[2].substeps[2].detail, "0", "GET_STATUS: not VIABLE while e1000e holds the group")
            XCTAssertEqual(s[5].rule.kernelFunction, "iommu_device_use_default_domain()")
        }
    }

    // 5.10: SET_CONTAINER ignores viability, GET_DEVICE_FD gives EINVAL, and binding e1000e into a
    // group with a container hits BUG_ON(vfio_group_nb_verify()).
    func testDriverBindIntoGroupInUseIsAKernelBUGOn510() throws {
        let p = try predict(mf, kernel: .v5_10)
        XCTAssertEqual(p.results("blocks"), ["ok", "ok", "EINVAL", "ok", "ok", "crash", "not-run", "not-run"])
        let open = p.scenarios[0].steps[2]
        XCTAssertEqual(open.substeps.first { $0.name.rawValue == "set-container" }?.result, .ok)
        XCTAssertEqual(open.substeps.last?.name.rawValue, "get-device-fd")
        XCTAssertEqual(p.scenarios[0].steps[5].result, .crash("kernel BUG at drivers/vfio/vfio.c:698"))
    }

    // Auto-probing reports nothing: ≥5.19 modprobe succeeds and leaves the device unbound; 5.10 BUGs.
    func testModprobeIntoUserOwnedGroup() throws {
        let p61 = try predict(mf, kernel: .v6_1)
        XCTAssertEqual(p61.results("modprobe"), ["ok", "ok", "ok", "ok", "ok"])
        XCTAssertEqual(p61.scenarios[1].steps[2].refused, ["nic0"])
        XCTAssertEqual(p61.scenarios[1].steps[2].bound, [])
        XCTAssertEqual(try predict(mf, kernel: .v5_10).results("modprobe"), ["ok", "ok", "crash", "not-run", "not-run"])
    }

    // shpchp is built in but never binds a q35 bridge (ACPI hotplug owns the slots: -EBUSY), so
    // nothing on the bridge blocks the claim, and unbinding it finds no driver.
    func testBridgesBootUnboundSoTheyNeverBlockAClaim() throws {
        let yaml = """
        name: t
        fabric:
          - root-port: rp0
            acs: false
            children:
              - pcie-pci-bridge: br0
                children:
                  - device: D
                    model: edu
        scenarios:
          - name: s
            steps:
              - vfio-bind: D
              - vfio-open: D
              - unbind: br0
              - vfio-open: D
        """
        XCTAssertEqual(try predict(yaml, kernel: .v6_1).results("s"), ["ok", "ok", "ENOENT", "ok"])
        XCTAssertEqual(try predict(yaml, kernel: .v5_10).results("s"), ["ok", "ok", "ENOENT", "ok"])
    }

    // VIRTIO_PCI=y from 6.12: virtio-net is bound at boot, so a bind finds it busy; before, it
    // is a module and the device boots unbound.
    func testVirtioNetBootsBoundWhereVirtioPCIIsBuiltIn() throws {
        let yaml = """
        name: t
        fabric:
          - root-port: rp0
            children:
              - device: net0
                model: virtio-net
        scenarios:
          - name: s
            steps:
              - bind: net0
        """
        XCTAssertEqual(try predict(yaml, kernel: .v6_12).results("s"), ["EBUSY"])
        XCTAssertEqual(try predict(yaml, kernel: .v6_1).results("s"), ["ok"])
    }

    // vfio_pci_probe(): no IOMMU group or a bridge -> -EINVAL; 5.10's bind_store() says ENODEV.
    func testVFIOBindWithoutGroupFails() throws {
        let yaml = "name: t\niommu: none\nfabric:\n  - device: F\n    model: edu\n  - root-port: r\nscenarios:\n  - name: s\n    steps:\n      - vfio-bind: F\n      - vfio-bind: r\n      - vfio-open: F\n"
        XCTAssertEqual(try predict(yaml, kernel: .v6_1).results("s"), ["EINVAL", "EINVAL", "ENOENT"])
        XCTAssertEqual(try predict(yaml, kernel: .v5_10).results("s"), ["ENODEV", "ENODEV", "ENOENT"])
    }

    // virtio-iommu offers no interrupt remapping: VFIO_SET_IOMMU gets EPERM (vfio_iommu_type1_attach_group()).
    func testVirtioIOMMUHasNoInterruptRemapping() throws {
        let yaml = "name: t\niommu: virtio\nfabric:\n  - root-port: r\n    children:\n      - device: F\n        model: edu\nscenarios:\n  - name: s\n    steps:\n      - vfio-bind: F\n      - vfio-open: F\n"
        let p = try predict(yaml, kernel: .v6_12)
        XCTAssertEqual(p.results("s"), ["ok", "EPERM"])
        XCTAssertEqual(p.scenarios[0].steps[1].substeps.last?.name.rawValue, "set-iommu")
        XCTAssertEqual(try predict(yaml, kernel: .v6_1).results("s"), ["EINVAL", "ENOENT"])
    }

    // Unbinding vfio-pci while its device fd is open blocks until release; close lets it finish.
    func testUnbindOfOpenVFIODeviceBlocksUntilClosed() throws {
        let yaml = "name: t\nfabric:\n  - root-port: r\n    children:\n      - device: F\n        model: edu\nscenarios:\n  - name: s\n    steps:\n      - vfio-bind: F\n      - vfio-open: F\n      - unbind: F\n      - vfio-close: F\n      - unbind: F\n"
        XCTAssertEqual(try predict(yaml).results("s"), ["ok", "ok", "blocked", "ok", "ENOENT"])
    }

    // DMA probes: translated in the requester's domain under an IOMMU; straight to memory without.
    func testDMAProbeOutcomes() throws {
        let p = try predict((switchYAML + "\n").replacingOccurrences(of: "      - vfio-open: A\n", with: "      - vfio-open: A\n      - dma: {from: A, to: memory}\n      - dma: {from: A, to: unmapped}\n      - dma: {from: A, to: B}\n      - dma: {from: A, to: B, map: peer}\n      - vfio-bind: B\n      - vfio-open: B\n      - dma: {from: A, to: B, map: peer}\n"))
        XCTAssertEqual(p.results("s"), ["ok", "ok", "delivered", "faulted", "faulted", "not-run", "ok", "ok", "delivered"])
        XCTAssertEqual(p.scenarios[0].steps.dropFirst(3).first?.result, .faulted(requester: "04.0/00.0/00.0/00.0"))
        let none = try predict("name: t\niommu: none\nfabric:\n  - device: A\n    model: edu\n  - device: N\n    model: e1000e\nscenarios:\n  - name: s\n    steps:\n      - load-driver: e1000e\n      - dma: {from: A, to: N}\n      - dma: {from: A, to: unmapped}\n")
        XCTAssertEqual(none.results("s"), ["ok", "delivered", "unsupported"])
    }

    func testGenerationsResolveByVersion() {
        XCTAssertEqual(KernelGeneration.resolve("5.13.19")?.id, "5.10")
        XCTAssertEqual(KernelGeneration.resolve("5.10")?.bindReportsENODEVForProbeFailure, true)
        XCTAssertEqual(KernelGeneration.resolve("5.19")?.id, "6.1")
        XCTAssertNil(KernelGeneration.resolve("6.8.0-rc3+")?.caveat)
        XCTAssertNotNil(KernelGeneration.resolve("6.14.2")?.caveat, "6.13/6.14 are inferred, not booted")
        XCTAssertEqual(KernelGeneration.resolve("6.14.2")?.viotProbe, .atDriverProbe)
        XCTAssertEqual(KernelGeneration.resolve("6.15.1")?.viotProbe, .atRegistration)
        XCTAssertNotNil(KernelGeneration.resolve("6.16.3")?.caveat)
        XCTAssertNil(KernelGeneration.resolve("6.16.4")?.caveat)
        XCTAssertEqual(KernelGeneration.resolve("6.8.0-rc3+")?.id, "6.12")
        XCTAssertEqual(KernelGeneration.resolve("7.3.4+deb13-amd64")?.id, "7.3")
        XCTAssertEqual(KernelGeneration.resolve("7.3")?.id, "7.3")
        XCTAssertNil(KernelGeneration.resolve("banana"))
    }

    // A developer's 5.14–5.18: VFIO viability, but bind reports the probe's own errno (v5.14).
    func testBindOfABusyDeviceOn5_14ReportsItsErrnoUnderViability() throws {
        let g = try XCTUnwrap(KernelGeneration.resolve("5.18.3"))
        XCTAssertEqual(g.id, "5.14")
        XCTAssertEqual(g.ownership, .vfioViability)
        XCTAssertFalse(g.bindReportsENODEVForProbeFailure)
        let yaml = "name: t\nfabric:\n  - device: N\n    model: e1000e\nscenarios:\n  - name: s\n    steps:\n      - bind: N\n      - bind: {device: N, driver: pci-stub}\n"
        XCTAssertEqual(try predict(yaml, kernel: g).results("s"), ["ok", "EBUSY"])
        XCTAssertEqual(try predict(yaml, kernel: .v5_10).results("s"), ["ok", "ENODEV"])
        XCTAssertEqual(KernelGeneration.resolve("5.14")?.id, "5.14")
    }

    // 5.10: SET_IOMMU attaches a non-viable group to VFIO's domain; nvme loses DMA and its unbind
    // never returns, holding the device lock (observed on 5.10.262 with a DMAR fault on the nvme).
    func testNVMeUnbindBlocksForGoodAfter510AttachedItsGroup() throws {
        let yaml = """
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
        scenarios:
          - name: s
            steps:
              - load-driver: nvme
              - vfio-bind: medu
              - vfio-open: medu
              - unbind: mdisk
              - bind: mdisk
        """
        XCTAssertEqual(try predict(yaml, kernel: .v5_10).results("s"), ["ok", "ok", "EINVAL", "blocked", "blocked"])
        XCTAssertEqual(try predict(yaml, kernel: .v6_1).results("s"), ["ok", "ok", "EPERM", "ok", "ok"])
    }
}
