/// Driver and module names the agent needs: sysfs knows drivers (`pci-stub`), modprobe knows
/// modules (`pci_stub`).
public enum Drivers {
    /// The module that would register a PCI driver. Whether the kernel builds it in is the
    /// kernel's answer, not a list here: a driver already in /sys/bus/pci/drivers needs no
    /// module, and a module the image lacks fails modprobe.
    public static func module(forDriver driver: String) -> String {
        String(driver.map { $0 == "-" ? "_" : $0 })
    }

    /// The active IOMMU driver from the names in /sys/class/iommu: `dmar0` → intel, `ivhd0` →
    /// amd; virtio-iommu registers under its PCI function's name (`0000:00:01.0`), recognised
    /// by the virtio vendor id 0x1af4 that `vendorOf` returns for it. Nil when there is none.
    public static func iommuKind(classEntries: [String], vendorOf: (String) -> UInt64? = { _ in nil }) -> String? {
        if classEntries.contains(where: { $0.hasPrefix("dmar") }) { return "intel" }
        if classEntries.contains(where: { $0.hasPrefix("ivhd") }) { return "amd" }
        if classEntries.contains(where: { $0.contains("virtio") || (PCIAddress($0) != nil && vendorOf($0) == 0x1af4) }) {
            return "virtio"
        }
        return classEntries.min()
    }
}

/// The exit status of the agent's `write` helper: the errno of the write, squeezed into 8 bits
/// (the kernel-internal 512–531 as 200–219).
public enum HelperExit {
    public static func code(forErrno e: Int32) -> Int32 {
        switch e {
        case 0: return 0
        case 1..<200: return e
        case 512...531: return 200 + (e - 512)
        default: return 255
        }
    }

    /// The errno a helper's exit status stands for; 255 (unknown) maps to EIO.
    public static func errno(forCode c: Int32) -> Int32 {
        switch c {
        case 0..<200: return c
        case 200...219: return 512 + (c - 200)
        default: return 5
        }
    }
}
