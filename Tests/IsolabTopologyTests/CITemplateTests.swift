import Foundation
import XCTest
import Yams

/// ci/github-actions.yml, ci/github-actions-ubuntu.yml and ci/gitlab-ci.yml are valid YAML, run every shard of the matrix
/// (the shard list agrees with the N of `--shard I/N`), and merge the shards' results.
final class CITemplateTests: XCTestCase {
    static let ci = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("ci")

    func load(_ name: String) throws -> [String: Any] {
        let text = try String(contentsOf: Self.ci.appendingPathComponent(name), encoding: .utf8)
        let yaml = try Yams.load(yaml: text)
        return try XCTUnwrap(yaml as? [String: Any], "\(name): the top level is not a mapping")
    }

    /// Every shell command of a job: GitHub's `steps[].run`, GitLab's `before_script` and `script`.
    func commands(_ job: [String: Any]) -> [String] {
        var out: [String] = []
        for step in job["steps"] as? [[String: Any]] ?? [] {
            if let run = step["run"] as? String { out += run.split(separator: "\n").map(String.init) }
        }
        for key in ["before_script", "script"] { out += job[key] as? [String] ?? [] }
        return out
    }

    /// The `I/N` argument of the first `isolab matrix … --shard I/N` command (I may be a CI
    /// expression with spaces, `${{ matrix.shard }}`).
    func shardArgument(_ commands: [String]) -> (index: String, total: String)? {
        let pattern = try! NSRegularExpression(pattern: #"--shard "?(\$\{\{[^}]*\}\}|[^\s/"]+)/([^\s"]+)"#)
        for c in commands where c.contains("isolab matrix") {
            guard let m = pattern.firstMatch(in: c, range: NSRange(c.startIndex..., in: c)),
                  let i = Range(m.range(at: 1), in: c), let n = Range(m.range(at: 2), in: c) else { continue }
            return (String(c[i]), String(c[n]))
        }
        return nil
    }

    func assertMerges(_ commands: [String], setup: [String], file: String) {
        XCTAssertTrue(commands.contains { $0.contains("isolab report merge --output reports/merged reports/shard-*/results.json") },
                      "\(file): no merge command in \(commands)")
        XCTAssertTrue(setup.contains { $0.contains("ci/bootstrap.sh") }, "\(file): the merge job does not run ci/bootstrap.sh")
    }

    func testGitHubActionsRunsEveryShardThenMerges() throws {
        try assertGitHubShardsThenMerge("github-actions.yml")
    }

    /// The hosted-runner template: Ubuntu 24.04, Swift from its action, kernels from a Debian
    /// mirror the repository names, KVM when the runner has it.
    func testGitHubHostedUbuntuTemplateRunsEveryShardWithAMirrorThenMerges() throws {
        let doc = try assertGitHubShardsThenMerge("github-actions-ubuntu.yml")
        XCTAssertEqual((doc["env"] as? [String: Any])?["ISOLAB_DEBIAN_MIRROR"] as? String, "${{ vars.ISOLAB_DEBIAN_MIRROR }}")
        let jobs = try XCTUnwrap(doc["jobs"] as? [String: Any])
        for name in ["shard", "merge"] {
            let job = try XCTUnwrap(jobs[name] as? [String: Any])
            XCTAssertEqual(job["runs-on"] as? String, "ubuntu-24.04", name)
            let uses = (job["steps"] as? [[String: Any]] ?? []).compactMap { $0["uses"] as? String }
            XCTAssertTrue(uses.contains { $0.hasPrefix("swift-actions/setup-swift@") }, "\(name): \(uses)")
        }
        let shardCommands = commands(try XCTUnwrap(jobs["shard"] as? [String: Any]))
        XCTAssertTrue(shardCommands.contains { $0.contains("isolab matrix") && $0.contains("--accel auto") })
    }

    @discardableResult
    func assertGitHubShardsThenMerge(_ file: String) throws -> [String: Any] {
        let doc = try load(file)
        let jobs = try XCTUnwrap(doc["jobs"] as? [String: Any])
        let shard = try XCTUnwrap(jobs["shard"] as? [String: Any])
        let cmds = commands(shard)
        let arg = try XCTUnwrap(shardArgument(cmds), "no isolab matrix --shard command in \(cmds)")
        XCTAssertEqual(arg.index, "${{ matrix.shard }}")
        let n = try XCTUnwrap(Int(arg.total), "--shard …/\(arg.total): N must be a number")
        let matrix = try XCTUnwrap((shard["strategy"] as? [String: Any])?["matrix"] as? [String: Any])
        XCTAssertEqual(matrix["shard"] as? [Int], Array(1...n), "the shard list must be 1…\(n)")
        XCTAssertTrue(cmds.contains { $0.contains("--output reports/shard-${{ matrix.shard }}") })
        XCTAssertLessThan(try XCTUnwrap(cmds.firstIndex { $0.contains("ci/bootstrap.sh") }),
                          try XCTUnwrap(cmds.firstIndex { $0.contains("isolab matrix") }))
        XCTAssertTrue(cmds.contains { $0.contains("ci/build-agent") })

        let merge = try XCTUnwrap(jobs["merge"] as? [String: Any])
        XCTAssertEqual(merge["needs"] as? String, "shard")
        XCTAssertEqual(merge["if"] as? String, "always()")
        let mergeCommands = commands(merge)
        assertMerges(mergeCommands, setup: mergeCommands, file: file)
        XCTAssertTrue(mergeCommands.contains { $0.contains("reports/merged/summary.md") && $0.contains("$GITHUB_STEP_SUMMARY") })
        let uploads = (merge["steps"] as? [[String: Any]] ?? []).filter { ($0["uses"] as? String)?.hasPrefix("actions/upload-artifact") == true }
        XCTAssertEqual(uploads.compactMap { ($0["with"] as? [String: Any])?["path"] as? String }, ["reports/merged"])
        return doc
    }

    func testGitLabRunsEveryShardThenMerges() throws {
        let doc = try load("gitlab-ci.yml")
        let setup = (doc["default"] as? [String: Any])?["before_script"] as? [String] ?? []
        XCTAssertTrue(setup.contains { $0.contains("ci/bootstrap.sh") } && setup.contains { $0.contains("ci/build-agent") })
        let shard = try XCTUnwrap(doc["matrix-shard"] as? [String: Any])
        let n = try XCTUnwrap(shard["parallel"] as? Int)
        XCTAssertGreaterThan(n, 1)
        let cmds = commands(shard)
        let arg = try XCTUnwrap(shardArgument(cmds), "no isolab matrix --shard command in \(cmds)")
        XCTAssertEqual(arg.index, "${CI_NODE_INDEX}")
        XCTAssertTrue(arg.total == "${CI_NODE_TOTAL}" || arg.total == String(n), "--shard …/\(arg.total) against parallel: \(n)")
        XCTAssertTrue(cmds.contains { $0.contains("--output \"reports/shard-${CI_NODE_INDEX}\"") })
        XCTAssertEqual((shard["artifacts"] as? [String: Any])?["when"] as? String, "always")

        let merge = try XCTUnwrap(doc["merge"] as? [String: Any])
        XCTAssertEqual((merge["needs"] as? [[String: Any]])?.first?["job"] as? String, "matrix-shard")
        assertMerges(commands(merge), setup: setup, file: "gitlab-ci.yml")
        XCTAssertEqual((merge["artifacts"] as? [String: Any])?["paths"] as? [String], ["reports/merged/"])
    }
}
