import IsolabProtocol

/// What the agent reads from a function's config space (the sysfs `config` file; root sees
/// all 4 KiB of a PCIe function, 256 bytes of a conventional one).
public struct ConfigSpace: Sendable {
    public let bytes: [UInt8]

    public init(_ bytes: [UInt8]) { self.bytes = bytes }

    public func u8(_ offset: Int) -> Int? {
        offset >= 0 && offset < bytes.count ? Int(bytes[offset]) : nil
    }

    public func u16(_ offset: Int) -> Int? {
        guard let lo = u8(offset), let hi = u8(offset + 1) else { return nil }
        return lo | hi << 8
    }

    public func u32(_ offset: Int) -> Int? {
        guard let lo = u16(offset), let hi = u16(offset + 2) else { return nil }
        return lo | hi << 16
    }

    /// Header type with the multifunction bit masked off (0 normal, 1 bridge, 2 CardBus).
    public var headerType: Int? { u8(0x0e).map { $0 & 0x7f } }
    /// Bit 7 of the header type byte.
    public var multifunction: Bool { (u8(0x0e) ?? 0) & 0x80 != 0 }

    /// Offset of a standard capability (`PCI_CAP_ID_EXP` = 0x10), walking the list from 0x34.
    /// Bounded: a looping or garbage list ends the walk.
    public func capability(_ id: Int) -> Int? {
        guard let status = u16(0x06), status & 0x10 != 0, var ptr = u8(0x34) else { return nil }
        var hops = 0
        while ptr >= 0x40, hops < 48 {
            ptr &= ~3
            guard let capID = u8(ptr), let next = u8(ptr + 1) else { return nil }
            if capID == id { return ptr }
            ptr = next
            hops += 1
        }
        return nil
    }

    /// Offset of an extended capability (`PCI_EXT_CAP_ID_ACS` = 0x0d), walking from 0x100.
    public func extendedCapability(_ id: Int) -> Int? {
        var ptr = 0x100
        var hops = 0
        while ptr >= 0x100, hops < 480 {
            guard let header = u32(ptr), header != 0, header != 0xffff_ffff else { return nil }
            if header & 0xffff == id { return ptr }
            ptr = (header >> 20) & 0xffc
            hops += 1
        }
        return nil
    }

    /// The PCIe capability's device/port type name; nil for conventional PCI.
    public var pcieType: String? {
        guard let cap = capability(0x10), let flags = u16(cap + 2) else { return nil }
        return PCIExpressType.name(code: (flags >> 4) & 0xf)
    }

    /// The SR-IOV extended capability (`PCI_EXT_CAP_ID_SRIOV` = 0x10): TotalVFs (+0x0e), First VF
    /// Offset (+0x14), VF Stride (+0x16) and VF Device ID (+0x1a), or nil.
    public var sriov: (offset: Int, totalVFs: Int, firstVFOffset: Int, vfStride: Int, vfDeviceID: Int)? {
        guard let off = extendedCapability(0x10), let total = u16(off + 0x0e), let first = u16(off + 0x14),
              let stride = u16(off + 0x16), let device = u16(off + 0x1a) else { return nil }
        return (off, total, first, stride, device)
    }

    /// The ACS capability (offset, capability register, control register), or nil.
    public var acs: (offset: Int, capability: Int, control: Int)? {
        guard let off = extendedCapability(0x0d), let cap = u16(off + 4), let ctl = u16(off + 6) else { return nil }
        return (off, cap, ctl)
    }
}
