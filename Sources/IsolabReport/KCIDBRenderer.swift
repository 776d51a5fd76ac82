import Foundation
import IsolabProtocol

/// A results document as KCIDB I/O data (schema v5.3, the latest `kcidb-io` validates), the
/// form kernel CI systems (KernelCI, CKI, …) exchange results in.
///
/// One checkout and one build per kernel (Debian's packages or the developer's tree, with
/// versions, sha256 and config), one test per judged item, at a path
/// `isolab.<fabric>.<scenario>.<step>[.<subtest>]` (hazards, groups and unrealizable nodes
/// under `isolab.<fabric>.hazards|groups|unrealizable`, the boot of a fabric at
/// `isolab.<fabric>.boot`). Statuses follow isolab's verdicts: what agrees with the model or a
/// pin is PASS (an expected hazard with the hazard in `misc`), a mismatch, an unpredicted hazard,
/// an unexpected crash or a flaky item FAIL, an infrastructure failure ERROR, an unrealizable
/// node SKIP; a step the guest never reached (`not-run`) is MISS and a kernel selftest that
/// reported SKIP is SKIP, whatever the verdict (the verdict stays in `misc`). Identifiers are
/// content-derived: rendering the same results twice gives the same objects.
public enum KCIDBRenderer {
    /// The schema version written.
    public static let version = (major: 5, minor: 3)

    /// Accepted origins: KCIDB's `^[a-z0-9_]+$`.
    public static func isValidOrigin(_ s: String) -> Bool {
        !s.isEmpty && s.unicodeScalars.allSatisfy { ("a"..."z").contains($0) || ("0"..."9").contains($0) || $0 == "_" }
    }

    /// The KCIDB JSON of `doc`, submitted as `origin`.
    public static func render(_ doc: ResultsDocument, origin: String = "isolab") throws(ReportError) -> String {
        let e = JSONEncoder()
        e.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        e.keyEncodingStrategy = .convertToSnakeCase
        do {
            return String(decoding: try e.encode(data(doc, origin: origin)), as: UTF8.self)
        } catch {
            throw .encodingFailed("\(error)")
        }
    }

    static func data(_ doc: ResultsDocument, origin: String) -> KCIDBData {
        // A run's identity: the hash of what it observed, so a re-render names the same tests.
        let runID = (try? doc.json()).map(fnv1a) ?? "unknown"
        var out = KCIDBData()
        var buildOf: [String: String] = [:]
        for k in doc.kernels {
            let (checkout, build) = objects(k, origin: origin)
            out.checkouts.append(checkout)
            out.builds.append(build)
            buildOf[k.label] = build.id
        }
        for run in doc.runs {
            guard let build = buildOf[run.kernel] else { continue }
            let env = environment(run, doc: doc)
            let cell = [run.topology, run.kernel, run.emulator ?? "", run.environment.qemu].joined(separator: ":")
            let fabric = component(run.topology)
            out.tests.append(bootTest(run, origin: origin, id: "\(origin):\(runID):\(cell):boot", build: build, env: env, fabric: fabric))
            for v in run.verdicts {
                var t = KCIDBTest(buildId: build, id: "\(origin):\(runID):\(cell):\(v.item)", origin: origin)
                t.path = "isolab." + fabric + "." + path(v)
                t.status = status(v)
                t.environment = env
                t.comment = Check(run: run, verdict: v).name
                t.logExcerpt = excerpt(Check(run: run, verdict: v).explanation)
                let o = observation(of: v, in: run)
                t.outputFiles = files(o)
                t.misc = TestMisc(verdict: v.label, subject: v.subject.rawValue, item: v.item, expected: v.expected,
                                  observed: v.observed, errno: v.errno, rule: v.rule.map { "\($0.kernelFunction): \($0.text)" },
                                  because: v.because, detail: v.detail, line: v.line,
                                  hazard: v.subject == .hazard && v.kind == .hazardAsExpected ? v.title : nil)
                out.tests.append(t)
            }
        }
        return out
    }

    /// The fabric's boot as a test of its own: the run's status, with every guest's console.
    static func bootTest(_ run: FabricRun, origin: String, id: String, build: String, env: KCIDBEnvironment, fabric: String) -> KCIDBTest {
        var t = KCIDBTest(buildId: build, id: id, origin: origin)
        t.path = "isolab." + fabric + ".boot"
        t.environment = env
        t.comment = "\(run.topology) on \(run.platform)"
        switch run.status {
        case "pass": t.status = "PASS"
        case "FAIL": t.status = "FAIL"
        case "not booted": t.status = "SKIP"
        default: t.status = "ERROR"
        }
        let vm = run.observations.map(\.timing.vmSeconds).reduce(0, +)
        if vm > 0 { t.duration = vm }
        t.outputFiles = run.observations.flatMap(files)
        if t.outputFiles?.isEmpty == true { t.outputFiles = nil }
        let counts = run.counts.sorted { $0.key < $1.key }.map { "\($0.value) \($0.key)" }.joined(separator: ", ")
        t.logExcerpt = excerpt([t.comment ?? "", counts] + (run.iommuNote.map { ["IOMMU: \($0)"] } ?? []))
        return t
    }

    /// FNV-1a (64 bit) of a text, in hex: a stable name, not a security property.
    static func fnv1a(_ s: String) -> String {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in s.utf8 { h = (h ^ UInt64(b)) &* 0x100_0000_01b3 }
        return String(h, radix: 16)
    }

    /// KCIDB's status for one verdict.
    public static func status(_ v: Verdict) -> String {
        if v.observed == "not-run" { return "MISS" }
        if v.subject == .subtest, v.observed == "skip", v.standing == .pass { return "SKIP" }
        switch v.standing {
        case .pass: return "PASS"
        case .fail: return "FAIL"
        case .infrastructure: return "ERROR"
        case .neutral: return "SKIP"
        }
    }

    /// The test path below `isolab.<fabric>.` for one verdict.
    static func path(_ v: Verdict) -> String {
        let rest = v.item.split(separator: ":", maxSplits: 1).dropFirst().first.map(String.init) ?? v.item
        switch v.subject {
        case .group: return "groups." + component(rest)
        case .hazard: return "hazards." + component(rest)
        case .node: return "unrealizable." + component(rest)
        case .run: return component(v.scenario ?? "inventory") + ".run"
        case .step, .probe:
            return component(v.scenario ?? "") + "." + component(v.title.hasPrefix("step ") ? String(v.title.dropFirst(5)) : v.title)
        case .subtest:
            // item: subtest:<scenario>:<step index>:<TAP name>
            let parts = v.item.split(separator: ":", maxSplits: 3, omittingEmptySubsequences: false)
            let name = parts.count == 4 ? String(parts[3]) : v.title
            return component(v.scenario ?? "") + ".step-" + String((v.step ?? 0) + 1) + "." + component(name)
        }
    }

    /// One path component: KCIDB allows `[a-zA-Z0-9_-]`; `->` becomes `-to-`, anything else `_`.
    static func component(_ s: String) -> String {
        let s = s.replacingOccurrences(of: " -> ", with: "-to-").replacingOccurrences(of: "->", with: "-to-")
        let c = String(s.unicodeScalars.map { u -> Character in
            let ok = ("a"..."z").contains(u) || ("A"..."Z").contains(u) || ("0"..."9").contains(u) || u == "_" || u == "-"
            return ok ? Character(u) : "_"
        })
        return c.isEmpty ? "_" : c
    }

    /// KCIDB caps excerpts at 16384 characters; the end matters most (the failure is last).
    static func excerpt(_ lines: [String]) -> String? {
        let s = lines.joined(separator: "\n").replacingOccurrences(of: "\u{0}", with: "")
        if s.isEmpty { return nil }
        return s.count <= 16_000 ? s : "…" + String(s.suffix(15_990))
    }

    /// The guest run an item was observed in: its scenario's, else the fabric's inventory boot.
    static func observation(of v: Verdict, in run: FabricRun) -> VMObservation? {
        if let s = v.scenario, let o = run.observations.first(where: { $0.scenario == s }) { return o }
        return run.observations.first { $0.scenario == nil } ?? run.observations.first
    }

    /// The console and the record stream of a guest run, as `file://` URLs on isolab's machine.
    static func files(_ o: VMObservation?) -> [KCIDBResource] {
        guard let o else { return [] }
        let tag = component(o.scenario ?? "inventory")
        var out: [KCIDBResource] = []
        if let c = o.consolePath { out.append(KCIDBResource(name: "\(tag)-console.log", url: URL(fileURLWithPath: c).absoluteString)) }
        if let r = o.recordsPath { out.append(KCIDBResource(name: "\(tag)-records.jsonl", url: URL(fileURLWithPath: r).absoluteString)) }
        return out
    }

    static func environment(_ run: FabricRun, doc: ResultsDocument) -> KCIDBEnvironment {
        let emulator = doc.emulators?.first { $0.label == run.emulator }
        let iommu = doc.topology(named: run.topology)?.iommu
        return KCIDBEnvironment(
            comment: "QEMU \(run.environment.qemu) (q35, TCG) driven by libvirt \(run.environment.libvirt)"
                + (iommu.map { ", vIOMMU \($0)" } ?? ""),
            misc: EnvironmentMisc(isolab: run.environment.isolab, qemu: run.environment.qemu, libvirt: run.environment.libvirt,
                                  emulator: run.emulator, emulatorSha256: emulator?.binarySha256, iommu: iommu,
                                  modelGeneration: run.generation))
    }

    /// The checkout and build of one kernel: a developer's tree by its git commit and `.config`,
    /// a Debian kernel by its packages.
    static func objects(_ k: KernelBuild, origin: String) -> (KCIDBCheckout, KCIDBBuild) {
        let label = component(k.label)
        let packages = k.packages.map { "\($0.name) \($0.version) sha256:\($0.sha256)" }
        var checkout: KCIDBCheckout
        var build: KCIDBBuild
        if let tree = k.tree {
            let key = tree.gitCommit ?? tree.configSha256
            checkout = KCIDBCheckout(id: "\(origin):tree-\(key)\(tree.gitDirty == true ? "-dirty-" + tree.configSha256.prefix(12) : "")", origin: origin)
            checkout.treeName = "local"
            if let c = tree.gitCommit, c.count == 40, c.allSatisfy(\.isHexDigit) { checkout.gitCommitHash = c.lowercased() }
            checkout.gitCommitName = tree.gitDescribe
            checkout.comment = "developer tree " + tree.summary
            build = KCIDBBuild(checkoutId: checkout.id, id: "\(origin):build-\(label)-\(k.imageSha256?.prefix(16) ?? tree.configSha256.prefix(16))", origin: origin)
            build.configName = ".config sha256:\(tree.configSha256)"
            build.command = "make bzImage modules"
        } else {
            let key = k.packages.first?.sha256.prefix(16) ?? Substring(label)
            checkout = KCIDBCheckout(id: "\(origin):debian-\(key)", origin: origin)
            checkout.treeName = "debian"
            checkout.comment = k.packages.first.map { "Debian \($0.name) \($0.version)" } ?? "kernel \(k.label)"
            build = KCIDBBuild(checkoutId: checkout.id, id: "\(origin):build-\(label)-\(k.imageSha256?.prefix(16) ?? key)", origin: origin)
            build.configName = k.packages.isEmpty ? nil : "debian amd64 (the image package's /boot/config-\(k.release ?? "…"))"
        }
        checkout.valid = true
        checkout.misc = KernelMisc(label: k.label, release: k.release, packages: packages.isEmpty ? nil : packages,
                                   imageSha256: k.imageSha256, configSha256: k.tree?.configSha256, treePath: k.tree?.path,
                                   gitDirty: k.tree?.gitDirty)
        build.architecture = "x86_64"
        build.status = "PASS"
        build.comment = "kernel \(k.label)" + (k.release.map { " (\($0))" } ?? "")
        build.misc = checkout.misc
        return (checkout, build)
    }
}

// MARK: - KCIDB v5.3 objects (only the fields isolab fills; absent fields are omitted, never null)

struct KCIDBData: Encodable {
    struct Version: Encodable { var major = KCIDBRenderer.version.major; var minor = KCIDBRenderer.version.minor }
    var version = Version()
    var checkouts: [KCIDBCheckout] = []
    var builds: [KCIDBBuild] = []
    var tests: [KCIDBTest] = []
}

struct KCIDBResource: Encodable {
    var name: String
    var url: String
}

struct KernelMisc: Encodable {
    var label: String
    var release: String?
    var packages: [String]?
    var imageSha256: String?
    var configSha256: String?
    var treePath: String?
    var gitDirty: Bool?
}

struct KCIDBCheckout: Encodable {
    var id: String
    var origin: String
    var treeName: String?
    var gitCommitHash: String?
    var gitCommitName: String?
    var comment: String?
    var valid: Bool?
    var misc: KernelMisc?
}

struct KCIDBBuild: Encodable {
    var checkoutId: String
    var id: String
    var origin: String
    var comment: String?
    var architecture: String?
    var command: String?
    var configName: String?
    var status: String?
    var misc: KernelMisc?
}

struct EnvironmentMisc: Encodable {
    var isolab: String
    var qemu: String
    var libvirt: String
    var emulator: String?
    var emulatorSha256: String?
    var iommu: String?
    var modelGeneration: String
}

struct KCIDBEnvironment: Encodable {
    var comment: String
    var misc: EnvironmentMisc
}

struct TestMisc: Encodable {
    var verdict: String
    var subject: String
    var item: String
    var expected: String?
    var observed: String?
    var errno: Int?
    var rule: String?
    var because: String?
    var detail: String?
    var line: Int?
    /// For an expected hazard: the pair PCIe connects past the IOMMU.
    var hazard: String?
}

struct KCIDBTest: Encodable {
    var buildId: String
    var id: String
    var origin: String
    var environment: KCIDBEnvironment?
    var path: String?
    var comment: String?
    var logExcerpt: String?
    var status: String?
    var duration: Double?
    var outputFiles: [KCIDBResource]?
    var misc: TestMisc?
}
