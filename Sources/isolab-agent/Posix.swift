#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import CVFIO
import IsolabAgentCore

/// Small POSIX helpers. Nothing here throws: a missing or odd file is `nil`, a failed call an errno.
enum Posix {
    /// The whole file (at most `limit` bytes), or nil if it cannot be opened or read.
    static func read(_ path: String, limit: Int = 1 << 20) -> [UInt8]? {
        let fd = cvfio_open(path, O_RDONLY)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var out: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while out.count < limit {
            let n = chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                return out.isEmpty ? nil : out
            }
            if n == 0 { break }
            out.append(contentsOf: chunk[0..<n])
        }
        return out
    }

    /// `count` bytes of the file at `path` from `offset` (one pread), nil unless all were read.
    static func read(_ path: String, at offset: Int, count: Int) -> [UInt8]? {
        let fd = cvfio_open(path, O_RDONLY)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var out = [UInt8](repeating: 0, count: count)
        let n = out.withUnsafeMutableBytes { pread(fd, $0.baseAddress, count, off_t(offset)) }
        return n == count ? out : nil
    }

    /// The file as text with surrounding whitespace removed.
    static func text(_ path: String) -> String? {
        read(path, limit: 64 << 10).map { String(decoding: $0, as: UTF8.self).trimmed }
    }

    /// Writes `value` to `path` in one write(2), as sysfs wants it. 0 or the errno.
    static func write(_ path: String, _ value: String) -> Int32 {
        let fd = cvfio_open(path, O_WRONLY)
        guard fd >= 0 else { return -fd }
        defer { close(fd) }
        let bytes = Array(value.utf8)
        let n = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
        return n < 0 ? errno : 0
    }

    /// Names in a directory, sorted, without `.` and `..`; empty if it cannot be read.
    static func list(_ path: String) -> [String] {
        guard let dir = opendir(path) else { return [] }
        defer { closedir(dir) }
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names.sorted()
    }

    /// The target of a symbolic link, or nil.
    static func readlink(_ path: String) -> String? {
        var buf = [CChar](repeating: 0, count: 4096)
        let n = Glibc.readlink(path, &buf, buf.count - 1)
        guard n > 0 else { return nil }
        return String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// The last component of a link's target (`…/drivers/e1000e` → `e1000e`).
    static func linkName(_ path: String) -> String? {
        readlink(path).flatMap { $0.split(separator: "/").last.map(String.init) }
    }

    static func realpath(_ path: String) -> String? {
        guard let p = Glibc.realpath(path, nil) else { return nil }
        defer { free(p) }
        return String(cString: p)
    }

    static func exists(_ path: String) -> Bool { access(path, F_OK) == 0 }

    static func sleep(milliseconds: Int) {
        var ts = timespec(tv_sec: milliseconds / 1000, tv_nsec: (milliseconds % 1000) * 1_000_000)
        var rest = timespec()
        while nanosleep(&ts, &rest) != 0 && errno == EINTR { ts = rest }
    }

    /// `uname -r`.
    static func kernelRelease() -> String {
        var u = utsname()
        guard uname(&u) == 0 else { return "unknown" }
        return withUnsafeBytes(of: u.release) { String(decoding: $0.prefix(while: { $0 != 0 }), as: UTF8.self) }
    }

    static func errorText(_ e: Int32) -> String { "\(ErrnoName.name(e)) (\(e))" }
}

/// How a child process ended.
enum ChildEnd: Equatable {
    case exited(Int32)
    case signaled(Int32)
    /// Still running at the deadline: left behind.
    case running
    case spawnFailed(Int32)
}

/// Child processes: sysfs writes and modprobe run in one so that a write that blocks or a task
/// the kernel kills (5.10's BUG_ON) cannot take the agent with it.
enum Child {
    /// Starts `argv` (absolute path first). The pid, or the errno.
    static func spawn(_ argv: [String]) -> Result<pid_t, SpawnError> {
        var pid: pid_t = 0
        var cargs: [UnsafeMutablePointer<CChar>?] = argv.map { strdup($0) }
        cargs.append(nil)
        defer { for p in cargs { free(p) } }
        let rc = posix_spawn(&pid, argv[0], nil, nil, cargs, environ)
        return rc == 0 ? .success(pid) : .failure(SpawnError(errno: rc))
    }

    struct SpawnError: Error { var errno: Int32 }

    /// Waits up to `seconds` for the child; `.running` if it has not ended by then. Wakes the
    /// moment it ends through a pidfd (a step's helpers and modprobe take 5–50 ms under TCG,
    /// and sleeping 1, 2, 4 … 20 ms between looks added up to a tenth of a second a scenario);
    /// where the kernel has no pidfd_open, looks at those intervals instead.
    ///
    /// `declaredBlocked`, looked at every 20 ms while the child runs: true when the kernel has
    /// said the child's task waits for something only the agent can do (``VFIORelease``); the
    /// child is then `.running` at once instead of at the deadline.
    static func wait(_ pid: pid_t, seconds: Double, declaredBlocked: (() -> Bool)? = nil) -> ChildEnd {
        let deadline = ContinuousClock.now + .milliseconds(Int(seconds * 1000))
        let pidfd = cvfio_pidfd_open(pid)
        defer { if pidfd >= 0 { close(pidfd) } }
        var delay = 1
        while true {
            if let end = poll(pid) { return end }
            let now = ContinuousClock.now
            if now >= deadline || declaredBlocked?() == true { return .running }
            if pidfd >= 0 {
                let left = (deadline - now).components
                let ms = Int(min(left.seconds * 1000 + left.attoseconds / 1_000_000_000_000_000 + 1, declaredBlocked == nil ? 1000 : 20))
                _ = cvfio_wait_readable(pidfd, Int32(ms))
            } else {
                Posix.sleep(milliseconds: delay)
                delay = min(delay * 2, 20)
            }
        }
    }

    /// The child's end if it has ended (reaped), nil while it runs.
    static func poll(_ pid: pid_t) -> ChildEnd? {
        var status: Int32 = 0
        let r = waitpid(pid, &status, WNOHANG)
        if r == 0 { return nil }
        if r < 0 { return .exited(HelperExit.code(forErrno: ECHILD)) }
        let sig = status & 0x7f
        return sig == 0 ? .exited((status >> 8) & 0xff) : .signaled(sig)
    }

    /// Runs `argv` to its end or the deadline; a child still running comes back to be looked at later.
    static func run(_ argv: [String], seconds: Double, declaredBlocked: (() -> Bool)? = nil) -> (running: RunningChild?, end: ChildEnd) {
        switch spawn(argv) {
        case .failure(let e): return (nil, .spawnFailed(e.errno))
        case .success(let pid):
            let end = wait(pid, seconds: seconds, declaredBlocked: declaredBlocked)
            return (end == .running ? RunningChild { poll(pid) } : nil, end)
        }
    }

    /// Writes `value` to `path` in one write(2) in a child, to its end or the deadline; an exit
    /// carries the write's errno as HelperExit codes it. The child is CVFIO's clone(2)d writer:
    /// it shares the agent's memory, holds none of its descriptors and never execs, which saves
    /// the ~12 ms of TCG time the exec'd `write` helper costs to start; that helper is the
    /// fallback where the clone is refused.
    /// `declaredBlocked` as for ``wait(_:seconds:declaredBlocked:)``.
    static func write(_ path: String, _ value: String, seconds: Double,
                      declaredBlocked: (() -> Bool)? = nil) -> (running: RunningChild?, end: ChildEnd) {
        var job: OpaquePointer?
        let pid = value.withCString { cvfio_write_start(path, $0, value.utf8.count, &job) }
        guard pid > 0, let job else { return run(["/proc/self/exe", "write", path, value], seconds: seconds, declaredBlocked: declaredBlocked) }
        // The job holds the child's stack: it is freed only once the child is reaped.
        let finished = { (end: ChildEnd) -> ChildEnd in
            defer { cvfio_write_free(job) }
            if case .exited = end { return .exited(HelperExit.code(forErrno: cvfio_write_result(job))) }
            return end
        }
        let end = wait(pid, seconds: seconds, declaredBlocked: declaredBlocked)
        if end == .running { return (RunningChild { poll(pid).map(finished) }, .running) }
        return (nil, finished(end))
    }
}

/// A child still running at its deadline: its end once it has one (reaping it), else nil.
struct RunningChild {
    var poll: () -> ChildEnd?
}

extension String {
    var trimmed: String {
        var s = Substring(self)
        while let c = s.first, c == " " || c == "\n" || c == "\t" || c == "\r" || c == "\0" { s = s.dropFirst() }
        while let c = s.last, c == " " || c == "\n" || c == "\t" || c == "\r" || c == "\0" { s = s.dropLast() }
        return String(s)
    }
}
