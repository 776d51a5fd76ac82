#if canImport(Glibc)
import Glibc
#endif
import CVFIO
import IsolabAgentCore
import IsolabProtocol

/// The control channel: JSON lines on /dev/ttyS1 in raw mode (the kernel console is ttyS0), or
/// stdout when the guest has no second serial port. Numbers records from 0. In snapshot mode
/// the host sends plans the other way, one JSON line each.
final class Channel {
    private let fd: Int32
    private let encoder = RecordEncoder()
    private(set) var sent = 0
    let device: String

    init(path: String = "/dev/ttyS1") {
        let fd = cvfio_open(path, O_RDWR | O_NOCTTY)
        if fd >= 0, cvfio_tty_raw(fd) == 0 {
            self.fd = fd
            device = path
        } else {
            if fd >= 0 { close(fd) }
            self.fd = 1
            device = "stdout"
        }
    }

    /// Sends one record; `seq` is filled in.
    func send(_ make: (Int) -> Record) {
        var record = make(sent)
        record.seq = sent
        let bytes: [UInt8]
        do {
            bytes = try encoder.line(record)
        } catch {
            // Unencodable (cannot happen with these types): say so rather than break the sequence.
            bytes = (try? encoder.line(Record(seq: sent, type: .fatal, message: "record \(sent) could not be encoded: \(error)"))) ?? []
        }
        writeAll(bytes)
        sent += 1
    }

    /// Starts a new stream: the next record is numbered 0 (a restored guest's first).
    func restart() { sent = 0 }

    /// Blocks until the host sends one line (without its newline); nil when the channel is
    /// stdout, fails, or the line is longer than `limit` bytes.
    /// With `timeoutMilliseconds`, nil also when no whole line came in that time.
    func readLine(limit: Int = 16 << 20, timeoutMilliseconds: Int? = nil) -> [UInt8]? {
        guard fd != 1 else { return nil }
        var line: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 4096)
        var waited = 0
        while true {
            if let timeout = timeoutMilliseconds {
                var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
                let ready = poll(&p, 1, 100)
                if ready == 0 || (ready < 0 && errno == EINTR) {
                    waited += 100
                    if waited >= timeout { return nil }
                    continue
                }
            }
            let n = buf.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR || errno == EAGAIN { Posix.sleep(milliseconds: 1); continue }
                return nil
            }
            if n == 0 { Posix.sleep(milliseconds: 10); continue }
            if let nl = buf[0..<n].firstIndex(of: UInt8(ascii: "\n")) {
                line += buf[0..<nl]
                // A host sends one plan and waits: anything after the newline is not expected.
                return line
            }
            line += buf[0..<n]
            if line.count > limit { return nil }
        }
    }

    /// The `done` record, then waits until the UART has sent everything.
    func finish() {
        send { Record(seq: $0, type: .done, count: $0) }
        drain()
    }

    /// Waits until the UART has sent everything written so far.
    func drain() { tcdrain(fd) }

    private func writeAll(_ bytes: [UInt8]) {
        var off = 0
        while off < bytes.count {
            let n = bytes[off...].withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR || errno == EAGAIN { Posix.sleep(milliseconds: 1); continue }
                return
            }
            off += n
        }
    }
}

/// New kernel log lines since the last drain (/dev/kmsg, non-blocking, opened past the boot log).
final class KernelLogReader {
    private let fd: Int32

    init() {
        fd = cvfio_open("/dev/kmsg", O_RDONLY | O_NONBLOCK)
        if fd >= 0 { lseek(fd, 0, SEEK_END) }
    }

    deinit { if fd >= 0 { close(fd) } }

    /// Every record logged since the previous call, prefixes stripped.
    func drain() -> [String] {
        guard fd >= 0 else { return [] }
        var lines: [String] = []
        var buf = [UInt8](repeating: 0, count: 8192)
        while lines.count < 5000 {
            let n = buf.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EPIPE { lines.append("isolab-agent: kernel log records were overwritten before they were read"); continue }
                if errno == EINTR { continue }
                break
            }
            if n == 0 { break }
            let text = String(decoding: buf[0..<n], as: UTF8.self)
            lines.append(KmsgRecord.parse(text)?.text ?? text.trimmed)
        }
        return lines
    }
}
