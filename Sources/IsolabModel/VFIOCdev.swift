import IsolabProtocol

/// The VFIO device cdev path (v6.6+, `CONFIG_VFIO_DEVICE_CDEV`, drivers/vfio/device_cdev.c;
/// iommufd in drivers/iommu/iommufd/device.c): open `/dev/iommu` and allocate an IOAS, open
/// `/dev/vfio/devices/vfioN`, `VFIO_DEVICE_BIND_IOMMUFD` (which claims the group's DMA
/// ownership for the iommufd through `iommu_device_claim_dma_owner()`), then
/// `VFIO_DEVICE_ATTACH_IOMMUFD_PT` to the IOAS. The agent uses one iommufd and one IOAS per
/// IOMMU group, as the legacy path uses one container per group.
extension OwnershipModel {
    /// `vfio-open via: cdev`. Sub-step names follow the agent (isolab-agent VFIOCdev.swift): the
    /// iommufd and IOAS stay open until `vfio-close`, a device fd whose bind failed is closed.
    mutating func vfioCdevOpen(_ f: PCIFunction, step: Step, index: Int) -> StepPrediction {
        var p = StepPrediction(index: index, step: step, result: .ok, rule: Reason("vfio_df_ioctl_attach_pt()", "\(f.displayName)'s VFIO cdev is bound to the iommufd and attached to its IOAS"))
        func fail(_ name: Substep, _ e: Errno, _ rule: Reason) -> StepPrediction { p.failing(name, e, rule) }
        guard kernel.hasIOMMUFD else {
            p.substeps.append(SubstepPrediction(name: .openIOMMUFD, result: .error(.ENOENT), detail: nil))
            p.result = .unsupported
            p.rule = Reason("isolab-agent", "kernel \(kernel.id) as configured builds no IOMMUFD / VFIO_DEVICE_CDEV: there is no /dev/iommu and no /dev/vfio/devices")
            return p
        }
        guard let g = groupID(f) else {
            return fail(.openDevice, .ENOENT, Reason("vfio_device_add()", "\(f.displayName) has no IOMMU group (\(noGroupCause(f))), so vfio-pci never bound it and it has no /dev/vfio/devices node"))
        }
        var gs = groups[g, default: GroupState()]
        defer { groups[g] = gs }
        if !gs.ioas {
            gs.ioas = true
            p.substeps.append(SubstepPrediction(name: .openIOMMUFD, result: .ok, detail: nil))
            p.substeps.append(SubstepPrediction(name: .allocIOAS, result: .ok, detail: nil))
        }
        if gs.cdev, gs.openDevices.contains(f.index) {
            p.rule = Reason("isolab-agent", "\(f.displayName)'s cdev is open already")
            return p
        }
        guard driver[f.index] == "vfio-pci" else {
            return fail(.openDevice, .ENOENT, Reason("vfio_device_add()", "\(f.displayName) is not bound to vfio-pci: it has no vfio-dev/vfioN in sysfs and no /dev/vfio/devices node"))
        }
        p.substeps.append(SubstepPrediction(name: .openDevice, result: .ok, detail: nil))
        if gs.open {
            return fail(.bindIOMMUFD, .EBUSY, Reason("vfio_device_block_group()", "\(f.displayName)'s group is open through /dev/vfio/<group>: none of its devices' cdevs may be bound as well, -EBUSY"))
        }
        if isNoIOMMUGroup(g) {
            return fail(.bindIOMMUFD, .EINVAL, Reason("vfio_df_ioctl_bind_iommufd()", "\(f.displayName) is a no-IOMMU device: its cdev binds only with iommufd -1, not to an iommufd"))
        }
        guard interruptRemapping else {
            return fail(.bindIOMMUFD, .EPERM, Reason("iommufd_device_bind()", "the group has no isolated MSI (\(noInterruptRemappingWhy)) and iommufd's allow_unsafe_interrupts is off: -EPERM"))
        }
        if kernel.ownership == .dmaOwner, gs.kernelUsers > 0 {
            let users = members(of: g).filter { driver[$0.index].map(isKernelDMAUser) ?? false }
                .map { "\($0.displayName) (\(driver[$0.index]!))" }
            return fail(.bindIOMMUFD, .EPERM, Reason("iommu_device_claim_dma_owner()", "a DMA-API driver is bound in the group: \(users.joined(separator: ", ")); the iommufd may not claim it, -EPERM"))
        }
        gs.cdev = true
        gs.userOwned = true
        p.substeps.append(SubstepPrediction(name: .bindIOMMUFD, result: .ok, detail: nil))
        p.substeps.append(SubstepPrediction(name: .attachIOAS, result: .ok, detail: nil))
        gs.openDevices.insert(f.index)
        return p
    }
}
