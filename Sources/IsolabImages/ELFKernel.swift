import Foundation

/// What isolab needs to know of an ELF `vmlinux`: that it is an x86-64 executable with a PVH
/// entry point (the ELF note QEMU's `-kernel` looks for to start it directly in 32-bit
/// protected mode, skipping the bzImage's decompressor).
public struct ELFKernel: Sendable, Equatable {
    /// XEN_ELFNOTE_PHYS32_ENTRY (xen/include/public/elfnote.h): the note type of the PVH entry.
    public static let phys32EntryNoteType: UInt32 = 18
    /// ELF64 magic, class 2 (64-bit), data 1 (little endian).
    static let magic: [UInt8] = [0x7F, 0x45, 0x4C, 0x46, 2, 1]
    static let machineX86_64: UInt16 = 62
    static let programHeaderNote: UInt32 = 4

    /// The physical address of the PVH entry (the note's descriptor).
    public var pvhEntry: UInt64
    /// The `Linux version …` banner, when the file holds one (a developer's vmlinux names its release only there).
    public var banner: String?

    /// Checks the file at `path` (mapped, not read whole).
    public init(path: String) throws {
        let data: Data
        do { data = try Data(contentsOf: URL(fileURLWithPath: path), options: .alwaysMapped) } catch {
            throw PVHError.notAnELF(path: path, problem: "cannot read it: \(error.localizedDescription)")
        }
        try self.init(data: data, path: path)
    }

    /// Checks ELF bytes: header, program headers, then the notes of every PT_NOTE segment.
    public init(data: Data, path: String = "vmlinux", readBanner: Bool = false) throws {
        let r = ByteReader(data: data, path: path)
        guard data.count >= 64 else { throw PVHError.notAnELF(path: path, problem: "\(data.count) bytes, shorter than an ELF header") }
        guard try r.bytes(0, 6) == Self.magic else {
            throw PVHError.notAnELF(path: path, problem: "no 64-bit little-endian ELF magic")
        }
        let machine = try r.u16(18)
        guard machine == Self.machineX86_64 else { throw PVHError.notAnELF(path: path, problem: "e_machine is \(machine), not x86-64 (62)") }
        let phoff = Int(try r.u64(32)), phentsize = Int(try r.u16(54)), phnum = Int(try r.u16(56))
        guard phnum > 0, phentsize >= 56 else { throw PVHError.notAnELF(path: path, problem: "no program headers") }
        var entry: UInt64?
        for i in 0..<phnum where entry == nil {
            let ph = phoff + i * phentsize
            guard try r.u32(ph) == Self.programHeaderNote else { continue }
            let offset = Int(try r.u64(ph + 8)), size = Int(try r.u64(ph + 32))
            entry = try Self.phys32Entry(notes: r, from: offset, size: size)
        }
        guard let entry else { throw PVHError.noPVHNote(path: path) }
        pvhEntry = entry
        banner = readBanner ? Self.banner(in: data) : nil
    }

    /// Walks the notes in `[from, from+size)`: namesz, descsz, type, name and descriptor, each padded to 4.
    static func phys32Entry(notes r: ByteReader, from: Int, size: Int) throws -> UInt64? {
        var at = from
        let end = from + size
        while at + 12 <= end {
            let namesz = Int(try r.u32(at)), descsz = Int(try r.u32(at + 4)), type = try r.u32(at + 8)
            let name = at + 12, desc = name + ((namesz + 3) & ~3)
            let next = desc + ((descsz + 3) & ~3)
            guard next <= end else { throw PVHError.notAnELF(path: r.path, problem: "a note at \(at) runs past its segment") }
            if type == phys32EntryNoteType, try r.bytes(name, namesz) == Array("Xen\0".utf8) {
                switch descsz {
                case 4: return UInt64(try r.u32(desc))     // `.long` (kernels before 6.10)
                case 8: return try r.u64(desc)             // `_ASM_PTR` on 64-bit
                default: throw PVHError.notAnELF(path: r.path, problem: "PVH entry note has a \(descsz)-byte descriptor")
                }
            }
            at = next
        }
        return nil
    }

    /// The `Linux version …` banner (`linux_banner`), up to its newline or NUL.
    static func banner(in data: Data) -> String? {
        guard let start = data.range(of: Data("Linux version ".utf8)) else { return nil }
        let tail = data[start.upperBound...].prefix(400)
        let end = tail.firstIndex { $0 == 0 || $0 == 0x0A } ?? tail.endIndex
        return String(decoding: data[start.upperBound..<end], as: UTF8.self)
    }
}

/// Bounds-checked little-endian reads; running off the end is a `PVHError.notAnELF` (a truncated file).
struct ByteReader {
    let data: Data
    let path: String

    func bytes(_ at: Int, _ count: Int) throws -> [UInt8] {
        guard at >= 0, count >= 0, at <= data.count - count else {
            throw PVHError.notAnELF(path: path, problem: "truncated: needs bytes \(at)..<\(at + count) of \(data.count)")
        }
        let base = data.startIndex + at
        return [UInt8](data[base..<base + count])
    }

    func u16(_ at: Int) throws -> UInt16 { try bytes(at, 2).reversed().reduce(0) { $0 << 8 | UInt16($1) } }
    func u32(_ at: Int) throws -> UInt32 { try bytes(at, 4).reversed().reduce(0) { $0 << 8 | UInt32($1) } }
    func u64(_ at: Int) throws -> UInt64 { try bytes(at, 8).reversed().reduce(0) { $0 << 8 | UInt64($1) } }
}
