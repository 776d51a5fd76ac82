import CLibvirt
import Foundation

/// Duplicates of an adopted QEMU's sockets (`pidfd_getfd`), held so that QEMU's peers see no
/// EOF when it exits until this process has reaped it.
///
/// Why: an exiting process closes its descriptors before it becomes a zombie. libvirt learns
/// of a killed QEMU from the EOF on its monitor socket and then signals the pid: while the
/// pid exists (a zombie counts), it sleeps 200 ms before it looks again
/// (`virProcessKillPainfully`) and only then calls the domain stopped. Killing and reaping
/// QEMU here (``ChildReaper/endAdoptedQEMU(domain:holding:)``) usually loses that race; with
/// the monitor socket held open, libvirt's EOF comes after the reap, its signal finds no
/// process, and the stop takes a few milliseconds. That matters where the next guest waits
/// for the name: a restored copy's name and UUID are the saved guest's.
///
/// Never read from or written to: the bytes are libvirt's and QEMU's. ``release()`` closes
/// the duplicates; a QEMU that exits on its own (a guest that powers off or crashes) must
/// have them released as soon as it is gone (``processEnded``), or libvirt never sees it stop.
public final class SocketHold: @unchecked Sendable {
    public let pid: pid_t
    private let lock = NSLock()
    private var pidfd: Int32
    private var fds: [Int32]

    private init(pid: pid_t, pidfd: Int32, fds: [Int32]) {
        self.pid = pid
        self.pidfd = pidfd
        self.fds = fds
    }

    deinit { release() }

    /// Holds every socket of the adopted QEMU that runs the domain `name`; nil when there is
    /// no such process here or the kernel does not let this process take its descriptors.
    public static func adoptedQEMU(domain name: String) -> SocketHold? {
        guard let pid = ChildReaper.adoptedQEMU(domain: name) else { return nil }
        let pidfd = isolab_pidfd_open(pid)
        guard pidfd >= 0 else { return nil }
        var held: [Int32] = []
        let dir = "/proc/\(pid)/fd"
        for entry in (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? [] {
            guard let fd = Int32(entry),
                  let target = try? FileManager.default.destinationOfSymbolicLink(atPath: dir + "/" + entry),
                  target.hasPrefix("socket:") else { continue }
            let copy = isolab_pidfd_getfd(pidfd, fd)
            if copy >= 0 {
                _ = fcntl(copy, F_SETFD, FD_CLOEXEC)
                held.append(copy)
            }
        }
        guard !held.isEmpty else { close(pidfd); return nil }
        return SocketHold(pid: pid, pidfd: pidfd, fds: held)
    }

    /// QEMU has exited (its pidfd is readable: a zombie or reaped).
    public var processEnded: Bool {
        lock.lock(); defer { lock.unlock() }
        guard pidfd >= 0 else { return true }
        var p = pollfd(fd: pidfd, events: Int16(POLLIN), revents: 0)
        return poll(&p, 1, 0) > 0
    }

    /// Closes the duplicates (QEMU's peers then see its sockets close). Idempotent.
    public func release() {
        lock.lock()
        let toClose = fds + (pidfd >= 0 ? [pidfd] : [])
        fds = []
        pidfd = -1
        lock.unlock()
        for fd in toClose { close(fd) }
    }
}
