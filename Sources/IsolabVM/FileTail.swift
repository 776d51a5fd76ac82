import Foundation

/// Reads what a growing file gained since the last read (QEMU writes the serial ports to files).
struct FileTail {
    let path: String
    private var handle: FileHandle?
    private(set) var bytes = Data()

    /// Where reading starts: a console file several runs share is read from the end of the last.
    private let offset: UInt64

    init(path: String, from offset: UInt64 = 0) {
        self.path = path
        self.offset = offset
    }

    /// New bytes since the last call (empty while the file does not exist yet).
    mutating func poll() -> Data {
        if handle == nil {
            handle = FileHandle(forReadingAtPath: path)
            if offset > 0 { try? handle?.seek(toOffset: offset) }
        }
        guard let h = handle, let chunk = try? h.readToEnd(), !chunk.isEmpty else { return Data() }
        bytes.append(chunk)
        return chunk
    }

    var text: String { String(decoding: bytes, as: UTF8.self) }

    mutating func close() { try? handle?.close(); handle = nil }
}
