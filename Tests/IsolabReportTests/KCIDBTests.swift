import Foundation
import IsolabModel
import IsolabProtocol
import IsolabReport
import IsolabTopology
import XCTest

/// A passing fabric with expected hazards, a mismatching one, an unrealizable one, and an
/// infrastructure failure; one kernel from packages, one from a developer's tree.
func kcidbSample() throws -> ResultsDocument {
    let ok = try predict(switchNoACS)
    let bad = try predict(multifunction)
    let unrealizable = try predict(switchNoACS.replacingOccurrences(of: "name: switch-no-acs", with: "name: switch-acs")
        .replacingOccurrences(of: "- port: dp0", with: "- port: dp0\n            acs: true"))
    var hung = observation(ok, scenario: "p2p", outcome: .infrastructure)
    hung.steps = []
    hung.consolePath = "/tmp/runs/x y/console.log"
    var doc = document([
        (ok, [observation(ok, scenario: "p2p")]),
        (bad, [observation(bad, scenario: "bind-into-user-owned", results: [2: "ok"])]),
        (unrealizable, []),
    ])
    var other = document([(ok, [hung])])
    other.runs[0].kernel = "dev"
    doc.runs += other.runs
    doc.kernels.append(KernelBuild(label: "dev", release: "6.13.0-rc1+", imageSha256: String(repeating: "cd", count: 32),
                                   tree: KernelTreeSource(path: "/src/linux", gitCommit: String(repeating: "1f", count: 20),
                                                          gitDirty: true, gitDescribe: "v6.13-rc1-5-g1f1f", configSha256: String(repeating: "ee", count: 32))))
    return doc
}

/// kcidb.json: KCIDB v5.3 objects from a results document. The schema itself is checked by
/// KCIDB's own validator (kcidb-io) in the CLI tests; these check the mapping.
final class KCIDBTests: XCTestCase {
    func sample() throws -> ResultsDocument { try kcidbSample() }

    func decoded(_ doc: ResultsDocument, origin: String = "isolab") throws -> [String: Any] {
        let json = try KCIDBRenderer.render(doc, origin: origin)
        return try XCTUnwrap(JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any])
    }

    func testEveryVerdictIsATestLinkedToItsKernelsBuildAndCheckout() throws {
        let doc = try sample()
        let k = try decoded(doc, origin: "my_ci")
        XCTAssertEqual(k["version"] as? [String: Int], ["major": 5, "minor": 3])
        let checkouts = try XCTUnwrap(k["checkouts"] as? [[String: Any]])
        let builds = try XCTUnwrap(k["builds"] as? [[String: Any]])
        let tests = try XCTUnwrap(k["tests"] as? [[String: Any]])
        XCTAssertEqual(checkouts.count, 2)
        XCTAssertEqual(builds.count, 2)
        XCTAssertEqual(tests.count, doc.runs.flatMap(\.verdicts).count + doc.runs.count, "one per verdict, one boot per run")
        let checkoutIDs = Set(checkouts.compactMap { $0["id"] as? String })
        XCTAssertTrue(builds.allSatisfy { checkoutIDs.contains($0["checkout_id"] as? String ?? "") })
        let buildIDs = Set(builds.compactMap { $0["id"] as? String })
        XCTAssertTrue(tests.allSatisfy { buildIDs.contains($0["build_id"] as? String ?? "") })
        XCTAssertEqual(Set(tests.compactMap { $0["id"] as? String }).count, tests.count, "test ids are unique")
        for o in checkouts + builds + tests {
            XCTAssertEqual(o["origin"] as? String, "my_ci")
            XCTAssertTrue((o["id"] as? String ?? "").hasPrefix("my_ci:"))
        }
        let pathPattern = try NSRegularExpression(pattern: "^([a-zA-Z0-9_-]+(\\.[a-zA-Z0-9_-]+)*)?$")
        for t in tests {
            let p = t["path"] as? String ?? ""
            XCTAssertNotNil(pathPattern.firstMatch(in: p, range: NSRange(p.startIndex..., in: p)), p)
            XCTAssertTrue(p.hasPrefix("isolab."), p)
        }
        // The developer's tree: its commit and .config; Debian's kernel: its package.
        let tree = try XCTUnwrap(checkouts.first { $0["tree_name"] as? String == "local" })
        XCTAssertEqual(tree["git_commit_hash"] as? String, String(repeating: "1f", count: 20))
        XCTAssertEqual((tree["misc"] as? [String: Any])?["config_sha256"] as? String, String(repeating: "ee", count: 32))
        let debian = try XCTUnwrap(checkouts.first { $0["tree_name"] as? String == "debian" })
        XCTAssertEqual(((debian["misc"] as? [String: Any])?["packages"] as? [String])?.first,
                       "linux-image-6.1 6.1.1 sha256:" + String(repeating: "ab", count: 32))
        XCTAssertNil(k["issues"], "no null or empty lists written for what isolab does not produce")
    }

    func testStatusesFollowTheVerdicts() throws {
        let k = try decoded(try sample())
        let tests = try XCTUnwrap(k["tests"] as? [[String: Any]])
        func misc(_ t: [String: Any]) -> [String: Any] { t["misc"] as? [String: Any] ?? [:] }
        func statuses(_ verdict: String) -> Set<String> {
            Set(tests.filter { misc($0)["verdict"] as? String == verdict }.compactMap { $0["status"] as? String })
        }
        XCTAssertEqual(statuses("match"), ["PASS"])
        XCTAssertEqual(statuses("mismatch"), ["FAIL"])
        XCTAssertEqual(statuses("unrealizable"), ["SKIP"])
        XCTAssertEqual(statuses("infrastructure"), ["ERROR"])
        XCTAssertEqual(statuses("hazard-as-expected"), ["PASS"])
        let hazard = try XCTUnwrap(tests.first { misc($0)["verdict"] as? String == "hazard-as-expected" })
        XCTAssertNotNil(misc(hazard)["hazard"], "an expected hazard keeps the hazard in misc")
        XCTAssertTrue((hazard["path"] as? String ?? "").hasPrefix("isolab.switch-no-acs.hazards."))
        let mismatch = try XCTUnwrap(tests.first { misc($0)["verdict"] as? String == "mismatch" })
        XCTAssertEqual(mismatch["path"] as? String, "isolab.multifunction.bind-into-user-owned.3_bind_nic0")
        XCTAssertTrue((mismatch["log_excerpt"] as? String ?? "").contains("model: "), "the model's reasoning is in the excerpt")
        XCTAssertEqual(misc(mismatch)["expected"] as? String, "EBUSY")
        XCTAssertEqual(misc(mismatch)["observed"] as? String, "ok")
        // The boot tests: a run's status, its consoles as output files.
        let boots = tests.filter { ($0["path"] as? String ?? "").hasSuffix(".boot") }
        XCTAssertEqual(Set(boots.compactMap { $0["status"] as? String }), ["PASS", "FAIL", "SKIP", "ERROR"])
        let files = boots.flatMap { $0["output_files"] as? [[String: String]] ?? [] }
        XCTAssertEqual(files.first?["url"], "file:///tmp/runs/x%20y/console.log")
        XCTAssertEqual(files.first?["name"], "p2p-console.log")
    }

    /// KCIDB's own validator (ci/kcidb-validate: kcidb-io in a private virtualenv, installed on
    /// first use) accepts every object the sample produces, a developer's tree included.
    func testKCIDBsValidatorAcceptsTheSample() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("kcidb-\(UUID().uuidString).json")
        defer { try? FileManager.default.removeItem(at: file) }
        try KCIDBRenderer.render(try sample(), origin: "isolab_test").write(to: file, atomically: true, encoding: .utf8)
        let p = Process()
        p.executableURL = root.appendingPathComponent("ci/kcidb-validate")
        p.arguments = [file.path]
        let out = Pipe()
        p.standardOutput = out
        p.standardError = out
        try p.run()
        let text = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        XCTAssertEqual(p.terminationStatus, 0, text)
        XCTAssertTrue(text.contains("valid KCIDB v5.3 (2 checkouts, 2 builds, "), text)
    }

    func testIdentifiersAreStableAcrossRenderingsAndOriginsAreChecked() throws {
        let doc = try sample()
        XCTAssertEqual(try KCIDBRenderer.render(doc), try KCIDBRenderer.render(doc))
        XCTAssertTrue(KCIDBRenderer.isValidOrigin("isolab_lab2"))
        XCTAssertFalse(KCIDBRenderer.isValidOrigin("Isolab"))
        XCTAssertFalse(KCIDBRenderer.isValidOrigin(""))
        XCTAssertFalse(KCIDBRenderer.isValidOrigin("a:b"))
    }

    /// A kernel selftest that reported SKIP is SKIP in KCIDB even when the model predicted it;
    /// a step the guest never reached is MISS.
    func testSelftestSkipsAndStepsNotRunKeepTheirKernelCIStatus() {
        var skip = Verdict(kind: .match, subject: .subtest, item: "subtest:s:0:a.b", title: "prog a.b", expected: "skip", observed: "skip")
        XCTAssertEqual(KCIDBRenderer.status(skip), "SKIP")
        skip.observed = "pass"; skip.expected = "pass"
        XCTAssertEqual(KCIDBRenderer.status(skip), "PASS")
        let notRun = Verdict(kind: .match, subject: .step, item: "step:s:3", title: "step 4 bind A", expected: "not-run", observed: "not-run")
        XCTAssertEqual(KCIDBRenderer.status(notRun), "MISS")
        let flaky = Verdict(kind: .flaky, subject: .step, item: "step:s:3", title: "step 4 bind A")
        XCTAssertEqual(KCIDBRenderer.status(flaky), "FAIL")
    }
}

/// Every report opens with its answer.
final class HeadlineTests: XCTestCase {
    func testReportsOpenWithStatusCountsVMsAndPlatforms() throws {
        var doc = try kcidbSample()
        doc.wallSeconds = 61.4
        let h = Headline(doc)
        XCTAssertEqual(h.status, "FAIL")
        XCTAssertEqual(h.counts.first?.label, "mismatch", "failing kinds first")
        XCTAssertEqual(h.vms, 3)
        XCTAssertEqual(h.lines[0], "isolab: FAIL — " + h.countsText)
        XCTAssertTrue(h.lines[1].contains("4 cells (2 failing, 1 not booted), 3 VMs"), h.lines[1])
        XCTAssertTrue(h.lines[1].contains("61 s wall"), h.lines[1])
        XCTAssertTrue(h.lines[1].hasSuffix("kernels 6.1, dev · QEMU 7.2.15"), h.lines[1])
        let md = MarkdownRenderer.render(doc)
        XCTAssertTrue(md.hasPrefix("## isolab results: FAIL\n\n**FAIL** — 1 mismatch"), String(md.prefix(200)))
        let html = HTMLRenderer.render(doc)
        let head = try XCTUnwrap(html.range(of: "<p class=\"headline fail\"><strong>FAIL</strong>"))
        let firstTable = try XCTUnwrap(html.range(of: "<table"))
        XCTAssertLessThan(head.lowerBound, firstTable.lowerBound, "the headline comes before any table")
    }
}
