/// A device model's SR-IOV extended capability as the emulator implements it, and the VFs the
/// kernel creates from it (drivers/pci/iov.c).
public struct SRIOVCapability: Sendable, Equatable {
    /// TotalVFs.
    public var totalVFs: Int
    /// First VF Offset and VF Stride, in routing IDs (devfn steps).
    public var firstVFOffset: Int
    public var vfStride: Int
    /// The VF's vendor:device.
    public var vfVendorDevice: String
    /// The model a VF is.
    public var vfModel: DeviceModel
    /// The PF driver that lowers TotalVFs while it is bound (`pci_sriov_set_totalvfs()` in its
    /// probe; `pci_iov_remove()` restores TotalVFs when it goes), and to what.
    public var driverMaxVFs: DriverMaxVFs?

    /// A PF driver's own TotalVFs and the function of it that sets it.
    public struct DriverMaxVFs: Sendable, Equatable {
        public var driver: String
        public var vfs: Int
        public var function: String
    }

    /// The most VFs a topology may declare on the model.
    public var maxDeclarable: Int

    /// QEMU's SR-IOV capability of `model` built for `vfs` declared VFs, nil for a model without
    /// one.
    /// - igb: hw/net/igb.c `pcie_sriov_pf_init(…, IGB_MAX_VF_FUNCTIONS 8, …, offset 0x80,
    ///   stride 2)`; the kernel's igb sets 7 (`igb_probe_vfs()`), so `igb_enable_sriov()`'s own
    ///   `num_vfs > 7` refusal is never reached through sysfs.
    /// - nvme: hw/nvme/ctrl.c, TotalVFs = `sriov_max_vfs` (isolab sets the declared count),
    ///   offset 1, stride 1, VFs with the PF's ID; isolab gives each VF 2 of the PF's 64 flexible
    ///   queue pairs and 1 interrupt, and QEMU keeps 2 pairs for the PF: at most 31.
    public static func of(_ model: DeviceModel, vfs: Int) -> SRIOVCapability? {
        switch model {
        case .igb:
            return SRIOVCapability(totalVFs: 8, firstVFOffset: 0x80, vfStride: 2, vfVendorDevice: "8086:10ca",
                                   vfModel: .igbVF, driverMaxVFs: DriverMaxVFs(driver: "igb", vfs: 7, function: "igb_probe_vfs()"), maxDeclarable: 8)
        case .nvme:
            guard vfs > 0 else { return nil }   // no sriov_max_vfs: no SR-IOV capability
            return SRIOVCapability(totalVFs: vfs, firstVFOffset: 1, vfStride: 1, vfVendorDevice: "1b36:0010",
                                   vfModel: .nvme, driverMaxVFs: nil, maxDeclarable: 31)
        default:
            return nil
        }
    }

    /// `pci_sriov_get_totalvfs()`: `driver_max_VFs`, which the bound driver may have lowered.
    public func totalVFs(withDriver driver: String?) -> Int {
        if let m = driverMaxVFs, m.driver == driver { return m.vfs }
        return totalVFs
    }

    /// The routing ID (`devfn`, relative to the PF's bus) of VF `index`: `pci_iov_virtfn_devfn()`
    /// is PF devfn + offset + stride × index, and a sum past 0xff moves the VF to a bus above
    /// the PF's (`pci_iov_virtfn_bus()`).
    public func routingID(ofVF index: Int, pfDevfn: Int) -> Int {
        pfDevfn + firstVFOffset + vfStride * index
    }

    /// The id steps use for VF `index` of the physical function `pf`.
    public static func vfID(pf: String, index: Int) -> String { "\(pf).vf\(index)" }
}

extension Fabric {
    /// The SR-IOV capability of a PF as the fabric declares it; nil for any other function.
    public func sriov(of pf: PCIFunction) -> SRIOVCapability? {
        guard !pf.isVirtualFunction, let model = pf.deviceModel else { return nil }
        return SRIOVCapability.of(model, vfs: virtualFunctions(of: pf).count)
    }
}

extension PCIFunction {
    /// Whether this function is an SR-IOV virtual function (`pdev->is_virtfn`).
    public var isVirtualFunction: Bool { physicalFunction != nil }
}
