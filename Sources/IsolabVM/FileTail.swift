import Foundation

/// Reads what a growing file gained since the last read (QEMU writes the serial ports to files).
struct FileTail {
    let path: String
    private var handle: FileHandle?
    private(set) var bytes = Data()

    init(path: String) { self.path = path }

    /// New bytes since the last call (empty while the file does not exist yet).
    mutating func poll() -> Data {
        if handle == nil { handle = FileHandle(forReadingAtPath: path) }
        guard let h = handle, let chunk = try? h.readToEnd(), !chunk.isEmpty else { return Data() }
        bytes.append(chunk)
        return chunk
    }

    var text: String { String(decoding: bytes, as: UTF8.self) }

    mutating func close() { try? handle?.close(); handle = nil }
}
