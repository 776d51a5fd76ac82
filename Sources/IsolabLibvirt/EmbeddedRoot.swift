import Foundation
import Logging

/// The embedded QEMU driver's root (`qemu:///embed?root=<dir>`): isolab's default
/// connection, with no daemon.
///
/// Facts this follows (measured with libvirt 9.0):
/// - A process can use **one** embedded root for its whole life: opening another fails
///   ("Cannot open embedded driver at path …, already open with path …"), even after every
///   connection to the first is closed, and the driver keeps `<root>/run/qemu/driver.pid`
///   locked until the process exits.
/// - A second process opening a root in use fails ("Failed to acquire pid file
///   '<root>/run/qemu/driver.pid': Resource temporarily unavailable").
/// - The first connection to a root with an empty `cache/qemu` probes QEMU for about 8 s;
///   with the capabilities files copied from another root it takes about 0.05 s.
///
/// So the first isolab process takes the shared root (the state directory itself, guarded
/// by an isolab lock); a process that finds it taken uses a private root
/// `<state>/root-<pid>` seeded with the shared capabilities cache, and removes it at exit.
public enum EmbeddedRoot {
    /// The root this process uses, once chosen.
    public struct Selection: Sendable, Equatable {
        public var path: String
        /// A per-process root (the shared one was in use by another process).
        public var isPrivate: Bool
        public var uri: String { "qemu:///embed?root=" + path }
    }

    /// `$XDG_STATE_HOME/isolab/libvirt`, by default `~/.local/state/isolab/libvirt`.
    public static func defaultStateDirectory(environment: [String: String] = ProcessInfo.processInfo.environment) -> String {
        let base: String
        if let xdg = environment["XDG_STATE_HOME"], xdg.hasPrefix("/") {
            base = xdg
        } else {
            base = (environment["HOME"] ?? NSHomeDirectory()) + "/.local/state"
        }
        return base + "/isolab/libvirt"
    }

    /// `<root>/etc/qemu.conf` for the caller: QEMU runs as the caller, with no security
    /// driver, no virtlogd, no cgroups and no namespaces. `user`/`group` only as root.
    public static func qemuConf(user: String?, group: String?) -> String {
        var lines = ["# Written by isolab for its embedded libvirt root; rewritten on every connect."]
        if let user { lines.append("user = \"\(user)\"") }
        if let group { lines.append("group = \"\(group)\"") }
        lines += ["security_driver = \"none\"", "stdio_handler = \"file\"", "cgroup_controllers = [ ]", "namespaces = [ ]"]
        // Files stay as they are: no chown of kernels and logs, no ownership xattrs to remember.
        if user != nil { lines += ["dynamic_ownership = 0", "remember_owner = 0"] }
        return lines.joined(separator: "\n") + "\n"
    }

    /// The configuration for this process's user.
    static func qemuConfForCaller() throws -> String {
        guard geteuid() == 0 else { return qemuConf(user: nil, group: nil) }
        // As root, libvirt resolves its compiled-in default user before reading qemu.conf.
        guard getpwnam("libvirt-qemu") != nil, getgrnam("libvirt-qemu") != nil else {
            throw LibvirtError.wrapper("the embedded libvirt driver needs the user and group 'libvirt-qemu' when run as root; run ci/bootstrap.sh")
        }
        let user = getpwuid(geteuid()).map { String(cString: $0.pointee.pw_name) } ?? "root"
        let group = getgrgid(getegid()).map { String(cString: $0.pointee.gr_name) } ?? "root"
        return qemuConf(user: user, group: group)
    }

    private static let lock = NSLock()
    nonisolated(unsafe) private static var chosen: Selection?
    nonisolated(unsafe) private static var sharedRoot: String?
    nonisolated(unsafe) private static var opened = false

    /// The root this process has chosen, if it has opened one.
    public static var current: Selection? {
        lock.lock(); defer { lock.unlock() }
        return chosen
    }

    /// Opens a connection to this process's embedded root under `stateDirectory`, choosing
    /// the root on the first call (later calls reuse it, whatever directory they name).
    public static func connect(stateDirectory: String = defaultStateDirectory()) throws -> LibvirtConnection {
        let selection = try select(stateDirectory: stateDirectory)
        let connection = try LibvirtConnection.open(selection.uri)
        lock.lock(); defer { lock.unlock() }
        if !opened {
            opened = true
            // A private root probed QEMU itself if the shared cache was empty or stale:
            // hand the result on so the next process need not.
            if selection.isPrivate, let shared = sharedRoot { copyCapabilities(from: selection.path, to: shared) }
            atexit { EmbeddedRoot.cleanUpAtExit() }
        }
        return connection
    }

    private static func select(stateDirectory: String) throws -> Selection {
        lock.lock(); defer { lock.unlock() }
        if let chosen { return chosen }
        let state = (stateDirectory as NSString).standardizingPath
        sharedRoot = state
        let fm = FileManager.default
        try fm.createDirectory(atPath: state, withIntermediateDirectories: true)
        let conf = try qemuConfForCaller()
        EventLoop.logFile = state + "/libvirt.log"
        if let size = (try? fm.attributesOfItem(atPath: state + "/libvirt.log"))?[.size] as? Int, size > 1 << 20 {
            try? fm.removeItem(atPath: state + "/libvirt.log")
        }
        removeStalePrivateRoots(in: state)
        let selection: Selection
        if holdLock(state + "/isolab-root.lock") {
            selection = Selection(path: state, isPrivate: false)
            try writeConfiguration(conf, root: state)
        } else {
            let root = state + "/root-\(getpid())"
            try? fm.removeItem(atPath: root)
            try fm.createDirectory(atPath: root, withIntermediateDirectories: true)
            guard holdLock(root + "/isolab-root.lock") else {
                throw LibvirtError.wrapper("cannot lock the private embedded root \(root)")
            }
            try writeConfiguration(conf, root: root)
            copyCapabilities(from: state, to: root)
            selection = Selection(path: root, isPrivate: true)
        }
        chosen = selection
        return selection
    }

    private static func writeConfiguration(_ conf: String, root: String) throws {
        let path = root + "/etc/qemu.conf"
        try FileManager.default.createDirectory(atPath: root + "/etc", withIntermediateDirectories: true)
        if (try? String(contentsOfFile: path, encoding: .utf8)) != conf {
            try conf.write(toFile: path, atomically: true, encoding: .utf8)
        }
    }

    /// Takes an exclusive `flock` on `path` and keeps it for the life of the process (the
    /// driver keeps its root until then anyway). False if another process holds it.
    private static func holdLock(_ path: String) -> Bool {
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else { return false }
        if flock(fd, LOCK_EX | LOCK_NB) == 0 { return true }
        close(fd)
        return false
    }

    static func capabilitiesDirectory(_ root: String) -> String { root + "/cache/qemu/capabilities" }

    /// Copies the QEMU capabilities files that `from` has and `to` lacks or has older.
    static func copyCapabilities(from: String, to: String) {
        let fm = FileManager.default
        let src = capabilitiesDirectory(from), dst = capabilitiesDirectory(to)
        guard let files = try? fm.contentsOfDirectory(atPath: src) else { return }
        try? fm.createDirectory(atPath: dst, withIntermediateDirectories: true)
        for f in files where f.hasSuffix(".xml") {
            let s = src + "/" + f, d = dst + "/" + f
            let sm = (try? fm.attributesOfItem(atPath: s))?[.modificationDate] as? Date
            let dm = (try? fm.attributesOfItem(atPath: d))?[.modificationDate] as? Date
            guard let sm, dm.map({ $0 < sm }) ?? true else { continue }
            let tmp = d + ".isolab-\(getpid()).tmp"
            try? fm.removeItem(atPath: tmp)
            guard (try? fm.copyItem(atPath: s, toPath: tmp)) != nil else { continue }
            if rename(tmp, d) != 0 { try? fm.removeItem(atPath: tmp) }
        }
    }

    /// Removes `root-<pid>` directories whose process is gone (their lock is free).
    private static func removeStalePrivateRoots(in state: String) {
        let fm = FileManager.default
        guard let entries = try? fm.contentsOfDirectory(atPath: state) else { return }
        for e in entries where e.hasPrefix("root-") {
            let dir = state + "/" + e
            let fd = open(dir + "/isolab-root.lock", O_RDWR | O_CLOEXEC)
            if fd < 0 {
                try? fm.removeItem(atPath: dir)
                continue
            }
            if flock(fd, LOCK_EX | LOCK_NB) == 0 { try? fm.removeItem(atPath: dir) }
            close(fd)
        }
    }

    /// At exit: destroy the domains still running in this process's root (nothing is left
    /// running after isolab exits, even if a connection was never closed), and remove a
    /// private root.
    static func cleanUpAtExit() {
        guard let selection = current else { return }
        if let c = try? LibvirtConnection.open(selection.uri) {
            for d in (try? c.activeDomains()) ?? [] { try? d.destroy() }
            c.close()
        }
        // As subreaper this process adopted every QEMU its driver started: whatever still runs
        // now escaped libvirt, and is ended here so that nothing outlives isolab.
        let killed = ChildReaper.endSurvivors()
        if !killed.isEmpty {
            Logger(label: "isolab.libvirt").warning("killed \(killed.count) QEMU process(es) left running at exit: \(killed.map(String.init).joined(separator: ", "))")
        }
        if selection.isPrivate { try? FileManager.default.removeItem(atPath: selection.path) }
    }
}

extension LibvirtConnection {
    /// `--connect`: nil opens this process's embedded root (`EmbeddedRoot.connect()`);
    /// any URI (`qemu:///system`, `qemu+ssh://host/system`, …) is passed to libvirt as is.
    public static func open(connect uri: String?) throws -> LibvirtConnection {
        guard let uri else { return try EmbeddedRoot.connect() }
        // An embedded root named by URI gets the same qemu.conf and root handling as the default.
        if let root = embeddedRoot(uri) { return try EmbeddedRoot.connect(stateDirectory: root) }
        return try open(uri)
    }
}
