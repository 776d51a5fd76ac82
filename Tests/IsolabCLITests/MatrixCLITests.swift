import Foundation
import FoundationXML
import XCTest

/// `isolab matrix` and `isolab report` end to end, with real guests on the embedded driver.
final class MatrixCLITests: XCTestCase {
    let fm = FileManager.default

    func isolab(_ args: [String], cwd: String) throws -> (status: Int32, out: String, err: String) {
        try CLISupport.run(args, cwd: URL(fileURLWithPath: cwd))
    }

    func workspace() throws -> String {
        let dir = fm.temporaryDirectory.appendingPathComponent("isolab-matrix-\(UUID().uuidString.prefix(8))").path
        try fm.createDirectory(atPath: dir + "/topologies", withIntermediateDirectories: true)
        // The run finds vm-images/ and the agent from its working directory's package.
        try fm.createSymbolicLink(atPath: dir + "/vm-images", withDestinationPath: CLITests.root.appendingPathComponent("vm-images").path)
        try fm.createSymbolicLink(atPath: dir + "/.build-agent", withDestinationPath: CLITests.root.appendingPathComponent(".build-agent").path)
        return dir
    }

    func pinnedTopology(pin: String) -> String {
        """
        name: pinned-nvme
        fabric:
          - root-port: rp0
            children:
              - device: disk0
                model: nvme
        scenarios:
          - name: bind-and-claim
            steps:
              - load-driver: nvme
              - vfio-open: disk0
                expect: ENOENT
                because: "no vfio-pci device in the group yet"
              - vfio-bind: disk0
              - vfio-open: disk0
                expect: \(pin)
                because: "<b>author's</b> \\"pin\\" & co"
        """
    }

    func verdictKinds(_ path: String) throws -> [String] {
        let doc = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path))) as? [String: Any]
        return ((doc?["runs"] as? [[String: Any]]) ?? []).flatMap { ($0["verdicts"] as? [[String: Any]]) ?? [] }
            .compactMap { $0["kind"] as? String }
    }

    /// A held pin is `pinned`, a wrong pin a `mismatch` (exit 1) in every report format, and
    /// `report diff` calls the change a regression (exit 1).
    func testPinsJudgedAndReportedAndTheDiffFindsTheRegression() throws {
        let dir = try workspace()
        defer { try? fm.removeItem(atPath: dir) }
        try "fabrics: [topologies/*.yaml]\nkernels: [\"6.1\"]\niommus: [intel]\n".write(toFile: dir + "/matrix.yaml", atomically: true, encoding: .utf8)

        try pinnedTopology(pin: "ok").write(toFile: dir + "/topologies/pinned.yaml", atomically: true, encoding: .utf8)
        let good = try isolab(["matrix", "matrix.yaml", "--output", "good"], cwd: dir)
        XCTAssertEqual(good.status, 0, good.err)
        XCTAssertEqual(try verdictKinds(dir + "/good/results.json").filter { $0 == "pinned" }.count, 2)

        try pinnedTopology(pin: "EPERM").write(toFile: dir + "/topologies/pinned.yaml", atomically: true, encoding: .utf8)
        let bad = try isolab(["matrix", "matrix.yaml", "--output", "bad"], cwd: dir)
        XCTAssertEqual(bad.status, 1, bad.err)
        let kinds = try verdictKinds(dir + "/bad/results.json")
        XCTAssertTrue(kinds.contains("mismatch") && kinds.contains("pinned"), "\(kinds)")

        // JUnit: a real XML parser reads it and finds the failure.
        let junit = try XMLDocument(contentsOf: URL(fileURLWithPath: dir + "/bad/results.xml"))
        XCTAssertEqual(try junit.nodes(forXPath: "//testcase/failure").count, 1)
        let tap = try String(contentsOfFile: dir + "/bad/results.tap", encoding: .utf8)
        XCTAssertTrue(tap.hasPrefix("TAP version 13\n"))
        XCTAssertEqual(tap.split(separator: "\n").filter { $0.hasPrefix("not ok") }.count, 1)
        let html = try String(contentsOfFile: dir + "/bad/report.html", encoding: .utf8)
        XCTAssertFalse(html.contains("<b>author's</b>"), "the topology author's text is escaped")
        let md = try String(contentsOfFile: dir + "/bad/summary.md", encoding: .utf8)
        XCTAssertTrue(md.contains("pinned-nvme"))
        XCTAssertTrue(md.hasPrefix("## isolab results: FAIL\n\n**FAIL** — 1 mismatch, "), String(md.prefix(200)))
        XCTAssertTrue(bad.out.hasPrefix("isolab: FAIL — 1 mismatch, "), "the terminal summary opens with the answer: \(bad.out)")
        // KCIDB: KCIDB's validator accepts it; the wrong pin is the one FAIL.
        let valid = try CLISupport.kcidbValidate([dir + "/bad/kcidb.json"])
        XCTAssertEqual(valid.status, 0, valid.err)
        let kcidb = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir + "/bad/kcidb.json"))) as? [String: Any]
        let tests = (kcidb?["tests"] as? [[String: Any]]) ?? []
        let failed = tests.filter { $0["status"] as? String == "FAIL" }.compactMap { $0["path"] as? String }
        XCTAssertEqual(Set(failed), ["isolab.pinned-nvme.bind-and-claim.4_vfio-open_disk0", "isolab.pinned-nvme.boot"])

        let diff = try isolab(["report", "diff", "good/results.json", "bad/results.json"], cwd: dir)
        XCTAssertEqual(diff.status, 1, diff.out + diff.err)
        XCTAssertTrue(diff.out.lowercased().contains("regression"), diff.out)
        XCTAssertEqual(CLISupport.qemuCount(), 0)
    }

    /// Two shards cover the cells once each, deterministically, and merge into the whole.
    func testShardsMergeIntoTheWholeMatrix() throws {
        let dir = try workspace()
        defer { try? fm.removeItem(atPath: dir) }
        for name in ["nvme-alone", "switch-no-acs"] {
            try fm.copyItem(atPath: CLITests.root.appendingPathComponent("topologies/\(name).yaml").path, toPath: dir + "/topologies/\(name).yaml")
        }
        try "fabrics: [topologies/*.yaml]\nkernels: [\"6.1\"]\niommus: [intel]\n".write(toFile: dir + "/matrix.yaml", atomically: true, encoding: .utf8)
        for i in 1...2 {
            let r = try isolab(["matrix", "matrix.yaml", "--shard", "\(i)/2", "--output", "shard-\(i)"], cwd: dir)
            XCTAssertEqual(r.status, 0, r.err)
        }
        let merged = try isolab(["report", "merge", "--output", "merged", "shard-1/results.json", "shard-2/results.json"], cwd: dir)
        XCTAssertEqual(merged.status, 0, merged.err)
        let doc = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir + "/merged/results.json"))) as? [String: Any]
        let runs = (doc?["runs"] as? [[String: Any]]) ?? []
        XCTAssertEqual(Set(runs.compactMap { $0["topology"] as? String }), ["nvme-alone", "switch-no-acs"])
        let bad = try isolab(["report", "merge", "--output", "again", "shard-1/results.json", "shard-1/results.json"], cwd: dir)
        XCTAssertEqual(bad.status, 2, "the same shard twice is refused")
        let badShard = try isolab(["matrix", "matrix.yaml", "--shard", "3/2"], cwd: dir)
        XCTAssertEqual(badShard.status, 2)
        XCTAssertTrue(badShard.err.contains("--shard"), badShard.err)
    }

    /// `--accel auto`: a probe boot decides between KVM and TCG (on the machine the tests run on,
    /// /dev/kvm hangs guests: the probe gives up and the matrix runs under TCG), the probe's
    /// guest is destroyed, and the cells pass either way.
    func testAccelAutoProbesKVMThenRunsTheMatrix() throws {
        let dir = try CLISupport.workspace("accel", fabrics: ["nvme-alone"])
        defer { try? fm.removeItem(atPath: dir) }
        try "fabrics: [topologies/*.yaml]\nkernels: [\"6.1\"]\niommus: [intel]\n".write(toFile: dir + "/matrix.yaml", atomically: true, encoding: .utf8)
        let r = try isolab(["matrix", "matrix.yaml", "--accel", "auto", "--output", "out"], cwd: dir)
        XCTAssertEqual(r.status, 0, r.err)
        XCTAssertTrue(r.err.contains("KVM works here") || r.err.contains("KVM does not work here"), r.err)
        XCTAssertTrue(r.out.hasPrefix("isolab: PASS — "), r.out)
        XCTAssertFalse(try verdictKinds(dir + "/out/results.json").isEmpty)
        XCTAssertEqual(CLISupport.qemuCount(), 0, "the probe's guest is gone too")
        let bad = try isolab(["matrix", "matrix.yaml", "--accel", "fast"], cwd: dir)
        XCTAssertEqual(bad.status, 2, bad.err)
    }

    /// The history report on real guests: the v5.19 ownership change. On 5.10 a driver bind into
    /// a group userspace owns is a kernel BUG, on 6.1 EBUSY; history.json names 6.1 as the first
    /// release with the new behaviour, as the model predicted.
    func testHistoryNamesTheReleaseWhereBindIntoAUserOwnedGroupBecameEBUSY() throws {
        let dir = try CLISupport.workspace("history", fabrics: ["multifunction-e1000e-edu"])
        defer { try? fm.removeItem(atPath: dir) }
        try "fabrics: [topologies/*.yaml]\nkernels: [\"6.1\", \"5.10\"]\niommus: [intel]\n".write(toFile: dir + "/matrix.yaml", atomically: true, encoding: .utf8)
        let r = try isolab(["matrix", "matrix.yaml", "--output", "out"], cwd: dir)
        XCTAssertEqual(r.status, 0, r.err)
        let history = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir + "/out/history.json"))) as? [String: Any]
        XCTAssertEqual(history?["kernels"] as? [String], ["5.10", "6.1"])
        let entries = (history?["entries"] as? [[String: Any]]) ?? []
        let bind = entries.filter { $0["scenario"] as? String == "driver-bind-into-user-owned-group" && ($0["title"] as? String ?? "").contains("bind nic0") }
        XCTAssertEqual(bind.count, 1, "\(entries)")
        XCTAssertEqual(bind.first?["from"] as? String, "5.10")
        XCTAssertEqual(bind.first?["to"] as? String, "6.1")
        XCTAssertEqual(bind.first?["before"] as? String, "crash")
        XCTAssertEqual(bind.first?["after"] as? String, "EBUSY")
        XCTAssertEqual(bind.first?["predicted"] as? Bool, true)
        let md = try String(contentsOfFile: dir + "/out/history.md", encoding: .utf8)
        XCTAssertTrue(md.contains("bind nic0: changed in kernel **6.1** (QEMU 7.2): crash on 5.10 → EBUSY"), md)
        let cli = try isolab(["report", "history", "out/results.json", "--format", "json"], cwd: dir)
        XCTAssertEqual(cli.status, 0, cli.err)
        XCTAssertTrue(cli.out.contains("\"after\" : \"EBUSY\""), cli.out)
        XCTAssertEqual(CLISupport.qemuCount(), 0)
    }

    func testBadMatrixFileGetsOneLocatedError() throws {
        let dir = try workspace()
        defer { try? fm.removeItem(atPath: dir) }
        try "fabrics: [topologies/*.yaml]\nkernels: [\"6.1\", \"9.9\"]\n".write(toFile: dir + "/matrix.yaml", atomically: true, encoding: .utf8)
        let r = try isolab(["matrix", "matrix.yaml"], cwd: dir)
        XCTAssertEqual(r.status, 2)
        XCTAssertTrue(r.err.hasPrefix("isolab: matrix.yaml:2:"), r.err)
        XCTAssertTrue(r.err.contains("kernels"), r.err)
        XCTAssertEqual(r.err.split(separator: "\n").count, 1, r.err)
    }

    /// switch-no-acs: hazards the kernel's groups do not hide (hazard-as-expected);
    /// switch-acs-unrealizable: not booted (unrealizable); multifunction-e1000e-edu on 5.10:
    /// the driver bind into a group VFIO uses hits the kernel BUG the model predicts (crash,
    /// expected), its other steps match. Exit 0: every verdict is one a run may end with.
    func testCatalogFabricsGiveHazardUnrealizableExpectedCrashAndMatchVerdicts() throws {
        let fm = FileManager.default
        let dir = try workspace()
        defer { try? fm.removeItem(atPath: dir) }
        for name in ["switch-no-acs", "switch-acs-unrealizable", "multifunction-e1000e-edu"] {
            try fm.copyItem(atPath: CLITests.root.appendingPathComponent("topologies/\(name).yaml").path, toPath: dir + "/topologies/\(name).yaml")
        }
        try "fabrics: [topologies/*.yaml]\nkernels: [\"5.10\"]\niommus: [intel]\n".write(toFile: dir + "/matrix.yaml", atomically: true, encoding: .utf8)
        let r = try isolab(["matrix", "matrix.yaml", "--output", "out"], cwd: dir)
        XCTAssertEqual(r.status, 0, r.err)
        let doc = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir + "/out/results.json"))) as? [String: Any]
        var verdicts: [(topology: String, verdict: [String: Any])] = []
        for run in (doc?["runs"] as? [[String: Any]]) ?? [] {
            for v in (run["verdicts"] as? [[String: Any]]) ?? [] { verdicts.append((run["topology"] as? String ?? "", v)) }
        }
        func kinds(_ topology: String) -> Set<String> {
            Set(verdicts.filter { $0.topology == topology }.compactMap { $0.verdict["kind"] as? String })
        }
        XCTAssertTrue(kinds("switch-no-acs").isSuperset(of: ["match", "hazard-as-expected"]), "\(kinds("switch-no-acs"))")
        XCTAssertEqual(kinds("switch-acs-unrealizable"), ["unrealizable"])
        XCTAssertTrue(kinds("multifunction-e1000e-edu").isSuperset(of: ["match", "crash"]), "\(kinds("multifunction-e1000e-edu"))")
        let crashes = verdicts.map(\.verdict).filter { $0["kind"] as? String == "crash" }
        XCTAssertFalse(crashes.isEmpty)
        for c in crashes {
            XCTAssertEqual(c["crashExpected"] as? Bool, true, "\(c)")
            XCTAssertTrue((c["detail"] as? String ?? "").contains("kernel BUG at drivers/vfio/vfio.c"), "\(c)")
        }
        XCTAssertFalse(kinds("multifunction-e1000e-edu").contains("mismatch"))
        // KCIDB: valid for KCIDB's own validator, every kind of verdict mapped.
        let valid = try CLISupport.kcidbValidate([dir + "/out/kcidb.json"])
        XCTAssertEqual(valid.status, 0, valid.err)
        XCTAssertTrue(valid.out.contains("valid KCIDB v5.3"), valid.out)
        let kcidb = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir + "/out/kcidb.json"))) as? [String: Any]
        let tests = (kcidb?["tests"] as? [[String: Any]]) ?? []
        XCTAssertEqual(tests.count, verdicts.count + 3, "one test per verdict and one boot per cell")
        func statuses(_ verdict: String) -> Set<String> {
            Set(tests.filter { ($0["misc"] as? [String: Any])?["verdict"] as? String == verdict }.compactMap { $0["status"] as? String })
        }
        XCTAssertEqual(statuses("hazard-as-expected"), ["PASS"])
        XCTAssertEqual(statuses("expected crash"), ["PASS"])
        XCTAssertEqual(statuses("unrealizable"), ["SKIP"])
        let consoles = tests.flatMap { ($0["output_files"] as? [[String: String]]) ?? [] }.filter { $0["name"]?.hasSuffix("console.log") == true }
        XCTAssertFalse(consoles.isEmpty)
        for c in consoles { XCTAssertTrue(fm.fileExists(atPath: URL(string: c["url"] ?? "")?.path ?? ""), "\(c)") }
        XCTAssertEqual(CLISupport.qemuCount(), 0)
    }
}

/// `isolab matrix --repeat N`: every cell N times on real guests; a stable fabric gives the
/// same verdicts as one run and no flaky item.
extension MatrixCLITests {
    func testRepeatedCellsOfAStableFabricAreNeverFlaky() throws {
        let dir = try workspace()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try FileManager.default.copyItem(atPath: CLITests.root.appendingPathComponent("topologies/nvme-alone.yaml").path,
                                         toPath: dir + "/topologies/nvme-alone.yaml")
        try "fabrics: [topologies/*.yaml]\nkernels: [\"6.1\"]\niommus: [intel]\n".write(toFile: dir + "/matrix.yaml", atomically: true, encoding: .utf8)
        let once = try isolab(["matrix", "matrix.yaml", "--output", "once"], cwd: dir)
        XCTAssertEqual(once.status, 0, once.err)
        let thrice = try isolab(["matrix", "matrix.yaml", "--repeat", "3", "--jobs", "4", "--output", "thrice"], cwd: dir)
        XCTAssertEqual(thrice.status, 0, thrice.err)
        XCTAssertTrue(thrice.err.contains("3 repetitions: 0 flaky item(s)"), thrice.err)
        XCTAssertEqual(try verdictKinds(dir + "/thrice/results.json"), try verdictKinds(dir + "/once/results.json"))
        let doc = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir + "/thrice/results.json"))) as? [String: Any]
        let runs = (doc?["runs"] as? [[String: Any]]) ?? []
        let observations: [[String: Any]] = (runs.first?["observations"] as? [[String: Any]]) ?? []
        XCTAssertEqual(observations.filter { $0["scenario"] as? String == "nvme-to-vfio-and-back" }.count, 3, "every repetition is kept")
        let diff = try isolab(["report", "diff", "once/results.json", "thrice/results.json"], cwd: dir)
        XCTAssertEqual(diff.status, 0, diff.out + diff.err)
        XCTAssertEqual(CLISupport.qemuCount(), 0)
    }
}
