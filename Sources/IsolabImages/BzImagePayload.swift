import Foundation

/// The compressions of a bzImage payload isolab unpacks (with the `xz` / `zstd` tools).
public enum PayloadCompression: String, Codable, Sendable, CaseIterable {
    case xz, zstd

    /// The stream's first bytes.
    public var magic: [UInt8] {
        switch self {
        case .xz: return [0xFD, 0x37, 0x7A, 0x58, 0x5A, 0x00]
        case .zstd: return [0x28, 0xB5, 0x2F, 0xFD]
        }
    }

    /// Decompress `input` to standard output; `xz` stops after the first stream.
    func command(_ input: String) -> [String] {
        switch self {
        case .xz: return ["xz", "-dc", "--single-stream", input]
        case .zstd: return ["zstd", "-dcq", input]
        }
    }

    /// Other kernel compressions, by magic, for the message that refuses them.
    static let others: [(String, [UInt8])] = [
        ("gzip", [0x1F, 0x8B]), ("bzip2", Array("BZh".utf8)), ("lzma", [0x5D, 0x00, 0x00]),
        ("lzo", [0x89, 0x4C, 0x5A, 0x4F]), ("lz4", [0x02, 0x21, 0x4C, 0x18]),
    ]
}

/// Where the compressed kernel (`vmlinux.bin`, an ELF) lies inside a bzImage
/// (Documentation/arch/x86/boot.rst: `payload_offset` at 0x248 and `payload_length` at 0x24C,
/// relative to the protected-mode code at `(setup_sects + 1) * 512`; boot protocol ≥ 2.08).
public struct BzImagePayload: Sendable, Equatable {
    public var compression: PayloadCompression
    /// Offset of the compressed stream in the bzImage file.
    public var offset: Int
    /// Length of the compressed stream, without the 4-byte size the build appends to it.
    public var length: Int
    /// The uncompressed size the build appended (little-endian u32 after the stream).
    public var uncompressedSize: Int

    /// Locates the payload from the header fields and checks its magic.
    public init(bytes: [UInt8], path: String = "bzImage") throws {
        func u32(_ at: Int) -> Int { (0..<4).reduce(0) { $0 | Int(bytes[at + $1]) << (8 * $1) } }
        guard bytes.count >= 0x250, bytes[0x202..<0x206].elementsEqual("HdrS".utf8) else {
            throw PVHError.noPayload(path: path, problem: "no bzImage setup header ('HdrS' at 0x202)")
        }
        let proto = Int(bytes[0x206]) | Int(bytes[0x207]) << 8
        guard proto >= 0x208 else {
            throw PVHError.noPayload(path: path, problem: String(format: "boot protocol %x.%02x has no payload fields", proto >> 8, proto & 0xff))
        }
        let setupSectors = bytes[0x1F1] == 0 ? 4 : Int(bytes[0x1F1])
        let start = (setupSectors + 1) * 512 + u32(0x248)
        let total = u32(0x24C)
        guard total > 4, start + total <= bytes.count else {
            throw PVHError.noPayload(path: path, problem: "payload \(start)..<\(start + total) lies outside the \(bytes.count)-byte file (truncated?)")
        }
        let head = bytes[start..<min(start + 8, bytes.count)]
        guard let c = PayloadCompression.allCases.first(where: { head.starts(with: $0.magic) }) else {
            let name = PayloadCompression.others.first { head.starts(with: $0.1) }?.0
            throw PVHError.unsupportedCompression(path: path, found: name ?? "unknown (starts \(head.map { String(format: "%02x", $0) }.joined()))")
        }
        compression = c
        offset = start
        length = total - 4
        uncompressedSize = u32(start + total - 4)
    }

    /// Decompresses the payload of `bzImage` into `output` and checks it is an x86-64 ELF with a
    /// PVH entry note. `output` is removed again on any failure.
    /// - Returns: the ELF facts and the payload it came from.
    @discardableResult
    public static func extractVmlinux(bzImage: String, to output: String) throws -> (ELFKernel, BzImagePayload) {
        guard let data = FileManager.default.contents(atPath: bzImage) else {
            throw PVHError.noPayload(path: bzImage, problem: "cannot read it")
        }
        let bytes = [UInt8](data)
        let payload = try BzImagePayload(bytes: bytes, path: bzImage)
        let compressed = output + ".payload"
        let fm = FileManager.default
        defer { try? fm.removeItem(atPath: compressed) }
        do {
            guard fm.createFile(atPath: compressed, contents: Data(bytes[payload.offset..<payload.offset + payload.length])) else {
                throw ImagesError.io(path: compressed, problem: "cannot write the compressed kernel")
            }
            let r = try Shell.run(payload.compression.command(compressed), stdoutTo: output)
            guard r.status == 0 else {
                throw PVHError.decompressionFailed(path: bzImage, tool: payload.compression.rawValue, output: r.errorText)
            }
            let size = (try fm.attributesOfItem(atPath: output)[.size] as? Int) ?? -1
            guard size == payload.uncompressedSize else {
                throw PVHError.sizeMismatch(path: bzImage, expected: payload.uncompressedSize, actual: size)
            }
            return (try ELFKernel(path: output), payload)
        } catch {
            try? fm.removeItem(atPath: output)
            throw error
        }
    }
}
