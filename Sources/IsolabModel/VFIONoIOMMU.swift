import IsolabProtocol

/// VFIO's no-IOMMU mode (`CONFIG_VFIO_NOIOMMU`, drivers/vfio/group.c, container.c,
/// vfio_iommu_noiommu in drivers/vfio/container.c): with `vfio.enable_unsafe_noiommu_mode=1`,
/// vfio-pci accepts a device that has no IOMMU group, gives it a fake group of its own
/// (`/dev/vfio/noiommu-N`, the kernel tainted) and the container takes `VFIO_NOIOMMU_IOMMU`:
/// no translation, no mappings; userspace programs the device with physical addresses.
extension OwnershipModel {
    static let noiommuOption = "enable_unsafe_noiommu_mode=1"

    /// `modprobe vfio [enable_unsafe_noiommu_mode=1]`: the option takes effect only when this
    /// load is the one that loads vfio (`load_module()` parses it once), and only where the
    /// kernel has the parameter; elsewhere `parse_args()` logs "unknown parameter … ignored".
    mutating func loadVFIO(options: [String], _ prediction: StepPrediction) -> StepPrediction {
        var p = prediction
        let asked = options.contains(Self.noiommuOption)
        if loaded.contains("vfio") || loaded.contains("vfio-pci") {
            p.rule = Reason("load_module()", "vfio is already loaded (with vfio-pci or earlier): modprobe does nothing" + (asked ? " and its option is not applied" : ""))
            return p
        }
        loaded.insert("vfio")
        guard asked else {
            p.rule = Reason("load_module()", "vfio loaded; it binds no device by itself")
            return p
        }
        if kernel.hasVFIONoIOMMU {
            noiommuMode = true
            p.rule = Reason("vfio_group_find_or_alloc()", "vfio loaded with enable_unsafe_noiommu_mode=1: vfio-pci will take devices that have no IOMMU group, each in a no-IOMMU group of its own")
        } else {
            p.rule = Reason("unknown_module_param_cb()", "the kernel does not build VFIO_NOIOMMU: vfio has no enable_unsafe_noiommu_mode parameter and the load ignores it (\"unknown parameter … ignored\")")
        }
        return p
    }

    /// `vfio-open` of a device in a no-IOMMU group: the group path with `VFIO_NOIOMMU_IOMMU`
    /// (`vfio_container_attach_group()` claims no DMA ownership for it; CAP_SYS_RAWIO, which
    /// the agent has, is the only check).
    mutating func vfioOpenNoIOMMU(_ f: PCIFunction, group g: Int, step: Step, index: Int) -> StepPrediction {
        var p = StepPrediction(index: index, step: step, result: .ok, rule: Reason("vfio_group_get_device_fd()", "\(f.displayName)'s VFIO device is open in its no-IOMMU group"))
        var gs = groups[g, default: GroupState()]
        defer { groups[g] = gs }
        if !gs.open {
            if !gs.containerOpen { p.substeps.append(SubstepPrediction(name: .openContainer, result: .ok, detail: nil)) }
            gs.containerOpen = true
            gs.open = true
            p.substeps.append(SubstepPrediction(name: .openGroup, result: .ok, detail: nil))
        }
        p.substeps.append(SubstepPrediction(name: .getStatus, result: .ok, detail: gs.containerSet ? "VIABLE|CONTAINER_SET" : "VIABLE"))
        if !gs.containerSet {
            gs.containerSet = true
            p.substeps.append(SubstepPrediction(name: .setContainer, result: .ok, detail: nil))
        }
        if !gs.iommuSet {
            gs.iommuSet = true
            p.substeps.append(SubstepPrediction(name: .setIOMMU, result: .ok, detail: "VFIO_NOIOMMU_IOMMU"))
        }
        if !gs.openDevices.contains(f.index) {
            gs.openDevices.insert(f.index)
            p.substeps.append(SubstepPrediction(name: .getDeviceFD, result: .ok, detail: nil))
        }
        return p
    }

    /// A DMA probe from a device with no IOMMU translating it: through its no-IOMMU VFIO device
    /// when it has one (which must be open), else through sysfs; physical addresses either way.
    func untranslatedDMA(_ a: PCIFunction, _ to: DMATarget, _ map: DMAMapping, _ prediction: StepPrediction) -> StepPrediction {
        var p = prediction
        let via: String
        if let g = groupID(a), isNoIOMMUGroup(g) {
            guard groups[g]?.openDevices.contains(a.index) == true else {
                p.result = .notRun
                p.rule = Reason("isolab-agent", "\(a.displayName) is a no-IOMMU VFIO device that is not open: vfio-open it first")
                return p
            }
            via = "through its no-IOMMU VFIO device, "
        } else {
            via = ""
        }
        switch to {
        case .memory:
            p.result = .delivered
            p.rule = Reason("pci_device_iommu_address_space()", "no IOMMU: \(a.displayName)'s DMA, \(via)goes straight to guest-physical memory")
        case .unmapped:
            p.result = .unsupported
            p.rule = Reason("isolab", "no IOMMU: there is no IOVA space to leave unmapped")
        case .device(let b):
            if map == .peer {
                p.result = .unsupported
                p.rule = Reason("isolab-agent", "no IOMMU: map: peer needs an IOVA space to map \(b)'s BAR into")
            } else {
                p.result = .delivered
                p.rule = Reason("pci_device_iommu_address_space()", "no IOMMU: \(a.displayName)'s write, \(via)at \(b)'s BAR address lands in \(b)'s registers, whoever drives \(b)")
            }
        }
        return p
    }
}
