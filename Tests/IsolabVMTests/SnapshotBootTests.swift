import Foundation
import IsolabLibvirt
import IsolabModel
import IsolabProtocol
import IsolabVM
import XCTest

/// Snapshot mode is only worth having if it is honest: every scenario restored from one saved
/// boot of its fabric must show the kernel doing what a fresh boot of it shows.
final class SnapshotBootTests: XCTestCase {
    /// The fabrics of the catalog with more than one scenario: ownership sequences (with the
    /// 5.10 BUG), alias DMA behind a PCIe-to-PCI bridge, and DMA between ACS root ports.
    static let fabrics = ["multifunction-e1000e-edu", "pcie-pci-bridge-aliases", "rootports-acs"]

    func requests(_ kernel: String) throws -> [RunRequest] {
        try Self.fabrics.flatMap { name -> [RunRequest] in
            let topology = try BootSupport.topology(name)
            return try topology.scenarios.map { try BootSupport.request(topology, kernel: kernel, scenario: $0) }
        }
    }

    func assertRestoredScenariosObserveWhatFreshBootsDo(kernel: String) throws {
        let restored = try requests(kernel), fresh = try requests(kernel)
        let fromSnapshot = try BootSupport.run(restored)
        let booted = try BootSupport.run(fresh, snapshots: false)
        XCTAssertEqual(BootSupport.leftoverQEMU(of: restored + fresh), [])
        // This process is the subreaper of every QEMU its embedded driver started.
        XCTAssertEqual(ChildReaper.livingQEMUChildren(), [], "an adopted QEMU still runs")
        var restoreSeconds: [Double] = []
        for (s, b) in zip(fromSnapshot, booted) {
            let what = "\(s.topology) \(s.scenario ?? "") on \(kernel)"
            XCTAssertEqual(s.outcome, .completed, "\(what): \(s.problem ?? "")\n\(s.consoleTail.suffix(20).joined(separator: "\n"))")
            XCTAssertNotNil(s.restoredFrom, "\(what) was not restored from a snapshot")
            XCTAssertNil(b.restoredFrom, what)
            XCTAssertFalse(s.steps.isEmpty, what)
            XCTAssertEqual(BootPathBootTests.Facts(s), BootPathBootTests.Facts(b),
                           "\(what): the restored guest observed something else than a fresh boot")
            restoreSeconds.append(s.timing.total)
        }
        // The saved states are removed once their fabric's scenarios are done.
        for r in restored {
            for state in ["guest.save", "vmstate.qcow2"] {
                XCTAssertFalse(FileManager.default.fileExists(atPath: r.directory + "/snapshot/" + state), r.directory)
            }
        }
        let snapshots = fromSnapshot.map(\.timing.snapshot).filter { $0 > 0 }
        XCTAssertEqual(snapshots.count, Self.fabrics.count, "one saved boot per fabric")
        print(String(format: "snapshot %@: %d scenarios, restored runs %.1f s in all, fresh boots %.1f s in all, saved boots %.1f s",
                     kernel, restored.count, restoreSeconds.reduce(0, +), booted.map(\.timing.total).reduce(0, +), snapshots.reduce(0, +)))
    }

    func testRestoredScenariosObserveWhatFreshBootsDoOn6_1() throws {
        try assertRestoredScenariosObserveWhatFreshBootsDo(kernel: "6.1")
    }

    func testRestoredScenariosObserveWhatFreshBootsDoOn5_10() throws {
        try assertRestoredScenariosObserveWhatFreshBootsDo(kernel: "5.10")
    }

    /// Both stores give the fresh boot's state: the same QEMU put back by `loadvm` (whose QEMU
    /// is killed after the first scenario here, so the next ones start a new QEMU from the
    /// snapshot), and a new QEMU restored from a state file for each scenario.
    func testBothStoresAndAQEMUStartedAgainObserveTheSame() throws {
        let topology = try BootSupport.topology("multifunction-e1000e-edu")
        func requests() throws -> [RunRequest] {
            try topology.scenarios.map { try BootSupport.request(topology, kernel: "6.1", scenario: $0) }
        }
        let runner = try BootSupport.runner()
        XCTAssertEqual(runner.snapshotStore, .inQEMU, "the embedded driver keeps the saved guest in its QEMU")
        var inQEMU: [VMObservation] = [], killed: pid_t?, startedAgain: pid_t?
        runner.runFromSnapshot(try requests(), finished: { i, obs in
            inQEMU.append(obs)
            if i == 1 { startedAgain = ChildReaper.livingQEMUChildren().first }
            if i == 0, let pid = ChildReaper.livingQEMUChildren().first {
                killed = pid
                kill(pid, SIGKILL)
            }
        })
        runner.snapshotStore = .stateFile
        defer { runner.snapshotStore = .inQEMU }
        var fromFile: [VMObservation] = []
        runner.runFromSnapshot(try requests(), finished: { _, obs in fromFile.append(obs) })
        XCTAssertEqual(ChildReaper.livingQEMUChildren(), [], "an adopted QEMU still runs")
        XCTAssertNotNil(killed)
        XCTAssertNotNil(startedAgain)
        XCTAssertNotEqual(killed, startedAgain, "the guest's QEMU was not started again after it was killed")
        XCTAssertEqual(inQEMU.count, topology.scenarios.count)
        XCTAssertEqual(fromFile.count, topology.scenarios.count)
        for (q, f) in zip(inQEMU, fromFile) {
            let what = "\(q.scenario ?? "")"
            XCTAssertEqual(q.outcome, .completed, "\(what): \(q.problem ?? "")")
            XCTAssertEqual(f.outcome, .completed, "\(what): \(f.problem ?? "")")
            XCTAssertEqual(q.restoredFrom.map { ($0 as NSString).lastPathComponent }, "vmstate.qcow2", what)
            XCTAssertEqual(f.restoredFrom.map { ($0 as NSString).lastPathComponent }, "guest.save", what)
            XCTAssertEqual(BootPathBootTests.Facts(q), BootPathBootTests.Facts(f), "\(what): the stores observed different things")
            // Each scenario's console is its own part of the guest's console.
            let console = try String(contentsOfFile: try XCTUnwrap(q.consolePath), encoding: .utf8)
            XCTAssertFalse(console.contains("Run /init as init process"), "\(what): the console holds the boot's part")
        }
    }

    /// edu has no migration state in QEMU: a restored edu is in its reset state until the
    /// agent writes back the header the kernel had programmed; it says which it repaired. The
    /// first scenario runs on the guest `savevm` left running (no `loadvm`): nothing was lost.
    func testRestoredAgentRepairsTheEduHeadersQEMUDoesNotMigrate() throws {
        let topology = try BootSupport.topology("multifunction-e1000e-edu")
        let reqs = try topology.scenarios.map { try BootSupport.request(topology, kernel: "6.1", scenario: $0) }
        let observations = try BootSupport.run(reqs, jobs: 1)
        for (i, o) in observations.enumerated() {
            let path = try XCTUnwrap(o.recordsPath)
            let first = try XCTUnwrap(String(contentsOfFile: path, encoding: .utf8).split(separator: "\n").first)
            let hello = try JSONDecoder().decode(Record.self, from: Data(first.utf8))
            XCTAssertEqual(hello.type, .hello)
            // C, the edu in rp1's multifunction slot, is function 1 of slot 0 behind rp1.
            let eduBDF = o.inventory?.functions.first { $0.vendorDevice == "1234:11e8" }?.bdf
            XCTAssertEqual(hello.hello?.restoredConfig, i == 0 ? [] : eduBDF.map { [$0] }, "\(o.scenario ?? "")")
        }
    }
}
