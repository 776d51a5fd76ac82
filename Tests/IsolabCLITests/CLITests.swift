import Foundation
import XCTest

/// Runs the built `isolab` binary as a user would.
final class CLITests: XCTestCase {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    func isolab(_ args: [String]) throws -> (status: Int32, out: String, err: String) {
        let b = Bundle(for: CLITests.self).bundleURL
        let bin = [b, b.deletingLastPathComponent()].map { $0.appendingPathComponent("isolab") }
            .first { FileManager.default.isExecutableFile(atPath: $0.path) } ?? b.appendingPathComponent("isolab")
        guard FileManager.default.isExecutableFile(atPath: bin.path) else {
            XCTFail("isolab binary not built at \(bin.path): run swift build first")
            throw CocoaError(.fileNoSuchFile)
        }
        let p = Process()
        p.executableURL = bin
        p.arguments = args
        p.currentDirectoryURL = Self.root
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        try p.run()
        let o = out.fileHandleForReading.readDataToEndOfFile()
        let e = err.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return (p.terminationStatus, String(decoding: o, as: UTF8.self), String(decoding: e, as: UTF8.self))
    }

    func catalog() throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: Self.root.appendingPathComponent("topologies").path)
            .filter { $0.hasSuffix(".yaml") }.sorted().map { "topologies/" + $0 }
    }

    func testCheckAcceptsTheCatalog() throws {
        let r = try isolab(["check"] + catalog())
        XCTAssertEqual(r.status, 0, r.err)
        XCTAssertEqual(r.out.split(separator: "\n").count, try catalog().count)
    }

    func testBadTopologyExitsTwoWithOneLocatedLine() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("isolab-cli-\(getpid())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let f = dir.appendingPathComponent("bad.yaml")
        try "name: bad\nfabric:\n  - device: A\n    model: edu\n    slot: 40\n".write(to: f, atomically: true, encoding: .utf8)
        for cmd in [["check", f.path], ["predict", f.path], ["explain", f.path, "--kernel", "6.1"]] {
            let r = try isolab(cmd)
            XCTAssertEqual(r.status, 2, cmd.joined(separator: " "))
            XCTAssertEqual(r.err, "isolab: \(f.path):5:11: fabric[0].slot: expected a whole number from 0 to 31, found '40'\n")
            XCTAssertEqual(r.out, "")
        }
        let k = try isolab(["predict", "topologies/switch-no-acs.yaml", "--kernel", "bogus"])
        XCTAssertEqual(k.status, 2)
        XCTAssertTrue(k.err.contains("unknown kernel 'bogus'"), k.err)
    }

    func testUnknownBootPathExitsTwoNamingTheAcceptedOnes() throws {
        for cmd in [["run", "topologies/switch-no-acs.yaml"], ["matrix", "ci/matrix.yaml"]] {
            let r = try isolab(cmd + ["--boot", "uefi"])
            XCTAssertEqual(r.status, 2, cmd.joined(separator: " "))
            XCTAssertEqual(r.err, "isolab: The value 'uefi' is invalid for '--boot <boot>'. Please provide one of 'pvh' and 'bzimage'.\n")
        }
    }

    /// One CLI vocabulary: every command refuses a bad value of each of its shared options, a
    /// repeated single-valued option and argument-parser's own errors alike, with exit 2 and
    /// one `isolab: …` line, and never runs anything.
    func testEveryCommandRefusesBadSharedOptionsWithExitTwoAndOneLine() throws {
        let f = "topologies/switch-no-acs.yaml"
        let cases: [[String]] = [
            ["predict", f, "--kernel", "bogus"], ["predict", f, "--format", "yaml"],
            ["predict", f, "--format", "json", "--format", "text"], ["predict"],
            ["explain", f, "--kernel", "6.1,6.12"], ["explain", f, "--kernel", "6.1", "--kernel", "7.3"], ["explain", f],
            ["explain", f, "--kernel", "all"], ["run", f, "--kernel", "6.1", "--kernel", "bogus"],
            ["run", f, "--kernel", "6.8.0"], ["run", f, "--emulator", "/nonexistent/qemu"], ["matrix", "--emulator", "/nonexistent/qemu"], ["images", "tree", "--kernel", "6.1,7.3"], ["images", "build", "--kernel", "4.19"],
            ["run", f, "--kernel", "bogus"], ["run", f, "--boot", "uefi"], ["run", f, "--clock", "slow"],
            ["run", f, "--iommu", "arm"], ["run", f, "--accel", "hvf"], ["run", f, "--jobs", "0"], ["run", f, "--jobs", "many"],
            ["run", f, "--format", "yaml"], ["run", f, "--step-timeout", "3", "--step-timeout", "4"], ["run", f, "--scenario", "nope"],
            ["matrix", "ci/matrix.yaml", "--kernel", "bogus"], ["matrix", "ci/matrix.yaml", "--clock", "slow"],
            ["matrix", "ci/matrix.yaml", "--jobs", "0"], ["matrix", "ci/matrix.yaml", "--shard", "5/4"],
            ["matrix", "ci/matrix.yaml", "--output", "a", "--output", "b"],
            ["report", "diff", "a.json", "b.json", "--format", "pdf"], ["report", "render", "/nonexistent/results.json"],
            ["images", "list", "--format", "yaml"], ["images", "build", "--generation", "6.1"],
            ["doctor", "--kvm-deadline", "soon"], ["bogus-command"],
        ]
        for args in cases {
            let r = try isolab(args)
            let label = args.joined(separator: " ")
            XCTAssertEqual(r.status, 2, "\(label): \(r.err)")
            XCTAssertEqual(r.err.split(separator: "\n").count, 1, "\(label): \(r.err)")
            XCTAssertTrue(r.err.hasPrefix("isolab: "), "\(label): \(r.err)")
            XCTAssertEqual(r.out, "", label)
        }
    }

    /// `--kernel` means the same everywhere: ids, comma-separated or repeated, accumulate.
    func testKernelListsAccumulateAcrossRepeatsAndCommas() throws {
        let r = try isolab(["predict", "topologies/switch-no-acs.yaml", "--kernel", "6.1,6.12", "--kernel", "7.3", "--kernel", "6.1",
                            "--format", "json"])
        XCTAssertEqual(r.status, 0, r.err)
        let doc = try JSONSerialization.jsonObject(with: Data(r.out.utf8)) as! [String: Any]
        XCTAssertEqual((doc["predictions"] as! [[String: Any]]).map { $0["kernel"] as! String }, ["6.1", "6.12", "7.3"])
    }

    func testPredictJSONHasGroupsWithNullNodesForChipsetPerKernel() throws {
        let r = try isolab(["predict", "topologies/switch-no-acs.yaml", "--kernel", "all", "--format", "json"])
        XCTAssertEqual(r.status, 0, r.err)
        let doc = try JSONSerialization.jsonObject(with: Data(r.out.utf8)) as! [String: Any]
        XCTAssertEqual(doc["schema"] as? String, "isolab-predict/2")
        let preds = doc["predictions"] as! [[String: Any]]
        XCTAssertEqual(preds.map { $0["kernel"] as! String }, ["5.10", "6.1", "6.12", "7.3"])
        for p in preds {
            let groups = p["groups"] as! [[String: Any]]
            let members = groups.flatMap { $0["members"] as! [[String: Any]] }
            XCTAssertTrue(members.contains { $0["node"] is NSNull && $0["path"] as? String == "00.0" })
            XCTAssertTrue(groups.contains { g in
                Set((g["members"] as! [[String: Any]]).compactMap { $0["node"] as? String }) == ["dp0", "A"]
            })
            XCTAssertEqual(p["hazardCount"] as? Int, 2)
            XCTAssertNil(p["hazards"], "pairs only with --hazards pairs")
            let reach = try XCTUnwrap((p["reaches"] as? [[String: Any]])?.first)
            XCTAssertEqual(reach["connector"] as? String, "the internal bus of switch sw0")
            XCTAssertEqual((reach["sides"] as? [[String: Any]])?.compactMap { $0["via"] as? String }, ["dp0", "dp1"])
            let steps = (p["scenarios"] as! [[String: Any]])[0]["steps"] as! [[String: Any]]
            XCTAssertEqual(steps.map { $0["result"] as! String }, ["ok", "ok", "ok", "ok", "faulted", "delivered", "faulted", "delivered"])
            XCTAssertNotNil((steps[4]["rule"] as? [String: Any])?["kernelFunction"])
        }
    }

    func testExplainNamesKernelFunctions() throws {
        let r = try isolab(["explain", "topologies/switch-no-acs.yaml", "--kernel", "6.1", "--device", "A"])
        XCTAssertEqual(r.status, 0, r.err)
        XCTAssertTrue(r.out.contains("pci_acs_path_enabled(): the path above A is not isolated at dp0: dp0 has no ACS capability"), r.out)
        XCTAssertTrue(r.out.contains("pci_device_group(): dp0 already has a group: A joins it"))
        let mf = try isolab(["explain", "topologies/multifunction-e1000e-edu.yaml", "--kernel", "6.1"])
        XCTAssertTrue(mf.out.contains("iommu_device_use_default_domain()"), mf.out)
        XCTAssertTrue(mf.out.contains("iommu_group_claim_dma_owner()"))
    }

    func testPredictTextMarksHazards() throws {
        let r = try isolab(["predict", "topologies/threat-separate-groups.yaml", "--kernel", "6.12"])
        XCTAssertEqual(r.status, 0, r.err)
        XCTAssertTrue(r.out.contains("A  edu  group 4  !! hazard"), r.out)
        XCTAssertTrue(r.out.contains("2 ordered pairs"), r.out)
        XCTAssertTrue(r.out.contains("turns via dp0: A (group 4) — dp0 has no ACS capability"), r.out)
        XCTAssertFalse(r.out.contains("    A -> nic0: "), "pairs only on request")
        let pairs = try isolab(["predict", "topologies/threat-separate-groups.yaml", "--kernel", "6.12", "--hazards", "pairs"])
        XCTAssertTrue(pairs.out.contains("    A -> nic0: "), pairs.out)
        let json = try isolab(["predict", "topologies/threat-separate-groups.yaml", "--kernel", "6.12", "--hazards", "pairs", "--format", "json"])
        XCTAssertTrue(json.out.contains("\"hazards\" : ["), json.out)
    }
}

/// `isolab doctor` on this (bootstrapped) machine, and on one whose embedded libvirt root
/// cannot be created.
final class DoctorCLITests: XCTestCase {
    func testDoctorPassesHereAndNamesTheEmbeddedRootItCannotCreate() throws {
        let good = try CLISupport.run(["doctor", "--kvm-deadline", "3"], cwd: URL(fileURLWithPath: FileManager.default.currentDirectoryPath))
        XCTAssertEqual(good.status, 0, good.out + good.err)
        for check in ["qemu", "libvirt", "agent", "debian sources", "cache", "kvm"] {
            XCTAssertTrue(good.out.split(separator: "\n").contains { $0.contains(" \(check): ") && !$0.hasPrefix("FAIL") }, "\(check): \(good.out)")
        }
        let blocker = NSTemporaryDirectory() + "isolab-doctor-\(getpid())"
        FileManager.default.createFile(atPath: blocker, contents: Data())
        defer { try? FileManager.default.removeItem(atPath: blocker) }
        let p = Process()
        p.executableURL = try CLISupport.binary()
        p.arguments = ["doctor", "--kvm-deadline", "1"]
        p.environment = ProcessInfo.processInfo.environment.merging(["XDG_STATE_HOME": blocker]) { $1 }
        let out = Pipe()
        p.standardOutput = out
        p.standardError = FileHandle.nullDevice
        try p.run()
        let text = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        XCTAssertEqual(p.terminationStatus, 1, text)
        let bad = text.split(separator: "\n").filter { $0.hasPrefix("FAIL") }
        XCTAssertEqual(bad.count, 1, text)
        XCTAssertTrue(bad.first?.contains("libvirt: cannot open the embedded root under \(blocker)/isolab/libvirt: \(blocker)/isolab: Not a directory") == true, text)
    }
}
