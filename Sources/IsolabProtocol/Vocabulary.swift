/// Words host, agent, model and topology reader must spell alike: the sub-steps of a VFIO open
/// and the lines that mean the kernel died. One home each, so a rename cannot split them.

/// A sub-step of `vfio-open`, named as the model predicts it and the agent records it.
///
/// The group path: `find-group`, `open-container`, `open-group`, `get-status`, `set-container`,
/// `set-iommu`, `get-device-fd` (drivers/vfio/group.c, container.c). The cdev path:
/// `open-iommufd`, `alloc-ioas`, `open-device`, `bind-iommufd`, `attach-ioas`
/// (drivers/vfio/device_cdev.c, drivers/iommu/iommufd/).
public enum Substep: String, Codable, Sendable, CaseIterable {
    case findGroup = "find-group"
    case openContainer = "open-container"
    case openGroup = "open-group"
    case getStatus = "get-status"
    case setContainer = "set-container"
    case setIOMMU = "set-iommu"
    case getDeviceFD = "get-device-fd"
    case openIOMMUFD = "open-iommufd"
    case allocIOAS = "alloc-ioas"
    case openDevice = "open-device"
    case bindIOMMUFD = "bind-iommufd"
    case attachIOAS = "attach-ioas"
}

/// Lines that mean the kernel hit a BUG, an oops or a panic: the agent scans /dev/kmsg with
/// them and the host scans the console with them.
public enum KernelCrash {
    /// Substrings of a crash line, the one that best names a crash first (`kernel BUG at
    /// drivers/vfio/vfio.c:698!` before the `invalid opcode:` oops that follows it).
    public static let markers = [
        "kernel BUG at", "BUG: kernel NULL pointer", "BUG: unable to handle", "general protection fault",
        "Oops:", "invalid opcode:", "Kernel panic",
    ]

    /// Whether `line` is a crash line.
    public static func isCrashLine(_ line: String) -> Bool {
        markers.contains { line.contains($0) }
    }

    /// The line that best names the crash, or nil.
    public static func find(in lines: [String]) -> String? {
        for marker in markers {
            if let line = lines.first(where: { $0.contains(marker) }) { return line }
        }
        return nil
    }
}

/// The PCI Express device/port type of a function's PCIe capability (`PCI_EXP_TYPE_*`,
/// include/uapi/linux/pci_regs.h), by the names inventories report.
public enum PCIExpressType {
    /// The name of a `PCI_EXP_TYPE_*` code; `type-N` for codes the spec does not define.
    public static func name(code: Int) -> String {
        switch code {
        case 0x0: return "endpoint"
        case 0x1: return "legacy-endpoint"
        case 0x4: return "root-port"
        case 0x5: return "upstream-port"
        case 0x6: return "downstream-port"
        case 0x7: return "pcie-pci-bridge"   // PCI_EXP_TYPE_PCI_BRIDGE: PCIe to PCI/PCI-X
        case 0x8: return "pci-pcie-bridge"   // PCI_EXP_TYPE_PCIE_BRIDGE: PCI/PCI-X to PCIe
        case 0x9: return "rc-endpoint"
        case 0xa: return "rc-event-collector"
        default: return "type-\(code)"
        }
    }
}
