/// A kernel version as `uname -r` or a catalog id spells it (`6.1`, `6.12.117`, `7.3.4+deb13-amd64`).
public struct KernelVersion: Sendable, Hashable, Comparable, CustomStringConvertible {
    public var major: Int
    public var minor: Int
    public var patch: Int

    public init(_ major: Int, _ minor: Int, _ patch: Int = 0) {
        self.major = major
        self.minor = minor
        self.patch = patch
    }

    /// Parses the leading `X.Y[.Z]` of a version string; nil if there is none.
    public init?(parsing text: String) {
        var numbers: [Int] = []
        var digits = ""
        for ch in text {
            if ch.isNumber {
                digits.append(ch)
            } else {
                guard !digits.isEmpty, let n = Int(digits) else { break }
                numbers.append(n)
                digits = ""
                if ch != "." || numbers.count == 3 { break }
            }
        }
        if !digits.isEmpty, numbers.count < 3, let n = Int(digits) { numbers.append(n) }
        guard numbers.count >= 2 else { return nil }
        self.init(numbers[0], numbers[1], numbers.count > 2 ? numbers[2] : 0)
    }

    public static func < (a: KernelVersion, b: KernelVersion) -> Bool {
        (a.major, a.minor, a.patch) < (b.major, b.minor, b.patch)
    }

    public var description: String { "\(major).\(minor).\(patch)" }
}

/// How a kernel polices DMA ownership of an IOMMU group.
public enum OwnershipRegime: String, Sendable, Codable {
    /// Before v5.19: VFIO's group viability check and the BUG_ON in its group notifier.
    case vfioViability = "vfio-viability"
    /// v5.19 and later: `owner_cnt`/`owner` on the group (Lu Baolu's DMA ownership series).
    case dmaOwner = "dma-owner"
}

/// Whether a kernel can drive a vIOMMU model.
public enum VIOMMUSupport: String, Sendable, Codable {
    case builtIn = "built-in"
    case module
    /// Not in the kernel at all, or not enabled in its config.
    case unavailable
}

/// The behaviour of one kernel generation that the model depends on. Each difference between
/// generations is a named property here, not a version comparison scattered through the model.
public struct KernelGeneration: Sendable, Hashable {
    /// Catalog id: `5.10`, `6.1`, `6.12`, `7.3`.
    public var id: String
    public var ownership: OwnershipRegime
    /// A sysfs `bind` write returns ENODEV for any probe failure (5.10 `bind_store()`),
    /// rather than the probe's own errno (≥6.1).
    public var bindReportsENODEVForProbeFailure: Bool
    /// `VFIO_GROUP_SET_CONTAINER` with an fd that is not a container: EINVAL (6.1) or EBADFD (6.12, 7.3).
    public var setContainerNonContainerErrno: Errno
    public var virtioIOMMU: VIOMMUSupport
    /// Whether the kernel builds iommufd and VFIO device cdevs (`CONFIG_IOMMUFD`,
    /// `CONFIG_VFIO_DEVICE_CDEV`); no catalog config does: the legacy container is the only path.
    public var hasIOMMUFD: Bool
    /// `CONFIG_IOMMUFD_TEST`: iommufd's mock domains (`IOMMU_TEST_CMD`) that the kernel's
    /// iommufd selftests drive. No Debian config sets it; isolab's `7.3-iommufd` build does.
    public var hasIOMMUFDTest = false
    /// `CONFIG_FAILSLAB` with `CONFIG_FAULT_INJECTION_DEBUG_FS`: debugfs' `failslab/`, where
    /// iommufd_fail_nth injects its failures. Observed absent in Debian 7.3.4; isolab's
    /// `7.3-iommufd` build has it.
    public var hasFaultInjection = false
    /// `CONFIG_HUGETLBFS` (every Debian config): without it `mmap(MAP_HUGETLB)` fails EINVAL
    /// however many huge pages are asked for (isolab's 6.12-iommufd build has none).
    public var hasHugeTLBFS = true
    /// IOMMUFD_TEST's `IOMMU_TEST_OP_DMABUF_GET` hands the new dma-buf's fd back. In 7.3.4,
    /// `iommufd_test_dmabuf_get()` (drivers/iommu/iommufd/selftest.c) installs it with
    /// `dma_buf_fd()` and then returns 0, so the ioctl answers 0 and the iommufd selftests'
    /// dmabuf tests use fd 0 (stdin) as their dma-buf: found by isolab's boots of 7.3-iommufd.
    public var iommufdTestDmabufGetReturnsFD = true
    /// Whether the kernel builds VFIO's no-IOMMU mode (`CONFIG_VFIO_NOIOMMU`); no catalog config does.
    public var hasVFIONoIOMMU: Bool = false
    /// Whether the kernel builds SR-IOV (`CONFIG_PCI_IOV`; every Debian config does): without
    /// it no PF has `sriov_numvfs` and vfio-pci has no VF tokens.
    public var hasSRIOV: Bool = true
    /// PCI drivers built into the kernel (`=y`), which bind at boot without udev and need no
    /// `modprobe`: `pcieport` (PCIEPORTBUS) and `shpchp` (HOTPLUG_PCI_SHPC) in every Debian
    /// config, `virtio-pci` (VIRTIO_PCI) from 6.12. A build's `.config` replaces the guess
    /// (``configured(by:)``).
    public var builtInDrivers: Set<String> = ["pcieport", "shpchp"]
    /// `VIRTIO_PCI=y`: virtio-pci binds virtio devices at boot, without udev.
    public var virtioPCIBuiltIn: Bool { builtInDrivers.contains("virtio-pci") }
    /// Where virtio-iommu (ACPI VIOT) probes PCI functions into groups: at each driver probe
    /// (6.12) or all at once when it registers (7.3 and, by `resolve`, later kernels).
    public var viotProbe: VIOTProbePath = .atRegistration
    /// What the model does not know about this kernel: a behaviour placed by reading, not by a
    /// boot (`explain` prints it). nil for the catalog's kernels, which the tests boot.
    public var caveat: String?
    /// Whether the kernel enables AMD interrupt remapping on the IVRS table QEMU builds
    /// (`check_ioapic_information()` in drivers/iommu/amd/init.c must find the southbridge
    /// IOAPIC, 00:14.0). Observed: 5.10, 6.1 and 6.12 enable it ("AMD-Vi: Interrupt remapping
    /// enabled"); 7.3.4 says "[Firmware Bug]: No southbridge IOAPIC found" and disables it, on
    /// QEMU 7.2 and 10.0 alike. 6.16.12, 6.17.13, 6.18.15 and 7.2.12 still enable it (booted),
    /// so the change came with 7.3 (or a 7.2 stable release after 7.2.12).
    public var amdInterruptRemappingOnQEMU = true
    /// type1's `VFIO_DMA_UNMAP_FLAG_ALL` (`vfio_dma_do_unmap()`, v5.12): 5.10 rejects the flag, EINVAL.
    public var type1UnmapAll = true
    /// type1 answers a map or unmap whose end passes the top of the IOVA space with EOVERFLOW
    /// (`vfio_dma_do_map()`/`vfio_dma_do_unmap()` in 7.3.4); 6.12 and older with EINVAL
    /// (`iova + size - 1 < iova`). Booted: 6.12.117, 6.16.12 and 6.17.13 EINVAL; 6.18.15, 7.2.12
    /// and 7.3.4 EOVERFLOW: the change came with v6.18 (the series that added the selftests'
    /// vfio_dma_map_limit_test).
    public var type1OverflowIsEOVERFLOW = false
    /// Each VFIO device is a `struct device` of class `vfio-dev` (`vfio_init_device()`, v6.1):
    /// `/sys/bus/pci/devices/BDF/vfio-dev/vfioN` exists, where the VFIO selftests find the cdev.
    public var vfioDeviceSysfs = true
    /// `VFIO_DEVICE_BIND_IOMMUFD` takes a VF token (`VFIO_DEVICE_BIND_FLAG_TOKEN`,
    /// `vfio_df_check_token()` in 7.3.4); 6.12 refuses any flag with EINVAL. Booted: 6.12.118
    /// (isolab's 6.12-iommufd) EINVAL, 7.3.4 accepts; the release between is unverified.
    public var cdevBindTakesVFToken = false

    /// Debian bullseye 5.10.223: VFIO viability (KERNEL-NOTES §3).
    public static let v5_10 = KernelGeneration(id: "5.10", ownership: .vfioViability,
                                               bindReportsENODEVForProbeFailure: true,
                                               setContainerNonContainerErrno: .EINVAL,
                                               virtioIOMMU: .unavailable, hasIOMMUFD: false,
                                               type1UnmapAll: false, vfioDeviceSysfs: false)
    /// A developer's 5.14–5.18: VFIO viability as 5.10, but `bind_store()` passes the probe's
    /// errno through ("driver core: Flow the return code from ->probe() through to sysfs bind",
    /// ef6dcbdd8eb2, and "Better distinguish probe errors in really_probe", e1499647c69c: v5.14).
    public static let v5_14 = KernelGeneration(id: "5.14", ownership: .vfioViability,
                                               bindReportsENODEVForProbeFailure: false,
                                               setContainerNonContainerErrno: .EINVAL,
                                               virtioIOMMU: .unavailable, hasIOMMUFD: false,
                                               caveat: "5.14–5.18 are placed between 5.10 and 6.1 by reading the source history (bind errno since v5.14, DMA ownership since v5.19); no such kernel is booted by the tests",
                                               vfioDeviceSysfs: false)

    /// Debian bookworm 6.1.192: DMA owner model; VIRTIO_IOMMU not set.
    public static let v6_1 = KernelGeneration(id: "6.1", ownership: .dmaOwner,
                                              bindReportsENODEVForProbeFailure: false,
                                              setContainerNonContainerErrno: .EINVAL,
                                              virtioIOMMU: .unavailable, hasIOMMUFD: false)
    /// Debian trixie 6.12.117: DMA owner model; virtio-iommu as a module.
    public static let v6_12 = KernelGeneration(id: "6.12", ownership: .dmaOwner,
                                               bindReportsENODEVForProbeFailure: false,
                                               setContainerNonContainerErrno: .EBADFD,
                                               virtioIOMMU: .module, hasIOMMUFD: false,
                                               builtInDrivers: ["pcieport", "shpchp", "virtio-pci"],
                                               viotProbe: .atDriverProbe)
    /// Debian trixie-backports 7.3.4: as 6.12 for everything the model covers (grouping is unchanged:
    /// the "Fix incorrect iommu_groups with PCIe ACS" series is not in 7.3.4).
    public static let v7_3: KernelGeneration = {
        var g = KernelGeneration(id: "7.3", ownership: .dmaOwner,
                                 bindReportsENODEVForProbeFailure: false,
                                 setContainerNonContainerErrno: .EBADFD,
                                 virtioIOMMU: .module, hasIOMMUFD: false,
                                 builtInDrivers: ["pcieport", "shpchp", "virtio-pci"])
        g.amdInterruptRemappingOnQEMU = false
        g.type1OverflowIsEOVERFLOW = true
        g.cdevBindTakesVFToken = true
        g.iommufdTestDmabufGetReturnsFD = false
        return g
    }()

    /// The generations of the kernel catalog (`vm-images/kernels.yaml`).
    public static let catalog: [KernelGeneration] = [.v5_10, .v6_1, .v6_12, .v7_3]

    /// The generation for a catalog id, or for a developer's kernel by its version, following
    /// the kernel's history:
    /// - before 5.14: 5.10 (bind reports ENODEV for any probe failure);
    /// - 5.14–5.18: ``v5_14`` (the probe's errno reaches userspace; VFIO viability still);
    /// - 5.19–6.1: 6.1 (DMA ownership, Lu Baolu's series, v5.19; iommufd arrives in 6.2);
    /// - 6.2–6.14: 6.12 (virtio-iommu groups a function at its driver probe);
    /// - 6.15 on: 7.3 ("iommu: Get DT/ACPI parsing into the proper probe path", bcb81ac6ae3c,
    ///   v6.15, moved firmware parsing into the registration-time probe).
    /// Versions between the booted kernels carry a ``caveat``.
    public static func resolve(_ idOrVersion: String) -> KernelGeneration? {
        if let g = catalog.first(where: { $0.id == idOrVersion }) { return g }
        if idOrVersion == v5_14.id { return .v5_14 }
        guard let v = KernelVersion(parsing: idOrVersion) else { return nil }
        if v < KernelVersion(5, 14) { return .v5_10 }
        if v < KernelVersion(5, 19) { return .v5_14 }
        if v < KernelVersion(6, 2) { return .v6_1 }
        if v < KernelVersion(6, 15) {
            var g = KernelGeneration.v6_12
            if v >= KernelVersion(6, 13) {
                g.caveat = "6.13 and 6.14 are judged as 6.12: virtio-iommu's driver-probe grouping is inferred to last until bcb81ac6ae3c (v6.15); not booted"
            }
            return g
        }
        var g = KernelGeneration.v7_3
        // Booted on trixie-backports' 6.16.12, 6.17.13, 6.18.15 and 7.2.12 (isolab's history
        // matrix): what changed inside the 7.3 generation, by the first release that has it.
        if v < KernelVersion(6, 18) { g.type1OverflowIsEOVERFLOW = false }
        if v < KernelVersion(7, 3) { g.amdInterruptRemappingOnQEMU = true }
        if v < KernelVersion(6, 16, 4) {
            g.caveat = "6.15.0–6.16.3 are judged as 7.3, but with virtio-iommu they are reported to group nothing (the registration-time probe could not find its own instance until \"iommu/virtio: Make instance lookup robust\", 72b6f7cd89ce, v6.17 and 6.16.4); unverified on a boot"
        }
        return g
    }

    /// This generation as a particular build configures it: a developer's kernel (or isolab's
    /// `6.12-iommufd` source build) may enable what the Debian configs leave out.
    public func building(iommufd: Bool, vfioNoIOMMU: Bool) -> KernelGeneration {
        var g = self
        g.hasIOMMUFD = iommufd
        g.hasVFIONoIOMMU = vfioNoIOMMU
        return g
    }

    /// Config symbols of PCI drivers the model follows, by driver name (built in when `=y`).
    public static let driverSymbols: [String: String] = [
        "pcieport": "CONFIG_PCIEPORTBUS", "shpchp": "CONFIG_HOTPLUG_PCI_SHPC", "virtio-pci": "CONFIG_VIRTIO_PCI",
        "pci-stub": "CONFIG_PCI_STUB", "vfio-pci": "CONFIG_VFIO_PCI", "e1000e": "CONFIG_E1000E", "nvme": "CONFIG_BLK_DEV_NVME",
    ]

    /// Every config symbol ``configured(by:)`` reads.
    public static let configSymbols = ["CONFIG_IOMMUFD", "CONFIG_VFIO_DEVICE_CDEV", "CONFIG_VFIO_NOIOMMU", "CONFIG_VIRTIO_IOMMU", "CONFIG_PCI_IOV",
                                       "CONFIG_IOMMUFD_TEST", "CONFIG_FAILSLAB", "CONFIG_FAULT_INJECTION_DEBUG_FS", "CONFIG_HUGETLBFS"]
        + driverSymbols.values.sorted()

    /// This generation as a kernel's `.config` values build it: iommufd and VFIO cdevs
    /// (`CONFIG_IOMMUFD` and `CONFIG_VFIO_DEVICE_CDEV`), `CONFIG_VFIO_NOIOMMU`, virtio-iommu
    /// (`CONFIG_VIRTIO_IOMMU`: `y` built in, `m` module) and which drivers are built in. A
    /// symbol the values do not carry (an image recorded before isolab read it) leaves the
    /// generation's own answer; nil config: unchanged.
    public func configured(by config: [String: String]?) -> KernelGeneration {
        guard let config else { return self }
        let on = { (s: String) in ["y", "m"].contains(config[s] ?? "n") }
        var g = building(iommufd: on("CONFIG_IOMMUFD") && on("CONFIG_VFIO_DEVICE_CDEV"), vfioNoIOMMU: on("CONFIG_VFIO_NOIOMMU"))
        if let v = config["CONFIG_PCI_IOV"] { g.hasSRIOV = v == "y" }
        g.hasIOMMUFDTest = g.hasIOMMUFD && config["CONFIG_IOMMUFD_TEST"] == "y"
        g.hasFaultInjection = config["CONFIG_FAILSLAB"] == "y" && config["CONFIG_FAULT_INJECTION_DEBUG_FS"] == "y"
        if let v = config["CONFIG_HUGETLBFS"] { g.hasHugeTLBFS = v == "y" }
        if let v = config["CONFIG_VIRTIO_IOMMU"] {
            g.virtioIOMMU = v == "y" ? .builtIn : v == "m" ? .module : .unavailable
        }
        for (driver, symbol) in Self.driverSymbols {
            guard let v = config[symbol] else { continue }
            if v == "y" { g.builtInDrivers.insert(driver) } else { g.builtInDrivers.remove(driver) }
        }
        return g
    }

    /// Whether this kernel drives the vIOMMU: intel and amd are built in (`=y`) everywhere,
    /// virtio-iommu from 6.12 on (KERNEL-NOTES §4).
    public func drives(_ iommu: IOMMUModel) -> Bool {
        switch iommu {
        case .intel, .amd: return true
        case .virtio: return virtioIOMMU != .unavailable
        case .none: return false
        }
    }
}
