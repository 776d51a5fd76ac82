/// The guest's driver and VFIO state while a scenario runs, and the kernel rules that decide
/// each step: the DMA owner model of v5.19+ (drivers/iommu/iommu.c) or the VFIO viability
/// model before it (5.10 drivers/vfio/vfio.c). KERNEL-NOTES §2–§3.
///
/// The starting state is isolab's freshly booted guest: an initramfs without udev, so only
/// built-in drivers have bound (`OwnershipModel.bootDriver`): `pcieport` (PCIEPORTBUS=y) on
/// root, upstream and downstream ports, and `virtio-pci` on virtio devices where it is built in.
/// Bridges stay unbound although `shpchp` is built in: on q35, QEMU's ACPI PCI hotplug for
/// bridges (`acpi-pci-hotplug-with-bridge-support`, on by default) owns their slots, and
/// `shpc_init()`'s `pci_hp_register()` fails with -EBUSY ("Slot initialization failed";
/// observed on 5.10 and 6.1 booting QEMU 7.2's defaults).
public struct OwnershipModel: Sendable {
    public let fabric: Fabric
    /// The groups as they stand: with virtio-iommu on 6.12 a function joins one when a step
    /// probes a driver on it (`VIOTProbePath.atDriverProbe`).
    public internal(set) var grouping: IOMMUGrouping?
    public let kernel: KernelGeneration
    /// The guest's virtio-iommu, when it is the vIOMMU the kernel drives.
    public let virtio: VirtioIOMMUProbe?
    let acs: ACSEvaluator
    /// The vIOMMU the guest runs under.
    public let iommu: IOMMUModel

    /// Whether `VFIO_SET_IOMMU` finds interrupt remapping: intel with intremap; amd where the
    /// kernel enables it on QEMU's IVRS; never virtio.
    public var interruptRemapping: Bool {
        switch iommu {
        case .intel: return true
        case .amd: return kernel.amdInterruptRemappingOnQEMU
        case .virtio, .none: return false
        }
    }

    /// Why the guest has no interrupt remapping, for a rule's reason.
    var noInterruptRemappingWhy: String {
        switch iommu {
        case .amd: return "amd_iommu_init: check_ioapic_information() finds no southbridge IOAPIC in QEMU's IVRS on \(kernel.id), so AMD-Vi disables it"
        case .virtio: return "virtio-iommu provides none"
        case .intel, .none: return "no vIOMMU provides it"
        }
    }

    /// Drivers that set `driver_managed_dma` and so never take the group's DMA ownership (≥5.19).
    public static let driverManagedDMA: Set<String> = ["vfio-pci", "pci-stub", "pcieport"]
    /// Drivers that VFIO's 5.10 viability check allows next to a VFIO device (`vfio_driver_allowed[]`).
    public static let viabilityAllowed: Set<String> = ["pci-stub"]
    var driver: [Int: String] = [:]
    var override: [Int: String] = [:]
    var loaded: Set<String>
    var groups: [Int: GroupState] = [:]
    var pendingUnbind: Set<Int> = []
    /// Devices whose unbind never returns, holding the device lock (every later write blocks).
    var stuck: Set<Int> = []
    /// Drivers whose remove waits on the device's DMA (nvme shuts the controller down through its
    /// admin queue): with the device's DMA domain taken away, the unbind never completes.
    public static let removeWaitsOnDMA: Set<String> = ["nvme"]
    var crashed = false
    /// SR-IOV: the VFs that exist now (a VF is absent until its PF's `sriov` step creates it).
    var present: Set<Int> = []
    /// PFs whose VF removal waits for an open VF (their `sriov_numvfs` write is blocked).
    var pendingSRIOVDisable: Set<Int> = []
    /// vfio-pci's `enable_sriov` module option, as vfio-pci was loaded.
    var vfioPCIEnableSRIOV = false
    /// PFs whose VFs vfio-pci's `sriov_configure` created (their VFs' `sriov_pf_core_dev`).
    var vfioCreatedVFs: Set<Int> = []
    /// Each vfio-pci PF's VF token as a PF open set it (`vf_token->uuid`, random until then:
    /// `uuid_gen()` in `vfio_pci_vf_init()`) and its open VFs
    /// (`vf_token->users`).
    var vfToken: [Int: String] = [:]
    var vfTokenUsers: [Int: Int] = [:]
    /// `vfio.enable_unsafe_noiommu_mode` as vfio was loaded with (only where the kernel builds it).
    var noiommuMode = false
    /// VFIO's fake groups of no-IOMMU devices (`vfio_noiommu_group_alloc()`): function → group id.
    /// Their ids are the model's own (from `noiommuGroupBase`); the guest numbers them from 0.
    var noiommuGroup: [Int: Int] = [:]
    static let noiommuGroupBase = 100_000

    struct GroupState {
        /// Opened through the device cdev and iommufd rather than the group fd (`vfio-open via: cdev`).
        var cdev = false
        /// The agent's iommufd and IOAS for the group exist (kept until `vfio-close`).
        var ioas = false
        /// The agent's container fd for the group (`/dev/vfio/vfio`): opened by the first
        /// `vfio-open`, kept even when opening the group then fails, closed by `vfio-close`.
        var containerOpen = false
        var open = false
        var containerSet = false
        var iommuSet = false
        var userOwned = false
        var revoked = false
        /// Kernel DMA-API drivers bound in the group (`owner_cnt` while not user owned).
        var kernelUsers = 0
        var openDevices: Set<Int> = []
    }

    public init(fabric: Fabric, grouping: IOMMUGrouping?, kernel: KernelGeneration, iommu: IOMMUModel,
                virtio: VirtioIOMMUProbe? = nil, acs: ACSEvaluator? = nil) {
        self.fabric = fabric
        self.grouping = grouping
        self.kernel = kernel
        self.virtio = virtio
        self.acs = acs ?? ACSEvaluator(fabric: fabric, acsEnabledByKernel: grouping != nil)
        self.iommu = iommu
        self.loaded = kernel.builtInDrivers
        // 7.3 with a failed virtio-iommu registration: every boot probe stays deferred.
        guard virtio?.registrationFailed != true else { return }
        for f in fabric.bootFunctions {
            if let drv = Self.bootDriver(f, kernel: kernel) { bindNow(f, drv) }
        }
    }

    /// The driver bound to `f` when the guest has booted (before any step), if any.
    public static func bootDriver(_ f: PCIFunction, kernel: KernelGeneration) -> String? {
        switch f.kind {
        case .rootPort?, .switchUpstream?, .downstreamPort?:
            return kernel.builtInDrivers.contains("pcieport") ? "pcieport" : nil
        case .device(.virtioNet, _)? where kernel.virtioPCIBuiltIn: return "virtio-pci"
        default: return nil
        }
    }

    // MARK: helpers

    func groupID(_ f: PCIFunction) -> Int? { grouping?.groupOf[f.index] ?? noiommuGroup[f.index] }

    func members(of gid: Int) -> [PCIFunction] {
        if gid >= Self.noiommuGroupBase {
            return noiommuGroup.filter { $0.value == gid }.map { fabric.functions[$0.key] }
        }
        return grouping?.groups[gid].members.map { fabric.functions[$0] } ?? []
    }

    /// Whether `gid` is one of VFIO's no-IOMMU groups.
    func isNoIOMMUGroup(_ gid: Int) -> Bool { gid >= Self.noiommuGroupBase }

    func isKernelDMAUser(_ drv: String) -> Bool { !Self.driverManagedDMA.contains(drv) }

    /// 5.10 `vfio_dev_viable()`: no driver, a bridge (header type not normal), an allowed
    /// driver, or a VFIO device of the group.
    func viable(_ f: PCIFunction) -> Bool {
        guard let d = driver[f.index] else { return true }
        return f.isBridge || Self.viabilityAllowed.contains(d) || d == "vfio-pci"
    }

    func groupViable(_ gid: Int) -> Bool {
        switch kernel.ownership {
        case .vfioViability: return members(of: gid).allSatisfy(viable)
        case .dmaOwner: return (groups[gid]?.kernelUsers ?? 0) == 0 && !(groups[gid]?.userOwned ?? false)
        }
    }

    mutating func bindNow(_ f: PCIFunction, _ drv: String) {
        driver[f.index] = drv
        if let g = groupID(f), kernel.ownership == .dmaOwner, isKernelDMAUser(drv) {
            groups[g, default: GroupState()].kernelUsers += 1
        }
    }

    /// Errno a sysfs `bind` write returns for a failed probe (`bind_store()`).
    func bindErrno(_ probeErrno: Errno) -> Errno {
        kernel.bindReportsENODEVForProbeFailure ? .ENODEV : probeErrno
    }

    /// One driver probe of an unbound function, as `really_probe()` runs it.
    /// Returns nil on success, else the result and the rule.
    mutating func probe(_ f: PCIFunction, _ drv: String) -> (StepResult, Reason)? {
        if let deferred = viommuProbe(f, drv) { return deferred }
        if drv == "vfio-pci" {
            if f.isBridge {
                return (.error(bindErrno(.EINVAL)), Reason("vfio_pci_probe()", "\(f.displayName) is a bridge (header type not normal): vfio-pci's probe returns -EINVAL" + (kernel.bindReportsENODEVForProbeFailure ? ", which bind_store() reports as ENODEV" : "")))
            }
            if groupID(f) == nil {
                if noiommuMode {
                    noiommuGroup[f.index] = Self.noiommuGroupBase + f.index
                    bindNow(f, drv)
                    return nil
                }
                let noiommu = kernel.hasVFIONoIOMMU ? "vfio was loaded without enable_unsafe_noiommu_mode=1" : "the kernel does not build VFIO_NOIOMMU"
                return (.error(bindErrno(.EINVAL)), Reason("vfio_pci_probe()", "\(f.displayName) has no IOMMU group (\(noGroupCause(f))) and \(noiommu): vfio_group_find_or_alloc() fails and vfio-pci's probe returns -EINVAL" + (kernel.bindReportsENODEVForProbeFailure ? ", which bind_store() reports as ENODEV" : "")))
            }
        }
        if let g = groupID(f), kernel.ownership == .dmaOwner, isKernelDMAUser(drv), groups[g]?.userOwned == true {
            return (.error(.EBUSY), Reason("iommu_device_use_default_domain()", "\(f.displayName)'s group is owned by userspace (VFIO): the DMA-API driver \(drv) may not bind, -EBUSY"))
        }
        bindNow(f, drv)
        if let g = groupID(f), kernel.ownership == .vfioViability, groups[g]?.containerSet == true, !viable(f) {
            crashed = true
            return (.crash("kernel BUG at drivers/vfio/vfio.c:698"), Reason("vfio_iommu_group_notifier()", "\(drv) bound \(f.displayName) into a group whose VFIO container is set, and \(drv) is not a driver VFIO allows: BUG_ON(vfio_group_nb_verify()) fires and kills the binding task"))
        }
        return nil
    }

    /// Removes a driver (`device_release_driver()`), with `pci_dma_cleanup()` and VFIO's teardown.
    mutating func release(_ f: PCIFunction) {
        guard let drv = driver.removeValue(forKey: f.index) else { return }
        guard let g = groupID(f) else { return }
        if isNoIOMMUGroup(g) {
            // vfio_device_remove_group(): the fake group goes with its only device.
            noiommuGroup[f.index] = nil
            groups[g] = nil
            return
        }
        if kernel.ownership == .dmaOwner {
            if isKernelDMAUser(drv) { groups[g, default: GroupState()].kernelUsers -= 1 }
            // ≥6.1: when the last VFIO device of a group goes, the container is detached and the group revoked.
            if drv == "vfio-pci", !members(of: g).contains(where: { driver[$0.index] == "vfio-pci" }),
               groups[g]?.open == true {
                groups[g]?.revoked = true
                groups[g]?.containerSet = false
                groups[g]?.iommuSet = false
                groups[g]?.userOwned = false
            }
        }
    }
}
