import Foundation
import IsolabImages
import IsolabLibvirt
import IsolabModel
import IsolabProtocol
import IsolabTopology
import IsolabVM

/// `isolab-bench restore [KERNEL…] [--fabric NAME]… [--rounds N] [--kernel-arg WORD]… [--store in-qemu|state-file]… [--clock host|icount]`:
/// the second bar of issue 8,
/// "each further scenario on the same fabric ≤ 1.0 s wall, restore included". For every
/// fabric of the catalog with several scenarios (or the ones named), one saved boot per
/// kernel; then each scenario restored `rounds` times, one guest at a time. Prints, per
/// kernel, the medians of each restored scenario's own stages: prepare (its files), restore
/// (libvirt restore to the agent's first record), steps (to `done`), teardown (to the domain
/// gone) and wall (its whole run, from the start of its preparation to its observation), and the
/// saved state's size. `--kernel-arg` adds a kernel command-line word to every guest. Each
/// store (``SnapshotStore``; both by default, side by side) is measured in turn; `--clock icount`
/// runs the guests on the instruction-counted clock (``GuestClock``); `--each` adds a line per
/// scenario (its medians over the rounds), so the scenarios that miss the bar are named.
enum RestoreBench {
    static func run(_ args: [String]) {
        var kernels: [String] = [], fabrics: [String] = [], kernelArguments: [String] = [], rounds = 3
        var stores: [SnapshotStore] = [], clock = GuestClock.host, each = false
        var i = 0
        while i < args.count {
            switch args[i] {
            case "--fabric" where i + 1 < args.count: fabrics.append(args[i + 1]); i += 1
            case "--rounds" where i + 1 < args.count: rounds = max(1, Int(args[i + 1]) ?? 3); i += 1
            case "--kernel-arg" where i + 1 < args.count: kernelArguments.append(args[i + 1]); i += 1
            case "--each": each = true
            case "--clock" where i + 1 < args.count:
                guard let c = GuestClock(rawValue: args[i + 1]) else {
                    FileHandle.standardError.write(Data("isolab-bench restore: --clock: \(args[i + 1]) is not a clock (accepted: host, icount)\n".utf8))
                    exit(2)
                }
                clock = c; i += 1
            case "--store" where i + 1 < args.count:
                guard let store = SnapshotStore(rawValue: args[i + 1]) else {
                    FileHandle.standardError.write(Data("isolab-bench restore: --store: \(args[i + 1]) is not a store (accepted: in-qemu, state-file)\n".utf8))
                    exit(2)
                }
                stores.append(store); i += 1
            default: kernels.append(args[i])
            }
            i += 1
        }
        do {
            let lines = try measure(kernels: kernels.isEmpty ? ["6.1"] : kernels, fabrics: fabrics, rounds: rounds,
                                    kernelArguments: kernelArguments, stores: stores.isEmpty ? [.inQEMU, .stateFile] : stores,
                                    clock: clock, each: each)
            print(lines.joined(separator: "\n"))
        } catch {
            FileHandle.standardError.write(Data("isolab-bench restore: \(error)\n".utf8))
            exit(1)
        }
    }

    /// One restored scenario's run.
    struct Run {
        /// `fabric/scenario`.
        var name: String
        var timing: Timing
        /// Seconds its DMA probes waited on edu's 100 ms transfer timer.
        var eduWait: Double
    }

    /// The restored scenarios' stages of one kernel.
    struct Figures {
        var kernel: String
        var store: SnapshotStore
        var runs: [Run] = []
        var timings: [Timing] { runs.map(\.timing) }
        /// Size of each fabric's saved state file.
        var stateBytes: [Double] = []
        var failures: [String] = []
    }

    static func measure(kernels: [String], fabrics: [String], rounds: Int, kernelArguments: [String] = [],
                        stores: [SnapshotStore] = [.inQEMU], clock: GuestClock = .host, each: Bool = false) throws -> [String] {
        let recipe = try Recipe(directory: Recipe.locate())
        let builder = try ImageBuilder(cache: ImageCache(root: ImageCache.defaultRoot()), recipe: recipe)
        let agent = try AgentBinary.locate()
        let topologyDir = (recipe.directory as NSString).deletingLastPathComponent + "/topologies"
        let topologies = try (fabrics.isEmpty ? catalogFabrics(topologyDir) : fabrics)
            .map { try TopologyLoader.load(path: "\(topologyDir)/\($0).yaml") }
        let connection = try LibvirtConnection.open(connect: nil)
        defer { connection.close() }
        let runner = try GuestRunner(connection: connection)
        let scratch = NSTemporaryDirectory() + "isolab-bench-restore-\(getpid())"
        defer { try? FileManager.default.removeItem(atPath: scratch) }

        var all: [Figures] = []
        for kernel in kernels {
            let image = try builder.build(kernel: try builder.catalog.kernel(id: kernel), agent: agent)
            for store in stores {
                runner.snapshotStore = store
                all.append(figures(runner, image: image, kernel: kernel, store: store, topologies: topologies, rounds: rounds,
                                   kernelArguments: kernelArguments, clock: clock, scratch: scratch))
            }
        }
        return report(all, fabrics: topologies.map(\.name), rounds: rounds, clock: clock, each: each)
    }

    /// Every scenario of `topologies` `rounds` times, each fabric from one saved boot in `store`.
    static func figures(_ runner: GuestRunner, image: GuestImage, kernel: String, store: SnapshotStore, topologies: [Topology],
                        rounds: Int, kernelArguments: [String], clock: GuestClock, scratch: String) -> Figures {
        var figures = Figures(kernel: kernel, store: store)
        for topology in topologies where topology.scenarios.count > 0 {
            var requests: [RunRequest] = []
            for round in 0..<rounds {
                for scenario in topology.scenarios {
                    var req = RunRequest(topology: topology, fabric: Fabric(topology), scenario: scenario, image: image, kernelLabel: kernel,
                                         directory: "\(scratch)/\(kernel)-\(store.rawValue)-\(topology.name)-\(scenario.name)-\(round)")
                    req.extraKernelArguments = kernelArguments
                    req.clock = clock
                    requests.append(req)
                }
            }
            runner.runFromSnapshot(requests, finished: { _, obs in
                guard obs.restoredFrom != nil, obs.outcome == .completed else {
                    figures.failures.append("\(topology.name) \(obs.scenario ?? ""): \(obs.outcome.rawValue) \(obs.problem ?? "")")
                    return
                }
                figures.runs.append(Run(name: "\(topology.name)/\(obs.scenario ?? "")", timing: obs.timing, eduWait: eduWait(obs)))
                if obs.timing.snapshot > 0, let path = obs.restoredFrom,
                   let size = (try? FileManager.default.attributesOfItem(atPath: path))?[.size] as? Int {
                    figures.stateBytes.append(Double(size))
                }
            })
        }
        return figures
    }

    /// Seconds of virtual time a scenario's DMA probes wait for edu: each transfer completes on
    /// a fixed 100 ms timer, which on the host's clock no guest or agent work can shorten.
    static func eduWait(_ obs: VMObservation) -> Double {
        Double(obs.steps.compactMap { $0.dma?.eduTransfers }.reduce(0, +)) * DMAEvidence.eduTransferSeconds
    }

    /// The catalog fabrics with more than one scenario (the ones snapshot mode restores).
    static func catalogFabrics(_ dir: String) throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: dir).filter { $0.hasSuffix(".yaml") }.sorted()
            .map { String($0.dropLast(5)) }
            .filter { (try? TopologyLoader.load(path: "\(dir)/\($0).yaml"))?.scenarios.count ?? 0 > 1 }
    }

    static func report(_ all: [Figures], fabrics: [String], rounds: Int, clock: GuestClock, each: Bool = false) -> [String] {
        func f(_ x: Double) -> String { String(format: "%.2f", x) }
        func pad(_ s: String, _ n: Int) -> String { String(repeating: " ", count: max(1, n - s.count)) + s }
        var lines = ["isolab-bench restore: \(fabrics.joined(separator: ", ")); every scenario \(rounds)× from one saved boot, one guest at a time, TCG, \(clock.rawValue) clock",
                     "  kernel  store        runs   prepare   restore    steps   teardown     wall    p90 wall   overhead   ≤ 1.00 s   state MB   edu wait   bound",
                     "                                (medians, s; goal: wall ≤ 1.00; overhead: wall − steps, the snapshot's own cost)"]
        for fig in all {
            let ts = fig.timings
            let stages: [(Timing) -> Double] = [\.prepare, \.restore, \.steps, \.teardown, \.total]
            let within = ts.filter { $0.total <= 1.0 }.count
            // Scenarios that cannot finish within 1.0 s: their restore plus edu's timers exceed it.
            let bound = fig.runs.filter { $0.timing.restore + $0.eduWait > 1.0 }.count
            let cols = [String(ts.count)] + stages.map { stage in f(MatrixBench.median(ts.map(stage))) }
                + [f(percentile(ts.map(\.total), 0.9)), f(MatrixBench.median(ts.map { $0.total - $0.steps })),
                   "\(within)/\(ts.count)", String(format: "%.0f", MatrixBench.median(fig.stateBytes) / 1_048_576),
                   f(MatrixBench.median(fig.runs.map(\.eduWait))), "\(bound)/\(ts.count)"]
            lines.append("  " + fig.kernel.padding(toLength: 8, withPad: " ", startingAt: 0)
                         + fig.store.rawValue.padding(toLength: 10, withPad: " ", startingAt: 0)
                         + zip(cols, [7, 10, 10, 9, 11, 9, 12, 11, 11, 11, 11, 8]).map { pad($0, $1) }.joined())
            for failure in fig.failures { lines.append("    not counted: \(failure)") }
            if each { lines += scenarioLines(fig) }
        }
        lines.append("  (prepare: the run's files; restore: loadvm in the guest's QEMU (in-qemu) or libvirt restore (state-file)")
        lines.append("   to the agent's first record; steps: to done; teardown: done to the domain gone (in-qemu: none, the")
        lines.append("   next scenario's loadvm replaces it); wall: the restored scenario's own run, preparation to observation;")
        lines.append("   edu wait: the scenario's edu DMA transfers × 0.1 s, the virtual-clock timer each one completes on;")
        lines.append("   bound: scenarios whose restore + edu wait alone exceed 1.00 s, which no agent work can bring within it)")
        return lines
    }

    /// One line per scenario of a row: its median wall, restore, steps and edu wait.
    static func scenarioLines(_ fig: Figures) -> [String] {
        var order: [String] = []
        var byName: [String: [Run]] = [:]
        for run in fig.runs {
            if byName[run.name] == nil { order.append(run.name) }
            byName[run.name, default: []].append(run)
        }
        return order.map { name in
            let runs = byName[name]!
            func m(_ f: (Run) -> Double) -> String { String(format: "%5.2f", MatrixBench.median(runs.map(f))) }
            return "    \(name): wall \(m { $0.timing.total }), restore \(m { $0.timing.restore }), steps \(m { $0.timing.steps }), edu wait \(m(\.eduWait))"
        }
    }

    static func percentile(_ xs: [Double], _ p: Double) -> Double {
        let s = xs.sorted()
        return s.isEmpty ? 0 : s[min(s.count - 1, Int(Double(s.count) * p))]
    }
}
