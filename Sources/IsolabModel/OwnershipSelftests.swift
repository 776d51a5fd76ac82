import IsolabProtocol

/// The IOMMU modes the VFIO selftests' fixtures run each test in (lib/iommu.c `iommu_modes[]`,
/// `FIXTURE_VARIANT_ADD_ALL_IOMMU_MODES()`): the legacy container with type1 or type1v2,
/// iommufd's container compatibility (`/dev/iommu` as the container), and the device cdev
/// bound to an iommufd.
public enum SelftestIOMMUMode: String, CaseIterable, Sendable {
    case vfioType1 = "vfio_type1_iommu"
    case vfioType1v2 = "vfio_type1v2_iommu"
    case iommufdCompatType1 = "iommufd_compat_type1"
    case iommufdCompatType1v2 = "iommufd_compat_type1v2"
    case iommufd

    /// The mode a fixture variant runs in: the longest mode the variant is or starts with
    /// followed by `_` (`iommufd_compat_type1_anonymous` is `iommufd_compat_type1`).
    public static func of(variant: String) -> SelftestIOMMUMode? {
        allCases.filter { variant == $0.rawValue || variant.hasPrefix($0.rawValue + "_") }
            .max(by: { $0.rawValue.count < $1.rawValue.count })
    }

    /// Opens `/dev/iommu` (the compat container or the iommufd).
    var needsIOMMUFD: Bool { self != .vfioType1 && self != .vfioType1v2 }
    /// Uses the group path (`/dev/vfio/<group>` + a container) rather than the device cdev.
    var usesGroup: Bool { self != .iommufd }
}

extension SubtestPattern {
    /// The subtests of one IOMMU mode (their fixture variant's mode).
    public static func mode(_ m: SelftestIOMMUMode, fixture: String? = nil) -> SubtestPattern {
        var p = SubtestPattern(fixture: fixture)
        p.iommuMode = m.rawValue
        return p
    }
}

extension OwnershipModel {
    /// `selftest`: what the kernel's own selftest does on this state. Each VFIO selftest opens its
    /// devices (lib/vfio_pci_device.c `vfio_pci_device_init()`) in every IOMMU mode its fixtures
    /// name, asserting every call (a failed assertion exits the test: `not ok`); the model
    /// predicts those opens with its own `vfio-open` rules on a copy of the state, then what each
    /// program's tests need of the device and kernel. A developer's own program: every subtest passes.
    mutating func selftest(_ run: ProgramRun, step: Step, index: Int) -> StepPrediction {
        var p = StepPrediction(index: index, step: step, result: .ok, rule: Reason("kselftest_harness.h", "\(run.program): every subtest passes"))
        guard case .kernelSelftest = run.source, let program = KernelSelftest(rawValue: run.program) else {
            p.selftest = SelftestPrediction(program: run.program, prelude: nil, rules: [],
                                            otherwise: Reason("isolab", "a developer's program: isolab predicts no failure"))
            return p
        }
        let devices = run.devices.compactMap { fabric.function(of: $0) }
        var s = SelftestPrediction(program: run.program, prelude: nil, rules: [],
                                   otherwise: Reason("vfio_pci_device_init()", "the device opens in this mode and the test's checks hold"))
        if program.isVFIO, devices.isEmpty {
            s.prelude = (.skipped, Reason("vfio_selftests_get_bdfs()", "no device BDF on the command line or in VFIO_SELFTESTS_BDF: the program exits KSFT_SKIP"))
        }
        // Opening the devices, per mode.
        let modeRules = SelftestIOMMUMode.allCases.compactMap { m in openFailure(devices, mode: m).map { SubtestRule(.mode(m), .fail, $0) } }
        switch program {
        case .vfioDMAMapping:
            var huge = [SubtestRule(SubtestPattern(fixture: "vfio_dma_mapping_test", variantContains: "hugetlb_1gb"), .skip,
                                    Reason("hugetlb_reserve_pages()", "the guest has no 1 GiB huge pages (it boots without hugepagesz=1G): mmap(MAP_HUGE_1GB) fails and dma_map_unmap SKIPs"))]
            if !kernel.hasHugeTLBFS {
                huge.append(SubtestRule(SubtestPattern(fixture: "vfio_dma_mapping_test", variantContains: "hugetlb_2mb"), .skip,
                                        Reason("ksys_mmap_pgoff()", "kernel \(kernel.id) is built without CONFIG_HUGETLBFS: mmap(MAP_HUGETLB) fails EINVAL and dma_map_unmap SKIPs")))
            } else if run.hugepages < 1 {
                huge.append(SubtestRule(SubtestPattern(fixture: "vfio_dma_mapping_test", variantContains: "hugetlb_2mb"), .skip,
                                        Reason("hugetlb_reserve_pages()", "no 2 MiB huge pages are reserved in the guest (vm.nr_hugepages is 0; the step's hugepages: reserves them): mmap(MAP_HUGETLB) fails and dma_map_unmap SKIPs")))
            }
            s.rules = modeRules + huge + type1LimitRules()
        case .vfioDMAMappingMMIO, .vfioPCIDeviceInitPerf:
            s.rules = modeRules
        case .vfioPCIDevice:
            // No variants: lib/iommu.c's default mode, iommufd.
            if let why = openFailure(devices, mode: .iommufd) {
                s.rules = [SubtestRule(.all, .fail, why)]
            } else {
                s.rules = deviceTestSkips(devices.first)
            }
        case .vfioIOMMUFDSetup:
            if !kernel.vfioDeviceSysfs, !devices.isEmpty {
                s.prelude = s.prelude ?? (.failed, Reason("vfio_init_device()", "kernel \(kernel.id) makes no vfio-dev device per VFIO device (v6.1): main()'s vfio_pci_get_cdev_path() finds no /sys/bus/pci/devices/BDF/vfio-dev/ and asserts"))
            }
            s.rules = cdevSetupRules(devices.first)
        case .vfioPCIDriver:
            // main() opens the device in the default mode (iommufd) to look for a driver.
            if let why = openFailure(devices, mode: .iommufd) {
                s.prelude = s.prelude ?? (.failed, Reason(why.kernelFunction, "device_has_selftests_driver() opens the device in lib/iommu.c's default mode, iommufd, before any test: " + why.text))
            } else if let f = devices.first, f.deviceModel?.selftestDriver == nil {
                s.prelude = s.prelude ?? (.skipped, Reason("vfio_pci_driver_probe()", "\(f.displayName) (\(f.deviceModel?.rawValue ?? "?")) has no driver in the selftests' lib/drivers (dsa, ioat, igb 82576, nv_falcon): \"No driver found\", KSFT_SKIP"))
            }
            s.rules = modeRules
        case .vfioPCISRIOVUAPI:
            // The PF is opened with a VF token in every mode: on the cdev, through BIND_IOMMUFD.
            s.rules = modeRules
            if kernel.hasIOMMUFD, !kernel.cdevBindTakesVFToken, !modeRules.contains(where: { $0.pattern.iommuMode == SelftestIOMMUMode.iommufd.rawValue }) {
                s.rules.append(SubtestRule(.mode(.iommufd), .fail, Reason("vfio_df_ioctl_bind_iommufd()", "kernel \(kernel.id) takes no VF token on the cdev's BIND_IOMMUFD (flags must be 0): the PF's open with its token fails EINVAL")))
            }
            if let pf = devices.first {
                if let why = sriovPrelude(pf) { s.prelude = s.prelude ?? why }
            }
        case .iommufd, .iommufdFailNth:
            if program == .iommufdFailNth, !kernel.hasFaultInjection {
                // The fixture's setup checks for fault injection before it opens /dev/iommu.
                s.rules = [SubtestRule(.all, .skip, Reason("fail_nth_setup()", "kernel \(kernel.id) has no failslab in debugfs (CONFIG_FAILSLAB, CONFIG_FAULT_INJECTION_DEBUG_FS): \"fault injection is not enabled in the kernel\", every test SKIPs"))]
            } else if !kernel.hasIOMMUFD {
                s.rules = [SubtestRule(.all, .fail, Reason("iommufd_fops_open()", "kernel \(kernel.id) as configured builds no IOMMUFD: every fixture's open(\"/dev/iommu\") fails"))]
            } else if !kernel.hasIOMMUFDTest {
                s.rules = [SubtestRule(.all, .fail, Reason("iommufd_test()", "kernel \(kernel.id) is built without CONFIG_IOMMUFD_TEST: IOMMU_TEST_CMD (mock domains) fails, so every fixture that creates one fails"))]
            } else if program == .iommufd {
                s.rules = iommufdSuiteRules(hugepages: run.hugepages)
            }
        }
        if let prelude = s.prelude {
            p.result = prelude.result
            p.rule = prelude.rule
        } else if let failing = s.rules.first(where: { $0.outcome == .fail }) {
            // The judge settles the status from the tests the program reports (a filter such as
            // `-v vfio_type1v2_iommu` may leave out every failing one).
            p.result = .failed
            p.rule = Reason(failing.rule.kernelFunction, "\(failing.pattern.description) fail: " + failing.rule.text)
        }
        p.selftest = s
        return p
    }

    /// vfio_iommufd_setup_test's `vfio_cdev` fixture opens the cdev and `/dev/iommu` (either
    /// missing: every test fails in setup); its tests then bind (`bind`, `repeated_bind_fails`,
    /// `attach_*`), attach an IOAS (`attach_detatch_pt`), or expect a failure whatever happens
    /// (`get_info_without_bind_fails`, `bind_bad_iommufd_fails`, which pass).
    func cdevSetupRules(_ f: PCIFunction?) -> [SubtestRule] {
        guard let f else { return [] }
        if !kernel.hasIOMMUFD {
            return [SubtestRule(.all, .fail, Reason("iommufd_fops_open()", "kernel \(kernel.id) as configured builds no IOMMUFD / VFIO_DEVICE_CDEV: no cdev node and no /dev/iommu to open in setup"))]
        }
        var copy = self
        let r = copy.vfioCdevOpen(f, step: Step(.vfioOpen(f.displayName, via: .cdev)), index: 0)
        guard r.result != .ok, let failed = r.substeps.last(where: { $0.result != .ok }) else { return [] }
        let why = Reason(r.rule.kernelFunction, "as vfio-open via cdev: \(failed.name.rawValue) fails \(failed.result.token): " + r.rule.text)
        let fixture = "vfio_cdev"
        switch failed.name {
        case .bindIOMMUFD:
            return ["bind", "repeated_bind_fails", "attach_detatch_pt", "attach_invalid_pt_fails"].map {
                SubtestRule(SubtestPattern(fixture: fixture, test: $0), .fail, why)
            }
        case .attachIOAS:
            return [SubtestRule(SubtestPattern(fixture: fixture, test: "attach_detatch_pt"), .fail, why)]
        default:
            return [SubtestRule(.all, .fail, why)]
        }
    }

    /// tools/testing/selftests/iommu/iommufd.c on a kernel with IOMMUFD_TEST: the tests that
    /// SKIP their `no_viommu` variant, and those whose buffers are hugetlb pages
    /// (`MAP_HUGETLB | MAP_POPULATE`), which fail their mmap assertion without enough 2 MiB pages
    /// reserved (64 for the 128 MiB dirty-tracking buffers).
    func iommufdSuiteRules(hugepages: Int) -> [SubtestRule] {
        var rules = ["viommu_alloc_nested_iopf", "viommu_alloc_with_data", "vdevice_cache", "hw_queue", "vdevice_tombstone"].map {
            SubtestRule(SubtestPattern(fixture: "iommufd_viommu", variant: "no_viommu", test: $0), .skip,
                        Reason("iommufd.c", "the test SKIPs its no_viommu variant (\"Skipping test for variant no_viommu\")"))
        }
        let need: [(SubtestPattern, Int)] = [
            (SubtestPattern(fixture: "iommufd_dirty_tracking", variantContains: "128M_huge"), 64),
            (SubtestPattern(fixture: "iommufd_dirty_tracking", variantContains: "64M_huge"), 32),
            (SubtestPattern(fixture: "iommufd_mock_domain", variantContains: "hugepage"), 2),
            (SubtestPattern(fixture: "vfio_compat_mock_domain", test: "huge_map"), 2),
            (SubtestPattern(fixture: "iommufd_ioas", test: "access_domain_destory"), 2),
        ]
        if !kernel.iommufdTestDmabufGetReturnsFD {
            for test in ["dmabuf_simple", "dmabuf_revoke"] {
                rules.append(SubtestRule(SubtestPattern(fixture: "iommufd_ioas", test: test), .fail,
                                         Reason("iommufd_test_dmabuf_get()", "kernel \(kernel.id)'s IOMMU_TEST_OP_DMABUF_GET installs the dma-buf's fd but returns 0: the test maps and revokes fd 0 (stdin), not a dma-buf, and its checks fail")))
            }
        }
        for (pattern, pages) in need where hugepages < pages || !kernel.hasHugeTLBFS {
            rules.append(SubtestRule(pattern, .fail, Reason("hugetlb_reserve_pages()", "the test maps \(pages) or more 2 MiB huge pages (MAP_HUGETLB | MAP_POPULATE) and asserts the mmap; \(hugepages) are reserved (the step's hugepages:)")))
        }
        return rules
    }

    /// vfio_dma_map_limit_test in the type1 container modes: `unmap_all` needs
    /// `VFIO_DMA_UNMAP_FLAG_ALL`, and `overflow` expects EOVERFLOW for a range that passes the
    /// top of the IOVA space (`vfio_dma_do_map()`); iommufd's compat container has both.
    func type1LimitRules() -> [SubtestRule] {
        var rules: [SubtestRule] = []
        for m in [SelftestIOMMUMode.vfioType1, .vfioType1v2] {
            var overflow = SubtestPattern.mode(m, fixture: "vfio_dma_map_limit_test")
            overflow.test = "overflow"
            if !kernel.type1OverflowIsEOVERFLOW {
                rules.append(SubtestRule(overflow, .fail, Reason("vfio_dma_do_map()", "kernel \(kernel.id)'s type1 refuses a range past the top of the IOVA space with EINVAL (iova + size - 1 < iova), not the EOVERFLOW the test asserts")))
            }
            var unmapAll = SubtestPattern.mode(m, fixture: "vfio_dma_map_limit_test")
            unmapAll.test = "unmap_all"
            if !kernel.type1UnmapAll {
                rules.append(SubtestRule(unmapAll, .fail, Reason("vfio_dma_do_unmap()", "kernel \(kernel.id)'s type1 has no VFIO_DMA_UNMAP_FLAG_ALL (v5.12): the unmap fails EINVAL")))
            }
        }
        return rules
    }

    /// Why opening `devices` in `mode` fails as the selftests' library does it, or nil.
    func openFailure(_ devices: [PCIFunction], mode: SelftestIOMMUMode) -> Reason? {
        if mode.needsIOMMUFD, !kernel.hasIOMMUFD {
            return Reason("iommu_init()", "kernel \(kernel.id) as configured builds no IOMMUFD: open(\"/dev/iommu\") fails ENOENT and the library asserts")
        }
        for f in devices {
            var copy = self
            let probe = Step(.vfioOpen(f.displayName, via: mode.usesGroup ? .group : .cdev))
            let r = mode.usesGroup ? copy.vfioOpen(f, step: probe, index: 0) : copy.vfioCdevOpen(f, step: probe, index: 0)
            if r.result != .ok {
                return Reason(r.rule.kernelFunction, "opening \(f.displayName) in \(mode.rawValue) fails as vfio-open would (\(r.result.token)): " + r.rule.text)
            }
            if mode.usesGroup, let status = r.substeps.first(where: { $0.name == .getStatus })?.detail, !status.contains("VIABLE") {
                return Reason("vfio_group_ioctl_get_status()", "\(f.displayName)'s group is not viable (VFIO_GROUP_GET_STATUS \(status)): vfio_pci_group_setup() asserts VFIO_GROUP_FLAGS_VIABLE")
            }
            if mode.usesGroup, isNoIOMMUGroup(groupID(f) ?? -1) {
                return Reason("vfio_container_set_iommu()", "\(f.displayName) is in a no-IOMMU group: VFIO_CHECK_EXTENSION(\(mode.rawValue.hasSuffix("v2") ? "TYPE1v2" : "TYPE1")) is 0 on a no-IOMMU container")
            }
        }
        return nil
    }

    /// vfio_pci_device_test's SKIPs: MSI or MSI-X the device lacks, and `reset` when vfio-pci
    /// found no reset method (`VFIO_DEVICE_FLAGS_RESET` from `pci_probe_reset_function()`).
    func deviceTestSkips(_ f: PCIFunction?) -> [SubtestRule] {
        guard let f, let model = f.deviceModel else { return [] }
        var rules: [SubtestRule] = []
        if !model.hasMSI {
            rules.append(SubtestRule(SubtestPattern(fixture: "vfio_pci_irq_test", variant: "msi"), .skip,
                                     Reason("vfio_pci_irq_get()", "\(model.rawValue) has no MSI capability: VFIO reports 0 MSI interrupts")))
        }
        if !model.hasMSIX {
            rules.append(SubtestRule(SubtestPattern(fixture: "vfio_pci_irq_test", variant: "msix"), .skip,
                                     Reason("vfio_pci_irq_get()", "\(model.rawValue) has no MSI-X capability: VFIO reports 0 MSI-X interrupts")))
        }
        if let why = noResetMethod(f) {
            rules.append(SubtestRule(SubtestPattern(fixture: "vfio_pci_device_test", test: "reset"), .skip, why))
        }
        return rules
    }

    /// Why `pci_probe_reset_function()` finds no method for `f`, or nil: no FLR or PM reset in
    /// the model (`pcie_reset_flr()`, `pci_pm_reset()`), and a bus reset
    /// (`pci_parent_bus_reset()`) only for the sole function on a bus below a bridge.
    func noResetMethod(_ f: PCIFunction) -> Reason? {
        if f.deviceModel?.hasFunctionReset == true { return nil }
        let bus = f.path.split(separator: "/").dropLast().joined(separator: "/")
        let onRootBus = !f.path.contains("/")
        let busMates = fabric.functions.filter { $0.index != f.index && $0.path.split(separator: "/").dropLast().joined(separator: "/") == bus && exists($0) }
        if onRootBus {
            return Reason("pci_parent_bus_reset()", "\(f.displayName) has no FLR or PM reset and sits on the root bus (no bridge to reset): VFIO_DEVICE_FLAGS_RESET is clear and reset SKIPs")
        }
        if !busMates.isEmpty {
            return Reason("pci_parent_bus_reset()", "\(f.displayName) has no FLR or PM reset and shares its bus with \(busMates.map(\.displayName).joined(separator: ", ")): no bus reset, so reset SKIPs")
        }
        return nil
    }

    /// vfio_pci_sriov_uapi_test's `vf_setup()`: SKIP without SR-IOV or with VFs already
    /// enabled; writing 1 to `sriov_numvfs` must work (vfio-pci's `sriov_configure` needs
    /// `enable_sriov`), and the VF must end up bound to vfio-pci.
    func sriovPrelude(_ pf: PCIFunction) -> (StepResult, Reason)? {
        guard kernel.hasSRIOV, fabric.sriov(of: pf) != nil else {
            return (.skipped, Reason("sriov_totalvfs_show()", "\(pf.displayName) has no SR-IOV capability the kernel uses: \"SR-IOV may not be supported\", KSFT_SKIP"))
        }
        if !presentVFs(of: pf).isEmpty {
            return (.skipped, Reason("sriov_numvfs_show()", "\(pf.displayName) has VFs enabled already: \"SR-IOV already configured\", KSFT_SKIP"))
        }
        if driver[pf.index] == "vfio-pci", !vfioPCIEnableSRIOV {
            return (.failed, Reason("vfio_pci_sriov_configure()", "vfio-pci was loaded without enable_sriov=1: writing sriov_numvfs fails -ENOENT and vf_setup() asserts"))
        }
        if driver[pf.index] != "vfio-pci" {
            return (.failed, Reason("vfio_pci_core_register_device()", "\(pf.displayName) is not bound to vfio-pci (\(driver[pf.index] ?? "no driver")): its VF is not bound to vfio-pci and vf_setup() asserts"))
        }
        return nil
    }
}
