import ArgumentParser
import Foundation
import IsolabEngine
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
    @OptionGroup var mirrorOptions: MirrorOptions
    @OptionGroup var jobsOptions: JobsOptions
    @Option(help: "Run only shard I of N (1-based), e.g. 2/4.")
    var shard: String?
    @OptionGroup var connectOptions: ConnectOptions
    @OptionGroup var emulatorOptions: EmulatorOptions
    @OptionGroup var outputOptions: OutputOptions
    @Flag(help: "Boot every scenario afresh instead of restoring one saved boot per fabric and kernel.")
    var noSnapshot = false
    @Flag(help: "Boot every fabric even where a saved boot of it is in the boot cache, and keep none there (the cache: <isolab cache>/boots, embedded driver only).")
    var noBootCache = false
    @Option(name: .customLong("repeat"), help: "Run every cell N times; an item judged differently between repetitions is reported flaky, with each observation.")
    var repetitions: Int = 1
    @Flag(help: "Flaky items do not fail the run (they are still reported).")
    var allowFlaky = false
    @Option(help: "How guests run: tcg (default), kvm (after a probe boot proves it works, else exit 3), or auto (kvm if the probe works, else tcg).")
    var accel: Accel = .tcg
    @OptionGroup var bootOptions: BootOptions
    @OptionGroup var developer: DeveloperKernelOptions
    @Option(help: "With --kernel-tree or --kernel-image: a catalog kernel id (run in the same matrix) or a saved results.json to compare with; writes regression.md and regression.json (every changed item, the model's reasoning for both kernels, a verdict per change) beside the reports.")
    var baseline: String?

    func run() throws {
        var inputs: Inputs!
        var settings = RunSettings()
        try reportingInputErrors {
            inputs = try validated(); settings.boot = try bootOptions.resolve(); settings.clock = try bootOptions.resolveClock()
        }
        let log: (String) -> Void = { cliLogger.info("\($0)") }
        let fail: (String) -> Void = { cliLogger.warning("\($0)") }
        let provisioner = try asInputOrExit { try Provisioner(log: log) }
        provisioner.around = { try SignalTrap.cancellingImageBuilds($0) }
        let fallback = inputs.matrix.emulators.isEmpty ? [try asInputOrExit { try provisioner.hostEmulatorID() }] : inputs.matrix.emulators
        let emulators = try SignalTrap.cancellingImageBuilds {
            try EmulatorOptions.provide(emulatorOptions.sources(or: fallback), with: provisioner)
        }
        var cells: [Cell] = []
        try reportingInputErrors {
            let all = try asInput {
                try MatrixPlanner.cells(matrix: inputs.matrix, kernels: inputs.kernels, emulators: emulators.map(\.matrixEmulator))
            }
            cells = MatrixPlanner.shard(all, index: inputs.shard.index, of: inputs.shard.count)
            log("matrix \(file): \(all.count) cells, shard \(inputs.shard.index)/\(inputs.shard.count) runs \(cells.count)")
        }
        var matrix = MatrixRun(cells: cells, kernels: inputs.sources,
                               emulators: Dictionary(uniqueKeysWithValues: emulators.map { ($0.label, $0) }))
        matrix.repetitions = repetitions
        matrix.settings = settings
        matrix.connections = connectOptions.uris
        matrix.jobs = jobsOptions.resolve(inputs.matrix.jobs)
        matrix.snapshots = !noSnapshot
        if noBootCache { matrix.bootCache = nil }
        matrix.accel = MatrixRun.AccelChoice(rawValue: accel.rawValue) ?? .tcg
        let outcome: MatrixRun.Outcome
        let cancellation = Cancellation()
        do {
            let signals = SignalTrap(cancel: cancellation, log: log)
            defer { signals.release() }
            let observer = Progress(total: matrix.requestCount)
            outcome = try matrix.run(provisioner, observer: observer, cancellation: cancellation,
                                     provisioned: { images in
                if let dev = inputs.developer, let image = images[dev.label] {
                    log("kernel \(dev.label): \(dev.release), generation \(dev.generation.id)" + (dev.treeSource.map { ", tree \($0.summary)" } ?? "")
                        + ", kernel image sha256 \(image.metadata.kernelSha256.prefix(12))")
                }
                BootOptions.noteFallbacks(images, boot: settings.boot, log: log)
            })
        } catch let e as ExitCode {
            throw e
        } catch {
            fail(String(describing: error))
            throw ExitCode(3)
        }
        if let p = outcome.kvmProbe {
            log(p.works ? String(format: "KVM works here (probe answered in %.1f s): guests ran under KVM", p.seconds)
                        : "KVM does not work here (\(p.reason ?? "no answer")); guests ran under TCG")
        }
        let doc = outcome.document
        let output = outputOptions.output
        do { try ReportFiles.write(doc, to: output, kcidbOrigin: outputOptions.kcidbOrigin) } catch {
            fail(String(describing: error))
            throw ExitCode(3)
        }
        if let baseline = inputs.baseline, let dev = inputs.developer {
            do {
                let r = try baseline.write(results: doc, developer: dev, to: output)
                log("\(dev.label) against \(baseline.kernel): \(r.entries.count) items changed, \(r.regressions.count) regressions, "
                    + "\(r.entries.filter { $0.holds == .doesNotHold }.count) where the model's prediction does not hold; \(output)/regression.md")
            } catch {
                fail("cannot write the regression report: \(error)")
                throw ExitCode(3)
            }
        }
        let observations = outcome.observations
        func sum(_ stage: (Timing) -> Double) -> Double { observations.reduce(0) { $0 + stage($1.timing) } }
        log(String(format: "%d VMs in %.0f s wall, %.0f VM-seconds (plan expected %.0f; boot %.0f, snapshot %.0f, restore %.0f, steps %.0f, create %.0f, teardown %.0f); reports in %@",
                   observations.count, outcome.wall, sum(\.vmSeconds), outcome.expectedVMSeconds, sum(\.boot), sum(\.snapshot),
                   sum(\.restore), sum(\.steps), sum(\.create), sum(\.teardown), output))
        ReportCommand.printSummary(doc)
        if outcome.cancelled { throw ExitCode(130) }
        let flaky = doc.runs.flatMap(\.verdicts).filter { $0.kind == .flaky }.count
        if repetitions > 1 { log("\(repetitions) repetitions: \(flaky) flaky item(s)" + (flaky > 0 && allowFlaky ? " (allowed)" : "")) }
        let status = ExitStatus.of(doc.runs.flatMap(\.verdicts).filter { !(allowFlaky && $0.kind == .flaky) })
        if status != 0 { throw ExitCode(status) }
    }

    /// What the options and the matrix file ask for (nothing provided yet).
    struct Inputs {
        var matrix: MatrixFile
        var kernels: [MatrixKernel]
        var sources: [String: KernelSource]
        var shard: (index: Int, count: Int)
        var developer: DeveloperKernel?
        var baseline: Baseline?
    }

    private func validated() throws -> Inputs {
        guard repetitions >= 1 else { throw InputError("--repeat: must be at least 1") }
        let matrix = try asInput { try MatrixPlanner.load(file) }
        let dev = try developer.resolve(requirements: true)
        var kernels = dev == nil ? matrix.kernels : []
        if kernelOptions.given { kernels = try kernelOptions.bootable(or: []) }
        let base = try baseline.map { try Baseline.resolve($0, developer: dev) }
        if let base, base.document == nil, !kernels.contains(base.kernel) { kernels.append(base.kernel) }
        var shardPair = (index: 1, count: 1)
        if let shard {
            guard let parsed = MatrixPlanner.parseShard(shard) else {
                throw InputError("--shard: expected I/N with 1 ≤ I ≤ N, found '\(shard)'")
            }
            shardPair = parsed
        }
        var matrixKernels = try kernels.map { k in try asInput { try MatrixKernel.catalog(k) } }
        var sources = Dictionary(uniqueKeysWithValues: kernels.map { ($0, KernelSource.catalog($0)) })
        if let dev {
            matrixKernels.append(MatrixKernel(label: dev.label, generation: dev.generation))
            sources[dev.label] = dev.source
        }
        return Inputs(matrix: matrix, kernels: matrixKernels, sources: sources, shard: shardPair, developer: dev, baseline: base)
    }
}
