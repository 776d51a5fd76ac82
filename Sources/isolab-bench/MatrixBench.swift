import Foundation
import IsolabProtocol
import IsolabReport

/// `isolab-bench matrix [MATRIX_FILE] [ISOLAB MATRIX OPTIONS…]`: runs the built `isolab matrix`
/// (next to this executable) into a scratch directory and prints, from its results.json, the
/// wall time, the number of VMs, VM-seconds and where they went (create, boot, steps,
/// teardown), overall and per kernel. Figures only: mismatches or slow runs never fail it.
enum MatrixBench {
    static func run(_ args: [String]) {
        do { try measure(file: args.first ?? "ci/matrix.yaml", extra: Array(args.dropFirst())) } catch {
            FileHandle.standardError.write(Data("isolab-bench matrix: \(error)\n".utf8))
            exit(1)
        }
    }

    /// The `isolab` executable built beside this one (same configuration).
    static func isolabExecutable() throws -> String {
        let me = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
        let path = me.deletingLastPathComponent().appendingPathComponent("isolab").path
        guard FileManager.default.isExecutableFile(atPath: path) else {
            throw BenchError("no isolab executable at \(path); build it first: swift build -c release --product isolab")
        }
        return path
    }

    static func measure(file: String, extra: [String]) throws {
        guard FileManager.default.fileExists(atPath: file) else {
            throw BenchError("\(file): no such matrix file (give MATRIX_FILE, default ci/matrix.yaml, from the package root)")
        }
        let isolab = try isolabExecutable()
        let output = NSTemporaryDirectory() + "isolab-bench-matrix-\(getpid())"
        defer { try? FileManager.default.removeItem(atPath: output) }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: isolab)
        p.arguments = ["matrix", file, "--output", output] + extra
        p.standardOutput = FileHandle.nullDevice   // the summary table; the figures below replace it
        let start = Date()
        try p.run()
        p.waitUntilExit()
        let wall = Date().timeIntervalSince(start)
        // 0 pass, 1 mismatches, 3 infrastructure: all still measured. 2 is bad input, 130 Ctrl-C.
        guard [0, 1, 3].contains(p.terminationStatus) else {
            throw BenchError("isolab \(p.arguments!.joined(separator: " ")) exited \(p.terminationStatus)")
        }
        let results = output + "/results.json"
        guard let data = FileManager.default.contents(atPath: results) else { throw BenchError("isolab matrix wrote no \(results)") }
        let doc = try ResultsDocument.decode(data, source: results)
        print(report(doc, wall: wall, title: "isolab-bench matrix: \(([file] + extra).joined(separator: " ")), exit \(p.terminationStatus)"))
    }

    /// The figures for one finished matrix.
    static func report(_ doc: ResultsDocument, wall: Double, title: String) -> String {
        func f(_ x: Double) -> String { String(format: "%.1f", x) }
        let all = doc.runs.flatMap(\.observations)
        let timings = all.map(\.timing)
        let vmSeconds = Self.vmSeconds(timings)
        var lines = [title]
        lines.append("  fabric × kernel cells: \(doc.runs.count) (\(doc.runs.filter { !$0.booted }.count) not booted: unrealizable)")
        lines.append("  wall: isolab matrix start to exit (image cache, judging and reports included)")
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
        lines.append("  restored scenarios: \(restored.count) of \(all.count), median wall \(String(format: "%.2f", Self.median(restored.map(\.timing.total)))) s; saved boots: \(timings.filter { $0.snapshot > 0 }.count)")
        lines.append("  (create: libvirt + QEMU start; boot: to the agent's first record; snapshot: boot to ready + save, once per")
        lines.append("   fabric with several scenarios; restore: restore to the agent's first record; steps: to done; teardown: destroy;")
        lines.append("   prepare: plan, initramfs and domain XML; other: the guest powering off after done, assembling the observation)")
        lines.append("  per kernel:   VMs   VM-s   create   boot   steps   teardown   snapshot   restore")
        for k in Array(Set(doc.runs.map(\.kernel))).sorted() {
            let ts = doc.runs.filter { $0.kernel == k }.flatMap(\.observations).map(\.timing)
            let sums = [Self.vmSeconds(ts)] + [\Timing.create, \.boot, \.steps, \.teardown, \.snapshot, \.restore].map { key in ts.reduce(0) { $0 + $1[keyPath: key] } }
            lines.append("  " + k.padding(toLength: 12, withPad: " ", startingAt: 0)
                         + zip([String(ts.count)] + sums.map(f), [5, 7, 9, 7, 8, 11, 11, 10]).map { String(repeating: " ", count: max(1, $1 - $0.count)) + $0 }.joined())
        }
        return lines.joined(separator: "\n")
    }

    /// Each run's own time plus the saved boot it carries: a saved boot is no run's `total`,
    /// but the machine spent it.
    static func vmSeconds(_ timings: [Timing]) -> Double {
        timings.reduce(0) { $0 + $1.vmSeconds }
    }

    static func median(_ xs: [Double]) -> Double {
        let s = xs.sorted()
        return s.isEmpty ? 0 : s[s.count / 2]
    }
}
