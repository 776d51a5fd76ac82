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

/// Lines that mean the kernel hit a BUG, an oops or a panic.
public enum KernelCrash {
    public static let markers = ["kernel BUG at", "Oops", "general protection fault", "Kernel panic",
                                 "BUG: unable to handle", "invalid opcode:"]

    /// The line that best names the crash (a `kernel BUG at …` line first), or nil.
    public static func find(in lines: [String]) -> String? {
        for marker in markers {
            if let line = lines.first(where: { $0.contains(marker) }) { return line }
        }
        return nil
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

    /// Whether a kernel log line is about a DMA remapping or virtio-iommu fault (the
    /// `DRHD: handling fault status` preamble included), for a probe's evidence.
    public static func isFaultLine(_ line: String) -> Bool {
        line.contains("DMAR: [DMA ") || line.contains("DRHD: handling fault") || line.contains("fault from EP")
            || line.contains("IO_PAGE_FAULT")
    }
}
