/// ACS flags the IOMMU core requires for isolation (`REQ_ACS_FLAGS` in drivers/iommu/iommu.c):
/// Source Validation, P2P Request Redirect, P2P Completion Redirect, Upstream Forwarding.
public let requiredACSFlags = "SV|RR|CR|UF"

/// The kernel's ACS evaluation for one fabric: drivers/pci/pci.c and quirks.c
/// (identical for QEMU's devices in 5.10, 6.1, 6.12 and 7.3; KERNEL-NOTES §1.3).
public struct ACSEvaluator: Sendable {
    public let fabric: Fabric
    /// Whether an IOMMU driver called `pci_request_acs()`, so that `pci_enable_acs()` wrote
    /// SV|RR|CR|UF into the control register of every function with an ACS capability.
    public let acsEnabledByKernel: Bool

    public init(fabric: Fabric, acsEnabledByKernel: Bool) {
        self.fabric = fabric
        self.acsEnabledByKernel = acsEnabledByKernel
    }

    /// `pci_acs_flags_enabled()`: no capability means false; QEMU's capability (0x5f)
    /// advertises all of SV|RR|CR|UF, so the control bits decide.
    public func flagsEnabled(_ f: PCIFunction) -> Bool {
        f.hasACSCapability && acsEnabledByKernel
    }

    /// `pci_dev_specific_acs_enabled()`: the first quirk of `pci_dev_acs_enabled[]` that answers
    /// decides. Two match QEMU's devices: `pci_quirk_mf_endpoint_acs` for the 82576 PF
    /// (8086:10c9, igb; listed before the Intel catch-alls), which masks SV|TB|RR|CR|UF|DT as if
    /// implemented, and `pci_quirk_rciep_acs` for any Intel RC_END (e1000e 8086:10d3 on pcie.0).
    /// Both pass SV|RR|CR|UF: such functions are isolated. The 82576 VF (10ca) is not listed.
    public func quirk(_ f: PCIFunction) -> Bool? {
        if f.vendorDevice == Self.mfEndpointACSQuirk { return true }
        if f.pcieType == .rcEndpoint && f.vendor == "8086" { return true }
        return nil
    }

    /// The one `pci_quirk_mf_endpoint_acs` device QEMU has: 82576 (igb).
    static let mfEndpointACSQuirk = "8086:10c9"

    /// `pci_acs_enabled(pdev, REQ_ACS_FLAGS)`.
    public func enabled(_ f: PCIFunction) -> Bool {
        if let q = quirk(f) { return q }
        switch f.pcieType {
        case .conventional:
            return false  // "Conventional PCI and PCI-X devices never support ACS"
        case .pciBridge:
            return false  // PCIe-to-PCI bridges: ACS never applicable
        case .rootPort, .downstream:
            return flagsEnabled(f)
        case .endpoint, .rcEndpoint, .upstream:
            return f.multifunction ? flagsEnabled(f) : true
        }
    }

    /// Why `enabled(f)` is what it is, in the kernel's terms.
    public func explainEnabled(_ f: PCIFunction) -> String {
        if f.vendorDevice == Self.mfEndpointACSQuirk {
            return "\(f.displayName) is an 82576 (8086:10c9): pci_quirk_mf_endpoint_acs() reports ACS"
        }
        if quirk(f) != nil {
            return "\(f.displayName) is an Intel RC_END: pci_quirk_rciep_acs() reports ACS"
        }
        switch f.pcieType {
        case .conventional:
            return "\(f.displayName) is conventional PCI: pci_acs_enabled() is false"
        case .pciBridge:
            return "\(f.displayName) is a PCIe-to-PCI bridge: pci_acs_enabled() is false"
        case .rootPort, .downstream:
            if !f.hasACSCapability { return "\(f.displayName) has no ACS capability" }
            return acsEnabledByKernel
                ? "\(f.displayName) has ACS with \(requiredACSFlags) enabled"
                : "\(f.displayName) has an ACS capability but no IOMMU asked the kernel to enable it"
        case .endpoint, .rcEndpoint, .upstream:
            if !f.multifunction {
                return "\(f.displayName) is a single-function \(f.pcieType.rawValue): pci_acs_enabled() is true"
            }
            return f.hasACSCapability && acsEnabledByKernel
                ? "\(f.displayName) has ACS with \(requiredACSFlags) enabled"
                : "\(f.displayName) is multifunction without ACS: pci_acs_enabled() is false"
        }
    }

    /// `pci_acs_path_enabled(start, NULL, REQ_ACS_FLAGS)`: `start` and every bridge above it pass.
    /// Returns the first function on the way up that fails, or nil if the whole path passes.
    public func pathBreak(from start: PCIFunction) -> PCIFunction? {
        fabric.ancestry(of: start).first { !enabled($0) }
    }
}
