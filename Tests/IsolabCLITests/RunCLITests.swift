import Foundation
import XCTest

/// `isolab run` end to end: real guests through the embedded libvirt driver.
final class RunCLITests: XCTestCase {
    func binary() throws -> URL {
        let b = Bundle(for: RunCLITests.self).bundleURL
        guard let bin = [b, b.deletingLastPathComponent()].map({ $0.appendingPathComponent("isolab") })
            .first(where: { FileManager.default.isExecutableFile(atPath: $0.path) }) else {
            XCTFail("isolab binary not built: run swift build first")
            throw CocoaError(.fileNoSuchFile)
        }
        return bin
    }

    func qemuCount() -> Int {
        let fm = FileManager.default
        return ((try? fm.contentsOfDirectory(atPath: "/proc")) ?? []).filter { pid in
            guard Int(pid) != nil, let raw = fm.contents(atPath: "/proc/\(pid)/cmdline") else { return false }
            let cmd = String(decoding: raw, as: UTF8.self)
            return cmd.contains("qemu-system") && cmd.contains("guest=isolab-")
        }.count
    }

    func testRunPrintsObservedGroupsInPredictsShape() throws {
        let p = Process()
        p.executableURL = try binary()
        p.arguments = ["run", "topologies/switch-no-acs.yaml", "--kernel", "6.1", "--format", "json"]
        p.currentDirectoryURL = CLITests.root
        let out = Pipe()
        p.standardOutput = out
        try p.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        XCTAssertEqual(p.terminationStatus, 0)
        let doc = try JSONSerialization.jsonObject(with: data) as? [String: Any]
        let run = (doc?["runs"] as? [[String: Any]])?.first
        let observed = run?["observed"] as? [String: Any]
        let groups = observed?["groups"] as? [[String: Any]] ?? []
        let members = groups.map { ($0["members"] as? [[String: Any]] ?? []).compactMap { $0["node"] as? String } }
        XCTAssertTrue(members.contains(["dp0", "A"]), "\(members)")
        XCTAssertTrue(members.contains(["dp1", "B"]), "\(members)")
        let scenarios = observed?["scenarios"] as? [[String: Any]] ?? []
        XCTAssertEqual(scenarios.first?["outcome"] as? String, "completed")
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
        XCTAssertEqual(scenarios.count, 3, "every scenario is reported, finished or not")
        XCTAssertTrue(scenarios.allSatisfy { ["interrupted", "completed"].contains($0["outcome"] as? String ?? "") })
    }
}
