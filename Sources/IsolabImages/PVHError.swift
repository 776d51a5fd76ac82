/// Why a kernel cannot be booted through its PVH entry (the image then boots its bzImage).
public enum PVHError: Error, CustomStringConvertible, Equatable, Sendable {
    /// The bzImage's header does not locate a payload inside the file.
    case noPayload(path: String, problem: String)
    /// The payload is compressed with something isolab does not unpack.
    case unsupportedCompression(path: String, found: String)
    /// `xz`/`zstd` refused the payload (truncated or corrupt).
    case decompressionFailed(path: String, tool: String, output: String)
    /// The decompressed kernel is not as long as the size the build appended to the payload.
    case sizeMismatch(path: String, expected: Int, actual: Int)
    /// The file (or the decompressed payload) is not a 64-bit little-endian x86-64 ELF.
    case notAnELF(path: String, problem: String)
    /// The ELF has no `Xen` note of type XEN_ELFNOTE_PHYS32_ENTRY in a PT_NOTE segment.
    case noPVHNote(path: String)

    public var description: String {
        switch self {
        case let .noPayload(path, problem):
            return "\(path): cannot locate the compressed kernel: \(problem)"
        case let .unsupportedCompression(path, found):
            return "\(path): the kernel payload is \(found), not xz or zstd; build with CONFIG_KERNEL_XZ or "
                + "CONFIG_KERNEL_ZSTD for a PVH boot (the bzImage boots as is)"
        case let .decompressionFailed(path, tool, output):
            let tail = output.split(separator: "\n").suffix(5).joined(separator: "\n")
            return "\(path): `\(tool)` could not decompress the kernel payload (truncated or corrupt bzImage?): \(tail)"
        case let .sizeMismatch(path, expected, actual):
            return "\(path): the payload decompressed to \(actual) bytes but the bzImage records \(expected); "
                + "the bzImage is truncated or corrupt"
        case let .notAnELF(path, problem):
            return "\(path): not an x86-64 ELF vmlinux: \(problem)"
        case let .noPVHNote(path):
            return "\(path): no PVH entry (ELF note 'Xen' type 18, XEN_ELFNOTE_PHYS32_ENTRY); the kernel was built "
                + "without CONFIG_PVH, so it boots through its bzImage"
        }
    }
}
