import CLibvirt
import Foundation

/// Makes this process the child subreaper (`PR_SET_CHILD_SUBREAPER`) and reaps the QEMU
/// processes an embedded driver starts.
///
/// libvirt daemonizes QEMU (the guest's, and the short-lived ones that probe capabilities).
/// Without a subreaper the orphan goes to PID 1, and libvirt waits 1.2–2 s for an exited
/// QEMU to vanish before it reports `stopped` (PERF-NOTES). As subreaper this process
/// inherits them, so it must reap them, or libvirt waits for the zombie until it gives up
/// (measured: 40 s per capabilities probe, "Failed to terminate process … with SIGKILL").
///
/// What is reaped: exited children that run in a session of their own (libvirt's daemonize
/// calls `setsid()`) and whose command is `qemu…`. `Foundation.Process` children stay in
/// this process's session, so they are left to their owner. A SIGCHLD handler or signalfd
/// would race with Foundation's own SIGCHLD handling (a signal goes to one taker), so a
/// thread checks for zombie children every 20 ms with one `waitid(WNOWAIT)` call.
public enum ChildReaper {
    private static let lock = NSLock()
    nonisolated(unsafe) private static var started = false

    /// Becomes the subreaper and starts the reaping thread (once). False if this process
    /// cannot be a subreaper (nothing changes then).
    @discardableResult
    static func start() -> Bool {
        lock.lock(); defer { lock.unlock() }
        if started { return true }
        guard isolab_set_child_subreaper() == 0 else { return false }
        let thread = Thread {
            let session = getsid(0)
            while true {
                ChildReaper.reapDaemonizedQEMUs(session: session)
                usleep(20_000)
            }
        }
        thread.name = "isolab-child-reaper"
        thread.stackSize = 256 << 10
        thread.start()
        started = true
        return true
    }

    /// The QEMU processes this process adopted that still run (not zombies). As subreaper it
    /// inherits every QEMU the embedded driver daemonized, so this is the whole list: empty
    /// means no guest of this process is left.
    public static func livingQEMUChildren() -> [pid_t] {
        let session = getsid(0)
        return childProcesses().filter { pid in
            guard let stat = ProcessStat(pid: pid) else { return false }
            return stat.state != "Z" && stat.session != session && stat.command.hasPrefix("qemu")
        }
    }

    /// The adopted QEMU process that runs the domain `name` (its command line names
    /// `guest=<name>,`), or nil when there is none (or this process is no subreaper).
    public static func adoptedQEMU(domain name: String) -> pid_t? {
        let needle = Array("guest=\(name),".utf8)
        return livingQEMUChildren().first { pid in
            guard let raw = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline") else { return false }
            return [UInt8](raw).firstRange(of: needle) != nil
        }
    }

    /// Kills the adopted QEMU of the domain `name` and reaps it at once, before libvirt's
    /// monitor-EOF handling looks for the process (a zombie still answers `kill(pid, 0)`, and
    /// libvirt then waits 200 ms); then releases `holding`, QEMU's sockets held for exactly
    /// that (``SocketHold``). Returns false when there is no such process here.
    @discardableResult
    public static func endAdoptedQEMU(domain name: String, holding: SocketHold? = nil) -> Bool {
        defer { holding?.release() }
        guard let pid = holding?.pid ?? adoptedQEMU(domain: name) else { return false }
        guard kill(pid, SIGKILL) == 0 else { return false }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        return true
    }

    /// At exit, after the domains were destroyed: waits up to `seconds` for adopted QEMU
    /// processes to end, then kills what is left with SIGKILL and reaps it. Returns the pids
    /// that had to be killed (empty: none was left).
    @discardableResult
    public static func endSurvivors(waiting seconds: Double = 3) -> [pid_t] {
        lock.lock(); let isReaper = started; lock.unlock()
        guard isReaper else { return [] }
        let until = Date().addingTimeInterval(seconds)
        var living = livingQEMUChildren()
        while !living.isEmpty, Date() < until {
            usleep(20_000)
            living = livingQEMUChildren()
        }
        for pid in living {
            kill(pid, SIGKILL)
            var status: Int32 = 0
            _ = waitpid(pid, &status, 0)
        }
        return living
    }

    private static func reapDaemonizedQEMUs(session: pid_t) {
        // Cheap check first: is any child a zombie at all?
        var info = siginfo_t()
        guard waitid(P_ALL, 0, &info, WEXITED | WNOHANG | WNOWAIT) == 0, info._sifields._kill.si_pid != 0 else { return }
        for pid in childProcesses() {
            guard let stat = ProcessStat(pid: pid), stat.state == "Z", stat.session != session,
                  stat.command.hasPrefix("qemu") else { continue }
            var status: Int32 = 0
            _ = waitpid(pid, &status, WNOHANG)
        }
    }

    /// This process's children, from every thread's `/proc/self/task/<tid>/children`.
    private static func childProcesses() -> [pid_t] {
        let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/task")) ?? []
        var out: [pid_t] = []
        for t in tasks {
            guard let text = try? String(contentsOfFile: "/proc/self/task/\(t)/children", encoding: .utf8) else { continue }
            out += text.split(separator: " ").compactMap { pid_t($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
        }
        return out
    }
}

/// The fields of `/proc/<pid>/stat` the reaper needs.
struct ProcessStat {
    var command: String
    var state: Character
    var session: pid_t

    init?(pid: pid_t) {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let open = text.firstIndex(of: "("), let close = text.lastIndex(of: ")") else { return nil }
        command = String(text[text.index(after: open)..<close])
        // After "(comm) ": state ppid pgrp session …
        let fields = text[text.index(close, offsetBy: 2)...].split(separator: " ")
        guard fields.count > 3, let s = fields[0].first, let sid = pid_t(fields[3]) else { return nil }
        state = s
        session = sid
    }
}
