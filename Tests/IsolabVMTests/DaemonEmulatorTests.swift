import Foundation
import XCTest

/// The state-file snapshot store (every daemon connection uses it) on QEMU 10.0: a libvirt
/// daemon of its own drives bookworm-backports' QEMU, the fabric boots once, its saved guest is
/// restored for each scenario, and the verdicts are the model's (issue 21, item 6).
final class DaemonEmulatorTests: XCTestCase {
    func testADaemonRestoresSavedGuestsOnQEMU10AndTheModelAgrees() throws {
        guard getuid() == 0 else { return XCTFail("run the tests as root (ci/test does) so they can switch to \(DaemonUserRun.user)") }
        let daemon = try PrivateLibvirtd.start()
        defer { daemon.stop() }
        // multifunction-e1000e-edu: four scenarios from one saved boot, one of them an edu DMA
        // after the restore (the config-header repair and the subreaper on this emulator).
        let run = try DaemonUserRun(label: "daemon-qemu10", topologies: ["multifunction-e1000e-edu"])
        defer { run.remove() }
        try run.write("fabrics: [topologies/*.yaml]\nkernels: [\"6.1\"]\niommus: [intel]\nemulators: [\"10.0\"]\n", to: "matrix.yaml")
        let result = try run.isolab(["matrix", "matrix.yaml", "--connect", daemon.uri, "--jobs", "1", "--output", run.folder + "/out"])
        XCTAssertEqual(result.status, 0, result.error)

        let doc = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: run.folder + "/out/results.json"))) as? [String: Any]
        let runs = (doc?["runs"] as? [[String: Any]]) ?? []
        XCTAssertEqual(runs.count, 1, result.error)
        let emulators = (doc?["emulators"] as? [[String: Any]]) ?? []
        XCTAssertEqual(emulators.map { $0["label"] as? String }, ["10.0"])
        XCTAssertTrue((emulators.first?["version"] as? String ?? "").contains("10.0."), "\(emulators)")
        for r in runs {
            XCTAssertEqual(r["emulator"] as? String, "10.0")
            let observations = (r["observations"] as? [[String: Any]]) ?? []
            XCTAssertEqual(observations.count, 4)
            for o in observations {
                let scenario = o["scenario"] as? String ?? "?"
                XCTAssertEqual(o["outcome"] as? String, "completed", scenario)
                XCTAssertTrue((o["connection"] as? String ?? "").hasSuffix(daemon.directory + "/run/libvirt/libvirt-sock"), scenario)
                XCTAssertTrue((o["restoredFrom"] as? String ?? "").hasSuffix("/guest.save"),
                              "\(scenario) was not restored from a state file: \(o["restoredFrom"] ?? "none")")
            }
            let kinds = ((r["verdicts"] as? [[String: Any]]) ?? []).compactMap { $0["kind"] as? String }
            XCTAssertFalse(kinds.isEmpty)
            XCTAssertFalse(kinds.contains("mismatch") || kinds.contains("infrastructure") || kinds.contains("unrealizable"), "\(kinds)")
        }
        XCTAssertEqual(VMTestSupport.runningQEMUs().filter { $0.contains(run.home) }, [])
    }
}
