import Foundation
import IsolabModel
import IsolabProtocol
import IsolabVM
import XCTest

/// A guest that hangs, a kernel that dies, QEMU killed under a run, an emulator that does not
/// exist: each is reported as what it is, earlier results are kept, and no QEMU is left.
final class FaultTests: XCTestCase {
    override func tearDown() {
        XCTAssertEqual(BootSupport.leftoverQEMU(), [])
    }

    func scenarioRequest() throws -> RunRequest {
        let t = try BootSupport.topology("multifunction-e1000e-edu")
        return try BootSupport.request(t, kernel: "6.1", scenario: t.scenarios[0])
    }

    func testHungGuestIsDestroyedAtItsDeadline() throws {
        var req = try scenarioRequest()
        req.extraKernelArguments = ["isolab.stall"]
        req.bootDeadline = 20
        let obs = try BootSupport.runner().run(req)
        XCTAssertEqual(obs.outcome, .hung, obs.problem ?? "")
        XCTAssertTrue(obs.problem?.contains("no agent record 20 s") == true, obs.problem ?? "")
        XCTAssertFalse(obs.consoleTail.isEmpty)
        XCTAssertTrue(obs.steps.allSatisfy { $0.result == "not-run" })
    }

    func testKernelPanicIsACrashWithTheLinesThatShowIt() throws {
        var req = try scenarioRequest()
        req.extraKernelArguments = ["isolab.panic"]
        let obs = try BootSupport.runner().run(req)
        XCTAssertEqual(obs.outcome, .crashed, obs.problem ?? "")
        XCTAssertTrue(obs.crashLines.contains { $0.contains("Kernel panic") || $0.contains("sysrq") }, obs.crashLines.joined(separator: "\n"))
    }

    func testQEMUKilledMidRunIsInfrastructureAndKeepsEarlierRecords() throws {
        let req = try scenarioRequest()
        let result = LockedBox<VMObservation>()
        let thread = Thread { result.set(try! BootSupport.runner().run(req)) }
        thread.start()
        // Wait until the inventory is complete (the first step has started), then kill QEMU under the run.
        let records = RunFiles(directory: req.directory).records
        let deadline = Date().addingTimeInterval(120)
        var killed = false
        while Date() < deadline, result.get() == nil {
            let text = (try? String(contentsOfFile: records, encoding: .utf8)) ?? ""
            if text.contains("\"step-start\""), let pid = BootSupport.qemuPID(domainPrefix: "isolab-\(req.topology.name)-6.1-") {
                kill(pid, SIGKILL)
                killed = true
                break
            }
            Thread.sleep(forTimeInterval: 0.02)
        }
        XCTAssertTrue(killed, "never saw the guest's inventory")
        while result.get() == nil { Thread.sleep(forTimeInterval: 0.05) }
        let obs = result.get()!
        XCTAssertEqual(obs.outcome, .infrastructure, obs.problem ?? "")
        XCTAssertNotNil(obs.inventory, "records before the kill are kept")
    }

    func testBadEmulatorPathIsInfrastructureWithLibvirtsMessage() throws {
        var req = try scenarioRequest()
        req.emulator = "/nonexistent/qemu-system-x86_64"
        let obs = try BootSupport.runner().run(req)
        XCTAssertEqual(obs.outcome, .infrastructure)
        XCTAssertTrue(obs.problem?.contains("/nonexistent/qemu-system-x86_64") == true, obs.problem ?? "")
    }
}

/// A value set from another thread.
final class LockedBox<T>: @unchecked Sendable {
    private let lock = NSLock()
    private var value: T?
    func set(_ v: T) { lock.lock(); value = v; lock.unlock() }
    func get() -> T? { lock.lock(); defer { lock.unlock() }; return value }
}
