import Foundation
import FoundationXML
import XCTest

/// QEMU as a matrix axis, end to end with real guests: the host's 7.2 and Debian's 10.0
/// (fetched into isolab's cache by the command itself), a developer's build given by path, and
/// the facts that decide what each can build.
final class EmulatorCLITests: XCTestCase {
    let fm = FileManager.default

    /// The run finds vm-images/ and the agent from its working directory's package.
    private func workspace(_ fabrics: [String]) throws -> String {
        try CLISupport.workspace("emulator", fabrics: fabrics)
    }

    private func results(_ path: String) throws -> [String: Any] {
        try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path))) as? [String: Any] ?? [:]
    }

    /// Catalog fabrics on 5.10, 6.1 and 7.3 under both emulators: every item is what the model
    /// predicts on each (no mismatch), each run names its emulator, the results record both
    /// emulators' versions, packages and libvirt, and a diff of 7.2 against 10.0 says what QEMU
    /// 10 changed: nothing, on these fabrics.
    func testCatalogFabricsOnBothEmulatorsAreWhatTheModelPredicts() throws {
        let dir = try workspace(["switch-no-acs", "multifunction-e1000e-edu", "rootport-no-acs", "pcie-pci-bridge-aliases"])
        defer { try? fm.removeItem(atPath: dir) }
        try "fabrics: [topologies/*.yaml]\nkernels: [\"5.10\", \"6.1\", \"7.3\"]\niommus: [intel]\nemulators: [\"7.2\", \"10.0\"]\n"
            .write(toFile: dir + "/matrix.yaml", atomically: true, encoding: .utf8)
        let r = try CLISupport.run(["matrix", "matrix.yaml", "--output", "out"], cwd: URL(fileURLWithPath: dir))
        XCTAssertEqual(r.status, 0, r.err)
        let doc = try results(dir + "/out/results.json")
        let runs = doc["runs"] as? [[String: Any]] ?? []
        XCTAssertEqual(runs.count, 4 * 3 * 2)
        XCTAssertEqual(Set(runs.compactMap { $0["emulator"] as? String }), ["7.2", "10.0"])
        let kinds = runs.flatMap { ($0["verdicts"] as? [[String: Any]]) ?? [] }.compactMap { $0["kind"] as? String }
        XCTAssertFalse(kinds.contains("mismatch"), "\(Set(kinds))")
        XCTAssertFalse(kinds.contains("infrastructure"), "\(Set(kinds))")
        XCTAssertTrue(kinds.contains("match"))
        let emulators = doc["emulators"] as? [[String: Any]] ?? []
        XCTAssertEqual(emulators.compactMap { $0["label"] as? String }.sorted(), ["10.0", "7.2"])
        let ten = try XCTUnwrap(emulators.first { $0["label"] as? String == "10.0" })
        XCTAssertTrue((ten["version"] as? String ?? "").contains("10.0."), "\(ten)")
        XCTAssertEqual((ten["packages"] as? [[String: Any]])?.first?["name"] as? String, "qemu-system-x86")
        XCTAssertEqual((ten["binarySha256"] as? String)?.count, 64)
        XCTAssertNotNil(ten["libvirt"] as? String)
        for run in runs {
            let env = run["environment"] as? [String: Any] ?? [:]
            XCTAssertEqual((env["qemu"] as? String)?.hasPrefix(run["emulator"] as? String ?? "?"), true, "\(env)")
        }
        let xml = try XMLDocument(contentsOf: URL(fileURLWithPath: dir + "/out/results.xml"))
        XCTAssertFalse(try xml.nodes(forXPath: "//testcase[contains(@classname, '.kernel-7_3.qemu-10_0')]").isEmpty)
        let diff = try CLISupport.run(["report", "diff", "out/results.json", "out/results.json", "--base-emulator", "7.2", "--new-emulator", "10.0"],
                                      cwd: URL(fileURLWithPath: dir))
        XCTAssertEqual(diff.status, 0, diff.out + diff.err)
        XCTAssertTrue(diff.out.contains("No changes") || diff.out.lowercased().contains("no changes"), diff.out)
        XCTAssertEqual(CLISupport.qemuCount(), 0)
    }

    /// A developer's QEMU given by path runs guests under its own label; an unknown id is bad
    /// input naming the catalog; a repeated --emulator accumulates.
    func testAPathIsADevelopersEmulatorAndAnUnknownIDIsBadInput() throws {
        let dir = try workspace(["rootport-no-acs"])
        defer { try? fm.removeItem(atPath: dir) }
        let bad = try CLISupport.run(["run", "topologies/rootport-no-acs.yaml", "--emulator", "9.9"], cwd: URL(fileURLWithPath: dir))
        XCTAssertEqual(bad.status, 2)
        XCTAssertTrue(bad.err.contains("unknown emulator '9.9' (accepted: 7.2, 10.0"), bad.err)
        let two = try CLISupport.run(["run", "topologies/rootport-no-acs.yaml", "--emulator", "7.2", "--emulator", "10.0"], cwd: URL(fileURLWithPath: dir))
        XCTAssertEqual(two.status, 2)
        XCTAssertTrue(two.err.contains("run boots on one emulator"), two.err)
        let r = try CLISupport.run(["run", "topologies/rootport-no-acs.yaml", "--kernel", "6.1", "--emulator", "/usr/bin/qemu-system-x86_64",
                                    "--emulator-data", "/usr/share/qemu", "--format", "json"], cwd: URL(fileURLWithPath: dir))
        XCTAssertEqual(r.status, 0, r.err)
        let doc = try JSONSerialization.jsonObject(with: Data(r.out.utf8)) as? [String: Any]
        let entry = try XCTUnwrap((doc?["runs"] as? [[String: Any]])?.first)
        XCTAssertTrue((entry["emulator"] as? String ?? "").hasPrefix("build-7.2"), "\(entry["emulator"] ?? "")")
        let scenarios = (entry["observed"] as? [String: Any])?["scenarios"] as? [[String: Any]] ?? []
        XCTAssertFalse(scenarios.isEmpty)
        XCTAssertTrue(scenarios.allSatisfy { $0["outcome"] as? String == "completed" })
        XCTAssertEqual(CLISupport.qemuCount(), 0)
    }

    /// The facts are probed from the binary: a QEMU whose device list lacks a model makes the
    /// fabrics that need it unrealizable on it, with the reason (predict needs no boot).
    func testABinaryWithoutAModelMakesItsFabricsUnrealizable() throws {
        let dir = try workspace(["rootport-no-acs"])
        defer { try? fm.removeItem(atPath: dir) }
        // A wrapper that hides edu from the device list and disable-acs from pcie-root-port.
        let fake = dir + "/qemu-without-edu"
        try """
            #!/bin/sh
            case "$*" in
              *"-device help"*) /usr/bin/qemu-system-x86_64 "$@" | grep -v '^name "edu"' ;;
              *"pcie-root-port,help"*) /usr/bin/qemu-system-x86_64 "$@" | grep -v 'disable-acs' ;;
              *) exec /usr/bin/qemu-system-x86_64 "$@" ;;
            esac

            """.write(toFile: fake, atomically: true, encoding: .utf8)
        chmod(fake, 0o755)
        let r = try CLISupport.run(["predict", "topologies/rootport-no-acs.yaml", "--kernel", "6.1", "--emulator", fake,
                                    "--emulator-data", "/usr/share/qemu", "--format", "json"], cwd: URL(fileURLWithPath: dir))
        XCTAssertEqual(r.status, 0, r.err)
        XCTAssertTrue(r.out.contains("has no edu device model"), r.out)
        XCTAssertFalse(r.out.contains("no disable-acs property and it has no ioh3420"), "ioh3420 is there: an ACS-less root port is realizable")
    }
}
