#if canImport(Glibc)
import Glibc
#endif

/// The type-0/1 config headers of every PCI function, kept across a save and restore.
///
/// QEMU migrates only devices that describe their state: edu has none (hw/misc/edu.c sets
/// no `vmsd`), so a restored edu comes back in its reset state, BARs unassigned and memory
/// decoding off, while the guest kernel still believes in the addresses it gave it at boot
/// (sysfs, and so the inventory, cannot tell). Before `ready` the agent keeps each function's
/// header as the device reports it; after the restore it writes back, through sysfs, the
/// header of every function that lost it, exactly as the kernel had programmed it, and names
/// those functions in the new stream's `hello`.
struct ConfigHeaders {
    /// BDF → the first 64 bytes of config space.
    private var headers: [String: [UInt8]] = [:]

    /// The headers of every function under /sys/bus/pci/devices.
    static func capture() -> ConfigHeaders {
        var c = ConfigHeaders()
        for bdf in Posix.list("/sys/bus/pci/devices") {
            if let bytes = header(bdf) { c.headers[bdf] = bytes }
        }
        return c
    }

    /// The first 64 bytes of `bdf`'s config space.
    static func header(_ bdf: String) -> [UInt8]? {
        guard let bytes = Posix.read("/sys/bus/pci/devices/\(bdf)/config", limit: 64), bytes.count >= 64 else { return nil }
        return Array(bytes.prefix(64))
    }

    /// Writes back the header of every function whose BARs or command register differ from
    /// the kept ones; returns those functions' BDFs, sorted.
    func restoreLost() -> [String] {
        var repaired: [String] = []
        for (bdf, kept) in headers.sorted(by: { $0.key < $1.key }) {
            let path = "/sys/bus/pci/devices/\(bdf)/config"
            guard let now = Self.header(bdf) else { continue }
            // 0x04 command, 0x10–0x27 BARs (type 0; a bridge's BARs and bus numbers start there too).
            let lost = now[0x04..<0x06] != kept[0x04..<0x06] || now[0x10..<0x28] != kept[0x10..<0x28]
            guard lost else { continue }
            let fd = open(path, O_WRONLY)
            guard fd >= 0 else { continue }
            // BARs, bridge bus numbers and windows, ROM BAR and interrupt line (0x10–0x3F)
            // first, then cache line size and latency timer, then the command register that
            // turns decoding back on.
            Self.write(fd, kept, 0x10..<0x40)
            Self.write(fd, kept, 0x0C..<0x10)
            Self.write(fd, kept, 0x04..<0x06)
            close(fd)
            repaired.append(bdf)
        }
        return repaired
    }

    /// pwrite of `range` of `bytes`, dword by dword (config space takes aligned accesses).
    private static func write(_ fd: Int32, _ bytes: [UInt8], _ range: Range<Int>) {
        var offset = range.lowerBound
        while offset < range.upperBound {
            let width = min(4, range.upperBound - offset)
            let chunk = Array(bytes[offset..<(offset + width)])
            _ = chunk.withUnsafeBytes { pwrite(fd, $0.baseAddress, width, off_t(offset)) }
            offset += width
        }
    }
}
