import Foundation
@testable import IsolabLibvirt
import XCTest

final class EmbeddedRootTests: XCTestCase {
    func testQemuConfAsRootNamesTheCallerAndAsUserOnlyTheFourDriverLines() {
        let root = EmbeddedRoot.qemuConf(user: "root", group: "root")
        XCTAssertTrue(root.contains("user = \"root\"\ngroup = \"root\"\n"))
        for line in ["security_driver = \"none\"", "stdio_handler = \"file\"", "cgroup_controllers = [ ]", "namespaces = [ ]"] {
            XCTAssertTrue(root.contains(line + "\n"), line)
        }
        let user = EmbeddedRoot.qemuConf(user: nil, group: nil)
        XCTAssertFalse(user.contains("user ="))
        XCTAssertFalse(user.contains("group ="))
        XCTAssertEqual(user.split(separator: "\n").filter { !$0.hasPrefix("#") }.count, 4)
    }

    func testStateDirectoryFollowsXDGStateHome() {
        XCTAssertEqual(EmbeddedRoot.defaultStateDirectory(environment: ["XDG_STATE_HOME": "/x/state", "HOME": "/h"]),
                       "/x/state/isolab/libvirt")
        XCTAssertEqual(EmbeddedRoot.defaultStateDirectory(environment: ["HOME": "/h"]), "/h/.local/state/isolab/libvirt")
        XCTAssertEqual(EmbeddedRoot.defaultStateDirectory(environment: ["XDG_STATE_HOME": "relative", "HOME": "/h"]),
                       "/h/.local/state/isolab/libvirt")
    }

    func testEmbeddedURIRootIsParsed() {
        XCTAssertEqual(LibvirtConnection.embeddedRoot("qemu:///embed?root=/a/b"), "/a/b")
        XCTAssertNil(LibvirtConnection.embeddedRoot("qemu:///system"))
        XCTAssertNil(LibvirtConnection.embeddedRoot("qemu+ssh://host/embed?root=/a"))
    }

    /// Two isolab processes on one state directory at once: libvirt refuses a second
    /// process on a root in use ("Failed to acquire pid file …driver.pid"), so the second
    /// gets `root-<pid>`, seeded with the shared capabilities cache, removed at its exit.
    func testSecondProcessOnABusyStateDirectoryGetsAPrivateRootThatIsRemovedAtExit() throws {
        let state = NSTemporaryDirectory() + "isolab-roots-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: state, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: state) }
        // A private root left by a process that died: its lock is free, so it is swept.
        try FileManager.default.createDirectory(atPath: state + "/root-999999999/etc", withIntermediateDirectories: true)
        FileManager.default.createFile(atPath: state + "/root-999999999/isolab-root.lock", contents: nil)

        let holder = try HelperProcess(state: state, hold: true)
        defer { holder.stop() }
        let a = try holder.report(deadline: 120)
        XCTAssertEqual(a["path"], state)
        XCTAssertEqual(a["private"], "false")

        let prober = try HelperProcess(state: state, hold: false)
        defer { prober.stop() }
        let b = try prober.report(deadline: 120)
        XCTAssertEqual(b["path"], state + "/root-\(prober.pid)")
        XCTAssertEqual(b["private"], "true")
        XCTAssertTrue(prober.waitExit(deadline: 60), "the second helper did not finish")
        XCTAssertEqual(prober.status, 0, prober.output)
        XCTAssertFalse(FileManager.default.fileExists(atPath: state + "/root-\(prober.pid)"), "private root left behind")
        XCTAssertFalse(FileManager.default.fileExists(atPath: state + "/root-999999999"), "stale private root not swept")
        print("embedded roots: first process (fresh root) connect \(a["connect"] ?? "?") s, create \(a["create"] ?? "?") s; "
              + "second process (private root, seeded cache) connect \(b["connect"] ?? "?") s, create \(b["create"] ?? "?") s")
        if let seconds = Double(b["connect"] ?? "") { XCTAssertLessThan(seconds, 3, "the private root probed QEMU again") }

        holder.stop()
        XCTAssertTrue(holder.waitExit(deadline: 60))
        XCTAssertEqual(holder.status, 0, holder.output)
        // The holder left a domain running when it exited; its exit handler destroyed it.
        let left = "isolab-helper-left-\(holder.pid)"
        XCTAssertTrue(holder.output.contains("HELPER-LEFT \(left)"), holder.output)
        XCTAssertEqual(LibvirtTestSupport.qemuProcesses(named: left), [], "a domain outlived the process that started it")
    }
}

extension EmbeddedRootTests {
    /// As an ordinary user the embedded driver needs no `user`/`group` lines and no
    /// `libvirt-qemu` account (PERF-NOTES); QEMU runs as that user.
    func testOrdinaryUserOpensItsOwnEmbeddedRootWithoutUserAndGroupLines() throws {
        guard geteuid() == 0 else { return XCTFail("switching to isolab-test needs root: run ci/test as root") }
        guard let pw = getpwnam("isolab-test") else { return XCTFail("user isolab-test missing: run ci/bootstrap.sh") }
        let state = NSTemporaryDirectory() + "isolab-user-root-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: state, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: state) }
        chown(state, pw.pointee.pw_uid, pw.pointee.pw_gid)
        let helper = try HelperProcess(state: state, hold: false, user: "isolab-test")
        defer { helper.stop() }
        let fields = try helper.report(deadline: 120)
        XCTAssertEqual(fields["path"], state)
        XCTAssertTrue(helper.waitExit(deadline: 60))
        XCTAssertEqual(helper.status, 0, helper.output)
        let conf = try String(contentsOfFile: state + "/etc/qemu.conf", encoding: .utf8)
        XCTAssertEqual(conf, EmbeddedRoot.qemuConf(user: nil, group: nil))
    }
}

/// Runs in a helper process started by `HelperProcess` (does nothing otherwise): opens the
/// embedded root of `ISOLAB_HELPER_STATE`, starts and destroys a paused domain, prints
/// one `HELPER key=value …` line, and with `ISOLAB_HELPER_HOLD` keeps the root until its
/// standard input closes.
final class EmbeddedRootHelper: XCTestCase {
    func testHelperOpensAnEmbeddedRoot() throws {
        let env = ProcessInfo.processInfo.environment
        guard let state = env["ISOLAB_HELPER_STATE"] else { return }   // only meaningful as a helper process
        var t = Date()
        let c = try EmbeddedRoot.connect(stateDirectory: state)
        let connect = Date().timeIntervalSince(t)
        let selection = try XCTUnwrap(EmbeddedRoot.current)
        t = Date()
        let d = try c.createDomain(xml: LibvirtTestSupport.tinyDomain("isolab-helper-\(getpid())"), paused: true)
        let create = Date().timeIntervalSince(t)
        try d.destroy()
        print(String(format: "HELPER path=%@ private=%@ connect=%.3f create=%.3f", selection.path,
                     selection.isPrivate ? "true" : "false", connect, create))
        fflush(stdout)
        if env["ISOLAB_HELPER_HOLD"] != nil {
            // Left running on purpose: the exit handler must destroy it.
            let left = "isolab-helper-left-\(getpid())"
            _ = try c.createDomain(xml: LibvirtTestSupport.tinyDomain(left), paused: true, autodestroy: false)
            print("HELPER-LEFT \(left)")
            fflush(stdout)
            _ = FileHandle.standardInput.readDataToEndOfFile()
        }
    }
}

/// This test binary run again as a helper process, filtered to `EmbeddedRootHelper`.
final class HelperProcess: @unchecked Sendable {
    let process = Process()
    private let input = Pipe()
    private let lock = NSCondition()
    private var text = ""
    private var exited = false
    private var copiedBinary: String?

    var pid: Int32 { process.processIdentifier }
    var status: Int32 { process.terminationStatus }
    var output: String { lock.lock(); defer { lock.unlock() }; return text }

    /// - Parameter user: run as this user (needs root), with a minimal environment.
    init(state: String, hold: Bool, user: String? = nil) throws {
        var test = [ProcessInfo.processInfo.arguments[0], "IsolabLibvirtTests.EmbeddedRootHelper/testHelperOpensAnEmbeddedRoot"]
        var env = ProcessInfo.processInfo.environment
        if let user {
            // A copy any user can run (the checkout may sit under /root).
            let copy = NSTemporaryDirectory() + "isolab-helper-\(UUID().uuidString.prefix(8))"
            try FileManager.default.createDirectory(atPath: copy, withIntermediateDirectories: true)
            try FileManager.default.copyItem(atPath: test[0], toPath: copy + "/tests")
            chmod(copy, 0o755)
            chmod(copy + "/tests", 0o755)
            copiedBinary = copy
            test[0] = copy + "/tests"
            process.executableURL = URL(fileURLWithPath: "/usr/bin/setpriv")
            process.arguments = ["--reuid", user, "--regid", user, "--init-groups", "--"] + test
            // Its own home: even embedded, libvirt creates ~/.cache/libvirt/hostdevmgr there.
            env = ["PATH": "/usr/bin:/bin", "HOME": getpwnam(user).map { String(cString: $0.pointee.pw_dir) } ?? "/"]
        } else {
            process.executableURL = URL(fileURLWithPath: test[0])
            process.arguments = Array(test.dropFirst())
        }
        env["ISOLAB_HELPER_STATE"] = state
        if hold { env["ISOLAB_HELPER_HOLD"] = "1" }
        process.environment = env
        let out = Pipe()
        process.standardOutput = out
        process.standardError = out
        process.standardInput = input
        out.fileHandleForReading.readabilityHandler = { [weak self] h in
            let d = h.availableData
            guard let self else { return }
            self.lock.lock()
            if d.isEmpty { h.readabilityHandler = nil } else { self.text += String(decoding: d, as: UTF8.self) }
            self.lock.broadcast()
            self.lock.unlock()
        }
        process.terminationHandler = { [weak self] _ in
            guard let self else { return }
            self.lock.lock(); self.exited = true; self.lock.broadcast(); self.lock.unlock()
        }
        try process.run()
    }

    /// The `HELPER` line's fields, once printed (or an error at the deadline).
    func report(deadline seconds: Double) throws -> [String: String] {
        let deadline = Date().addingTimeInterval(seconds)
        lock.lock(); defer { lock.unlock() }
        while true {
            if let line = text.split(separator: "\n").first(where: { $0.hasPrefix("HELPER ") }) {
                var fields: [String: String] = [:]
                for word in line.split(separator: " ").dropFirst() {
                    let kv = word.split(separator: "=", maxSplits: 1)
                    if kv.count == 2 { fields[String(kv[0])] = String(kv[1]) }
                }
                return fields
            }
            if exited || !lock.wait(until: deadline) {
                throw NSError(domain: "HelperProcess", code: 1, userInfo: [NSLocalizedDescriptionKey: "no HELPER line; output:\n\(text)"])
            }
        }
    }

    func waitExit(deadline seconds: Double) -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        lock.lock(); defer { lock.unlock() }
        while !exited { if !lock.wait(until: deadline) { return exited } }
        return true
    }

    /// Lets a holding helper finish; kills it if it does not.
    func stop() {
        try? input.fileHandleForWriting.close()
        if !waitExit(deadline: 20), process.isRunning { kill(pid, SIGKILL) }
        if let copiedBinary { try? FileManager.default.removeItem(atPath: copiedBinary) }
    }
}
