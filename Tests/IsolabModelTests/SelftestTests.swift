import IsolabModel
import IsolabTopology
import XCTest

/// The kernel's own VFIO selftests as the model predicts them: the opens in each IOMMU mode
/// (lib/iommu.c, lib/vfio_pci_device.c) through the model's vfio-open rules, and each
/// program's own SKIPs and preludes.
final class SelftestTests: XCTestCase {
    /// Stock Debian 7.3 (no IOMMUFD) and isolab's 7.3-iommufd build.
    let stock = KernelGeneration.v7_3
    let iommufd = KernelGeneration.v7_3.configured(by: ["CONFIG_IOMMUFD": "m", "CONFIG_VFIO_DEVICE_CDEV": "y", "CONFIG_IOMMUFD_TEST": "y"])

    private func topology(_ steps: String) -> String {
        """
        name: t
        fabric:
          - root-port: rp0
            slot: 4
            children:
              - device: A
                model: edu
          - root-port: rp1
            slot: 5
            children:
              - device: nic
                model: e1000e
                function: 0
              - device: C
                model: edu
                function: 1
          - root-port: rp2
            slot: 6
            children:
              - device: P
                model: igb
                vfs: 1
        scenarios:
          - name: s
            steps:
        \(steps)
        """
    }

    private func selftest(_ steps: String, kernel: KernelGeneration) throws -> SelftestPrediction {
        let p = try predict(topology(steps), kernel: kernel)
        return try XCTUnwrap(p.scenarios[0].steps.last?.selftest)
    }

    func testAVariantsIOMMUModeIsTheLongestModeItNames() {
        XCTAssertEqual(SelftestIOMMUMode.of(variant: "iommufd_compat_type1_anonymous"), .iommufdCompatType1)
        XCTAssertEqual(SelftestIOMMUMode.of(variant: "iommufd_compat_type1v2_anonymous_hugetlb_2mb"), .iommufdCompatType1v2)
        XCTAssertEqual(SelftestIOMMUMode.of(variant: "iommufd"), .iommufd)
        XCTAssertEqual(SelftestIOMMUMode.of(variant: "vfio_type1_iommu_same_uuid"), .vfioType1)
        XCTAssertEqual(SelftestIOMMUMode.of(variant: "vfio_type1v2_iommu"), .vfioType1v2)
        XCTAssertNil(SelftestIOMMUMode.of(variant: "msix"))
    }

    func testPatternsMatchTheHarnessNames() {
        let p = SubtestPattern.mode(.iommufdCompatType1)
        XCTAssertTrue(p.matches("vfio_dma_mapping_test.iommufd_compat_type1_anonymous.dma_map_unmap"))
        XCTAssertFalse(p.matches("vfio_dma_mapping_test.iommufd_compat_type1v2_anonymous.dma_map_unmap"))
        XCTAssertFalse(p.matches("vfio_pci_device_test.reset"))
        XCTAssertTrue(SubtestPattern(fixture: "vfio_pci_device_test", test: "reset").matches("vfio_pci_device_test.reset"))
        XCTAssertTrue(SubtestPattern(fixture: "vfio_pci_irq_test", variant: "msix").matches("vfio_pci_irq_test.msix.enable_trigger_disable"))
        XCTAssertFalse(SubtestPattern(fixture: "vfio_pci_irq_test", variant: "msix").matches("vfio_pci_irq_test.msi.enable_trigger_disable"))
    }

    // Stock 7.3: /dev/iommu does not exist, so the iommufd and compat modes fail at iommu_init();
    // the type1 container modes run; hugetlb variants SKIP with no huge pages reserved.
    func testStockKernelRunsOnlyTheContainerModes() throws {
        let s = try selftest("      - vfio-bind: A\n      - selftest: {program: vfio_dma_mapping_test, devices: [A]}\n", kernel: stock)
        XCTAssertNil(s.prelude)
        XCTAssertEqual(s.expectation(for: "vfio_dma_mapping_test.vfio_type1v2_iommu_anonymous.dma_map_unmap").outcome, .pass)
        XCTAssertEqual(s.expectation(for: "vfio_dma_map_limit_test.vfio_type1_iommu.overflow").outcome, .pass)
        XCTAssertEqual(s.expectation(for: "vfio_dma_mapping_test.vfio_type1_iommu_anonymous_hugetlb_2mb.dma_map_unmap").outcome, .skip)
        let compat = s.expectation(for: "vfio_dma_map_limit_test.iommufd_compat_type1.unmap_all")
        XCTAssertEqual(compat.outcome, .fail)
        XCTAssertEqual(compat.rule.kernelFunction, "iommu_init()")
        XCTAssertEqual(s.expectation(for: "vfio_dma_mapping_test.iommufd_anonymous_hugetlb_1gb.dma_map_unmap").outcome, .fail)
        XCTAssertEqual(s.result(for: ["vfio_dma_map_limit_test.vfio_type1_iommu.overflow"]), .ok)
        XCTAssertEqual(s.result(for: ["vfio_dma_map_limit_test.vfio_type1_iommu.overflow", "vfio_dma_map_limit_test.iommufd.overflow"]), .failed)
    }

    func testIOMMUFDKernelRunsEveryMode() throws {
        let s = try selftest("      - vfio-bind: A\n      - selftest: {program: vfio_dma_mapping_mmio_test, devices: [A]}\n", kernel: iommufd)
        XCTAssertTrue(s.rules.isEmpty, "\(s.rules)")
        XCTAssertEqual(s.result(for: ["vfio_dma_mapping_mmio_test.iommufd.map_full_bar"]), .ok)
    }

    // The device test runs in lib/iommu.c's default mode (iommufd) and SKIPs what the device lacks:
    // edu has MSI but no MSI-X; behind its own root port a bus reset resets it.
    func testDeviceTestSkipsWhatTheDeviceLacks() throws {
        let onStock = try selftest("      - vfio-bind: A\n      - selftest: {program: vfio_pci_device_test, devices: [A]}\n", kernel: stock)
        XCTAssertEqual(onStock.expectation(for: "vfio_pci_device_test.reset").outcome, .fail)
        let s = try selftest("      - vfio-bind: A\n      - selftest: {program: vfio_pci_device_test, devices: [A]}\n", kernel: iommufd)
        XCTAssertEqual(s.expectation(for: "vfio_pci_irq_test.msix.enable_trigger_disable").outcome, .skip)
        XCTAssertEqual(s.expectation(for: "vfio_pci_irq_test.msi.enable_trigger_disable").outcome, .pass)
        XCTAssertEqual(s.expectation(for: "vfio_pci_device_test.reset").outcome, .pass)
        // C shares its bus with the NIC: no bus reset, and edu has no FLR or PM reset.
        let shared = try selftest("      - vfio-bind: nic\n      - vfio-bind: C\n      - selftest: {program: vfio_pci_device_test, devices: [C]}\n", kernel: iommufd)
        let reset = shared.expectation(for: "vfio_pci_device_test.reset")
        XCTAssertEqual(reset.outcome, .skip)
        XCTAssertEqual(reset.rule.kernelFunction, "pci_parent_bus_reset()")
    }

    // e1000e drives the NIC in C's group: VFIO_GROUP_GET_STATUS is not VIABLE, and the cdev's
    // bind is refused: every mode fails at open, as vfio-open does.
    func testANonViableGroupFailsEveryMode() throws {
        let s = try selftest("      - load-driver: e1000e\n      - vfio-bind: C\n      - selftest: {program: vfio_dma_mapping_test, devices: [C]}\n", kernel: iommufd)
        for mode in SelftestIOMMUMode.allCases {
            XCTAssertEqual(s.expectation(for: "vfio_dma_map_limit_test.\(mode.rawValue).unmap_range").outcome, .fail, mode.rawValue)
        }
        XCTAssertTrue(s.expectation(for: "vfio_dma_map_limit_test.vfio_type1v2_iommu.unmap_range").rule.text.contains("nic"))
    }

    func testDriverAndSRIOVPreludes() throws {
        let noDriver = try selftest("      - vfio-bind: A\n      - selftest: {program: vfio_pci_driver_test, devices: [A]}\n", kernel: iommufd)
        XCTAssertEqual(noDriver.prelude?.result, .skipped)
        let noIOMMUFD = try selftest("      - vfio-bind: P\n      - selftest: {program: vfio_pci_driver_test, devices: [P]}\n", kernel: stock)
        XCTAssertEqual(noIOMMUFD.prelude?.result, .failed)
        let igb = try selftest("      - vfio-bind: P\n      - selftest: {program: vfio_pci_driver_test, devices: [P]}\n", kernel: iommufd)
        XCTAssertNil(igb.prelude)
        let noSRIOV = try selftest("      - vfio-bind: A\n      - selftest: {program: vfio_pci_sriov_uapi_test, devices: [A]}\n", kernel: iommufd)
        XCTAssertEqual(noSRIOV.prelude?.result, .skipped)
        let noEnable = try selftest("      - vfio-bind: P\n      - selftest: {program: vfio_pci_sriov_uapi_test, devices: [P]}\n", kernel: iommufd)
        XCTAssertEqual(noEnable.prelude?.result, .failed)
        XCTAssertEqual(noEnable.prelude?.rule.kernelFunction, "vfio_pci_sriov_configure()")
        let enabled = try selftest("      - load-driver: {module: vfio-pci, options: [enable_sriov=1]}\n      - vfio-bind: P\n      - selftest: {program: vfio_pci_sriov_uapi_test, devices: [P]}\n", kernel: iommufd)
        XCTAssertNil(enabled.prelude)
    }

    func testTheIOMMUFDSuiteNeedsItsTestConfig() throws {
        let withTest = try selftest("      - selftest: {program: iommufd}\n", kernel: iommufd)
        XCTAssertEqual(withTest.expectation(for: "iommufd.simple_close").outcome, .pass)
        let without = try selftest("      - selftest: {program: iommufd}\n", kernel: KernelGeneration.v7_3.configured(by: ["CONFIG_IOMMUFD": "y", "CONFIG_VFIO_DEVICE_CDEV": "y"]))
        XCTAssertEqual(without.expectation(for: "iommufd.simple_close").outcome, .fail)
        let stockSuite = try selftest("      - selftest: {program: iommufd}\n", kernel: stock)
        XCTAssertEqual(stockSuite.expectation(for: "iommufd.simple_close").rule.kernelFunction, "iommufd_fops_open()")
    }

    func testReservedHugePagesLetThe2MiBVariantsRun() throws {
        let s = try selftest("      - vfio-bind: A\n      - selftest: {program: vfio_dma_mapping_test, devices: [A], hugepages: 4}\n", kernel: iommufd)
        XCTAssertEqual(s.expectation(for: "vfio_dma_mapping_test.iommufd_anonymous_hugetlb_2mb.dma_map_unmap").outcome, .pass)
        XCTAssertEqual(s.expectation(for: "vfio_dma_mapping_test.iommufd_anonymous_hugetlb_1gb.dma_map_unmap").outcome, .skip)
        let suite = try selftest("      - selftest: {program: iommufd, hugepages: 16}\n", kernel: iommufd)
        XCTAssertEqual(suite.expectation(for: "iommufd_mock_domain.one_domain_hugepage.basic").outcome, .pass)
        XCTAssertEqual(suite.expectation(for: "iommufd_dirty_tracking.domain_dirty128M_huge.enforce_dirty").outcome, .fail)
        XCTAssertEqual(suite.expectation(for: "iommufd_dirty_tracking.domain_dirty128M.enforce_dirty").outcome, .pass)
        XCTAssertEqual(suite.expectation(for: "iommufd_viommu.no_viommu.hw_queue").outcome, .skip)
        XCTAssertEqual(suite.expectation(for: "iommufd_viommu.mock_viommu.hw_queue").outcome, .pass)
    }

    func testFaultInjectionDecidesWhetherFailNthRuns() throws {
        let stockRun = try selftest("      - selftest: {program: iommufd_fail_nth}\n", kernel: stock)
        XCTAssertEqual(stockRun.expectation(for: "basic_fail_nth.basic").outcome, .skip)
        let built = KernelGeneration.v7_3.configured(by: ["CONFIG_IOMMUFD": "m", "CONFIG_VFIO_DEVICE_CDEV": "y", "CONFIG_IOMMUFD_TEST": "y",
                                                           "CONFIG_FAILSLAB": "y", "CONFIG_FAULT_INJECTION_DEBUG_FS": "y"])
        let run = try selftest("      - selftest: {program: iommufd_fail_nth}\n", kernel: built)
        XCTAssertEqual(run.expectation(for: "basic_fail_nth.basic").outcome, .pass)
    }
}
