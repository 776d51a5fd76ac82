/// A PCI address as sysfs and the kernel log spell it: `0000:02:00.0`.
public struct PCIAddress: Hashable, Sendable, CustomStringConvertible {
    public var domain: Int
    public var bus: Int
    public var slot: Int
    public var function: Int

    public init(domain: Int = 0, bus: Int, slot: Int, function: Int) {
        self.domain = domain
        self.bus = bus
        self.slot = slot
        self.function = function
    }

    /// Parses `ssss:bb:dd.f` or `bb:dd.f` (domain 0). Nil for anything else.
    public init?(_ text: Substring) {
        let parts = text.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 2 || parts.count == 3 else { return nil }
        let domainText = parts.count == 3 ? parts[0] : "0000"
        let busText = parts[parts.count - 2]
        let df = parts[parts.count - 1].split(separator: ".", omittingEmptySubsequences: false)
        guard df.count == 2, domainText.count == 4, busText.count == 2, df[0].count == 2, df[1].count == 1,
              let d = Hex.parse(domainText), let b = Hex.parse(busText), let s = Hex.parse(df[0]),
              let f = Hex.parse(df[1]), s < 32, f < 8 else { return nil }
        self.init(domain: Int(d), bus: Int(b), slot: Int(s), function: Int(f))
    }

    public init?(_ text: String) { self.init(text[...]) }

    /// `0000:02:00.0`.
    public var description: String {
        "\(Hex.digits(UInt64(domain), width: 4)):\(Hex.digits(UInt64(bus), width: 2)):\(slotFunction)"
    }

    /// `00.0`: one element of a guest path.
    public var slotFunction: String { "\(Hex.digits(UInt64(slot), width: 2)).\(function)" }
}

/// Guest paths: a function named by its chain of `slot.function` from the root bus, the way
/// topologies and domain XML address it (bus numbers are the guest's choice, paths are not).
public enum GuestPath {
    /// `/sys/devices/pci0000:00/0000:00:04.0/0000:01:00.0` → `04.0/00.0`. The resolved
    /// (realpath) sysfs device directory is expected; components that are not PCI addresses
    /// (`pci0000:00`, a trailing slash) are skipped. Nil when no component is a PCI address.
    public static func fromSysfs(_ devicePath: String) -> String? {
        let chain = devicePath.split(separator: "/").compactMap { PCIAddress($0) }
        guard !chain.isEmpty else { return nil }
        return chain.map(\.slotFunction).joined(separator: "/")
    }

    /// The guest path of a DMA requester the IOMMU names (possibly an alias such as a
    /// pcie-pci-bridge's `(secondary bus, 00.0)`, where no function exists), given the guest
    /// path of each bus (`""` for the root bus, a bridge's path for its secondary bus).
    public static func forRequester(_ requester: PCIAddress, busPaths: [Int: String]) -> String? {
        guard let bus = busPaths[requester.bus] else { return nil }
        return bus.isEmpty ? requester.slotFunction : "\(bus)/\(requester.slotFunction)"
    }

    /// The parent path (`04.0/00.0` → `04.0`), nil on the root bus.
    public static func parent(_ path: String) -> String? {
        guard let slash = path.lastIndex(of: "/") else { return nil }
        return String(path[..<slash])
    }
}

/// Hex without Foundation's String(format:).
public enum Hex {
    /// Lower-case hex, zero-padded to `width`.
    public static func digits(_ value: UInt64, width: Int = 0) -> String {
        let s = String(value, radix: 16)
        return s.count >= width ? s : String(repeating: "0", count: width - s.count) + s
    }

    /// `0x1000`.
    public static func address(_ value: UInt64) -> String { "0x" + String(value, radix: 16) }

    /// Parses hex digits, with or without `0x`, surrounding whitespace ignored. Nil on anything
    /// else or on overflow.
    public static func parse<S: StringProtocol>(_ text: S) -> UInt64? {
        var t = Substring(text)
        while let c = t.first, c == " " || c == "\n" || c == "\t" { t = t.dropFirst() }
        while let c = t.last, c == " " || c == "\n" || c == "\t" { t = t.dropLast() }
        if t.hasPrefix("0x") || t.hasPrefix("0X") { t = t.dropFirst(2) }
        guard !t.isEmpty, t.count <= 16 else { return nil }
        return UInt64(t, radix: 16)
    }

    /// Bytes as a hex string, `deadbeef`.
    public static func bytes<C: Collection>(_ data: C) -> String where C.Element == UInt8 {
        data.map { digits(UInt64($0), width: 2) }.joined()
    }
}
