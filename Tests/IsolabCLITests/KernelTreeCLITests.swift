import Foundation
import XCTest

/// A developer's kernel build tree through `--kernel-tree`, played by Debian's linux-source-7.3
/// as isolab's `7.3-iommufd` builds it (tinyconfig + vm-images/kernel-configs/iommufd-selftests.config),
/// kept as a build tree (`isolab images tree`; ci/test builds both trees before these tests run), once
/// as it is and once with Fixtures/owner-check-skipped.patch.
final class KernelTreeCLITests: XCTestCase {
    let fm = FileManager.default
    static let patch = CLITests.root.appendingPathComponent("Tests/IsolabCLITests/Fixtures/owner-check-skipped.patch").path

    func isolab(_ args: [String], cwd: String = CLITests.root.path) throws -> (status: Int32, out: String, err: String) {
        try CLISupport.run(args, cwd: URL(fileURLWithPath: cwd))
    }

    /// The kept build tree of 7.3-iommufd, patched or not (a cache hit after the first build).
    func tree(patched: Bool) throws -> String {
        let r = try isolab(["images", "tree", "--kernel", "7.3-iommufd"] + (patched ? ["--patch", Self.patch] : []))
        XCTAssertEqual(r.status, 0, r.err)
        let path = r.out.trimmingCharacters(in: .whitespacesAndNewlines)
        XCTAssertTrue(fm.fileExists(atPath: path + "/arch/x86/boot/bzImage"), path)
        XCTAssertFalse(fm.fileExists(atPath: path + "/lib/modules"), "a build tree, not modules_install output")
        return path
    }

    func temporary(_ label: String) throws -> String {
        let dir = fm.temporaryDirectory.appendingPathComponent("isolab-\(label)-\(UUID().uuidString.prefix(8))").path
        try fm.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return dir
    }

    /// A configured tree whose `.config` leaves CONFIG_VFIO_PCI unset (every other module the
    /// recipe requires present as an empty `.ko`): nothing is built, nothing boots.
    func treeWithoutVFIOPCI() throws -> String {
        let dir = try temporary("novfiopci")
        let fragment = try String(contentsOf: CLITests.root.appendingPathComponent("vm-images/kernel-configs/iommufd.config"), encoding: .utf8)
        let config = fragment.split(separator: "\n").map { $0 == "CONFIG_VFIO_PCI=m" ? "# CONFIG_VFIO_PCI is not set" : String($0) }
        try (config.joined(separator: "\n") + "\n").write(toFile: dir + "/.config", atomically: true, encoding: .utf8)
        try fm.createDirectory(atPath: dir + "/include/config", withIntermediateDirectories: true)
        try "6.12.99-test\n".write(toFile: dir + "/include/config/kernel.release", atomically: true, encoding: .utf8)
        let modules = ["drivers/vfio/vfio.o", "drivers/vfio/vfio_iommu_type1.o", "virt/lib/irqbypass.o", "drivers/pci/pci-stub.o",
                       "drivers/net/ethernet/intel/e1000e/e1000e.o", "drivers/nvme/host/nvme.o"]
        for m in modules {
            let ko = dir + "/" + m.dropLast(2) + ".ko"
            try fm.createDirectory(atPath: (ko as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            XCTAssertTrue(fm.createFile(atPath: ko, contents: Data()))
        }
        try (modules.joined(separator: "\n") + "\n").write(toFile: dir + "/modules.order", atomically: true, encoding: .utf8)
        return dir
    }

    func testTreeWithoutVFIOPCIIsRefusedBeforeBootingWithOneLineNamingTheOption() throws {
        let dir = try treeWithoutVFIOPCI()
        defer { try? fm.removeItem(atPath: dir) }
        for command in [["run", "topologies/switch-no-acs.yaml"], ["matrix", "ci/matrix.yaml", "--output", dir + "/reports"]] {
            let r = try isolab(command + ["--kernel-tree", dir])
            XCTAssertEqual(r.status, 2, "\(command): \(r.err)")
            let lines = r.err.split(separator: "\n")
            XCTAssertEqual(lines.count, 1, r.err)
            XCTAssertTrue(lines.first?.hasPrefix("isolab: --kernel-tree \(dir): ") == true, r.err)
            XCTAssertTrue(r.err.contains("CONFIG_VFIO_PCI is not set"), r.err)
            XCTAssertFalse(fm.fileExists(atPath: dir + "/reports"), "nothing ran")
        }
        // predict needs only the version and .config: the tree's iommufd build predicts the cdev path.
        let p = try isolab(["predict", "topologies/switch-no-acs.yaml", "--kernel-tree", dir, "--format", "json"])
        XCTAssertEqual(p.status, 0, p.err)
        XCTAssertTrue(p.out.contains("\"6.12.99-test\""), p.out)
        XCTAssertFalse(p.out.contains("unsupported"), "IOMMUFD and VFIO_DEVICE_CDEV are in the tree's .config")
    }

    func testTreeWithoutVmlinuxBootsItsBzImageAndSaysSo() throws {
        let tree = try tree(patched: false)
        // The same tree without its vmlinux: every other top-level entry linked.
        let dir = try temporary("novmlinux")
        defer { try? fm.removeItem(atPath: dir) }
        for name in try fm.contentsOfDirectory(atPath: tree) where name != "vmlinux" {
            try fm.createSymbolicLink(atPath: dir + "/" + name, withDestinationPath: tree + "/" + name)
        }
        // A git work tree: the default label is the release and `git describe --always --dirty`.
        func git(_ args: [String]) throws -> String {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: "/usr/bin/git")
            p.arguments = ["-C", dir, "-c", "user.name=isolab-test", "-c", "user.email=test@localhost"] + args
            let out = Pipe()
            p.standardOutput = out
            try p.run()
            let data = out.fileHandleForReading.readDataToEndOfFile()
            p.waitUntilExit()
            XCTAssertEqual(p.terminationStatus, 0, "git \(args)")
            return String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        }
        _ = try git(["init", "-q"])
        _ = try git(["add", "-A"])
        _ = try git(["commit", "-q", "-m", "tree"])
        try "local change\n".write(toFile: dir + "/NOTES", atomically: true, encoding: .utf8)
        _ = try git(["add", "NOTES"])
        let commit = try git(["rev-parse", "--short", "HEAD"])
        let release = try String(contentsOfFile: tree + "/include/config/kernel.release", encoding: .utf8)
            .trimmingCharacters(in: .whitespacesAndNewlines)
        let label = "\(release)@\(commit)-dirty"
        let r = try isolab(["run", "topologies/nvme-alone.yaml", "--kernel-tree", dir, "--format", "json"])
        XCTAssertEqual(r.status, 0, r.err)
        XCTAssertTrue(r.err.contains("kernel \(label): booting bzimage instead of pvh: no PVH vmlinux: the tree has no vmlinux"), r.err)
        XCTAssertTrue(r.err.contains(", dirty)"), "the tree's git state is reported: \(r.err)")
        let doc = try JSONSerialization.jsonObject(with: Data(r.out.utf8)) as? [String: Any]
        let scenarios = ((doc?["runs"] as? [[String: Any]])?.first?["observed"] as? [String: Any])?["scenarios"] as? [[String: Any]] ?? []
        XCTAssertFalse(scenarios.isEmpty)
        for s in scenarios { XCTAssertEqual(s["outcome"] as? String, "completed", "\(s)") }
    }

    /// Groups and step results of each kernel's run in `isolab run --format json` output.
    func facts(_ json: String) throws -> [String: [String]] {
        let doc = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any])
        var out: [String: [String]] = [:]
        for run in doc["runs"] as? [[String: Any]] ?? [] {
            let observed = run["observed"] as? [String: Any] ?? [:]
            let groups = (observed["groups"] as? [[String: Any]] ?? []).map {
                "group " + ($0["members"] as? [[String: Any]] ?? []).compactMap { $0["node"] as? String }.joined(separator: "+")
            }
            let steps = (observed["scenarios"] as? [[String: Any]] ?? []).flatMap { s in
                (s["steps"] as? [[String: Any]] ?? []).map { "\(s["scenario"] ?? "") \($0["index"] ?? "") \($0["result"] ?? "")" }
            }
            out[run["kernel"] as? String ?? "?", default: []] += groups.sorted() + steps
        }
        return out
    }

    /// The unpatched tree through --kernel-tree is the catalog's 7.3-iommufd by another road:
    /// the same groups and step results on the classic hazard fabric, legacy and cdev paths.
    func testUnpatchedTreeObservesWhatTheCatalogBuildOfTheSameSourceDoes() throws {
        let tree = try tree(patched: false)
        let r = try isolab(["run", "topologies/switch-no-acs.yaml", "--kernel", "7.3-iommufd", "--kernel-tree", tree,
                            "--kernel-label", "unpatched", "--format", "json"])
        XCTAssertEqual(r.status, 0, r.err)
        XCTAssertTrue(r.err.contains("kernel unpatched: "), r.err)
        XCTAssertFalse(r.err.contains("instead of pvh"), "the tree's vmlinux boots at its PVH entry: \(r.err)")
        let f = try facts(r.out)
        XCTAssertGreaterThan(f["unpatched"]?.count ?? 0, 10, "\(f)")
        XCTAssertEqual(f["unpatched"], f["7.3-iommufd"])
    }

    /// Runs the default matrix (every catalog fabric, intel and virtio-iommu) on a tree, on the
    /// host's QEMU (the emulator axis is EmulatorCLITests' subject).
    func matrix(tree: String, label: String, extra: [String] = []) throws -> (status: Int32, err: String, output: String, results: [String: Any]) {
        let output = try temporary("tree-matrix")
        let r = try isolab(["matrix", "ci/matrix.yaml", "--emulator", "7.2", "--kernel-tree", tree, "--kernel-label", label, "--output", output] + extra)
        let data = try Data(contentsOf: URL(fileURLWithPath: output + "/results.json"))
        let doc = try XCTUnwrap(try JSONSerialization.jsonObject(with: data) as? [String: Any], r.err)
        return (r.status, r.err, output, doc)
    }

    /// `topology | scenario | title` of every verdict of `kind` on `kernel`.
    func items(_ doc: [String: Any], kernel: String, kind: String) -> [String] {
        (doc["runs"] as? [[String: Any]] ?? []).filter { $0["kernel"] as? String == kernel }.flatMap { run in
            (run["verdicts"] as? [[String: Any]] ?? []).filter { $0["kind"] as? String == kind }.map {
                "\(run["topology"] ?? "") | \($0["scenario"] as? String ?? "-") | \($0["title"] ?? "")"
            }
        }.sorted()
    }

    /// The kernel record of `label`: tree path, .config hash, image sha256.
    func checkRecord(_ doc: [String: Any], label: String, tree: String) throws {
        let k = try XCTUnwrap((doc["kernels"] as? [[String: Any]] ?? []).first { $0["label"] as? String == label })
        let record = try XCTUnwrap(k["tree"] as? [String: Any])
        XCTAssertEqual(record["path"] as? String, tree)
        let config = try Data(contentsOf: URL(fileURLWithPath: tree + "/.config"))
        XCTAssertEqual((record["configSha256"] as? String)?.count, 64)
        XCTAssertFalse(config.isEmpty)
        XCTAssertEqual((k["imageSha256"] as? String)?.count, 64)
    }

    func testUnpatchedTreeThroughTheMatrixFindsNoMismatch() throws {
        let tree = try tree(patched: false)
        let m = try matrix(tree: tree, label: "unpatched")
        defer { try? fm.removeItem(atPath: m.output) }
        XCTAssertEqual(m.status, 0, m.err)
        XCTAssertEqual(items(m.results, kernel: "unpatched", kind: "mismatch"), [])
        XCTAssertEqual(items(m.results, kernel: "unpatched", kind: "crash"), [])
        XCTAssertGreaterThan(items(m.results, kernel: "unpatched", kind: "match").count, 100)
        try checkRecord(m.results, label: "unpatched", tree: tree)
    }

    /// What skipping the owner check in iommu_device_use_default_domain() implies on the catalog
    /// fabrics (Fixtures/owner-check-skipped.patch), and nothing else: a kernel driver's bind
    /// into a group userspace owns (VFIO group or iommufd cdev) succeeds where the model says
    /// EBUSY, and auto-probing on modprobe binds it (the model's bound set is empty); a later
    /// bind of that device finds it bound (EBUSY) where the model, which saw the first bind
    /// fail, says ok; nvme's bind into a VFIO-owned group blocks (its probe's admin
    /// commands DMA through a domain userspace owns and wait out their timeout). Under
    /// virtio-iommu the cdev scenario never owns the group (no isolated MSI: EPERM), so it is
    /// unchanged there.
    static let ownerCheckSkippedMismatches = [
        "integrated-endpoints | integrated-multifunction-ownership | step 7 bind mdisk",
        "integrated-endpoints.virtio | integrated-multifunction-ownership | step 7 bind mdisk",
        "multifunction-e1000e-edu | driver-bind-into-user-owned-group | step 3 bind nic0",
        "multifunction-e1000e-edu | kernel-driver-blocks-iommufd-claim | step 6 bind nic0",
        "multifunction-e1000e-edu | kernel-driver-blocks-iommufd-claim | step 9 bind nic0",
        "multifunction-e1000e-edu | kernel-driver-blocks-user-claim | step 6 bind nic0",
        "multifunction-e1000e-edu | kernel-driver-blocks-user-claim | step 8 bind nic0",
        "multifunction-e1000e-edu | modprobe-into-user-owned-group | step 3 load-driver e1000e",
        "multifunction-e1000e-edu.virtio | driver-bind-into-user-owned-group | step 3 bind nic0",
        "multifunction-e1000e-edu.virtio | kernel-driver-blocks-user-claim | step 6 bind nic0",
        "multifunction-e1000e-edu.virtio | kernel-driver-blocks-user-claim | step 8 bind nic0",
        "multifunction-e1000e-edu.virtio | modprobe-into-user-owned-group | step 3 load-driver e1000e",
    ]

    func testOwnerCheckSkippedTreeShowsExactlyItsMismatchesAndTheDiffNamesThemRegressions() throws {
        let tree = try tree(patched: true)
        let label = "owner-check-skipped"
        let m = try matrix(tree: tree, label: label, extra: ["--baseline", "7.3-iommufd"])
        defer { try? fm.removeItem(atPath: m.output) }
        XCTAssertEqual(m.status, 1, m.err)
        // Exactly the patch's mismatches beyond any the unpatched source has (which should be none).
        let baseline = items(m.results, kernel: "7.3-iommufd", kind: "mismatch")
        XCTAssertEqual(baseline, [], "the unpatched source matches the model everywhere")
        XCTAssertEqual(Set(items(m.results, kernel: label, kind: "mismatch")),
                       Set(Self.ownerCheckSkippedMismatches + baseline))
        XCTAssertEqual(items(m.results, kernel: label, kind: "crash"), [])
        try checkRecord(m.results, label: label, tree: tree)

        // regression.json: the same items, each a regression the model's prediction does not explain.
        let data = try Data(contentsOf: URL(fileURLWithPath: m.output + "/regression.json"))
        let report = try XCTUnwrap(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        XCTAssertEqual(report["baselineKernel"] as? String, "7.3-iommufd")
        let entries = report["entries"] as? [[String: Any]] ?? []
        let named = entries.map { e -> String in
            let c = e["change"] as? [String: Any] ?? [:]
            return "\(c["topology"] ?? "") | \(c["scenario"] as? String ?? "-") | \(c["title"] ?? "")"
        }.sorted()
        XCTAssertEqual(named, Self.ownerCheckSkippedMismatches)
        for e in entries {
            XCTAssertEqual((e["change"] as? [String: Any])?["kind"] as? String, "regression", "\(e)")
            XCTAssertEqual(e["holds"] as? String, "prediction-does-not-hold", "\(e)")
        }
        let md = try String(contentsOfFile: m.output + "/regression.md", encoding: .utf8)
        XCTAssertTrue(md.contains("iommu\\_device\\_use\\_default\\_domain()"), "the model's reasoning is beside each change")

        // report diff, the general tool, pairs the two kernels of one results.json the same way.
        let results = m.output + "/results.json"
        let diff = try isolab(["report", "diff", results, results, "--base-kernel", "7.3-iommufd", "--new-kernel", label])
        XCTAssertEqual(diff.status, 1, diff.err)
        XCTAssertTrue(diff.out.hasPrefix("regressions (\(Self.ownerCheckSkippedMismatches.count)):\n"), diff.out)
        for item in Self.ownerCheckSkippedMismatches {
            let parts = item.components(separatedBy: " | ")
            XCTAssertTrue(diff.out.contains("\(parts[0]) on \(label) · QEMU 7.2: \(parts[1]): \(parts[2]): "), "\(item) in \(diff.out)")
        }
    }
}
