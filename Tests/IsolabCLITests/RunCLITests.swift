import Foundation
import XCTest

/// `isolab run` end to end: real guests through the embedded libvirt driver.
final class RunCLITests: XCTestCase {
    func binary() throws -> URL { try CLISupport.binary() }
    func qemuCount() -> Int { CLISupport.qemuCount() }

    /// `isolab ARGUMENTS` from the repository, its exit status and the first run's `observed`.
    func runJSON(_ arguments: [String]) throws -> (status: Int32, observed: [String: Any]?) {
        let p = Process()
        p.executableURL = try binary()
        p.arguments = arguments
        p.currentDirectoryURL = CLITests.root
        let out = Pipe()
        p.standardOutput = out
        try p.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        let doc = try? JSONSerialization.jsonObject(with: data) as? [String: Any]
        return (p.terminationStatus, (doc?["runs"] as? [[String: Any]])?.first?["observed"] as? [String: Any])
    }

    func testRunPrintsObservedGroupsInPredictsShape() throws {
        let (status, observed) = try runJSON(["run", "topologies/switch-no-acs.yaml", "--kernel", "6.1", "--format", "json"])
        XCTAssertEqual(status, 0)
        let groups = observed?["groups"] as? [[String: Any]] ?? []
        let members = groups.map { ($0["members"] as? [[String: Any]] ?? []).compactMap { $0["node"] as? String } }
        XCTAssertTrue(members.contains(["dp0", "A"]), "\(members)")
        XCTAssertTrue(members.contains(["dp1", "B"]), "\(members)")
        let scenarios = observed?["scenarios"] as? [[String: Any]] ?? []
        XCTAssertEqual(scenarios.first?["outcome"] as? String, "completed")
        XCTAssertEqual(qemuCount(), 0)
    }

    /// `--clock icount` changes how long waits take, not what the kernel does: the same groups
    /// and step results as on the host's clock, and the observations say which clock ran.
    func testICountClockObservesWhatTheHostClockDoes() throws {
        func run(_ extra: [String]) throws -> [String: Any] {
            let (status, observed) = try runJSON(["run", "topologies/switch-no-acs.yaml", "--kernel", "6.1", "--format", "json"] + extra)
            XCTAssertEqual(status, 0, "\(extra)")
            return try XCTUnwrap(observed)
        }
        func facts(_ observed: [String: Any]) -> [String] {
            let groups = (observed["groups"] as? [[String: Any]] ?? []).map {
                ($0["members"] as? [[String: Any]] ?? []).compactMap { $0["node"] as? String }.joined(separator: "+")
            }
            let steps = (observed["scenarios"] as? [[String: Any]] ?? []).flatMap { s in
                (s["steps"] as? [[String: Any]] ?? []).map { "\(s["scenario"] ?? "") \($0["index"] ?? "") \($0["result"] ?? "")" }
            }
            return groups + steps
        }
        let host = try run([]), icount = try run(["--clock", "icount"])
        XCTAssertEqual(facts(icount), facts(host))
        XCTAssertGreaterThan(facts(host).count, 6)
        for (observed, clock) in [(host, nil), (icount, "icount")] as [([String: Any], String?)] {
            for s in observed["scenarios"] as? [[String: Any]] ?? [] {
                XCTAssertEqual(s["outcome"] as? String, "completed")
                XCTAssertEqual((s["boot"] as? [String: Any])?["clock"] as? String, clock)
            }
        }
        XCTAssertEqual(qemuCount(), 0)
    }

    func testSIGINTDestroysEveryGuestKeepsResultsAndExits130() throws {
        let p = Process()
        p.executableURL = try binary()
        p.arguments = ["run", "topologies/multifunction-e1000e-edu.yaml", "--kernel", "6.1", "--jobs", "2", "--format", "json"]
        p.currentDirectoryURL = CLITests.root
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        try p.run()
        let deadline = Date().addingTimeInterval(180)
        while qemuCount() < 2, Date() < deadline, p.isRunning { Thread.sleep(forTimeInterval: 0.05) }
        XCTAssertEqual(qemuCount(), 2, "two guests should be running")
        kill(p.processIdentifier, SIGINT)
        let data = out.fileHandleForReading.readDataToEndOfFile()
        _ = err.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        XCTAssertEqual(p.terminationStatus, 130)
        XCTAssertEqual(qemuCount(), 0, "no QEMU may outlive isolab")
        let doc = try JSONSerialization.jsonObject(with: data) as? [String: Any]
        let scenarios = (((doc?["runs"] as? [[String: Any]])?.first?["observed"] as? [String: Any])?["scenarios"] as? [[String: Any]]) ?? []
        let declared = try String(contentsOf: CLITests.root.appendingPathComponent("topologies/multifunction-e1000e-edu.yaml"), encoding: .utf8)
            .components(separatedBy: "\n").filter { $0.hasPrefix("  - name: ") }.count
        XCTAssertEqual(scenarios.count, declared, "every scenario is reported, finished or not")
        XCTAssertTrue(scenarios.allSatisfy { ["interrupted", "completed"].contains($0["outcome"] as? String ?? "") })
    }

    /// An ordinary user runs a fabric on the embedded driver: libvirt state, runs and image cache
    /// all land in that user's XDG folders.
    func testOrdinaryUserRunsAFabricWithStateInItsOwnFolders() throws {
        let user = "isolab-test"
        guard getuid() == 0 else { return XCTFail("run the tests as root (ci/test does) so they can switch to \(user)") }
        guard let pw = getpwnam(user) else { return XCTFail("user \(user) missing: run ci/bootstrap.sh") }
        let home = String(cString: pw.pointee.pw_dir)
        // A copy of what the run needs that any user can read (the checkout may sit under /root).
        let shared = FileManager.default.temporaryDirectory.appendingPathComponent("isolab-user-run-\(getpid())").path
        defer { try? FileManager.default.removeItem(atPath: shared) }
        let fm = FileManager.default
        try fm.createDirectory(atPath: shared + "/topologies", withIntermediateDirectories: true)
        try fm.copyItem(atPath: try binary().path, toPath: shared + "/isolab")
        try fm.copyItem(atPath: CLITests.root.appendingPathComponent("vm-images").path, toPath: shared + "/vm-images")
        try fm.copyItem(atPath: CLITests.root.appendingPathComponent("topologies/nvme-alone.yaml").path, toPath: shared + "/topologies/nvme-alone.yaml")
        try fm.copyItem(atPath: CLITests.root.appendingPathComponent(".build-agent/release/isolab-agent").path, toPath: shared + "/isolab-agent")
        let chmod = Process()
        chmod.executableURL = URL(fileURLWithPath: "/bin/chmod")
        chmod.arguments = ["-R", "a+rX", shared]
        try chmod.run(); chmod.waitUntilExit()

        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/sbin/runuser")
        p.arguments = ["-u", user, "--", "env", "-i", "HOME=\(home)", "USER=\(user)", "LOGNAME=\(user)",
                       "PATH=/usr/local/bin:/usr/bin:/bin", "ISOLAB_AGENT=\(shared)/isolab-agent",
                       shared + "/isolab", "run", "topologies/nvme-alone.yaml", "--kernel", "6.1", "--format", "json"]
        p.currentDirectoryURL = URL(fileURLWithPath: shared)
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        try p.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        let e = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        XCTAssertEqual(p.terminationStatus, 0, e)
        let doc = try JSONSerialization.jsonObject(with: data) as? [String: Any]
        let observed = (doc?["runs"] as? [[String: Any]])?.first?["observed"] as? [String: Any]
        let scenarios = observed?["scenarios"] as? [[String: Any]] ?? []
        XCTAssertEqual(scenarios.first?["outcome"] as? String, "completed", e)
        XCTAssertTrue((scenarios.first?["consolePath"] as? String)?.hasPrefix(home + "/.local/state/isolab/runs/") == true)
        XCTAssertTrue(fm.fileExists(atPath: home + "/.local/state/isolab/libvirt/etc/qemu.conf"), "embedded root in the user's state folder")
        XCTAssertTrue(fm.fileExists(atPath: home + "/.cache/isolab/images"), "images in the user's cache")
        XCTAssertEqual(qemuCount(), 0)
    }

    /// --accel kvm must prove KVM within a deadline; this machine's /dev/kvm cannot run an
    /// ordinary guest, so the run ends with exit 3 and a reason, and no QEMU is left behind.
    func testAccelKVMIsProbedAndRefusedCleanlyWhereKVMDoesNotWork() throws {
        let p = Process()
        p.executableURL = try binary()
        p.arguments = ["run", "topologies/nvme-alone.yaml", "--kernel", "6.1", "--accel", "kvm"]
        p.currentDirectoryURL = CLITests.root
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        try p.run()
        _ = out.fileHandleForReading.readDataToEndOfFile()
        let e = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        XCTAssertEqual(p.terminationStatus, 3, e)
        XCTAssertTrue(e.contains("KVM does not work here"), e)
        XCTAssertEqual(qemuCount(), 0)
    }

    /// --interactive: the plan runs, then a shell on the guest console answers this process's
    /// input; powering off ends the session and nothing is left running.
    func testInteractiveSessionGivesAShellOnTheGuestConsole() throws {
        let p = Process()
        p.executableURL = try binary()
        p.arguments = ["run", "topologies/switch-no-acs.yaml", "--kernel", "6.1", "--interactive", "--scenario", "p2p-between-switch-ports"]
        p.currentDirectoryURL = CLITests.root
        let input = Pipe(), out = Pipe()
        p.standardInput = input
        p.standardOutput = out
        p.standardError = FileHandle.nullDevice
        let seen = TextBox()
        out.fileHandleForReading.readabilityHandler = { h in seen.append(String(decoding: h.availableData, as: UTF8.self)) }
        try p.run()
        XCTAssertTrue(seen.wait(for: "ISOLAB-INIT: shell", seconds: 150), seen.text.suffix(2000).description)
        input.fileHandleForWriting.write(Data("echo MARK-$((6*7))\n".utf8))
        XCTAssertTrue(seen.wait(for: "MARK-42", seconds: 30), seen.text.suffix(2000).description)
        input.fileHandleForWriting.write(Data("poweroff -f\n".utf8))
        let deadline = Date().addingTimeInterval(60)
        while p.isRunning, Date() < deadline { Thread.sleep(forTimeInterval: 0.1) }
        if p.isRunning { p.interrupt() }
        p.waitUntilExit()
        out.fileHandleForReading.readabilityHandler = nil
        XCTAssertEqual(p.terminationStatus, 0)
        XCTAssertEqual(qemuCount(), 0)
    }
}

/// Output gathered from another process, waited on by content.
final class TextBox: @unchecked Sendable {
    private let lock = NSCondition()
    private(set) var text = ""
    func append(_ s: String) { lock.lock(); text += s; lock.broadcast(); lock.unlock() }
    func wait(for needle: String, seconds: Double) -> Bool {
        let until = Date().addingTimeInterval(seconds)
        lock.lock(); defer { lock.unlock() }
        while !text.contains(needle) { if !lock.wait(until: until) { return text.contains(needle) } }
        return true
    }
}
