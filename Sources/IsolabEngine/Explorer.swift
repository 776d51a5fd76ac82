import Foundation
import IsolabExplore
import IsolabImages
import IsolabModel
import IsolabProtocol
import IsolabReport
import IsolabVM

/// `isolab explore`: random fabrics inside what the emulator builds, each predicted, booted for
/// its inventory (groups, guest paths, PCIe types, ACS capabilities, hazards) and judged; a
/// fabric the model gets wrong is shrunk (each candidate booted) to a minimal topology file.
public struct Explorer {
    public var seed: UInt64
    public var count: Int
    public var kernels: [MatrixKernel]
    public var emulators: [ProvidedEmulator]
    public var iommus: [IOMMUModel]
    public var jobs = ProcessInfo.processInfo.activeProcessorCount
    public var connections: [String?] = [nil]
    /// At most this many candidates are booted while shrinking one counterexample.
    public var shrinkBudget = 80
    public var log: (String) -> Void = { _ in }
    /// Told of each guest of the exploration proper (not of shrinking candidates).
    public var observer: FleetObserver?

    public init(seed: UInt64, count: Int, kernels: [MatrixKernel], emulators: [ProvidedEmulator], iommus: [IOMMUModel]) {
        self.seed = seed; self.count = count; self.kernels = kernels; self.emulators = emulators; self.iommus = iommus
    }

    /// What an exploration found (`explore.json`).
    public struct Result: Codable, Sendable {
        public var seed: UInt64
        public var count: Int
        public var kernels: [String]
        public var emulators: [String]
        public var iommus: [String]
        public var fabrics: [FabricResult]
        public var minimal: [Minimal]
        /// Guests booted for the exploration proper (shrinking not included) and its wall time.
        public var vms: Int
        public var wallSeconds: Double
        public var fabricsPerMinute: Double
        /// Cells that failed (mismatch, unpredicted hazard, unexpected crash) or gave no observation.
        public var failingCells: Int { fabrics.flatMap(\.cells).filter { $0.status == "FAIL" }.count }
        public var infrastructureCells: Int { fabrics.flatMap(\.cells).filter { $0.status == "infrastructure" }.count }
    }

    public struct FabricResult: Codable, Sendable {
        public var index: Int
        public var name: String
        public var nodes: Int
        public var yaml: String
        public var cells: [CellResult]
    }

    public struct CellResult: Codable, Sendable {
        public var kernel: String
        public var emulator: String
        public var iommu: String
        /// `pass`, `FAIL`, `infrastructure` or `not booted`.
        public var status: String
        public var unrealizable: [String]
        /// Each failing verdict: `title: headline` and the model's rule.
        public var failing: [String]
    }

    /// A counterexample shrunk to a minimal fabric that still fails.
    public struct Minimal: Codable, Sendable {
        public var from: String
        public var kernel: String
        public var emulator: String
        public var iommu: String
        public var nodes: Int
        public var originalNodes: Int
        public var yaml: String
        /// The minimal fabric's failing verdicts: prediction, observation and the model's reasoning.
        public var failing: [String]
        public var candidatesBooted: Int
    }

    /// How many guests the exploration proper boots (one per realizable cell).
    public var requestCount: Int {
        var generator = FabricGenerator(seed: seed)
        return (0..<count).reduce(0) { n, i in n + cellsOf(generator.next(), name: "explore-\(seed)-\(i)").filter(\.unrealizable.isEmpty).count }
    }

    /// Generates, boots, judges and shrinks. `provisioner` provides the kernels' images.
    public func run(_ provisioner: Provisioner) throws -> Result {
        var generator = FabricGenerator(seed: seed)
        var fabrics: [(name: String, fabric: ExploreFabric)] = []
        for i in 0..<count { fabrics.append(("explore-\(seed)-\(i)", generator.next())) }
        let cells = fabrics.flatMap { cellsOf($0.fabric, name: $0.name) }
        log("explore seed \(seed): \(fabrics.count) fabrics, \(cells.count) cells (\(cells.filter { !$0.unrealizable.isEmpty }.count) unrealizable)")
        let started = Date()
        let main = matrix(cells)
        let outcome = try main.run(provisioner, observer: observer)
        let wall = Date().timeIntervalSince(started)
        let perMinute = Double(fabrics.count) / max(wall / 60, 1e-9)
        log(String(format: "%d fabrics booted in %.0f s: %.1f fabrics per minute (%d VMs)", fabrics.count, wall, perMinute,
                   outcome.observations.count))
        var results: [FabricResult] = []
        var minimal: [Minimal] = []
        for (i, f) in fabrics.enumerated() {
            let runs = outcome.document.runs.filter { $0.topology == f.name || $0.topology.hasPrefix(f.name + ".") }
            var cellResults: [CellResult] = []
            for r in runs {
                let iommu = outcome.document.topology(named: r.topology)?.iommu ?? "?"
                let failing = Self.failing(r)
                cellResults.append(CellResult(kernel: r.kernel, emulator: r.emulator ?? "", iommu: iommu, status: r.status,
                                              unrealizable: r.verdicts.filter { $0.kind == .unrealizable }.map { "\($0.title): \($0.detail ?? "")" },
                                              failing: failing))
                if r.status == "FAIL", let m = try shrink(f.fabric, name: f.name, run: r, iommu: iommu, provisioner: provisioner) {
                    minimal.append(m)
                }
            }
            results.append(FabricResult(index: i, name: f.name, nodes: f.fabric.nodeCount,
                                        yaml: f.fabric.yaml(name: f.name, iommu: .intel), cells: cellResults))
        }
        return Result(seed: seed, count: count, kernels: kernels.map(\.label), emulators: emulators.map(\.label),
                      iommus: iommus.map(\.rawValue), fabrics: results, minimal: minimal,
                      vms: outcome.observations.count, wallSeconds: wall, fabricsPerMinute: perMinute)
    }

    /// The cells of one fabric: each vIOMMU asked for × kernel × emulator (a vIOMMU other than
    /// intel only on kernels that drive it, as in a matrix).
    func cellsOf(_ fabric: ExploreFabric, name: String, kernels: [MatrixKernel]? = nil, emulators: [ProvidedEmulator]? = nil,
                 iommus: [IOMMUModel]? = nil) -> [Cell] {
        var out: [Cell] = []
        for m in iommus ?? self.iommus {
            guard var t = fabric.topology(name: m == .intel ? name : "\(name).\(m.rawValue)", iommu: m) else { continue }
            t.iommu = m
            for k in kernels ?? self.kernels where m == .intel || m == .none || k.generation.drives(m) {
                for e in emulators ?? self.emulators {
                    var built = t
                    built.emulator = e.facts
                    out.append(Cell(topology: built, kernel: k.label, emulator: e.label, generation: k.generation,
                                    sha256: String(repeating: "0", count: 64), unrealizable: Realizability.check(built)))
                }
            }
        }
        return out
    }

    func matrix(_ cells: [Cell]) -> MatrixRun {
        var m = MatrixRun(cells: cells, kernels: Dictionary(uniqueKeysWithValues: kernels.map { ($0.label, KernelSource.catalog($0.label)) }),
                          emulators: Dictionary(uniqueKeysWithValues: emulators.map { ($0.label, $0) }))
        m.jobs = jobs
        m.connections = connections
        return m
    }

    /// Shrinks a fabric that failed on one cell: each candidate is booted on that cell's kernel,
    /// emulator and vIOMMU, and kept when it fails the same way (a failing verdict of a subject
    /// the original failed on).
    func shrink(_ fabric: ExploreFabric, name: String, run: FabricRun, iommu: String, provisioner: Provisioner) throws -> Minimal? {
        guard let k = kernels.first(where: { $0.label == run.kernel }), let e = emulators.first(where: { $0.label == run.emulator }),
              let m = IOMMUModel(rawValue: iommu) else { return nil }
        let subjects = Set(run.verdicts.filter { $0.standing == .fail }.map(\.subject))
        var booted = 0
        var lastFailing: [String] = Self.failing(run)
        log("\(name) fails on \(run.platform) (\(iommu)): shrinking \(fabric.nodeCount) nodes")
        var shrinker = Shrinker { candidate in
            guard booted < self.shrinkBudget else { return false }
            let cells = self.cellsOf(candidate, name: name + "-min", kernels: [k], emulators: [e], iommus: [m])
            guard let cell = cells.first, cell.unrealizable.isEmpty else { return false }
            booted += 1
            var single = self.matrix([cell])
            single.jobs = 1
            guard let r = try single.run(provisioner).document.runs.first else { return false }
            let fails = r.verdicts.contains { $0.standing == .fail && subjects.contains($0.subject) }
            if fails { lastFailing = Self.failing(r) }
            return fails
        }
        shrinker.progress = { self.log("  \(name): \($0.nodeCount) nodes still fail") }
        let small = try shrinker.shrink(fabric)
        return Minimal(from: name, kernel: run.kernel, emulator: run.emulator ?? "", iommu: iommu, nodes: small.nodeCount,
                       originalNodes: fabric.nodeCount, yaml: small.yaml(name: name + "-min", iommu: m), failing: lastFailing,
                       candidatesBooted: booted)
    }

    /// A run's failing verdicts, one line each: the item, expected and observed, the model's rule.
    static func failing(_ r: FabricRun) -> [String] {
        r.verdicts.filter { $0.standing == .fail || $0.standing == .infrastructure }.map { v in
            var s = "\(v.title): \(v.label)"
            if let e = v.expected { s += ", expected \(e)" }
            if let o = v.observed { s += ", observed \(o)" }
            if let d = v.detail { s += " (\(d))" }
            if let rule = v.rule { s += "; model: \(rule.kernelFunction): \(rule.text)" }
            return s
        }
    }
}
