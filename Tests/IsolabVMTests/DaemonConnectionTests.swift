import Foundation
import IsolabLibvirt
import IsolabModel
import IsolabVM
import XCTest

/// A real libvirt daemon (Debian's libvirtd in session mode, with its own configuration,
/// socket, state and cache directories in a temporary directory), reached with
/// `qemu:///session?socket=…` the way `--connect` passes any URI through. Boots a guest
/// with the embedded driver loaded in the same process (it must not capture the URI).
final class DaemonConnectionTests: XCTestCase {
    func testPrivateLibvirtdBootsSwitchNoACSAndStopsLeavingNoProcess() throws {
        _ = try VMTestSupport.connect()  // the embedded driver runs in this process too
        let daemon = try PrivateLibvirtd.start()
        defer { daemon.stop() }
        let image = try GuestBootSupport.image(kernel: "6.1")
        let kernel = daemon.directory + "/guest/bzImage", initrd = daemon.directory + "/guest/initramfs.cpio"
        try FileManager.default.copyItem(atPath: image.kernelPath, toPath: kernel)
        try FileManager.default.copyItem(atPath: image.initramfsPath, toPath: initrd)
        try daemon.handToDaemonUser(daemon.directory + "/guest")

        let start = Date()
        let connection = try LibvirtConnection.open(daemon.uri)
        let connectSeconds = Date().timeIntervalSince(start)
        defer { connection.close() }
        XCTAssertFalse(connection.isEmbedded)
        // With the embedded driver loaded in this process (other tests), the URI goes through
        // the remote driver: qemu+unix:///session?socket=…
        XCTAssertTrue(connection.uri.hasSuffix("///session?socket=" + daemon.directory + "/run/libvirt/libvirt-sock"), connection.uri)
        XCTAssertTrue(connection.hypervisorVersion().hasPrefix("7.2."))

        let topology = try VMTestSupport.topology("switch-no-acs")
        let name = "isolab-daemon-\(getpid())"
        let console = daemon.directory + "/guest/console.log"
        let xml = try DomainXML.render(topology, parameters: DomainParameters(
            name: name, kernelPath: kernel, initrdPath: initrd,
            kernelCommandLine: "console=ttyS0 panic=-1 intel_iommu=on",
            consoleLogPath: console, recordsPath: daemon.directory + "/guest/records.jsonl"))
        let state = EventState()
        let token = try connection.addLifecycleHandler { n, e in if n == name { state.record(e) } }
        defer { connection.removeLifecycleHandler(token) }
        let bootStart = Date()
        let domain = try connection.createDomain(xml: xml)
        if !state.waitStopped(seconds: 150) {
            try? domain.destroy()
            XCTFail("no stopped event from the daemon's guest within 150 s")
        }
        let text = (try? String(contentsOfFile: console, encoding: .utf8)) ?? ""
        print(String(format: "daemon: connect %.2f s, boot to stopped %.2f s, events %@", connectSeconds,
                     Date().timeIntervalSince(bootStart), "\(state.events)"))
        XCTAssertEqual(state.events.last, .stopped(.shutdown), "\(state.events)")
        XCTAssertTrue(text.contains("ISOLAB-INIT: ready"), "console tail:\n\(text.suffix(2000))")
        let seen = ConsoleEnumeration(console: text.replacingOccurrences(of: "\r\n", with: "\n"))
        XCTAssertEqual(seen.byPath["04.0/00.0/01.0/00.0"], "1234:11e8")
        XCTAssertNil(domain.qemuPID(), "a daemon's pid files are not this process's to read")

        connection.close()
        let daemonPID = daemon.pid
        daemon.stop()
        XCTAssertNotEqual(kill(daemonPID, 0), 0, "libvirtd still running")
        XCTAssertEqual(GuestBootSupport.leftoverQEMUs(name), [], "the daemon's QEMU still running")
    }
}

/// libvirtd in session mode with every directory private to one temporary directory. As
/// root it runs as the unprivileged `isolab-test` user (ci/bootstrap.sh creates it): a root
/// libvirtd always uses the system paths under /etc, /run and /var.
final class PrivateLibvirtd: @unchecked Sendable {
    let directory: String
    let uri: String
    private let process = Process()
    private let user: String?
    private var stopped = false

    var pid: Int32 { process.processIdentifier }

    static func start() throws -> PrivateLibvirtd { try PrivateLibvirtd() }

    private init() throws {
        let fm = FileManager.default
        directory = "/tmp/isolab-libvirtd-\(UUID().uuidString.prefix(8))"
        for sub in ["home", "config/libvirt", "run", "cache", "guest"] {
            try fm.createDirectory(atPath: directory + "/" + sub, withIntermediateDirectories: true)
        }
        try """
            security_driver = "none"
            stdio_handler = "file"
            cgroup_controllers = [ ]
            namespaces = [ ]

            """.write(toFile: directory + "/config/libvirt/qemu.conf", atomically: true, encoding: .utf8)
        chmod(directory, 0o755)
        chmod(directory + "/run", 0o700)
        let socket = directory + "/run/libvirt/libvirt-sock"
        uri = "qemu:///session?socket=" + socket
        user = geteuid() == 0 ? "isolab-test" : nil
        if let user { try Self.chown(directory, to: user) }

        let env = ["HOME": directory + "/home", "XDG_CONFIG_HOME": directory + "/config",
                   "XDG_RUNTIME_DIR": directory + "/run", "XDG_CACHE_HOME": directory + "/cache",
                   "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"]
        // --timeout: should this test process die, the idle daemon ends itself.
        let daemon = ["/usr/sbin/libvirtd", "--timeout", "120"]
        if let user {
            // setpriv execs (no fork), so the pid is libvirtd's own.
            process.executableURL = URL(fileURLWithPath: "/usr/bin/setpriv")
            process.arguments = ["--reuid", user, "--regid", user, "--init-groups", "--"] + daemon
        } else {
            process.executableURL = URL(fileURLWithPath: daemon[0])
            process.arguments = Array(daemon.dropFirst())
        }
        process.environment = env
        let log = FileHandle(forWritingAtPath: directory + "/daemon.log")
            ?? { fm.createFile(atPath: directory + "/daemon.log", contents: nil); return FileHandle(forWritingAtPath: directory + "/daemon.log")! }()
        process.standardOutput = log
        process.standardError = log
        process.standardInput = FileHandle.nullDevice
        try process.run()
        let deadline = Date().addingTimeInterval(30)
        while !fm.fileExists(atPath: socket) {
            guard process.isRunning, Date() < deadline else {
                let text = (try? String(contentsOfFile: directory + "/daemon.log", encoding: .utf8)) ?? ""
                stop()
                throw NSError(domain: "PrivateLibvirtd", code: 1,
                              userInfo: [NSLocalizedDescriptionKey: "libvirtd did not create \(socket); log:\n\(text)"])
            }
            usleep(50_000)
        }
    }

    /// Makes `path` (recursively) the daemon user's, so its QEMU can read and write there.
    func handToDaemonUser(_ path: String) throws {
        if let user { try Self.chown(path, to: user) }
    }

    private static func chown(_ path: String, to user: String) throws {
        guard let pw = getpwnam(user) else {
            throw NSError(domain: "PrivateLibvirtd", code: 2, userInfo: [NSLocalizedDescriptionKey: "no user \(user); run ci/bootstrap.sh"])
        }
        let (uid, gid) = (pw.pointee.pw_uid, pw.pointee.pw_gid)
        Glibc.chown(path, uid, gid)
        for sub in FileManager.default.subpaths(atPath: path) ?? [] { Glibc.chown(path + "/" + sub, uid, gid) }
    }

    /// SIGTERM, then SIGKILL after 20 s; removes the directory. Idempotent.
    func stop() {
        guard !stopped else { return }
        stopped = true
        if process.isRunning {
            kill(pid, SIGTERM)
            let deadline = Date().addingTimeInterval(20)
            while process.isRunning && Date() < deadline { usleep(50_000) }
            if process.isRunning { kill(pid, SIGKILL); process.waitUntilExit() }
        }
        try? FileManager.default.removeItem(atPath: directory)
    }
}
