import Foundation
import XCTest

/// SR-IOV end to end with real guests: the catalog's igb fabrics on QEMU 10.0 (QEMU 7.2 has no
/// igb) and its nvme fabrics on both emulators, on the 5.10, 6.1 and 7.3 kernels, every step
/// and every VF's path and group judged against the model.
final class SRIOVCLITests: XCTestCase {
    let fm = FileManager.default

    static let fabrics = ["sriov-igb-rootport-acs", "sriov-igb-rootport-no-acs", "sriov-igb-switch-no-acs",
                          "sriov-igb-integrated", "sriov-igb-multifunction", "sriov-nvme-rootport", "sriov-nvme-integrated"]

    private func workspace() throws -> String {
        try CLISupport.workspace("sriov", fabrics: Self.fabrics)
    }

    func testSRIOVCatalogIsWhatTheModelPredictsOnBothEmulators() throws {
        let dir = try workspace()
        defer { try? fm.removeItem(atPath: dir) }
        try "fabrics: [topologies/*.yaml]\nkernels: [\"5.10\", \"6.1\", \"7.3\"]\niommus: [intel]\nemulators: [\"7.2\", \"10.0\"]\n"
            .write(toFile: dir + "/matrix.yaml", atomically: true, encoding: .utf8)
        let r = try CLISupport.run(["matrix", "matrix.yaml", "--output", "out"], cwd: URL(fileURLWithPath: dir))
        XCTAssertEqual(r.status, 0, r.err)
        let doc = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir + "/out/results.json"))) as? [String: Any] ?? [:]
        let runs = doc["runs"] as? [[String: Any]] ?? []
        XCTAssertEqual(runs.count, Self.fabrics.count * 3 * 2)
        for run in runs {
            let name = "\(run["topology"] ?? "?") \(run["kernel"] ?? "?") QEMU \(run["emulator"] ?? "?")"
            let kinds = ((run["verdicts"] as? [[String: Any]]) ?? []).compactMap { $0["kind"] as? String }
            if run["emulator"] as? String == "7.2", (run["topology"] as? String ?? "").hasPrefix("sriov-igb") {
                // No igb in QEMU 7.2: unrealizable there, with the reason, and not booted.
                XCTAssertEqual(Set(kinds), ["unrealizable"], name)
                let reasons = ((run["verdicts"] as? [[String: Any]]) ?? []).compactMap { $0["detail"] as? String }
                XCTAssertTrue(reasons.contains { $0.contains("no igb device model") }, "\(name): \(reasons)")
                continue
            }
            XCTAssertFalse(kinds.contains("mismatch") || kinds.contains("infrastructure") || kinds.contains("unrealizable"), "\(name): \(kinds)")
            XCTAssertTrue(kinds.contains("match"), name)
            // Every sriov step that created VFs carries their observed paths, equal to the model's
            // (the judge compares them; here the integrated PF's are checked outright).
            for o in (run["observations"] as? [[String: Any]]) ?? [] {
                // Removing a VF whose VFIO fd the agent holds: the kernel says at once that the
                // write waits for the agent, and the step is judged blocked then, not at the timeout.
                for step in (o["steps"] as? [[String: Any]]) ?? [] where step["op"] as? String == "sriov" && step["result"] as? String == "blocked" {
                    XCTAssertTrue((step["detail"] as? String ?? "").contains("blocked until released by user"), "\(name): \(step["detail"] ?? "")")
                }
                for step in (o["steps"] as? [[String: Any]]) ?? [] where step["op"] as? String == "sriov" && step["result"] as? String == "ok" {
                    let vfs = (step["virtualFunctions"] as? [[String: Any]]) ?? []
                    if run["topology"] as? String == "sriov-igb-integrated", !vfs.isEmpty {
                        XCTAssertEqual(vfs.compactMap { $0["path"] as? String }, ["16.0", "16.2"], name)
                        XCTAssertEqual(vfs.compactMap { $0["vendorDevice"] as? String }, ["8086:10ca", "8086:10ca"], name)
                    }
                    if run["topology"] as? String == "sriov-nvme-integrated", !vfs.isEmpty {
                        XCTAssertEqual(vfs.compactMap { $0["path"] as? String }, ["07.1", "07.2"], name)
                        XCTAssertEqual(vfs.compactMap { $0["groupMembers"] as? [String] }, [["07.1"], ["07.2"]], name)
                    }
                }
            }
        }
        XCTAssertEqual(CLISupport.qemuCount(), 0)
    }
}
