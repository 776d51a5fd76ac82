/// When a kernel's virtio-iommu (ACPI VIOT, `virtio_iommu.ko` loaded after boot) probes PCI
/// functions into IOMMU groups. The two catalog generations differ in where the VIOT fwspec
/// is made and so in what one endpoint the vIOMMU does not know does to the rest.
public enum VIOTProbePath: String, Sendable, Codable {
    /// 6.12 (`acpi_iommu_configure_id()` replays `iommu_probe_device()`; 6.12.118): the fwspec is
    /// made only by `acpi_dma_configure()` when a driver probes the function (`really_probe()` →
    /// `pci_dma_configure()`). At registration `bus_iommu_probe()` finds no fwspec anywhere and
    /// skips every function (-ENODEV). A function joins its group when a driver probes it; the
    /// built-in drivers' boot probes were deferred (no IOMMU yet) and are retried once it
    /// registers. An endpoint the vIOMMU does not know fails only its own probe.
    case atDriverProbe = "at-driver-probe"
    /// 7.3 (`iommu_init_device()` runs `dma_configure` itself for unbound functions; 7.3.4):
    /// `bus_iommu_probe()` makes every function's fwspec and probes it at registration. One
    /// endpoint the vIOMMU does not know makes the whole registration fail.
    case atRegistration = "at-registration"
}

/// What the guest's virtio-iommu does with one fabric on one kernel generation (KERNEL-NOTES
/// §5.7): which functions it can probe, which it grouped by the time the guest has booted,
/// and whether it registered at all.
public struct VirtioIOMMUProbe: Sendable {
    public let path: VIOTProbePath
    /// Translated functions whose own requester ID QEMU 7.2's virtio-iommu does not know, in
    /// bus order. `viommu_probe_endpoint()` sends a PROBE for the fwspec's first ID, which
    /// `viot_pci_dev_iommu_init()` took from the first DMA alias: the function's own RID. QEMU
    /// only knows the (bus, devfn) pairs that `pci_device_iommu_address_space()` made address
    /// spaces for, i.e. aliased requesters; `virtio_iommu_mr()` misses the RID of a function
    /// behind a PCIe-to-PCI or PCI-to-PCI bridge (unless it is the alias itself) and
    /// `virtio_iommu_probe()` answers VIRTIO_IOMMU_S_NOENT, which the guest turns into -ENOENT.
    public let unknownEndpoints: [Int]
    /// Functions a built-in driver probes while the guest boots (6.12: grouped when the
    /// deferred probe is retried after virtio-iommu registers), in bus order.
    public let bootProbed: [Int]

    public init(fabric: Fabric, kernel: KernelGeneration) {
        path = kernel.viotProbe
        unknownEndpoints = fabric.bootFunctions.filter {
            Self.translated($0) && !Self.knownToQEMU($0, in: fabric)
        }.map(\.index)
        bootProbed = fabric.bootFunctions.filter { Self.translated($0) && Self.bootProber($0, kernel: kernel) != nil }.map(\.index)
    }

    /// Every function but the vIOMMU's own: `viot_dev_iommu_init()` refuses to translate it.
    public static func translated(_ f: PCIFunction) -> Bool {
        if case .viommu = f.origin { return false }
        return true
    }

    /// QEMU 7.2 `virtio_iommu_mr()` finds the function's own RID: QEMU did not rewrite its requester.
    public static func knownToQEMU(_ f: PCIFunction, in fabric: Fabric) -> Bool {
        DMAAlias.requesterPath(of: f, in: fabric) == f.path
    }

    /// The built-in driver whose boot probe runs `pci_dma_configure()` on `f` (whether or not it
    /// then binds): `pcieport` (PCIEPORTBUS=y) on ports, and on bridges before `shpchp` fails
    /// them with -EBUSY; `agpgart-intel` (AGP_INTEL=y) on the q35 host bridge 8086:29c0 (its probe
    /// finds no graphics and fails); `virtio-pci` where built in. edu, e1000e, nvme and the ICH9
    /// functions (lpc_ich, ahci, i2c-i801 are modules) see no boot probe.
    public static func bootProber(_ f: PCIFunction, kernel: KernelGeneration) -> String? {
        if let drv = OwnershipModel.bootDriver(f, kernel: kernel) { return drv }
        switch f.kind {
        case .pciePCIBridge?, .pciBridge?: return "shpchp"
        case nil where f.vendorDevice == "8086:29c0": return "agpgart-intel"
        default: return nil
        }
    }

    /// 7.3: `bus_iommu_probe()` stopped at the first unknown endpoint (`probe_iommu_group()`
    /// forgives only -ENODEV), and `iommu_device_register()` unregistered the IOMMU and removed
    /// every group it had made; `viommu_probe()` ignores the error and stays bound.
    public var registrationFailed: Bool { path == .atRegistration && !unknownEndpoints.isEmpty }

    /// Whether the vIOMMU can give `f` a group when it is probed.
    public func canGroup(_ f: PCIFunction) -> Bool {
        Self.translated(f) && !unknownEndpoints.contains(f.index) && !registrationFailed
    }

    /// Why `f` has no group in the freshly booted guest, or nil if it has one there.
    public func whyUngroupedAtBoot(_ f: PCIFunction, in fabric: Fabric, kernel: KernelGeneration) -> Reason? {
        guard Self.translated(f) else {
            return Reason("viot_dev_iommu_init()", "\(f.displayName) is the virtio-iommu itself: it does not translate itself")
        }
        if registrationFailed, let first = unknownEndpoints.first.map({ fabric.functions[$0] }) {
            return Reason("iommu_device_register()", "7.3's iommu_init_device() runs dma_configure for every unbound function while the IOMMU registers; QEMU's virtio-iommu knows \(first.displayName) (at \(first.path)) only by its alias \(DMAAlias.requesterPath(of: first, in: fabric)), so the PROBE of its own ID gets VIRTIO_IOMMU_S_NOENT (-ENOENT), bus_iommu_probe() fails and the IOMMU is unregistered with all its groups: nothing is grouped")
        }
        if unknownEndpoints.contains(f.index) {
            return Reason("viommu_probe_endpoint()", "QEMU 7.2's virtio-iommu knows \(f.displayName) (at \(f.path)) only by its alias \(DMAAlias.requesterPath(of: f, in: fabric)) (pci_device_iommu_address_space() rewrites requesters behind a bridge to conventional PCI), so the PROBE of its own ID, the first of its VIOT fwspec, gets VIRTIO_IOMMU_S_NOENT (-ENOENT): it never gets a group")
        }
        if path == .atDriverProbe, !bootProbed.contains(f.index) {
            return Reason("acpi_dma_configure()", "kernel \(kernel.id) makes a VIOT fwspec only when a driver probes a function, and no built-in driver probes \(f.displayName) at boot: it joins its group when a driver is bound to it")
        }
        return nil
    }
}

extension OwnershipModel {
    /// `really_probe()` runs `pci_dma_configure()` before the driver's probe. With virtio-iommu
    /// that is where 6.12 groups a function (`acpi_iommu_configure_id()` replays
    /// `iommu_probe_device()`), and where 7.3, after a failed registration, defers every probe:
    /// `iommu_fwspec_init()` finds no registered IOMMU for the VIOT node and returns
    /// -EPROBE_DEFER, which `device_driver_attach()` reports as -EAGAIN (until the 10 s
    /// `deferred_probe_timeout`, which isolab's scenarios do not reach). Returns the deferral,
    /// or nil when the probe goes on.
    mutating func viommuProbe(_ f: PCIFunction, _ drv: String) -> (StepResult, Reason)? {
        guard let v = virtio, VirtioIOMMUProbe.translated(f) else { return nil }
        if v.registrationFailed {
            return (.error(.EAGAIN), Reason("iommu_fwspec_init()", "virtio-iommu failed to register (\(noGroupCause(f))), so the VIOT fwspec of \(f.displayName) finds no IOMMU: pci_dma_configure() returns -EPROBE_DEFER, \(drv)'s probe is deferred and the bind write gets EAGAIN"))
        }
        if v.path == .atDriverProbe, groupID(f) == nil, v.canGroup(f) {
            grouping?.add(f, fabric: fabric, acs: acs, prefix: [Reason("acpi_dma_configure()", "\(drv)'s probe makes \(f.displayName)'s VIOT fwspec and replays iommu_probe_device(): it is grouped now")])
        }
        return nil
    }

    /// Why `f` has no group, in a few words.
    func noGroupCause(_ f: PCIFunction) -> String {
        guard let v = virtio else { return "no IOMMU driven by this kernel" }
        if v.registrationFailed, let first = v.unknownEndpoints.first.map({ fabric.functions[$0] }) {
            return "7.3's virtio-iommu registration failed on \(first.displayName), an endpoint QEMU does not know"
        }
        if v.unknownEndpoints.contains(f.index) {
            return "QEMU's virtio-iommu knows it only by its alias \(DMAAlias.requesterPath(of: f, in: fabric)), so the PROBE of its own ID got VIRTIO_IOMMU_S_NOENT"
        }
        if !VirtioIOMMUProbe.translated(f) { return "the virtio-iommu does not translate itself" }
        return "no driver has probed it since virtio-iommu registered"
    }
}
