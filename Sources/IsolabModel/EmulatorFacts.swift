/// What one emulator binary realizes, as probed from it (`-device help`, `-device X,help`);
/// the model's realizability reads these facts, never the emulator's version number.
public struct EmulatorFacts: Codable, Equatable, Sendable {
    /// The first line of `--version`, e.g. `QEMU emulator version 10.0.2 (Debian 1:10.0.2+ds-…)`.
    public var version: String
    /// Every device model the binary has (`-device help`), sorted.
    public var devices: [String]
    /// The properties of the models isolab builds (``EmulatorFacts/probedModels``), by model.
    public var properties: [String: [String]]

    public init(version: String, devices: [String], properties: [String: [String]]) {
        self.version = version
        self.devices = devices.sorted()
        self.properties = properties
    }

    /// The models whose properties are probed: every QEMU device a fabric can be built from.
    public static let probedModels = ["edu", "e1000e", "nvme", "igb", "virtio-net-pci", "pcie-root-port", "ioh3420",
                                      "x3130-upstream", "xio3130-downstream", "pcie-pci-bridge", "pci-bridge",
                                      "intel-iommu", "virtio-iommu-pci", "amd-iommu"]

    public func has(_ model: String) -> Bool { devices.contains(model) }

    public func has(property: String, of model: String) -> Bool { properties[model]?.contains(property) ?? false }

    /// pcie-root-port's `disable-acs` (hw/pci-bridge/gen_pcie_root_port.c, QEMU 2.11 to 10.x).
    public var rootPortCanDisableACS: Bool { has(property: "disable-acs", of: "pcie-root-port") }

    /// The emulator's release as a comparable number (`10.0.2`); nil when the version line has none.
    var release: KernelVersion? { KernelVersion(parsing: shortVersion) }

    /// Whether amd-iommu's event log interrupts the guest, so a blocked DMA leaves an
    /// `IO_PAGE_FAULT` line. Measured on 7.2.22 and 10.0.2: blocked DMA leaves no line at all
    /// (`amdvi_log_event()` writes the log but the interrupt is never raised); assumed fixed from
    /// 10.1, where the AMD-Vi emulation was reworked (unverified). No property shows it, so this
    /// one fact is read from the release.
    public var amdVIOMMUReportsFaults: Bool { hasReworkedAMDVI }

    /// Whether amd-iommu translates DMA of a device below a bridge with that device's own DTE.
    /// Measured on 7.2.22 (5.10, 6.1, 6.12): an edu on pcie.0 DMAs through its mapping, the same
    /// edu behind a root port does not (no data, no fault): `amdvi_host_dma_iommu()` keys the
    /// address space by the bus number at realize time, before firmware numbers the bus. Assumed
    /// the same before 10.1 (unverified).
    public var amdVIOMMUTranslatesBelowBridges: Bool { hasReworkedAMDVI }

    /// QEMU 10.1 or later, whose AMD-Vi emulation the two facts above assume fixed; a version
    /// line without a release counts as the host's 7.2.
    private var hasReworkedAMDVI: Bool { (release ?? KernelVersion(7, 2)) >= KernelVersion(10, 1) }

    /// Whether amd-iommu loses the guest's IOAPIC-routed interrupts. Measured on 10.0.2 with
    /// 5.10, 6.1 and 7.3, with `intremap=on`, `intremap=off` and `xtsup=on`: the guest runs its
    /// init, but interrupt-driven serial output stalls, so the agent's records never arrive
    /// (the polled kernel console still prints). 7.2.22 delivers them; other releases unmeasured.
    public var amdVIOMMULosesIOAPICInterrupts: Bool {
        guard let r = release else { return false }
        return r >= KernelVersion(10, 0) && r < KernelVersion(10, 1)
    }

    /// A short version, `10.0.2`, from the version line.
    public var shortVersion: String {
        let words = version.split(separator: " ")
        guard let i = words.firstIndex(of: "version"), i + 1 < words.count else { return version }
        return String(words[i + 1])
    }

    /// What the model assumes without a probe: the host's QEMU 7.2 (Debian 12), as measured.
    public static let assumedHostQEMU72 = EmulatorFacts(
        version: "QEMU emulator version 7.2 (assumed, not probed)",
        devices: ["e1000e", "edu", "intel-iommu", "ioh3420", "nvme", "pci-bridge", "pcie-pci-bridge", "pcie-root-port",
                  "virtio-iommu-pci", "virtio-net-pci", "x3130-upstream", "xio3130-downstream", "amd-iommu"],
        properties: ["pcie-root-port": ["disable-acs"], "nvme": ["sriov_max_vfs"]])
}
