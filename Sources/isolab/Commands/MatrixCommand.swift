import ArgumentParser
import Crypto
import Foundation
import IsolabImages
import IsolabLibvirt
import IsolabModel
import IsolabProtocol
import IsolabReport
import IsolabTopology
import IsolabVM

/// `isolab matrix`: fabrics × kernels × vIOMMUs, every scenario judged against the model.
struct MatrixCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "matrix",
        abstract: "Run a matrix of fabrics × kernels × vIOMMUs, judge every observation against the model, write the reports.",
        discussion: """
        Writes OUTPUT/results.json (schema docs/results-json.md), results.xml (JUnit), \
        results.tap (TAP 13), summary.md and report.html. Shards (--shard I/N) split the \
        cells deterministically; `isolab report merge` joins their results. Exit status: 0 when \
        every verdict is a match, a pin that held or an expected hazard; 1 on a mismatch or an \
        unexpected crash; 2 on bad input; 3 on an infrastructure failure; 130 when interrupted.
        """)

    @Argument(help: "The matrix file.")
    var file: String = "ci/matrix.yaml"
    /// Only these kernels (default: the matrix file's).
    @OptionGroup var kernelOptions: KernelOptions
    @OptionGroup var jobsOptions: JobsOptions
    @Option(help: "Run only shard I of N (1-based), e.g. 2/4.")
    var shard: String?
    @OptionGroup var connectOptions: ConnectOptions
    @OptionGroup var emulatorOptions: EmulatorOptions
    @OptionGroup var outputOptions: OutputOptions
    @Flag(help: "Boot every scenario afresh instead of restoring one saved boot per fabric and kernel.")
    var noSnapshot = false
    @Option(name: .customLong("repeat"), help: "Run every cell N times; an item judged differently between repetitions is reported flaky, with each observation.")
    var repetitions: Int = 1
    @Flag(help: "Flaky items do not fail the run (they are still reported).")
    var allowFlaky = false
    @OptionGroup var bootOptions: BootOptions
    @OptionGroup var developer: DeveloperKernelOptions
    @Option(help: "With --kernel-tree or --kernel-image: a catalog kernel id (run in the same matrix) or a saved results.json to compare with; writes regression.md and regression.json (every changed item, the model's reasoning for both kernels, a verdict per change) beside the reports.")
    var baseline: String?

    func run() throws {
        var plan: (cells: [Cell], kernels: [String], shard: (Int, Int), jobs: Int?, developer: DeveloperKernel?, baseline: Baseline?)!
        var boot = BootPath.pvh, clock = GuestClock.host
        try reportingInputErrors { plan = try validated(); boot = try bootOptions.resolve(); clock = try bootOptions.resolveClock() }
        let log: (String) -> Void = { cliLogger.info("\($0)") }
        let fail: (String) -> Void = { cliLogger.warning("\($0)") }
        let cells = plan.cells.enumerated().filter { $0.offset % plan.shard.1 == plan.shard.0 - 1 }.map(\.element)
        log("matrix \(file): \(plan.cells.count) cells, shard \(plan.shard.0)/\(plan.shard.1) runs \(cells.count)")

        var images: [String: GuestImage] = [:]
        var requests: [RunRequest] = []
        var owner: [(cell: Int, repetition: Int)] = []   // request -> cell and repetition
        do {
            let builder = try ImageBuilder(cache: ImageCache(root: ImageCache.defaultRoot()), recipe: Recipe(directory: Recipe.locate()))
            builder.log = log
            let agent = try AgentBinary.locate()
            let catalog = try builder.catalog
            let runsRoot = RunsDirectory.root()
            for k in Set(cells.map(\.kernel)).sorted() {
                if let dev = plan.developer, dev.label == k {
                    images[k] = try SignalTrap.cancellingImageBuilds { try dev.image(builder, agent: agent) }
                    log("kernel \(k): \(dev.release), generation \(dev.generation.id)" + (dev.treeSource.map { ", tree \($0.summary)" } ?? ""))
                } else {
                    images[k] = try SignalTrap.cancellingImageBuilds { try builder.build(kernel: try catalog.kernel(id: k), agent: agent) }
                }
            }
            for rep in 0..<repetitions {
            for (ci, cell) in cells.enumerated() where cell.unrealizable.isEmpty {
                let scenarios: [Scenario?] = cell.topology.scenarios.isEmpty ? [nil] : cell.topology.scenarios
                for s in scenarios {
                    let dir = RunsDirectory.new(in: runsRoot, label: [cell.topology.name, cell.kernel, s?.name ?? "inventory"].joined(separator: "-"))
                    var r = RunRequest(topology: cell.topology, fabric: Fabric(cell.topology), scenario: s,
                                       image: images[cell.kernel]!, kernelLabel: cell.kernel, directory: dir)
                    r.boot = boot
                    r.clock = clock
                    r.emulator = emulatorOptions.emulator
                    requests.append(r)
                    owner.append((ci, rep))
                }
            }
            }
            RunsDirectory.prune(runsRoot, keep: max(200, requests.count * 2))
        } catch let e as ExitCode {
            throw e
        } catch {
            fail(String(describing: error))
            throw ExitCode(3)
        }
        BootOptions.noteFallbacks(images, boot: boot, log: log)

        let connections: [LibvirtConnection]
        do {
            connections = try connectOptions.uris.map { try LibvirtConnection.open(connect: $0) }
        } catch {
            fail("cannot connect to libvirt: \(error)")
            throw ExitCode(3)
        }
        defer { connections.forEach { $0.close() } }
        let output = outputOptions.output
        let fleet = Fleet(connections: connections, jobs: jobsOptions.resolve(plan.jobs),
                          snapshots: !noSnapshot)
        let signals = SignalTrap(cancel: fleet.cancellation, log: log)
        defer { signals.release() }
        let started = Date()
        let observations: [VMObservation]
        do { observations = try fleet.run(requests, progress: Progress(total: requests.count)) } catch {
            fail("libvirt: \(error)")
            throw ExitCode(3)
        }

        // Judge and write.
        let environment = Environment(isolab: Isolab.configuration.version, qemu: connections[0].hypervisorVersion(),
                                      libvirt: connections[0].libvirtVersion())
        var inputs: [ResultsDocument.Input] = []
        for (ci, cell) in cells.enumerated() {
            let reps = (0..<repetitions).map { rep in zip(owner, observations).filter { $0.0.cell == ci && $0.0.repetition == rep }.map(\.1) }
            // Judged against what the booted kernel's config builds (an image records it).
            let generation = images[cell.kernel].flatMap(KernelGeneration.of) ?? cell.generation
            inputs.append(ResultsDocument.Input(prediction: Predictor.predict(cell.topology, kernel: generation),
                                                kernelLabel: cell.kernel, repetitions: reps, topologySHA256: cell.sha256))
        }
        let kernels = images.keys.sorted().map { k in
            KernelBuild(label: k, release: images[k]!.kernelRelease,
                        packages: images[k]!.metadata.packages.map { KernelPackage(name: $0.name, version: $0.version, sha256: $0.sha256) },
                        imageSha256: images[k]!.metadata.kernelSha256,
                        tree: plan.developer?.label == k ? plan.developer?.treeSource : nil)
        }
        let doc = ResultsDocument(isolab: Isolab.configuration.version, environment: environment, kernels: kernels, inputs: inputs)
        do {
            try ReportFiles.write(doc, to: output)
        } catch {
            fail("cannot write the reports: \(error)")
            throw ExitCode(3)
        }
        if let baseline = plan.baseline, let dev = plan.developer {
            do {
                let r = try baseline.write(results: doc, developer: dev, to: output)
                log("\(dev.label) against \(baseline.kernel): \(r.entries.count) items changed, \(r.regressions.count) regressions, "
                    + "\(r.entries.filter { $0.holds == .doesNotHold }.count) where the model's prediction does not hold; \(output)/regression.md")
            } catch {
                fail("cannot write the regression report: \(error)")
                throw ExitCode(3)
            }
        }
        func sum(_ stage: (Timing) -> Double) -> Double { observations.reduce(0) { $0 + stage($1.timing) } }
        log(String(format: "%d VMs in %.0f s wall, %.0f VM-seconds (boot %.0f, snapshot %.0f, restore %.0f, steps %.0f, create %.0f, teardown %.0f); reports in %@",
                   observations.count, Date().timeIntervalSince(started), sum(\.vmSeconds), sum(\.boot), sum(\.snapshot),
                   sum(\.restore), sum(\.steps), sum(\.create), sum(\.teardown), output))
        print(MarkdownRenderer.summaryTable(doc), terminator: "")
        if fleet.cancellation.isCancelled { throw ExitCode(130) }
        let flaky = doc.runs.flatMap(\.verdicts).filter { $0.kind == .flaky }.count
        if repetitions > 1 { log("\(repetitions) repetitions: \(flaky) flaky item(s)" + (flaky > 0 && allowFlaky ? " (allowed)" : "")) }
        let status = ExitStatus.of(doc.runs.flatMap(\.verdicts).filter { !(allowFlaky && $0.kind == .flaky) })
        if status != 0 { throw ExitCode(status) }
    }

    /// One fabric × kernel (× its vIOMMU, folded into the topology).
    struct Cell {
        var topology: Topology
        var kernel: String
        var generation: KernelGeneration
        var sha256: String
        var unrealizable: [Unrealizable]
    }

    private func validated() throws -> ([Cell], [String], (Int, Int), Int?, DeveloperKernel?, Baseline?) {
        guard repetitions >= 1 else { throw InputError("--repeat: must be at least 1") }
        let matrix: MatrixFile
        do { matrix = try MatrixFile.load(path: file) } catch let e as TopologyError { throw InputError(e.description) }
        let dev = try developer.resolve(requirements: true)
        var kernels = dev == nil ? matrix.kernels : []
        if kernelOptions.given { kernels = try kernelOptions.bootable(or: []) }
        let base = try baseline.map { try Baseline.resolve($0, developer: dev) }
        if let base, base.document == nil, !kernels.contains(base.kernel) { kernels.append(base.kernel) }
        if let dev { kernels.append(dev.label) }
        var shardPair = (1, 1)
        if let shard {
            let parts = shard.split(separator: "/").compactMap { Int($0) }
            guard parts.count == 2, parts[1] >= 1, (1...parts[1]).contains(parts[0]) else {
                throw InputError("--shard: expected I/N with 1 ≤ I ≤ N, found '\(shard)'")
            }
            shardPair = (parts[0], parts[1])
        }
        let files: [String]
        do { files = try matrix.expandFabrics() } catch let e as TopologyError { throw InputError(e.description) }
        let topologies = try loadTopologies(files)
        var cells: [Cell] = []
        // Once per kernel: a kernels.yaml id reads the catalog and its config fragment.
        var generations: [String: KernelGeneration] = [:]
        for k in kernels where k != dev?.label { generations[k] = try KernelOptions.imageCatalogGeneration(k) ?? KernelGeneration.resolve(k)! }
        if let dev { generations[dev.label] = dev.generation }
        for t in topologies {
            let text = FileManager.default.contents(atPath: t.file) ?? Data()
            let sha = SHA256.hash(data: text).map { String(format: "%02x", $0) }.joined()
            var variants = [t]
            if t.iommu == .intel {
                for m in matrix.iommus where m != .intel {
                    var v = t
                    v.iommu = m
                    v.name = "\(t.name).\(m.rawValue)"
                    variants.append(v)
                }
            }
            for v in variants {
                for k in kernels {
                    let g = generations[k]!
                    // An added vIOMMU runs only where the kernel drives it; a declared one everywhere.
                    if v.iommu != t.iommu || v.name != t.name, !g.drives(v.iommu) { continue }
                    cells.append(Cell(topology: v, kernel: k, generation: g, sha256: sha, unrealizable: Realizability.check(v)))
                }
            }
        }
        return (cells, kernels, shardPair, matrix.jobs, dev, base)
    }
}

/// Writes a results document and every rendering of it into a directory.
enum ReportFiles {
    static func write(_ doc: ResultsDocument, to directory: String) throws {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let files: [(String, String)] = [
            ("results.json", try doc.json()),
            ("results.xml", JUnitRenderer.render(doc)),
            ("results.tap", TAPRenderer.render(doc)),
            ("summary.md", MarkdownRenderer.render(doc)),
            ("report.html", HTMLRenderer.render(doc)),
        ]
        for (name, text) in files {
            try text.write(toFile: directory + "/" + name, atomically: true, encoding: .utf8)
        }
    }
}
