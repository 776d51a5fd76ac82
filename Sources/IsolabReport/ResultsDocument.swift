import Foundation
import IsolabModel
import IsolabProtocol

/// A results file (schema `isolab-results/1`, docs/results-json.md): every guest observation and
/// every verdict of a run, with what produced them, so reports and diffs can be rendered later
/// and shards merged.
public struct ResultsDocument: Codable, Equatable, Sendable {
    /// The schema this version writes and reads.
    public static let currentSchema = "isolab-results/1"

    public var schema: String
    /// The isolab version that wrote (or merged) the document.
    public var isolab: String
    /// The kernels the runs booted, by label.
    public var kernels: [KernelBuild]
    /// The emulators that ran them, by label (absent in documents written before the axis).
    public var emulators: [EmulatorBuild]?
    /// The fabrics, by name.
    public var topologies: [TopologyRecord]
    /// One per fabric × kernel.
    public var runs: [FabricRun]
    /// The run's wall time in seconds (merged shards: the longest shard's); nil when not recorded.
    public var wallSeconds: Double?

    public init(isolab: String, kernels: [KernelBuild], topologies: [TopologyRecord], runs: [FabricRun]) {
        self.schema = ResultsDocument.currentSchema
        self.isolab = isolab
        self.kernels = kernels
        self.topologies = topologies
        self.runs = runs
    }

    public func topology(named name: String) -> TopologyRecord? { topologies.first { $0.name == name } }

    /// One fabric × kernel to judge: the model's prediction and the guest runs of it.
    public struct Input {
        public var prediction: KernelPrediction
        /// The kernel as the user named it (`6.1`, or a developer kernel's label).
        public var kernelLabel: String
        public var observations: [VMObservation]
        /// Hex sha256 of the topology file's bytes.
        public var topologySHA256: String
        /// The observations of each repetition (`isolab matrix --repeat N`), when there are
        /// several; `observations` then holds them all.
        public var repetitions: [[VMObservation]]
        /// The emulator's label (`7.2`, `10.0`), when the run records one.
        public var emulator: String?
        /// What ran this input, when it differs from the document's (each emulator has its own).
        public var environment: Environment?
        public init(prediction: KernelPrediction, kernelLabel: String, observations: [VMObservation], topologySHA256: String) {
            self.prediction = prediction
            self.kernelLabel = kernelLabel
            self.observations = observations
            self.topologySHA256 = topologySHA256
            self.repetitions = [observations]
        }

        /// A cell run `repetitions.count` times; each repetition is judged on its own and the
        /// verdicts combined (`Judge.combining`).
        public init(prediction: KernelPrediction, kernelLabel: String, repetitions: [[VMObservation]], topologySHA256: String) {
            self.init(prediction: prediction, kernelLabel: kernelLabel, observations: repetitions.flatMap { $0 },
                      topologySHA256: topologySHA256)
            self.repetitions = repetitions
        }
    }

    /// Judges every input and records it with the versions of what ran it.
    public init(isolab: String, environment: Environment, kernels: [KernelBuild], inputs: [Input]) {
        var topologies: [TopologyRecord] = []
        for i in inputs where !topologies.contains(where: { $0.name == i.prediction.topology.name }) {
            topologies.append(TopologyRecord(i.prediction.topology, fabric: i.prediction.fabric, sha256: i.topologySHA256))
        }
        self.init(isolab: isolab, kernels: kernels, topologies: topologies, runs: inputs.map {
            var run = FabricRun(prediction: $0.prediction, kernelLabel: $0.kernelLabel, environment: $0.environment ?? environment,
                                observations: $0.observations)
            run.emulator = $0.emulator
            if $0.repetitions.count > 1 {
                let p = $0.prediction
                run.verdicts = Judge.combining($0.repetitions.map { Judge.verdicts(p, observations: $0) })
            }
            return run
        })
    }
}

/// Versions of what ran the guests (passed in by the caller).
public struct Environment: Codable, Hashable, Sendable {
    public var isolab: String
    /// `qemu-system-x86_64 --version`, e.g. `7.2.15`.
    public var qemu: String
    /// libvirt's library version, e.g. `9.0.0`.
    public var libvirt: String
    public init(isolab: String, qemu: String, libvirt: String) {
        self.isolab = isolab
        self.qemu = qemu
        self.libvirt = libvirt
    }
}

/// One kernel of the run: its label (`6.1`, or a developer kernel's), release and packages.
public struct KernelBuild: Codable, Equatable, Sendable {
    public var label: String
    /// `uname -r`, when known.
    public var release: String?
    public var packages: [KernelPackage]
    /// sha256 of the kernel file the guest image was built from (the bzImage), when known.
    public var imageSha256: String?
    /// The developer's build tree it came from (`--kernel-tree`), when it did.
    public var tree: KernelTreeSource?
    public init(label: String, release: String? = nil, packages: [KernelPackage] = [],
                imageSha256: String? = nil, tree: KernelTreeSource? = nil) {
        self.label = label
        self.release = release
        self.packages = packages
        self.imageSha256 = imageSha256
        self.tree = tree
    }
}

/// One emulator of the run: its label, what it is and the libvirt that drove it.
public struct EmulatorBuild: Codable, Equatable, Sendable {
    public var label: String
    /// `--version`'s first line, e.g. `QEMU emulator version 10.0.2 (Debian 1:10.0.2+ds-1~bpo12+1)`.
    public var version: String
    /// The binary libvirt ran (nil: libvirt's default, the host's QEMU).
    public var binary: String?
    /// Hex sha256 of the QEMU binary itself.
    public var binarySha256: String?
    /// The Debian packages it was unpacked from, when it was.
    public var packages: [KernelPackage]
    /// The libvirt library version that drove it.
    public var libvirt: String?

    public init(label: String, version: String, binary: String? = nil, binarySha256: String? = nil,
                packages: [KernelPackage] = [], libvirt: String? = nil) {
        self.label = label; self.version = version; self.binary = binary
        self.binarySha256 = binarySha256; self.packages = packages; self.libvirt = libvirt
    }
}

/// Where a developer's kernel came from: its build tree, git state and configuration.
public struct KernelTreeSource: Codable, Equatable, Sendable {
    public var path: String
    /// `git rev-parse HEAD` of the tree; nil when it is not a git work tree.
    public var gitCommit: String?
    /// Uncommitted changes (`git describe --dirty`).
    public var gitDirty: Bool?
    public var gitDescribe: String?
    /// sha256 of the tree's `.config`.
    public var configSha256: String

    public init(path: String, gitCommit: String? = nil, gitDirty: Bool? = nil, gitDescribe: String? = nil, configSha256: String) {
        self.path = path; self.gitCommit = gitCommit; self.gitDirty = gitDirty
        self.gitDescribe = gitDescribe; self.configSha256 = configSha256
    }

    /// One line for reports: `PATH (git COMMIT, dirty), .config sha256 …`.
    public var summary: String {
        var s = path
        if let gitCommit { s += " (git \(gitCommit.prefix(12))\(gitDirty == true ? ", dirty" : ""))" }
        return s + ", .config sha256 \(configSha256.prefix(12))"
    }
}

public struct KernelPackage: Codable, Equatable, Sendable {
    public var name: String
    public var version: String
    /// Hex sha256 of the .deb (or of the image for a local build).
    public var sha256: String
    public init(name: String, version: String, sha256: String) {
        self.name = name
        self.version = version
        self.sha256 = sha256
    }
}

/// A fabric as reports draw it: every function the guest enumerates, with its guest path.
public struct TopologyRecord: Codable, Equatable, Sendable {
    public var name: String
    public var file: String
    /// Hex sha256 of the topology file's bytes.
    public var sha256: String
    public var description: String?
    public var iommu: String
    public var functions: [DiagramNode]

    public init(name: String, file: String, sha256: String, description: String?, iommu: String, functions: [DiagramNode]) {
        self.name = name
        self.file = file
        self.sha256 = sha256
        self.description = description
        self.iommu = iommu
        self.functions = functions
    }

    /// The record of a topology and its fabric; `sha256` is the file's hash, computed by the caller.
    public init(_ topology: Topology, fabric: Fabric, sha256: String) {
        self.init(name: topology.name, file: topology.file, sha256: sha256, description: topology.description,
                  iommu: topology.iommu.rawValue, functions: fabric.functions.map { DiagramNode($0, in: fabric) })
    }
}

/// One PCI function of a fabric drawing. Its parent is the function whose path is this one's
/// minus the last `/xx.y` component (the root bus, pcie.0, for a single component).
public struct DiagramNode: Codable, Equatable, Sendable {
    public var path: String
    /// The node id, or what the chipset or vIOMMU function is.
    public var name: String
    /// The topology keyword (`root-port`, `switch`, `port`, `pcie-pci-bridge`, `pci-bridge`,
    /// `device`), or `chipset` / `viommu`.
    public var kind: String
    /// `edu`, `acs off`, …: what tells otherwise equal nodes apart.
    public var detail: String?
    public var isBridge: Bool
    /// For an SR-IOV VF: its PF's path, under which diagrams draw it (nil otherwise).
    public var physicalFunction: String?

    public init(path: String, name: String, kind: String, detail: String?, isBridge: Bool, physicalFunction: String? = nil) {
        self.path = path
        self.name = name
        self.kind = kind
        self.detail = detail
        self.isBridge = isBridge
        self.physicalFunction = physicalFunction
    }

    init(_ f: PCIFunction, in fabric: Fabric) {
        var kind: String
        var detail: String?
        switch f.origin {
        case .chipset: kind = "chipset"
        case .viommu: kind = "viommu"
        case .declared: kind = f.kind?.keyword ?? "device"
        }
        switch f.kind {
        case .rootPort(let acs)?: detail = acs ? "acs" : "acs off"
        case .downstreamPort(let acs)?: detail = acs == true ? "acs" : "no acs"
        case .device(let m, _)?: detail = m.rawValue
        default: detail = nil
        }
        self.init(path: f.path, name: f.displayName, kind: kind, detail: detail, isBridge: f.isBridge)
        if let pf = f.physicalFunction {
            // A VF is its PF's: drawn below it, named by PF and index (A.vf0), "VF" in the detail.
            physicalFunction = fabric.functions[pf].path
            self.kind = "vf"
            self.detail = "VF \(f.virtualFunctionIndex ?? 0) of \(fabric.functions[pf].displayName)"
        }
    }

    /// The parent's path: a VF's PF, else the bridge above; nil on the root bus.
    public var parentPath: String? {
        if let pf = physicalFunction { return pf }
        guard let slash = path.lastIndex(of: "/") else { return nil }
        return String(path[..<slash])
    }
}

/// One fabric on one kernel: what was predicted, observed and judged.
public struct FabricRun: Codable, Equatable, Sendable {
    public var topology: String
    /// The kernel label, as in `ResultsDocument.kernels`.
    public var kernel: String
    /// The model generation that predicted it (`6.1`).
    public var generation: String
    public var iommuActive: Bool
    public var iommuNote: String?
    public var environment: Environment
    /// The emulator's label (`7.2`, `10.0`, a developer build's), as in `ResultsDocument.emulators`;
    /// nil in documents written before the emulator axis.
    public var emulator: String?
    /// False when the fabric is unrealizable and was not booted.
    public var booted: Bool
    /// The groups the model predicts at boot, as guest paths.
    public var predictedGroups: [[String]]
    public var observations: [VMObservation]
    public var verdicts: [Verdict]

    public init(topology: String, kernel: String, generation: String, iommuActive: Bool, iommuNote: String?,
                environment: Environment, booted: Bool, predictedGroups: [[String]],
                observations: [VMObservation], verdicts: [Verdict]) {
        self.topology = topology
        self.kernel = kernel
        self.generation = generation
        self.iommuActive = iommuActive
        self.iommuNote = iommuNote
        self.environment = environment
        self.booted = booted
        self.predictedGroups = predictedGroups
        self.observations = observations
        self.verdicts = verdicts
    }

    /// Judges one prediction against its observations.
    public init(prediction p: KernelPrediction, kernelLabel: String, environment: Environment,
                observations: [VMObservation]) {
        self.init(topology: p.topology.name, kernel: kernelLabel, generation: p.kernel.id,
                  iommuActive: p.iommuActive, iommuNote: p.iommuNote, environment: environment,
                  booted: p.unrealizable.isEmpty,
                  predictedGroups: p.iommuActive ? p.groupsAtBoot.map { $0.map(\.path) } : [],
                  observations: observations, verdicts: Judge.verdicts(p, observations: observations))
    }

    /// The kernel, and the emulator when the run records one: `6.1`, `6.1 · QEMU 10.0`.
    public var platform: String { emulator.map { "\(kernel) · QEMU \($0)" } ?? kernel }

    /// The observed group of each guest path, from the run's inventory.
    public var observedGroupOf: [String: Int] {
        let inv = observations.first { $0.scenario == nil }?.inventory ?? observations.first { $0.inventory != nil }?.inventory
        var out: [String: Int] = [:]
        for g in inv?.groups ?? [] { for m in g.members { out[m] = g.id } }
        return out
    }

    /// Verdict counts by label (`match`, `expected crash`, …).
    public var counts: [String: Int] {
        verdicts.reduce(into: [:]) { $0[$1.label, default: 0] += 1 }
    }
}

/// Why a results document could not be read, written or merged.
public enum ReportError: Error, Equatable, CustomStringConvertible {
    /// The document names a schema this version does not read.
    case unsupportedSchema(found: String, source: String)
    /// Shards of different schema versions.
    case schemaMismatch(expected: String, found: String, shard: Int)
    /// Not JSON, or not shaped like a results document.
    case malformed(source: String, message: String)
    /// Two shards ran the same fabric on the same kernel.
    case duplicateRun(topology: String, kernel: String)
    /// Two shards used different files under one topology name.
    case conflictingTopology(String)
    /// Two shards booted different kernel builds under one label.
    case conflictingKernel(String)
    /// Two shards ran different emulator builds under one label.
    case conflictingEmulator(String)
    case encodingFailed(String)

    public var description: String {
        switch self {
        case .unsupportedSchema(let found, let source):
            return "\(source): schema '\(found)' is not supported (accepted: \(ResultsDocument.currentSchema))"
        case .schemaMismatch(let expected, let found, let shard):
            return "shard \(shard + 1) has schema '\(found)'; only '\(expected)' results can be merged (re-run the shard with this isolab)"
        case .malformed(let source, let message):
            return "\(source): not an isolab results document: \(message)"
        case .duplicateRun(let t, let k):
            return "\(t) on kernel \(k) appears in more than one shard"
        case .conflictingTopology(let t):
            return "topology \(t) differs between shards (different sha256)"
        case .conflictingKernel(let k):
            return "kernel \(k) differs between shards (different release or packages)"
        case .conflictingEmulator(let e):
            return "emulator \(e) differs between shards (different version or binary)"
        case .encodingFailed(let m):
            return "cannot encode the results: \(m)"
        }
    }
}

extension ResultsDocument {
    /// The document as JSON: pretty, keys sorted.
    public func json() throws(ReportError) -> String {
        let e = JSONEncoder()
        e.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        do {
            return String(decoding: try e.encode(self), as: UTF8.self)
        } catch {
            throw .encodingFailed("\(error)")
        }
    }

    /// Reads a results document; `source` names it in errors. The schema is checked first, so a
    /// document of another version gets that error rather than a decoding one.
    public static func decode(_ data: Data, source: String = "<results>") throws(ReportError) -> ResultsDocument {
        struct Probe: Decodable { var schema: String? }
        let d = JSONDecoder()
        let schema: String?
        do { schema = try d.decode(Probe.self, from: data).schema } catch {
            throw .malformed(source: source, message: "\(error)")
        }
        guard let schema else { throw .malformed(source: source, message: "no \"schema\" key") }
        guard schema == currentSchema else { throw .unsupportedSchema(found: schema, source: source) }
        do { return try d.decode(ResultsDocument.self, from: data) } catch {
            throw .malformed(source: source, message: "\(error)")
        }
    }

    /// Joins shard results into one document. Shards must share the schema; a fabric × kernel
    /// may appear in one shard only; topologies and kernels shared by shards must be the same.
    public static func merge(_ shards: [ResultsDocument]) throws(ReportError) -> ResultsDocument {
        guard let first = shards.first else { return ResultsDocument(isolab: "", kernels: [], topologies: [], runs: []) }
        var out = ResultsDocument(isolab: first.isolab, kernels: [], topologies: [], runs: [])
        var seen = Set<String>()
        for (i, shard) in shards.enumerated() {
            guard shard.schema == currentSchema else {
                throw .schemaMismatch(expected: currentSchema, found: shard.schema, shard: i)
            }
            for k in shard.kernels {
                if let have = out.kernels.first(where: { $0.label == k.label }) {
                    guard have == k else { throw .conflictingKernel(k.label) }
                } else { out.kernels.append(k) }
            }
            for t in shard.topologies {
                if let have = out.topology(named: t.name) {
                    guard have.sha256 == t.sha256 else { throw .conflictingTopology(t.name) }
                } else { out.topologies.append(t) }
            }
            for e in shard.emulators ?? [] {
                if let have = out.emulators?.first(where: { $0.label == e.label }) {
                    guard have == e else { throw .conflictingEmulator(e.label) }
                } else { out.emulators = (out.emulators ?? []) + [e] }
            }
            if let w = shard.wallSeconds { out.wallSeconds = max(out.wallSeconds ?? 0, w) }
            for r in shard.runs {
                guard seen.insert([r.topology, r.kernel, r.emulator ?? ""].joined(separator: "\u{0}")).inserted else {
                    throw .duplicateRun(topology: r.topology, kernel: r.platform)
                }
                out.runs.append(r)
            }
        }
        return out
    }
}
