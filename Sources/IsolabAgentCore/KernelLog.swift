/// Lines of /dev/kmsg (Documentation/ABI/testing/dev-kmsg): `pri,seq,ts_usec,flags[,…];text`
/// followed by optional continuation lines ` KEY=value` carrying device metadata.
public struct KmsgRecord: Equatable, Sendable {
    /// Syslog priority with facility (`pri & 7` is the level).
    public var priority: Int
    public var sequence: UInt64
    public var microseconds: UInt64
    /// The message text, the `pri,seq,ts,-;` prefix stripped, escapes (`\x0a`) kept as written.
    public var text: String

    public var level: Int { priority & 7 }

    /// Parses one record as a read(2) on /dev/kmsg returns it. Nil if the prefix is malformed.
    public static func parse(_ record: String) -> KmsgRecord? {
        let firstLine = record.split(separator: "\n", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
        guard let semi = firstLine.firstIndex(of: ";") else { return nil }
        let fields = firstLine[..<semi].split(separator: ",", omittingEmptySubsequences: false)
        guard fields.count >= 3, let pri = Int(fields[0]), let seq = UInt64(fields[1]),
              let ts = UInt64(fields[2]) else { return nil }
        return KmsgRecord(priority: pri, sequence: seq, microseconds: ts,
                          text: String(firstLine[firstLine.index(after: semi)...]))
    }
}

/// A DMA remapping fault as the guest kernel logs it.
public struct DMAFault: Equatable, Sendable {
    /// The source-id of the fault (the requester, after QEMU's alias rewriting).
    public var requester: PCIAddress
    public var address: UInt64
    /// Fault reason code (0x02 no context entry, 0x05 write, 0x06 read …).
    public var reason: Int
    public var isRead: Bool
    public var line: String

    /// Parses the intel-iommu `dmar_fault_do_one()` line of each kernel (KERNEL-NOTES §5.6):
    ///
    /// - 5.10: `DMAR: [DMA Read] Request device [02:00.0] PASID ffffffff fault addr 1000000 [fault reason 06] …`
    ///   (reason in decimal, address without `0x`)
    /// - 6.1, 6.12: `DMAR: [DMA Write NO_PASID] Request device [02:00.0] fault addr 0x1000000 [fault reason 0x05] …`
    /// - 7.3: as 6.12 with `[0000:02:00.0]`.
    public static func parse(_ line: String) -> DMAFault? {
        parseDMAR(line) ?? parseVirtio(line) ?? parseAMD(line)
    }

    static func parseDMAR(_ line: String) -> DMAFault? {
        guard let kind = line.firstRange(of: "[DMA "), let req = line.firstRange(of: "Request device [") else { return nil }
        let isRead = line[kind.upperBound...].hasPrefix("Read")
        guard let close = line[req.upperBound...].firstIndex(of: "]"),
              let requester = PCIAddress(line[req.upperBound..<close]) else { return nil }
        guard let addrStart = line[close...].firstRange(of: "fault addr ") else { return nil }
        let addrText = line[addrStart.upperBound...].prefix { $0 != " " }
        guard let address = Hex.parse(addrText) else { return nil }
        guard let reasonStart = line[addrStart.upperBound...].firstRange(of: "[fault reason ")
        else { return nil }
        let reasonText = line[reasonStart.upperBound...].prefix { $0 != "]" }
        let reason: Int?
        if reasonText.hasPrefix("0x") {
            reason = Hex.parse(reasonText).map { Int($0) }
        } else {
            reason = Int(reasonText)
        }
        guard let reason else { return nil }
        return DMAFault(requester: requester, address: address, reason: reason, isRead: isRead, line: line)
    }

    /// virtio-iommu's `viommu_fault_handler()` (drivers/iommu/virtio-iommu.c, 6.12 and 7.3):
    /// `virtio_iommu virtio0: page fault from EP 256 at 0x1000000 []` (`domain`, `page` or
    /// `unknown`; `[RWX]` flags). The endpoint is the PCI requester ID QEMU presents,
    /// `bus << 8 | devfn`, in decimal. QEMU sends R_MAPPING for an unmapped IOVA.
    static func parseVirtio(_ line: String) -> DMAFault? {
        guard let ep = line.firstRange(of: "from EP ") else { return nil }
        let idText = line[ep.upperBound...].prefix { $0.isNumber }
        guard let id = Int(idText), id <= 0xffff else { return nil }
        var address: UInt64 = 0
        if let at = line[ep.upperBound...].firstRange(of: " at ") {
            address = Hex.parse(line[at.upperBound...].prefix { $0 != " " }) ?? 0
        }
        let reason = 0
        let flags = line.lastIndex(of: "[").map { line[$0...] } ?? ""
        return DMAFault(requester: PCIAddress(bus: id >> 8, slot: (id >> 3) & 0x1f, function: id & 7),
                        address: address, reason: reason, isRead: flags.contains("R"), line: line)
    }

    /// AMD-Vi's `amd_iommu_report_page_fault()` (drivers/iommu/amd/iommu.c): with the device
    /// known, `vfio-pci 0000:01:00.0: AMD-Vi: Event logged [IO_PAGE_FAULT domain=0x0002
    /// address=0x1000 flags=0x0000]`; without, `AMD-Vi: Event logged [IO_PAGE_FAULT
    /// device=0000:01:00.0 domain=…` (5.10: `device=01:00.0`).
    static func parseAMD(_ line: String) -> DMAFault? {
        guard let event = line.firstRange(of: "IO_PAGE_FAULT ") else { return nil }
        let fields = line[event.upperBound...].prefix { $0 != "]" }
        func field(_ name: String) -> Substring? {
            fields.split(separator: " ").first { $0.hasPrefix(name + "=") }.map { $0.dropFirst(name.count + 1) }
        }
        let requester: PCIAddress?
        if let d = field("device") {
            requester = PCIAddress(d)
        } else {
            // dev_err's prefix: `<driver> <device>: AMD-Vi: Event logged …`.
            let head = line[..<event.lowerBound]
            requester = head.split(separator: " ").lazy.map { $0.hasSuffix(":") ? $0.dropLast() : $0 }.compactMap { PCIAddress($0) }.first
        }
        guard let requester else { return nil }
        let flags = field("flags").flatMap { Hex.parse($0) } ?? 0
        // EVENT_FLAG_RW (bit 5) set: a write.
        return DMAFault(requester: requester, address: field("address").flatMap { Hex.parse($0) } ?? 0, reason: 0,
                        isRead: flags & 0x20 == 0, line: line)
    }

    /// Whether a kernel log line is about a DMA remapping or virtio-iommu fault (the
    /// `DRHD: handling fault status` preamble included), for a probe's evidence.
    public static func isFaultLine(_ line: String) -> Bool {
        line.contains("DMAR: [DMA ") || line.contains("DRHD: handling fault") || line.contains("fault from EP")
            || line.contains("IO_PAGE_FAULT")
    }
}

/// The kernel's own word that a task waits for userspace to let go of a VFIO device.
public enum VFIORelease {
    /// Whether `line` says a VFIO device's removal waits until its user releases it:
    /// `vfio-pci 0000:01:00.2: No device request channel registered, blocked until released by
    /// user`, logged once, at the start of the wait, by vfio_pci_core_request() (vfio_pci_request()
    /// before 5.15) when vfio_unregister_group_dev() (vfio_del_group_dev() in 5.10) asks the
    /// device's user to release it and no request eventfd is set. The removing task (a
    /// `sriov_numvfs` or unbind write) then sleeps until the device fd is closed.
    public static func declaresBlocked(_ line: String) -> Bool {
        line.contains("blocked until released by user")
    }
}
