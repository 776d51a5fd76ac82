import Foundation
import XCTest

/// `isolab explore` on real guests: seeded fabrics booted for their inventory and judged.
final class ExploreCLITests: XCTestCase {
    let fm = FileManager.default

    func testASeededExplorationBootsEachFabricOnceAndAgreesWithTheModel() throws {
        let dir = try CLISupport.workspace("explore", fabrics: [])
        defer { try? fm.removeItem(atPath: dir) }
        let r = try CLISupport.run(["explore", "--seed", "5", "--count", "4", "--kernel", "6.1", "--output", "out"], cwd: URL(fileURLWithPath: dir))
        XCTAssertEqual(r.status, 0, r.err)
        XCTAssertTrue(r.out.contains("4 fabrics, 4 cells: 4 pass, 0 FAIL"), r.out)
        XCTAssertTrue(r.err.contains("fabrics per minute"), r.err)
        let json = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir + "/out/explore.json"))) as? [String: Any])
        XCTAssertEqual(json["seed"] as? Int, 5)
        XCTAssertEqual(json["vms"] as? Int, 4, "an inventory-only fabric costs one boot, no snapshot")
        let fabrics = try XCTUnwrap(json["fabrics"] as? [[String: Any]])
        XCTAssertEqual(fabrics.count, 4)
        for f in fabrics {
            XCTAssertTrue((f["yaml"] as? String ?? "").hasPrefix("name: explore-5-"), "\(f)")
            XCTAssertEqual(((f["cells"] as? [[String: Any]])?.first?["status"]) as? String, "pass", "\(f)")
        }
        XCTAssertEqual((json["minimal"] as? [Any])?.count, 0)
        XCTAssertEqual(CLISupport.qemuCount(), 0)
    }

    /// The kept exploration (`--seed 1 --count 200` on 5.10, 6.1 and 7.3, Fixtures/explore-seed1.json)
    /// is what the generator still makes for seed 1, and none of its cells failed.
    func testTheKeptExplorationIsWhatSeedOneGeneratesAndPassed() throws {
        let fixture = CLITests.root.appendingPathComponent("Tests/IsolabCLITests/Fixtures/explore-seed1.json")
        let kept = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: fixture)) as? [String: Any])
        XCTAssertEqual(kept["seed"] as? Int, 1)
        XCTAssertEqual(kept["kernels"] as? [String], ["5.10", "6.1", "7.3"])
        let fabrics = try XCTUnwrap(kept["fabrics"] as? [[String: Any]])
        XCTAssertEqual(fabrics.count, 200)
        let statuses = fabrics.flatMap { ($0["cells"] as? [[String: Any]]) ?? [] }.compactMap { $0["status"] as? String }
        XCTAssertEqual(statuses.count, 600)
        XCTAssertFalse(statuses.contains("FAIL") || statuses.contains("infrastructure"), "\(Dictionary(grouping: statuses, by: { $0 }).mapValues(\.count))")
        // Seed 1 still generates the kept fabrics: its first two, booted again.
        let dir = try CLISupport.workspace("explore-replay", fabrics: [])
        defer { try? fm.removeItem(atPath: dir) }
        let r = try CLISupport.run(["explore", "--seed", "1", "--count", "2", "--kernel", "6.1", "--output", "out"], cwd: URL(fileURLWithPath: dir))
        XCTAssertEqual(r.status, 0, r.err)
        let now = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir + "/out/explore.json"))) as? [String: Any])
        let replay = (now["fabrics"] as? [[String: Any]] ?? []).compactMap { $0["yaml"] as? String }
        XCTAssertEqual(replay, fabrics.prefix(2).compactMap { $0["yaml"] as? String }, "seed 1 generates the kept fabrics")
        XCTAssertEqual(CLISupport.qemuCount(), 0)
    }
}
