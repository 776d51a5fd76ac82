@testable import IsolabImages
import XCTest

/// The PVH `vmlinux`: the bzImage's xz/zstd payload located by its header, decompressed, and
/// checked for an x86-64 ELF with a XEN_ELFNOTE_PHYS32_ENTRY note; synthetic kernels here.
final class PVHKernelTests: XCTestCase {
    static let entry: UInt32 = 0x0100_0b20

    /// A minimal ELF64 x86-64 with one PT_NOTE segment holding `notes` (name, type, descriptor).
    static func elf(notes: [(String, UInt32, [UInt8])], machine: UInt16 = 62, elfClass: UInt8 = 2) -> [UInt8] {
        func le<T: FixedWidthInteger>(_ v: T) -> [UInt8] { withUnsafeBytes(of: v.littleEndian, Array.init) }
        func pad(_ b: [UInt8]) -> [UInt8] { b + [UInt8](repeating: 0, count: (4 - b.count % 4) % 4) }
        var noteBytes: [UInt8] = []
        for (name, type, desc) in notes {
            let n = Array(name.utf8) + [0]
            noteBytes += le(UInt32(n.count)) + le(UInt32(desc.count)) + le(type) + pad(n) + pad(desc)
        }
        var header = [0x7F, 0x45, 0x4C, 0x46, elfClass, 1, 1, 0] + [UInt8](repeating: 0, count: 8)
        header += le(UInt16(2)) + le(machine) + le(UInt32(1)) + le(UInt64(0x100_0000))   // type, machine, version, entry
        header += le(UInt64(64)) + le(UInt64(0)) + le(UInt32(0))                        // phoff, shoff, flags
        header += le(UInt16(64)) + le(UInt16(56)) + le(UInt16(1)) + le(UInt16(64)) + le(UInt16(0)) + le(UInt16(0))
        let noteOffset = UInt64(64 + 56)
        var ph = le(UInt32(4)) + le(UInt32(4)) + le(noteOffset) + le(UInt64(0)) + le(UInt64(0))
        ph += le(UInt64(noteBytes.count)) + le(UInt64(noteBytes.count)) + le(UInt64(4))
        return header + ph + noteBytes + Array("Linux version 6.99.0-test (t@example.invalid) #1\n".utf8)
    }

    static var pvhELF: [UInt8] {
        elf(notes: [("Linux", 6, Array("6.99\0".utf8)), ("Xen", 18, withUnsafeBytes(of: entry.littleEndian, Array.init))])
    }

    /// A bzImage around `payload`: setup header (protocol 2.15, 3 setup sectors), then the
    /// protected-mode code with the payload at 0x100, followed by the 4-byte size the build appends.
    static func bzImage(payload: [UInt8], uncompressed: Int) -> [UInt8] {
        var bytes = [UInt8](BzImageTests.fakeBzImage(version: "6.99.0-test (t@example.invalid) #1", pointer: 0x300))
        bytes[0x1F1] = 3
        let pm = 4 * 512
        bytes += [UInt8](repeating: 0, count: max(0, pm + 0x100 - bytes.count))
        let total = payload.count + 4
        for (i, v) in [(0x248, 0x100), (0x24C, total)] { for b in 0..<4 { bytes[i + b] = UInt8((v >> (8 * b)) & 0xff) } }
        return bytes + payload + (0..<4).map { UInt8((uncompressed >> (8 * $0)) & 0xff) } + [UInt8](repeating: 0x90, count: 64)
    }

    static func compress(_ data: [UInt8], with tool: PayloadCompression, in dir: String) throws -> [UInt8] {
        let input = dir + "/plain", output = dir + "/packed"
        try Data(data).write(to: URL(fileURLWithPath: input))
        try Shell.check(tool == .xz ? ["xz", "-c", "--check=crc32", input] : ["zstd", "-c", "-q", input], stdoutTo: output)
        return [UInt8](try Data(contentsOf: URL(fileURLWithPath: output)))
    }

    var dir = ""
    override func setUpWithError() throws { dir = try TestSupport.temporaryDirectory("pvh") }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(atPath: dir) }

    func write(_ bytes: [UInt8], _ name: String) throws -> String {
        let path = dir + "/" + name
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        return path
    }

    func testXZAndZstdPayloadsUnpackToTheELFAndItsPVHEntry() throws {
        for tool in PayloadCompression.allCases {
            let packed = try Self.compress(Self.pvhELF, with: tool, in: dir)
            let bz = try write(Self.bzImage(payload: packed, uncompressed: Self.pvhELF.count), "bz-\(tool)")
            let out = dir + "/vmlinux-\(tool)"
            let (elf, payload) = try BzImagePayload.extractVmlinux(bzImage: bz, to: out)
            XCTAssertEqual(payload.compression, tool)
            XCTAssertEqual(payload.offset, 4 * 512 + 0x100)
            XCTAssertEqual(payload.length, packed.count)
            XCTAssertEqual(elf.pvhEntry, UInt64(Self.entry))
            XCTAssertEqual([UInt8](try Data(contentsOf: URL(fileURLWithPath: out))), Self.pvhELF)
        }
    }

    func testTruncatedBzImagesAreRefusedAndLeaveNoVmlinux() throws {
        let packed = try Self.compress(Self.pvhELF, with: .xz, in: dir)
        let whole = Self.bzImage(payload: packed, uncompressed: Self.pvhELF.count)
        // Cut inside the payload: the header's payload runs past the end of the file.
        let cut = try write(Array(whole.prefix(4 * 512 + 0x100 + packed.count / 2)), "cut")
        XCTAssertThrowsError(try BzImagePayload.extractVmlinux(bzImage: cut, to: dir + "/v1")) { e in
            guard case .noPayload(_, let problem)? = e as? PVHError else { return XCTFail("\(e)") }
            XCTAssertTrue(problem.contains("truncated"), problem)
        }
        // A payload cut short inside a whole-looking file: xz refuses it.
        var short = Self.bzImage(payload: Array(packed.prefix(packed.count / 2)), uncompressed: Self.pvhELF.count)
        short += [UInt8](repeating: 0, count: 16)
        XCTAssertThrowsError(try BzImagePayload.extractVmlinux(bzImage: try write(short, "short"), to: dir + "/v2")) { e in
            guard case .decompressionFailed(_, "xz", _)? = e as? PVHError else { return XCTFail("\(e)") }
        }
        // The size the build appended disagrees with what came out.
        let wrongSize = try write(Self.bzImage(payload: packed, uncompressed: Self.pvhELF.count + 1), "size")
        XCTAssertThrowsError(try BzImagePayload.extractVmlinux(bzImage: wrongSize, to: dir + "/v3")) { e in
            XCTAssertEqual(e as? PVHError, .sizeMismatch(path: wrongSize, expected: Self.pvhELF.count + 1, actual: Self.pvhELF.count))
        }
        for v in ["v1", "v2", "v3"] { XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/" + v), v) }
        // The ELF itself cut before its notes.
        XCTAssertThrowsError(try ELFKernel(data: Data(Self.pvhELF.prefix(100)))) { e in
            guard case .notAnELF(_, let problem)? = e as? PVHError else { return XCTFail("\(e)") }
            XCTAssertTrue(problem.contains("truncated"), problem)
        }
    }

    func testKernelWithoutPVHNoteHasNoPVHEntry() throws {
        let plain = Self.elf(notes: [("Linux", 6, Array("6.99\0".utf8)), ("Xen", 17, [1, 0, 0, 0]), ("Xeno", 18, [0, 0, 0, 1])])
        XCTAssertThrowsError(try ELFKernel(data: Data(plain), path: "k")) { e in XCTAssertEqual(e as? PVHError, .noPVHNote(path: "k")) }
        let packed = try Self.compress(plain, with: .zstd, in: dir)
        let bz = try write(Self.bzImage(payload: packed, uncompressed: plain.count), "bz")
        XCTAssertThrowsError(try BzImagePayload.extractVmlinux(bzImage: bz, to: dir + "/vmlinux")) { e in
            XCTAssertEqual(e as? PVHError, .noPVHNote(path: dir + "/vmlinux"))
            XCTAssertTrue("\(e)".contains("CONFIG_PVH"), "\(e)")
        }
    }

    func testOnlyX86_64ELF64IsAccepted() {
        let cases: [([UInt8], String)] = [
            (Self.elf(notes: [], machine: 183), "x86-64"),            // aarch64
            (Self.elf(notes: [], elfClass: 1), "magic"),             // ELF32
            (Array("MZ not an elf at all, padded to sixty-four bytes or more.............".utf8), "magic"),
        ]
        for (bytes, expect) in cases {
            XCTAssertThrowsError(try ELFKernel(data: Data(bytes))) { e in
                guard case .notAnELF(_, let problem)? = e as? PVHError else { return XCTFail("\(e)") }
                XCTAssertTrue(problem.contains(expect), problem)
            }
        }
    }

    func testGzipPayloadIsNamedAsUnsupported() throws {
        let bz = Self.bzImage(payload: [0x1F, 0x8B, 8, 0] + [UInt8](repeating: 0, count: 40), uncompressed: 100)
        XCTAssertThrowsError(try BzImagePayload(bytes: bz, path: "bz")) { e in
            XCTAssertEqual(e as? PVHError, .unsupportedCompression(path: "bz", found: "gzip"))
        }
        XCTAssertThrowsError(try BzImagePayload(bytes: [UInt8](repeating: 0, count: 0x400))) { e in
            guard case .noPayload? = e as? PVHError else { return XCTFail("\(e)") }
        }
    }
}
