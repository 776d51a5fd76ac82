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
