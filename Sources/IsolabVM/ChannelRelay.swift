import Foundation

/// The host's end of the agent's channel in snapshot mode: connects to the Unix socket QEMU
/// listens on for serial port 1, appends everything the agent writes to the run's records
/// file (so the record stream is read and kept exactly as in a file-backed run), and sends
/// plans the other way.
final class ChannelRelay: @unchecked Sendable {
    private let fd: Int32
    private var output: FileHandle
    private let lock = NSLock()
    private var closed = false
    private let finished = DispatchSemaphore(value: 0)

    enum RelayError: Error, CustomStringConvertible {
        case connect(path: String, errno: Int32)
        case send(errno: Int32)
        case output(path: String)
        var description: String {
            switch self {
            case .connect(let path, let e): return "cannot connect to the agent channel \(path): \(String(cString: strerror(e)))"
            case .send(let e): return "cannot send the plan on the agent channel: \(String(cString: strerror(e)))"
            case .output(let path): return "cannot open the records file \(path)"
            }
        }
    }

    /// Connects to `socketPath`, retrying for up to `seconds` while QEMU creates it, and
    /// starts copying into `recordsPath`.
    init(socketPath: String, recordsPath: String, seconds: Double = 10) throws {
        guard let out = FileHandle(forWritingAtPath: recordsPath) else { throw RelayError.output(path: recordsPath) }
        out.seekToEndOfFile()
        output = out
        let until = Date().addingTimeInterval(seconds)
        var lastErrno: Int32 = 0
        var connected: Int32 = -1
        while connected < 0 {
            let s = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
            if s >= 0, Self.connect(s, socketPath) == 0 {
                connected = s
                break
            }
            lastErrno = errno
            if s >= 0 { Glibc.close(s) }
            if Date() > until { throw RelayError.connect(path: socketPath, errno: lastErrno) }
            Thread.sleep(forTimeInterval: 0.01)
        }
        fd = connected
        let thread = Thread { [self] in pump() }
        thread.stackSize = 1 << 20
        thread.start()
    }

    private static func connect(_ s: Int32, _ path: String) -> Int32 {
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: addr.sun_path) else { errno = ENAMETOOLONG; return -1 }
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in
            for (i, b) in bytes.enumerated() { raw[i] = b }
            raw[bytes.count] = 0
        }
        return withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(s, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
    }

    private func pump() {
        var buf = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = buf.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            lock.lock()
            output.write(Data(buf[0..<n]))
            lock.unlock()
        }
        finished.signal()
    }

    /// From now on, appends what the agent writes to `recordsPath` (a guest put back into its
    /// snapshot in the same QEMU starts a new stream there). What came before stays where it was.
    func redirect(to recordsPath: String) throws {
        guard let out = FileHandle(forWritingAtPath: recordsPath) else { throw RelayError.output(path: recordsPath) }
        out.seekToEndOfFile()
        lock.lock()
        let old = output
        output = out
        lock.unlock()
        try? old.close()
    }

    /// Sends `line` and a newline.
    func send(_ line: Data) throws {
        var bytes = [UInt8](line)
        bytes.append(UInt8(ascii: "\n"))
        var off = 0
        while off < bytes.count {
            let n = bytes[off...].withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw RelayError.send(errno: errno)
            }
            off += n
        }
    }

    /// Stops relaying once QEMU has closed its end (or at once after `seconds`), and closes.
    func close(waiting seconds: Double = 2) {
        lock.lock()
        guard !closed else { lock.unlock(); return }
        closed = true
        lock.unlock()
        if finished.wait(timeout: .now() + seconds) == .timedOut {
            shutdown(fd, Int32(SHUT_RDWR))
            _ = finished.wait(timeout: .now() + 2)
        }
        Glibc.close(fd)
        lock.lock()
        try? output.close()
        lock.unlock()
    }
}
