/// A VF a `sriov` step creates, where the kernel puts it and whom its IOMMU group holds.
public struct VirtualFunctionPrediction: Sendable, Equatable {
    /// `<pf>.vf<index>`, or its declared name.
    public var id: String
    /// The PF's id and the VF's index, e.g. `A VF 0`.
    public var physicalFunctionAndIndex: String
    /// The VF's guest path.
    public var path: String
    /// The guest paths of every member of the VF's group, sorted; empty without a group.
    public var groupMembers: [String]
}

extension OwnershipModel {
    /// The PF drivers that implement `sriov_configure` (igb's `igb_pci_sriov_configure()`,
    /// vfio-pci's `vfio_pci_sriov_configure()`, nvme's `pci_sriov_configure_simple()`).
    static let sriovConfigureDrivers: Set<String> = ["igb", "vfio-pci", "nvme"]

    /// A write of `n` to the PF's `sriov_numvfs`: `sriov_numvfs_store()` (drivers/pci/iov.c), then
    /// the PF driver's `sriov_configure`, which enables VFs through `pci_enable_sriov()` (each VF
    /// added by `pci_iov_add_virtfn()`: grouped by `pci_device_group()` when the bus notifier
    /// probes its IOMMU, then offered to the loaded drivers) or removes them all.
    mutating func sriov(_ pf: PCIFunction, _ n: Int, step: Step, index: Int) -> StepPrediction {
        var p = StepPrediction(index: index, step: step, result: .ok, rule: Reason("sriov_numvfs_store()", "\(pf.displayName): \(n) VFs"))
        func fail(_ e: Errno, _ rule: Reason) -> StepPrediction {
            p.result = .error(e)
            p.rule = rule
            p.virtualFunctions = predictedVFs(of: pf)
            return p
        }
        guard let sriov = fabric.sriov(of: pf) else {
            return fail(.ENOENT, Reason("sysfs", "\(pf.displayName) has no SR-IOV capability: no sriov_numvfs file"))
        }
        guard kernel.hasSRIOV else {
            return fail(.ENOENT, Reason("pci_iov_init()", "the kernel does not build CONFIG_PCI_IOV: \(pf.displayName) is no PF to it, and has no sriov_numvfs file"))
        }
        let current = presentVFs(of: pf).count
        let total = sriov.totalVFs(withDriver: driver[pf.index])
        if n > total {
            let lowered = sriov.driverMaxVFs.flatMap { $0.driver == driver[pf.index] ? " (\($0.driver) lowered it from \(sriov.totalVFs) in \($0.function))" : nil } ?? ""
            return fail(.ERANGE, Reason("sriov_numvfs_store()", "\(n) is more than pci_sriov_get_totalvfs(\(pf.displayName)) = \(total)\(lowered): -ERANGE"))
        }
        if n == current {
            p.rule = Reason("sriov_numvfs_store()", "\(pf.displayName) has \(n) VFs already: nothing to do")
            p.virtualFunctions = predictedVFs(of: pf)
            return p
        }
        guard let drv = driver[pf.index] else {
            return fail(.ENOENT, Reason("sriov_numvfs_store()", "no driver bound to \(pf.displayName): \"cannot configure SR-IOV\", -ENOENT"))
        }
        guard Self.sriovConfigureDrivers.contains(drv) else {
            return fail(.ENOENT, Reason("sriov_numvfs_store()", "\(drv) has no sriov_configure: \"driver does not support SR-IOV configuration via sysfs\", -ENOENT"))
        }
        if drv == "vfio-pci" && !vfioPCIEnableSRIOV {
            return fail(.ENOENT, Reason("vfio_pci_sriov_configure()", "vfio-pci was loaded without enable_sriov=1: -ENOENT"))
        }
        if n == 0 {
            return disableVFs(of: pf, p)
        }
        if current > 0 {
            return fail(.EBUSY, Reason("sriov_numvfs_store()", "\(pf.displayName) has \(current) VFs enabled: \"Disable before enabling\", -EBUSY"))
        }
        if drv == "vfio-pci" { vfioCreatedVFs.insert(pf.index) }
        var bound: [String] = []
        for vf in fabric.virtualFunctions(of: pf).prefix(n) {
            present.insert(vf.index)
            // vfio_pci_bus_notifier(): a VF of a vfio-pci PF gets driver_override "vfio-pci".
            if drv == "vfio-pci" { override[vf.index] = "vfio-pci" }
            // The bus notifier's iommu_probe_device() groups it now, except where the kernel
            // makes a VIOT fwspec only when a driver probes (virtio-iommu on 6.12).
            if virtio?.path != .atDriverProbe { grouping?.add(vf, fabric: fabric, acs: acs) }
            // pci_bus_add_device() → device_attach(): a loaded driver matching the VF binds it
            // (sriov_drivers_autoprobe is on); an ownership refusal is silent.
            if let m = override[vf.index] ?? vf.deviceModel?.matchingDriver, loaded.contains(m), probe(vf, m) == nil { bound.append(vf.displayName) }
        }
        p.bound = bound
        p.virtualFunctions = predictedVFs(of: pf)
        let where_ = p.virtualFunctions.map { "\($0.id) at \($0.path)" }.joined(separator: ", ")
        p.rule = Reason("pci_iov_add_virtfn()", "\(drv) enabled \(n) VFs of \(pf.displayName) (offset 0x\(String(sriov.firstVFOffset, radix: 16)), stride \(sriov.vfStride)): \(where_)"
                        + (bound.isEmpty ? "" : "; \(bound.joined(separator: ", ")) bound to the loaded VF driver"))
        return p
    }

    /// `pci_disable_sriov()`: each VF is removed (`pci_stop_and_remove_bus_device()`), its driver
    /// released first; a VF whose VFIO device is open holds the removal until it is closed.
    private mutating func disableVFs(of pf: PCIFunction, _ prediction: StepPrediction) -> StepPrediction {
        let count = presentVFs(of: pf).count
        if let blocked = waitForOpenVF(of: pf, prediction, rule: { open in
            Reason("vfio_unregister_group_dev()", "removing \(open) waits until its open VFIO device is released (\"Device is currently in use\"); the write holds \(pf.displayName)'s device lock meanwhile")
        }) { return blocked }
        removeVFs(of: pf)
        var p = prediction
        p.rule = Reason("pci_disable_sriov()", "\(pf.displayName)'s \(count) VFs removed")
        return p
    }

    /// Unbinding a PF driver that enabled VFs: igb's remove (`igb_remove()` →
    /// `igb_disable_sriov()`) disables SR-IOV, so the VFs go first, waiting on an open one as
    /// `sriov_numvfs` does. Returns the blocked prediction, or nil when the unbind goes on.
    mutating func removeVFsBeforeUnbinding(_ pf: PCIFunction, driver drv: String, _ prediction: StepPrediction) -> StepPrediction? {
        guard drv == "igb", !presentVFs(of: pf).isEmpty else { return nil }
        if let blocked = waitForOpenVF(of: pf, prediction, rule: { open in
            Reason("igb_remove()", "igb's remove disables SR-IOV first (igb_disable_sriov()), and removing \(open) waits until its open VFIO device is released")
        }) {
            pendingUnbind.insert(pf.index)
            return blocked
        }
        removeVFs(of: pf)
        return nil
    }

    /// When a VF of `pf` is open, its removal waits (`vfio_unregister_group_dev()`): the
    /// blocked prediction, with the PF's device lock held until `vfio-close` releases the VF.
    private mutating func waitForOpenVF(of pf: PCIFunction, _ prediction: StepPrediction,
                                        rule: (String) -> Reason) -> StepPrediction? {
        guard let open = presentVFs(of: pf).first(where: isOpen) else { return nil }
        stuck.insert(pf.index)
        pendingSRIOVDisable.insert(pf.index)
        var p = prediction
        p.result = .blocked
        p.rule = rule(open.displayName)
        return p
    }

    private func isOpen(_ vf: PCIFunction) -> Bool {
        groupID(vf).map { groups[$0]?.openDevices.contains(vf.index) == true } ?? false
    }

    /// The VFs of `pf` that exist now, by VF index.
    func presentVFs(of pf: PCIFunction) -> [PCIFunction] {
        fabric.virtualFunctions(of: pf).filter { present.contains($0.index) }
    }

    /// Whether `f` exists now: every function but a VF its PF has not created.
    func exists(_ f: PCIFunction) -> Bool { !f.isVirtualFunction || present.contains(f.index) }

    /// `sriov_disable()`: the VFs go, last first, each released from its driver and its group.
    private mutating func removeVFs(of pf: PCIFunction) {
        for vf in presentVFs(of: pf).reversed() {
            release(vf)
            present.remove(vf.index)
            grouping?.remove(vf)
            override[vf.index] = nil
        }
        vfioCreatedVFs.remove(pf.index)
    }

    /// After a `vfio-close`: a VF removal that waited for it goes on, and the PF's blocked
    /// `sriov_numvfs` write returns (its device lock is released).
    mutating func resumeSRIOVDisables() {
        for pfIndex in pendingSRIOVDisable {
            let pf = fabric.functions[pfIndex]
            guard !presentVFs(of: pf).contains(where: isOpen) else { continue }
            pendingSRIOVDisable.remove(pfIndex)
            stuck.remove(pfIndex)
            removeVFs(of: pf)
            if pendingUnbind.remove(pfIndex) != nil { release(pf) }
        }
    }

    /// The VFs of `pf` that exist now, with their groups.
    func predictedVFs(of pf: PCIFunction) -> [VirtualFunctionPrediction] {
        presentVFs(of: pf).map { vf in
            let members = groupID(vf).map { self.members(of: $0).map(\.path).sorted() } ?? []
            return VirtualFunctionPrediction(id: vf.displayName, physicalFunctionAndIndex: "\(pf.displayName) VF \(vf.virtualFunctionIndex ?? 0)",
                                             path: vf.path, groupMembers: members)
        }
    }

    /// `vfio_pci_validate_vf_token()` (drivers/vfio/pci/vfio_pci_core.c), run by
    /// `vfio_pci_core_match()` when `VFIO_GROUP_GET_DEVICE_FD` names the device
    /// (`"BDF vf_token=UUID"`): a VF created by a vfio-pci PF needs the PF's token; a token where
    /// none is used is refused; a PF with open VFs needs their token, and without them a token
    /// sets it. nil when the open goes on.
    func validateVFToken(_ f: PCIFunction, _ token: String?) -> (Errno, Reason)? {
        if let pf = f.physicalFunction {
            guard vfioCreatedVFs.contains(pf) else {
                if token == nil { return nil }
                return (.EINVAL, Reason("vfio_pci_validate_vf_token()", "\(f.displayName)'s PF is not a vfio-pci device (sriov_pf_core_dev is NULL): \"VF token incorrectly provided, PF not bound to vfio-pci\", -EINVAL"))
            }
            let pfName = fabric.functions[pf].displayName
            guard let token else {
                return (.EACCES, Reason("vfio_pci_validate_vf_token()", "\(f.displayName)'s PF \(pfName) is bound to vfio-pci: \"VF token required to access device\", -EACCES"))
            }
            guard token == vfToken[pf] else {
                let why = vfToken[pf] == nil ? "\(pfName)'s token is still the random one vfio_pci_vf_init() made (uuid_gen()); no open of the PF set one" : "the token is not \(pfName)'s"
                return (.EACCES, Reason("vfio_pci_validate_vf_token()", why + ": \"Incorrect VF token provided for device\", -EACCES"))
            }
            return nil
        }
        if driver[f.index] == "vfio-pci", kernel.hasSRIOV, fabric.sriov(of: f) != nil {
            guard (vfTokenUsers[f.index] ?? 0) > 0 else { return nil }
            guard let token else {
                return (.EACCES, Reason("vfio_pci_validate_vf_token()", "\(f.displayName) has VFs open through VFIO: \"VF token required to access device\", -EACCES"))
            }
            guard token == vfToken[f.index] else {
                return (.EACCES, Reason("vfio_pci_validate_vf_token()", "\(f.displayName)'s open VFs use another token: \"Incorrect VF token provided for device\", -EACCES"))
            }
            return nil
        }
        if token != nil {
            return (.EINVAL, Reason("vfio_pci_validate_vf_token()", "\(f.displayName) is neither a PF nor a VF: \"VF token incorrectly provided, not a PF or VF\", -EINVAL"))
        }
        return nil
    }

    /// After a successful open: a VF of a vfio-pci PF counts as a token user
    /// (`vfio_pci_vf_token_user_add()`); a PF opened with a token while no VF uses one sets it.
    mutating func openedWithToken(_ f: PCIFunction, _ token: String?) {
        if let pf = f.physicalFunction, vfioCreatedVFs.contains(pf) {
            vfTokenUsers[pf, default: 0] += 1
        } else if f.physicalFunction == nil, let token, (vfTokenUsers[f.index] ?? 0) == 0 {
            vfToken[f.index] = token
        }
    }

    /// A VF's device fd closed: one token user less.
    mutating func closedVF(_ f: PCIFunction) {
        if let pf = f.physicalFunction, vfioCreatedVFs.contains(pf), let n = vfTokenUsers[pf], n > 0 {
            vfTokenUsers[pf] = n - 1
        }
    }

    /// `VFIO_DEVICE_FEATURE_PCI_VF_TOKEN` (SET) on the agent's open device fd:
    /// `vfio_pci_core_feature_token()` sets the PF's token whatever its VFs do; a device without
    /// a token (not a PF with SR-IOV) answers -ENOTTY.
    mutating func setVFToken(_ f: PCIFunction, _ token: String, step: Step, index: Int) -> StepPrediction {
        var p = StepPrediction(index: index, step: step, result: .ok, rule: Reason("vfio_pci_core_feature_token()", "\(f.displayName)'s VF token set"))
        guard let g = groupID(f), groups[g]?.openDevices.contains(f.index) == true else {
            p.result = .error(.EBADF)
            p.rule = Reason("isolab-agent", "\(f.displayName)'s VFIO device is not open: no device fd to set the token on")
            return p
        }
        guard kernel.hasSRIOV, fabric.sriov(of: f) != nil else {
            p.result = .error(.ENOTTY)
            p.rule = Reason("vfio_pci_core_feature_token()", "\(f.displayName) is not a PF with SR-IOV (vdev->vf_token is NULL): -ENOTTY")
            return p
        }
        vfToken[f.index] = token
        return p
    }

    /// vfio-pci's module option that lets it enable VFs.
    static let enableSRIOVOption = "enable_sriov=1"
}
