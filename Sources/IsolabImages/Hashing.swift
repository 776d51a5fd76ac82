import Crypto
import Foundation

/// sha256 helpers for content addressing.
public enum Hashing {
    /// Hex sha256 of a file, streamed in 1 MiB chunks.
    public static func sha256(file path: String) throws -> String {
        guard let h = FileHandle(forReadingAtPath: path) else {
            throw ImagesError.io(path: path, problem: "cannot read to hash it")
        }
        defer { try? h.close() }
        var hasher = SHA256()
        while let chunk = try h.read(upToCount: 1 << 20), !chunk.isEmpty { hasher.update(data: chunk) }
        return hex(hasher.finalize())
    }

    public static func sha256(_ data: Data) -> String { hex(SHA256.hash(data: data)) }
    public static func sha256(_ text: String) -> String { sha256(Data(text.utf8)) }

    private static func hex<D: Sequence>(_ digest: D) -> String where D.Element == UInt8 {
        digest.map { String(format: "%02x", $0) }.joined()
    }
}
