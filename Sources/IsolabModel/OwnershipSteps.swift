import IsolabProtocol

extension OwnershipModel {
    /// Predicts every step of a scenario from the freshly booted state.
    public static func predict(_ scenario: Scenario, fabric: Fabric, grouping: IOMMUGrouping?,
                               kernel: KernelGeneration, iommu: IOMMUModel,
                               virtio: VirtioIOMMUProbe? = nil, acs: ACSEvaluator? = nil) -> ScenarioPrediction {
        var model = OwnershipModel(fabric: fabric, grouping: grouping, kernel: kernel, iommu: iommu,
                                   virtio: virtio, acs: acs)
        let steps = scenario.steps.enumerated().map { i, step in model.run(step, index: i) }
        return ScenarioPrediction(name: scenario.name, steps: steps)
    }

    /// Predicts one step and applies it to the state.
    public mutating func run(_ step: Step, index: Int) -> StepPrediction {
        func done(_ r: StepResult, _ rule: Reason) -> StepPrediction {
            StepPrediction(index: index, step: step, result: r, rule: rule)
        }
        if crashed {
            return done(.notRun, Reason("isolab", "an earlier step crashed the kernel: the scenario stops there"))
        }
        func fn(_ id: String) -> PCIFunction { fabric.function(of: id)! }
        if let dev = step.action.device, let f = fabric.function(of: dev), !exists(f) {
            return done(.notRun, Reason("pci_iov_add_virtfn()", "\(dev) does not exist: its PF's VFs are not enabled"))
        }
        if let dev = step.action.device, let f = fabric.function(of: dev), stuck.contains(f.index) {
            return done(.blocked, Reason("device_lock()", "\(dev)'s earlier unbind still holds its device lock (it waits on DMA the IOMMU no longer lets through): every sysfs write to it blocks"))
        }
        switch step.action {
        case .loadDriver(let module, let options):
            return loadDriver(module, options: options, step: step, index: index)
        case .bind(let dev, let drv):
            let f = fn(dev)
            return bind(f, drv ?? f.defaultDriver, step: step, index: index)
        case .vfioBind(let dev):
            let f = fn(dev)
            if driver[f.index] == "vfio-pci" {
                return done(.ok, Reason("isolab-agent", "\(dev) is already bound to vfio-pci"))
            }
            if driver[f.index] != nil { release(f) }
            return bind(f, "vfio-pci", step: step, index: index)
        case .unbind(let dev):
            return unbind(fn(dev), step: step, index: index)
        case .vfioOpen(let dev, .group, let token):
            return vfioOpen(fn(dev), token: token, step: step, index: index)
        case .vfioOpen(let dev, .cdev, _):
            return vfioCdevOpen(fn(dev), step: step, index: index)
        case .vfioClose(let dev):
            return vfioClose(fn(dev), step: step, index: index)
        case .dma(let from, let to, let map):
            return dma(fn(from), to, map, step: step, index: index)
        case .sriov(let dev, let n, _):
            return sriov(fn(dev), n, step: step, index: index)
        case .vfToken(let dev, let token):
            return setVFToken(fn(dev), token, step: step, index: index)
        case .selftest(let run):
            return selftest(run, step: step, index: index)
        }
    }

    /// `modprobe`: registering the driver runs `driver_attach()`, which probes every unbound
    /// function it matches (by its id table, or by `driver_override` naming it). Auto-probing
    /// reports no error (drivers/base/dd.c), so the step succeeds whatever the probes did.
    mutating func loadDriver(_ module: String, options: [String] = [], step: Step, index: Int) -> StepPrediction {
        let drv = String(module.map { $0 == "_" ? "-" : $0 })
        var p = StepPrediction(index: index, step: step, result: .ok, rule: Reason("driver_attach()", "modprobe \(module)"))
        if drv == "vfio" { return loadVFIO(options: options, p) }
        if drv == "vfio-pci", !loaded.contains(drv), options.contains(Self.enableSRIOVOption) {
            // module_param(enable_sriov): counts only on the load that loads vfio-pci.
            vfioPCIEnableSRIOV = true
        }
        if loaded.contains(drv) {
            p.rule = Reason("driver_register()", "\(drv) is already loaded: modprobe does nothing and nothing new is probed")
            return p
        }
        loaded.insert(drv)
        var refusedOtherwise: Reason?
        for f in fabric.functions where driver[f.index] == nil && exists(f) {
            let matches: Bool
            if let o = override[f.index] {
                matches = o == drv
            } else {
                matches = f.deviceModel?.matchingDriver == drv
            }
            guard matches else { continue }
            if let (r, rule) = probe(f, drv) {
                if case .crash = r {
                    p.bound.append(f.displayName)
                    p.result = r
                    p.rule = rule
                    return p
                }
                if r != .error(.EBUSY) { refusedOtherwise = refusedOtherwise ?? rule }
                p.refused.append(f.displayName)
            } else {
                p.bound.append(f.displayName)
            }
        }
        if let why = refusedOtherwise {
            p.rule = Reason(why.kernelFunction, "\(drv) bound \(p.bound.isEmpty ? "nothing" : p.bound.joined(separator: ", ")); auto-probing does not report that its probe of \(p.refused.joined(separator: ", ")) failed: " + why.text)
        } else if !p.refused.isEmpty {
            p.rule = Reason("iommu_device_use_default_domain()", "\(drv) bound \(p.bound.isEmpty ? "nothing" : p.bound.joined(separator: ", ")); its probe of \(p.refused.joined(separator: ", ")) got -EBUSY (group owned by userspace), which auto-probing does not report")
        } else {
            p.rule = Reason("driver_attach()", "\(drv) bound \(p.bound.isEmpty ? "nothing it matches" : p.bound.joined(separator: ", "))")
        }
        return p
    }

    /// The agent's `bind`: load the driver's module without auto-probing if needed, set
    /// `driver_override` to it, and write the device into the driver's `bind` file (`bind_store()`).
    mutating func bind(_ f: PCIFunction, _ drv: String, step: Step, index: Int) -> StepPrediction {
        var p = StepPrediction(index: index, step: step, result: .ok, rule: Reason("bind_store()", "\(f.displayName) bound to \(drv)"))
        loaded.insert(drv)
        override[f.index] = drv
        if let cur = driver[f.index] {
            p.result = .error(kernel.bindReportsENODEVForProbeFailure ? .ENODEV : .EBUSY)
            p.rule = Reason("bind_store()", "\(f.displayName) is already bound to \(cur): " + (kernel.bindReportsENODEVForProbeFailure ? "5.10's bind_store() returns ENODEV" : "driver_probe_device() returns -EBUSY"))
            return p
        }
        let groupBefore = groupID(f)
        if let (r, rule) = probe(f, drv) {
            p.result = r
            p.rule = rule
            if case .crash = r { p.bound = [f.displayName] }
            return p
        }
        p.bound = [f.displayName]
        if groupBefore == nil, let g = groupID(f) {
            let with = members(of: g).filter { $0.index != f.index }.map(\.displayName)
            p.rule = Reason("acpi_dma_configure()", "\(f.displayName) bound to \(drv); the probe made its VIOT fwspec and grouped it" + (with.isEmpty ? " in a group of its own" : " with \(with.joined(separator: ", "))"))
        }
        return p
    }

    mutating func unbind(_ f: PCIFunction, step: Step, index: Int) -> StepPrediction {
        var p = StepPrediction(index: index, step: step, result: .ok, rule: Reason("device_release_driver()", "\(f.displayName) unbound"))
        guard let drv = driver[f.index] else {
            p.result = .error(.ENOENT)
            p.rule = Reason("sysfs", "\(f.displayName) has no driver: its driver/unbind file does not exist")
            return p
        }
        if let blocked = removeVFsBeforeUnbinding(f, driver: drv, p) { return blocked }
        if kernel.ownership == .vfioViability, Self.removeWaitsOnDMA.contains(drv), let g = groupID(f), groups[g]?.iommuSet == true {
            stuck.insert(f.index)
            p.result = .blocked
            p.rule = Reason("vfio_iommu_type1_attach_group()", "5.10's VFIO_SET_IOMMU attached the whole non-viable group to VFIO's empty domain, so \(drv)'s DMA faults; its remove waits for the controller to answer and never returns (observed: DMAR fault on \(f.displayName), unbind still running after the step timeout)")
            return p
        }
        if drv == "vfio-pci", let g = groupID(f) {
            if groups[g]?.openDevices.contains(f.index) == true {
                pendingUnbind.insert(f.index)
                p.result = .blocked
                p.rule = Reason("vfio_unregister_group_dev()", "\(f.displayName)'s VFIO device fd is open: the unbind waits until it is released (\"Device is currently in use\")")
                return p
            }
            if kernel.ownership == .vfioViability, groups[g]?.containerSet == true,
               !members(of: g).contains(where: { $0.index != f.index && driver[$0.index] == "vfio-pci" }) {
                pendingUnbind.insert(f.index)
                p.result = .blocked
                p.rule = Reason("vfio_unregister_group_dev()", "\(f.displayName) is the last VFIO device of a group whose container is set: 5.10 waits for userspace to release the container")
                return p
            }
        }
        release(f)
        return p
    }

    /// The legacy VFIO path: container, group, `GET_STATUS`, `SET_CONTAINER`, `SET_IOMMU(TYPE1v2)`,
    /// `GET_DEVICE_FD`. What an earlier `vfio-open` of the group completed is not repeated; the
    /// agent keeps what it opened until `vfio-close`, even after a failed sub-step.
    mutating func vfioOpen(_ f: PCIFunction, token: String? = nil, step: Step, index: Int) -> StepPrediction {
        var p = StepPrediction(index: index, step: step, result: .ok, rule: Reason("vfio_group_get_device_fd()", "\(f.displayName)'s VFIO device is open"))
        func fail(_ name: Substep, _ e: Errno, _ rule: Reason) -> StepPrediction { p.failing(name, e, rule) }
        guard let g = groupID(f) else {
            return fail(.findGroup, .ENOENT, Reason("iommu_group_get()", "\(f.displayName) has no IOMMU group (\(noGroupCause(f))): no iommu_group link, no /dev/vfio node"))
        }
        if isNoIOMMUGroup(g) { return vfioOpenNoIOMMU(f, group: g, step: step, index: index) }
        var gs = groups[g, default: GroupState()]
        defer { groups[g] = gs }
        if !gs.open, !gs.containerOpen {
            // The agent opens the container first and keeps it even when the group then fails.
            gs.containerOpen = true
            p.substeps.append(SubstepPrediction(name: .openContainer, result: .ok, detail: "VFIO_GET_API_VERSION 0, VFIO_CHECK_EXTENSION(TYPE1v2)"))
        }
        if gs.cdev, !gs.open {
            return fail(.openGroup, .EBUSY, Reason("vfio_group_fops_open()", "a device of \(f.displayName)'s group is open through its cdev: the group fd may not be opened as well, -EBUSY"))
        }
        if !gs.open {
            guard members(of: g).contains(where: { driver[$0.index] == "vfio-pci" }) else {
                return fail(.openGroup, .ENOENT, Reason("vfio_group_fops_open()", "no function of \(f.displayName)'s group is bound to vfio-pci, so /dev/vfio/<group> does not exist"))
            }
            gs.open = true
            gs.revoked = false
            p.substeps.append(SubstepPrediction(name: .openGroup, result: .ok, detail: nil))
        }
        if gs.revoked {
            return fail(.getStatus, .ENODEV, Reason("vfio_group_ioctl_get_status()", "the group was revoked when its last VFIO device was unbound"))
        }
        groups[g] = gs
        // VFIO_GROUP_GET_STATUS: 5.10 reports vfio_group_viable() whatever the container;
        // ≥5.19 reports VIABLE with the container set, else while no one claimed DMA ownership.
        let viableNow = kernel.ownership == .vfioViability ? groupViable(g) : gs.containerSet || groupViable(g)
        let flags = (viableNow ? ["VIABLE"] : []) + (gs.containerSet ? ["CONTAINER_SET"] : [])
        p.substeps.append(SubstepPrediction(name: .getStatus, result: .ok, detail: flags.isEmpty ? "0" : flags.joined(separator: "|")))
        if !gs.containerSet {
            if kernel.ownership == .dmaOwner, gs.kernelUsers > 0 {
                let users = members(of: g).filter { driver[$0.index].map(isKernelDMAUser) ?? false }
                    .map { "\($0.displayName) (\(driver[$0.index]!))" }
                return fail(.setContainer, .EPERM, Reason("iommu_group_claim_dma_owner()", "a DMA-API driver is bound in the group: \(users.joined(separator: ", ")); userspace may not claim it, -EPERM"))
            }
            gs.containerSet = true
            gs.userOwned = kernel.ownership == .dmaOwner
            p.substeps.append(SubstepPrediction(name: .setContainer, result: .ok, detail: kernel.ownership == .vfioViability ? "5.10 does not check viability here" : nil))
        }
        if !gs.iommuSet {
            guard interruptRemapping else {
                return fail(.setIOMMU, .EPERM, Reason("vfio_iommu_type1_attach_group()", "no interrupt remapping (\(noInterruptRemappingWhy)) and allow_unsafe_interrupts is off: -EPERM"))
            }
            gs.iommuSet = true
            p.substeps.append(SubstepPrediction(name: .setIOMMU, result: .ok, detail: "VFIO_TYPE1v2_IOMMU"))
        }
        if !gs.openDevices.contains(f.index) {
            switch kernel.ownership {
            case .vfioViability:
                let blockers = members(of: g).filter { !viable($0) }
                if !blockers.isEmpty {
                    let names = blockers.map { "\($0.displayName) (\(driver[$0.index] ?? "?"))" }.joined(separator: ", ")
                    return fail(.getDeviceFD, .EINVAL, Reason("vfio_group_get_device_fd()", "the group is not viable: \(names) bound to a driver VFIO does not allow; -EINVAL"))
                }
                if driver[f.index] != "vfio-pci" {
                    return fail(.getDeviceFD, .ENODEV, Reason("vfio_device_get_from_name()", "\(f.displayName) is not a VFIO device of the group: -ENODEV"))
                }
            case .dmaOwner:
                if driver[f.index] != "vfio-pci" {
                    return fail(.getDeviceFD, .ENODEV, Reason("vfio_device_get_from_name()", "\(f.displayName) is not a VFIO device of the group: -ENODEV"))
                }
            }
            if let (e, rule) = validateVFToken(f, token) { return fail(.getDeviceFD, e, rule) }
            gs.openDevices.insert(f.index)
            openedWithToken(f, token)
            p.substeps.append(SubstepPrediction(name: .getDeviceFD, result: .ok, detail: nil))
        }
        p.rule = Reason("vfio_group_get_device_fd()", kernel.ownership == .dmaOwner
            ? "the group is owned by userspace (iommu_group_claim_dma_owner() succeeded) and \(f.displayName) is its VFIO device"
            : "the group is viable and \(f.displayName) is its VFIO device")
        return p
    }

    /// Closes the device fd and, when none of the group's devices stays open, the group and
    /// container (`iommu_group_release_dma_owner()` on ≥5.19). A pending unbind then completes.
    mutating func vfioClose(_ f: PCIFunction, step: Step, index: Int) -> StepPrediction {
        var p = StepPrediction(index: index, step: step, result: .ok, rule: Reason("vfio_group_fops_release()", "closed"))
        guard let g = groupID(f), var gs = groups[g], gs.open || gs.ioas || gs.containerOpen else {
            p.result = .error(.EBADF)
            p.rule = Reason("isolab-agent", "nothing of \(f.displayName)'s group is open")
            return p
        }
        if gs.openDevices.remove(f.index) != nil { closedVF(f) }
        if gs.openDevices.isEmpty {
            gs = GroupState(kernelUsers: gs.kernelUsers)
            p.rule = Reason("iommu_group_release_dma_owner()", "the last open device of the group is closed: group and container released" + (kernel.ownership == .dmaOwner ? ", the group returns to the kernel's DMA API" : ""))
        } else {
            p.rule = Reason("vfio_device_fops_release()", "\(f.displayName)'s device fd closed; the group stays open for its other devices")
        }
        groups[g] = gs
        for u in pendingUnbind where !gs.openDevices.contains(u) && (gs.containerSet == false || kernel.ownership == .dmaOwner) {
            pendingUnbind.remove(u)
            release(fabric.functions[u])
        }
        resumeSRIOVDisables()
        return p
    }

    /// DMA probes with edu (KERNEL-NOTES §5.3, §5.4): translated in the initiator's aliased
    /// address space under an IOMMU the kernel drives; straight to guest-physical memory otherwise.
    mutating func dma(_ a: PCIFunction, _ to: DMATarget, _ map: DMAMapping, step: Step, index: Int) -> StepPrediction {
        var p = StepPrediction(index: index, step: step, result: .ok, rule: Reason("", ""))
        if grouping != nil, groupID(a) == nil {
            // virtio-iommu left the initiator without a group: nothing attached its endpoint,
            // so QEMU lets its DMA bypass translation (boot-bypass), and the agent probes through
            // sysfs at guest-physical addresses, as without an IOMMU.
            let cause = "\(a.displayName) has no IOMMU group (\(noGroupCause(a))), so QEMU's virtio-iommu bypasses its DMA (boot-bypass)"
            switch to {
            case .memory:
                p.result = .delivered
                p.rule = Reason("virtio_iommu_device_bypassed()", cause + ": it reaches guest-physical memory")
            case .unmapped:
                p.result = .unsupported
                p.rule = Reason("isolab-agent", cause + ": there is no IOVA space to leave unmapped")
            case .device(let b):
                p.result = map == .peer ? .unsupported : .delivered
                p.rule = map == .peer
                    ? Reason("isolab-agent", cause + ": map: peer needs an IOMMU container")
                    : Reason("virtio_iommu_device_bypassed()", cause + ": its write at \(b)'s BAR address lands in \(b)'s registers")
            }
            return p
        }
        if grouping == nil { return untranslatedDMA(a, to, map, p) }
        let requester = DMAAlias.requesterPath(of: a, in: fabric)
        guard let g = groupID(a), groups[g]?.openDevices.contains(a.index) == true else {
            p.result = .notRun
            p.rule = Reason("isolab-agent", "\(a.displayName) has no open VFIO device: vfio-open it first")
            return p
        }
        let cdev = groups[g]?.cdev == true
        let mapper = cdev ? "iopt_map_user_pages()" : "vfio_iommu_type1_map_dma()"
        let space = cdev ? "IOAS" : "container"
        switch to {
        case .memory:
            p.result = .delivered
            p.rule = Reason(mapper, "the buffer is mapped in \(a.displayName)'s \(space): the round trip through RAM delivers")
        case .unmapped:
            p.result = .faulted(requester: requester)
            p.rule = Reason("dmar_fault()", "nothing maps the IOVA in \(a.displayName)'s domain: a DMAR fault from \(requester)")
        case .device(let bID):
            let b = fabric.function(of: bID)!
            if map == .peer {
                guard let gb = groupID(b), groups[gb]?.openDevices.contains(b.index) == true else {
                    p.result = .notRun
                    p.rule = Reason("isolab-agent", "\(bID) has no open VFIO device whose BAR could be mapped: vfio-open it first")
                    return p
                }
                if cdev {
                    p.result = .error(.EFAULT)
                    p.rule = Reason("iopt_map_user_pages()", "IOMMU_IOAS_MAP pins the pages behind the address, and \(bID)'s BAR mmap is VM_PFNMAP memory without struct pages: pin_user_pages() fails, -EFAULT (iommufd maps no MMIO from a user address)")
                    return p
                }
                p.result = .delivered
                p.rule = Reason(mapper, "\(bID)'s BAR is mapped into \(a.displayName)'s container: the canary lands")
            } else {
                p.result = .faulted(requester: requester)
                p.rule = Reason("dmar_fault()", "\(bID)'s BAR address is not mapped in \(a.displayName)'s domain and QEMU routes no DMA peer to peer: a DMAR fault from \(requester)")
            }
        }
        return p
    }
}
