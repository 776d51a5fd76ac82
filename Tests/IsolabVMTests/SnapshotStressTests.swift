import Foundation
import IsolabLibvirt
import IsolabModel
import IsolabProtocol
import IsolabVM
import XCTest

/// A CI harness that flakes is worse than none (issue 24). These run the snapshot paths with
/// the machine loaded and with QEMUs killed from outside, and hold them to: the same
/// observations as an unloaded run, every scenario ending as an observation or an
/// infrastructure failure that says what happened, and nothing left running.
final class SnapshotStressTests: XCTestCase {
    /// A busy loop per core, for the life of the returned object.
    final class Load {
        private var processes: [Process] = []
        init(perCore: Int = 1) throws {
            for _ in 0..<(ProcessInfo.processInfo.activeProcessorCount * perCore) {
                let p = Process()
                p.executableURL = URL(fileURLWithPath: "/bin/sh")
                p.arguments = ["-c", "while :; do :; done"]
                try p.run()
                processes.append(p)
            }
        }
        func end() {
            for p in processes where p.isRunning { p.terminate() }
            for p in processes { p.waitUntilExit() }
            processes = []
        }
        deinit { end() }
    }

    private func requests(_ name: String, kernel: String = "6.1", times: Int = 1) throws -> [RunRequest] {
        let topology = try BootSupport.topology(name)
        return try (0..<times).flatMap { _ in try topology.scenarios.map { try BootSupport.request(topology, kernel: kernel, scenario: $0) } }
    }

    private func assertNothingLeft(_ requests: [RunRequest], file: StaticString = #filePath, line: UInt = #line) throws {
        XCTAssertEqual(BootSupport.leftoverQEMU(of: requests), [], file: file, line: line)
        XCTAssertEqual(ChildReaper.livingQEMUChildren(), [], "an adopted QEMU still runs", file: file, line: line)
        let names = try BootSupport.connection.get().activeDomains().map { $0.name }
        XCTAssertEqual(names.filter { n in requests.contains { n.contains($0.topology.name) } }, [], "a domain is still defined", file: file, line: line)
    }

    /// Both stores, with a busy loop on every core: the observations of an unloaded run.
    func testBothStoresUnderLoadObserveWhatAnUnloadedRunDoes() throws {
        let name = "multifunction-e1000e-edu"
        let reference = try BootSupport.run(try requests(name), jobs: 1)
        let runner = try BootSupport.runner()
        let load = try Load()
        var loaded: [VMObservation] = [], fromFile: [VMObservation] = []
        let first = try requests(name), second = try requests(name)
        runner.runFromSnapshot(first, finished: { _, o in loaded.append(o) })
        runner.snapshotStore = .stateFile
        defer { runner.snapshotStore = .inQEMU }
        runner.runFromSnapshot(second, finished: { _, o in fromFile.append(o) })
        load.end()
        try assertNothingLeft(first + second)
        for (store, observed) in [("in-QEMU", loaded), ("state file", fromFile)] {
            XCTAssertEqual(observed.count, reference.count, store)
            for (o, r) in zip(observed, reference) {
                let what = "\(store) \(o.scenario ?? "")"
                XCTAssertEqual(o.outcome, .completed, "\(what): \(o.problem ?? "")")
                XCTAssertNotNil(o.restoredFrom, what)
                XCTAssertEqual(BootPathBootTests.Facts(o), BootPathBootTests.Facts(r), "\(what): loaded and unloaded runs observed different things")
            }
        }
    }

    /// QEMU killed at 20 points of the state-file restore path: each scenario
    /// ends as the unloaded observation (the kill came too late to matter) or as an
    /// infrastructure failure that says what happened; the next restore still works, and no
    /// domain or process is left.
    func testQEMUKilledAtRandomPointsOfTheStateFileRestorePath() throws {
        let name = "rootports-acs"
        let reference = try BootSupport.run(try requests(name), jobs: 1)
        let perRound = reference.count
        let rounds = Int((20 + perRound - 1) / perRound)
        let all = try requests(name, times: rounds)
        let runner = try BootSupport.runner()
        runner.snapshotStore = .stateFile
        defer { runner.snapshotStore = .inQEMU }
        // Delays spread over the first second of a restored scenario (the restore takes about
        // 0.3 s, its steps most of the rest), in a shuffled but fixed order, so that the points
        // differ from one scenario to the next and the test does not depend on luck.
        var delays = (0..<all.count).map { Double($0) / Double(all.count) }
        var seed: UInt64 = 0x15_0_1ab
        for i in delays.indices.reversed() {
            seed = seed &* 6364136223846793005 &+ 1442695040888963407
            delays.swapAt(i, Int((seed >> 33) % UInt64(i + 1)))
        }
        let killer = Killer()
        var observed: [VMObservation] = []
        runner.runFromSnapshot(all, starting: { i in
            // The scenario's restored QEMU is about to start: kill whichever QEMU runs after
            // the delay (in the restore, the steps or the teardown).
            killer.arm(after: delays[i])
        }, finished: { _, o in killer.disarm(); observed.append(o) })
        killer.disarm()
        try assertNothingLeft(all)
        XCTAssertEqual(observed.count, all.count)
        XCTAssertGreaterThanOrEqual(killer.kills, 10, "too few kills landed to test anything")
        var completed = 0
        for (i, o) in observed.enumerated() {
            let r = reference[i % perRound]
            let what = "\(i): \(o.scenario ?? "")"
            switch o.outcome {
            case .completed:
                completed += 1
                XCTAssertEqual(BootPathBootTests.Facts(o), BootPathBootTests.Facts(r), "\(what): a completed scenario observed something else")
            case .infrastructure:
                let problem = o.problem ?? ""
                XCTAssertFalse(problem.isEmpty, "\(what): an infrastructure failure that does not say what happened")
                print("stress \(what): infrastructure: \(problem)")
            default:
                XCTFail("\(what): \(o.outcome.rawValue) (\(o.problem ?? "")): a killed QEMU is infrastructure, never a guest verdict")
            }
        }
        print("stress: \(observed.count) restored scenarios, \(killer.kills) QEMUs killed, \(completed) completed anyway")
    }

    /// Kills the living QEMU child after a delay, once per arming.
    final class Killer: @unchecked Sendable {
        private let lock = NSLock()
        private var generation = 0
        private(set) var kills = 0

        func arm(after seconds: Double) {
            lock.lock(); generation += 1; let mine = generation; lock.unlock()
            DispatchQueue.global().asyncAfter(deadline: .now() + seconds) { [self] in
                lock.lock(); defer { lock.unlock() }
                guard mine == generation, let pid = ChildReaper.livingQEMUChildren().first else { return }
                kill(pid, SIGKILL)
                kills += 1
            }
        }

        func disarm() { lock.lock(); generation += 1; lock.unlock() }
    }
}
