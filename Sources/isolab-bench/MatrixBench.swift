import Foundation
import IsolabEngine
import IsolabModel
import IsolabProtocol
import IsolabReport
import IsolabVM

/// `isolab-bench matrix [MATRIX_FILE] [--kernel K,…] [--jobs N] [--no-snapshot] [--no-boot-cache | --boot-cache DIR]`: runs a whole
/// matrix through the engine `isolab matrix` uses (IsolabEngine's ``MatrixRun``) and prints the
/// wall time, the number of VMs, VM-seconds and where they went (create, boot, steps, teardown),
/// overall, per kernel and per emulator. Figures only: mismatches or slow runs never fail it.
enum MatrixBench {
    static func run(_ args: [String]) {
        do { try measure(try Options(args)) } catch {
            FileHandle.standardError.write(Data("isolab-bench matrix: \(error)\n".utf8))
            exit(1)
        }
    }

    struct Options {
        var file = "ci/matrix.yaml"
        var kernels: [String]?
        var emulators: [String]?
        var jobs: Int?
        var snapshots = true
        /// nil: isolab's boot cache; "": none; else that folder (an empty one measures a cold cache).
        var bootCache: String?

        init(_ args: [String]) throws {
            var rest = args[...]
            while let a = rest.popFirst() {
                switch a {
                case "--kernel":
                    guard let v = rest.popFirst() else { throw BenchError("--kernel needs ids, e.g. 6.1,7.3") }
                    kernels = (kernels ?? []) + v.split(separator: ",").map(String.init)
                case "--emulator":
                    guard let v = rest.popFirst() else { throw BenchError("--emulator needs ids, e.g. 7.2,10.0") }
                    emulators = (emulators ?? []) + v.split(separator: ",").map(String.init)
                case "--jobs":
                    guard let v = rest.popFirst().flatMap({ Int($0) }), v >= 1 else { throw BenchError("--jobs needs a number ≥ 1") }
                    jobs = v
                case "--no-snapshot": snapshots = false
                case "--no-boot-cache": bootCache = ""
                case "--boot-cache":
                    guard let v = rest.popFirst(), !v.isEmpty else { throw BenchError("--boot-cache needs a folder") }
                    bootCache = v
                default:
                    guard !a.hasPrefix("-") else { throw BenchError("unknown option \(a) (accepted: --kernel, --emulator, --jobs, --no-snapshot, --no-boot-cache, --boot-cache DIR)") }
                    file = a
                }
            }
        }
    }

    static func measure(_ o: Options) throws {
        guard FileManager.default.fileExists(atPath: o.file) else {
            throw BenchError("\(o.file): no such matrix file (give MATRIX_FILE, default ci/matrix.yaml, from the package root)")
        }
        let matrixFile = try MatrixPlanner.load(o.file)
        let kernels = try o.kernels.map { try $0.map(MatrixKernel.catalog) }
        let provisioner = try Provisioner(log: { FileHandle.standardError.write(Data("\($0)\n".utf8)) })
        let ids = try o.emulators ?? (matrixFile.emulators.isEmpty ? [provisioner.hostEmulatorID()] : matrixFile.emulators)
        let emulators = try ids.map { try provisioner.emulator(.parse($0)) }
        let cells = try MatrixPlanner.cells(matrix: matrixFile, kernels: kernels, emulators: emulators.map(\.matrixEmulator))
        var matrix = MatrixRun(cells: cells, kernels: Dictionary(uniqueKeysWithValues: Set(cells.map(\.kernel)).map { ($0, .catalog($0)) }),
                               emulators: Dictionary(uniqueKeysWithValues: emulators.map { ($0.label, $0) }))
        matrix.jobs = o.jobs ?? matrixFile.jobs ?? ProcessInfo.processInfo.activeProcessorCount
        matrix.snapshots = o.snapshots
        if let dir = o.bootCache { matrix.bootCache = dir.isEmpty ? nil : BootCache(directory: dir) }
        let start = Date()
        let outcome = try matrix.run(provisioner)
        let wall = Date().timeIntervalSince(start)
        let status = ExitStatus.of(outcome.document)
        var text = report(outcome.document, wall: wall, title: "isolab-bench matrix: \(o.file), verdict status \(status)")
        let measured = outcome.observations.reduce(0) { $0 + $1.timing.vmSeconds }
        let scenarios = max(outcome.observations.count, 1)
        text += String(format: "\n  plan (cost book %@): expected %.0f VM-s, measured %.0f VM-s; %.2f VM-s per scenario",
                       matrix.costBook ?? "none", outcome.expectedVMSeconds, measured, measured / Double(scenarios))
        print(text)
    }

    /// The figures for one finished matrix.
    static func report(_ doc: ResultsDocument, wall: Double, title: String) -> String {
        func f(_ x: Double) -> String { String(format: "%.1f", x) }
        let all = doc.runs.flatMap(\.observations)
        let timings = all.map(\.timing)
        let vmSeconds = Self.vmSeconds(timings)
        var lines = [title]
        lines.append("  fabric × kernel cells: \(doc.runs.count) (\(doc.runs.filter { !$0.booted }.count) not booted: unrealizable)")
        lines.append("  wall: the matrix engine start to end (image cache and judging included)")
        lines.append("  VMs: \(all.count)   wall: \(f(wall)) s   VM-seconds: \(f(vmSeconds))   VMs at once (VM-s / wall): \(String(format: "%.2f", vmSeconds / max(wall, 0.001)))")
        let outcomes = Dictionary(grouping: all, by: \.outcome.rawValue).map { "\($0.key) \($0.value.count)" }.sorted()
        lines.append("  outcomes: \(outcomes.joined(separator: ", "))")
        lines.append("  stage       total s   share   mean s   median s   max s")
        let stages: [(String, (Timing) -> Double)] = [
            ("prepare", \.prepare), ("create", \.create), ("boot", \.boot), ("snapshot", \.snapshot), ("restore", \.restore),
            ("steps", \.steps), ("teardown", \.teardown),
            ("other", { max(0, $0.total - $0.prepare - $0.create - $0.boot - $0.restore - $0.steps - $0.teardown) }),
        ]
        for (name, value) in stages {
            let xs = timings.map(value).sorted()
            let sum = xs.reduce(0, +)
            let cols = [f(sum), String(format: "%.0f%%", 100 * sum / max(vmSeconds, 0.001)),
                        String(format: "%.2f", sum / Double(max(1, xs.count))), String(format: "%.2f", xs.isEmpty ? 0 : xs[xs.count / 2]),
                        String(format: "%.2f", xs.last ?? 0)]
            lines.append("  " + name.padding(toLength: 10, withPad: " ", startingAt: 0)
                         + zip(cols, [9, 8, 9, 11, 8]).map { String(repeating: " ", count: max(1, $1 - $0.count)) + $0 }.joined())
        }
        let restored = all.filter { $0.restoredFrom != nil }
        let cached = all.filter { $0.bootCache != nil && $0.timing.snapshot > 0 }.count
        lines.append("  restored scenarios: \(restored.count) of \(all.count), median wall \(String(format: "%.2f", Self.median(restored.map(\.timing.total)))) s; saved boots: \(timings.filter { $0.snapshot > 0 }.count), \(cached) of them started from the boot cache")
        let overhead = restored.map(Self.overhead).sorted()
        if !overhead.isEmpty {
            lines.append(String(format: "  isolab's overhead per restored scenario (wall minus the guest's own step time): median %.2f s, p90 %.2f s, max %.2f s",
                                Self.median(overhead), overhead[min(overhead.count - 1, Int((Double(overhead.count) * 0.9).rounded(.up)) - 1)], overhead.last!))
        }
        lines.append("  (create: libvirt + QEMU start; boot: to the agent's first record; snapshot: boot to ready + save (or the start")
        lines.append("   from the boot cache), once per saved fabric; restore: restore to the agent's first record; steps: to done; teardown: destroy;")
        lines.append("   prepare: plan, initramfs and domain XML; other: the guest powering off after done, assembling the observation)")
        lines += breakdown("kernel", doc.runs, by: \.kernel)
        if Set(doc.runs.map(\.emulator)).count > 1 { lines += breakdown("emulator", doc.runs, by: { $0.emulator ?? "?" }) }
        return lines.joined(separator: "\n")
    }

    /// VMs, VM-seconds and stage sums per value of one axis.
    static func breakdown(_ axis: String, _ runs: [FabricRun], by key: (FabricRun) -> String) -> [String] {
        func f(_ x: Double) -> String { String(format: "%.1f", x) }
        var lines = ["  per \(axis):".padding(toLength: 16, withPad: " ", startingAt: 0) + "VMs   VM-s   create   boot   steps   teardown   snapshot   restore"]
        for k in Array(Set(runs.map(key))).sorted() {
            let ts = runs.filter { key($0) == k }.flatMap(\.observations).map(\.timing)
            let sums = [Self.vmSeconds(ts)] + [\Timing.create, \.boot, \.steps, \.teardown, \.snapshot, \.restore].map { key in ts.reduce(0) { $0 + $1[keyPath: key] } }
            lines.append("  " + k.padding(toLength: 14, withPad: " ", startingAt: 0)
                         + zip([String(ts.count)] + sums.map(f), [5, 7, 9, 7, 8, 11, 11, 10]).map { String(repeating: " ", count: max(1, $1 - $0.count)) + $0 }.joined())
        }
        return lines
    }

    /// Each run's own time plus the saved boot it carries: a saved boot is no run's `total`,
    /// but the machine spent it.
    static func vmSeconds(_ timings: [Timing]) -> Double {
        timings.reduce(0) { $0 + $1.vmSeconds }
    }

    /// What isolab adds around a scenario: its wall time less the time the agent measured
    /// for its steps (edu's DMA timer and the kernel's own work are the guest's).
    static func overhead(_ o: VMObservation) -> Double {
        max(0, o.timing.total - Double(o.steps.reduce(0) { $0 + $1.milliseconds }) / 1000)
    }

    static func median(_ xs: [Double]) -> Double {
        let s = xs.sorted()
        return s.isEmpty ? 0 : s[s.count / 2]
    }
}
