import Foundation
import IsolabImages
import IsolabLibvirt
import IsolabModel
import IsolabTopology
import IsolabProtocol
import IsolabVM

/// `isolab-bench run [FABRIC]`: isolab's wall time to boot a fabric through the embedded libvirt
/// driver and collect the agent's records, against a raw `qemu-system-x86_64` boot of the same
/// image, plan and fabric (libvirt's own command line for the domain, run by hand), paired side
/// by side. Two figures: the fabric's first agent record (issue 18's bar: ≤ 1.05× the raw
/// recipe) and the whole run to QEMU's exit.
///
/// Most of what isolab adds before the first record is libvirt's: after QEMU starts (`-S`),
/// libvirt 9.0 reads the guest CPU's features one `qom-get` per boolean property
/// (qemuProcessUpdateAndVerifyCPU → qemuMonitorJSONGetCPUData: about 400 commands for an
/// x86 CPU), and QEMU's QMP monitor reads its socket one byte per read (monitor_can_read
/// returns 1), so each command costs about 0.8 ms here: about 0.33 s per start, before `cont`.
enum RunBench {
    static func run(_ args: [String]) {
        var positional: [String] = [], rounds = 5
        var i = 0
        while i < args.count {
            if args[i] == "--rounds", i + 1 < args.count, let n = Int(args[i + 1]), n > 0 { rounds = n; i += 2; continue }
            if args[i].hasPrefix("--") {
                FileHandle.standardError.write(Data("isolab-bench run: option '\(args[i])' (accepted: --rounds N, N ≥ 1)\n".utf8))
                exit(2)
            }
            positional.append(args[i]); i += 1
        }
        let boot = positional.count > 2 ? BootPath(rawValue: positional[2]) : .pvh
        guard let boot else {
            FileHandle.standardError.write(Data("isolab-bench run: boot path '\(positional[2])' (accepted: pvh, bzimage)\n".utf8))
            exit(2)
        }
        do {
            try measure(fabric: positional.first ?? "switch-no-acs", kernel: positional.dropFirst().first ?? "6.1",
                        boot: boot, rounds: rounds)
        } catch {
            FileHandle.standardError.write(Data("isolab-bench run: \(error)\n".utf8))
            exit(1)
        }
    }

    static func measure(fabric: String, kernel: String, boot: BootPath, rounds: Int) throws {
        let recipe = try Recipe(directory: Recipe.locate())
        let builder = try ImageBuilder(cache: ImageCache(root: ImageCache.defaultRoot()), recipe: recipe)
        let image = try builder.build(kernel: try builder.catalog.kernel(id: kernel), agent: try AgentBinary.locate())
        let topology = try TopologyLoader.load(path: (recipe.directory as NSString).deletingLastPathComponent + "/topologies/\(fabric).yaml")
        let connection = try LibvirtConnection.open(connect: nil)
        defer { connection.close() }
        let runner = try GuestRunner(connection: connection)
        let scratch = NSTemporaryDirectory() + "isolab-bench-run-\(getpid())"
        defer { try? FileManager.default.removeItem(atPath: scratch) }

        var isolab: [Double] = [], raw: [Double] = [], stages: [Timing] = []
        var isolabFirst: [Double] = [], rawFirst: [Double] = []
        for round in 0..<rounds {
            // isolab: create → records → done → domain gone.
            var req = RunRequest(topology: topology, fabric: Fabric(topology), scenario: nil, image: image,
                                 kernelLabel: kernel, directory: "\(scratch)/isolab-\(round)")
            req.boot = boot
            let start = Date()
            let obs = runner.run(req)
            isolab.append(Date().timeIntervalSince(start))
            stages.append(obs.timing)
            guard obs.outcome == .completed else { throw BenchError("isolab run: \(obs.outcome.rawValue): \(obs.problem ?? "")") }
            // The runner's first record: plan and files, libvirt's start, the boot (polled every 10 ms).
            isolabFirst.append(obs.timing.prepare + obs.timing.create + obs.timing.boot)

            // Raw QEMU: libvirt's command line for the same domain, started by hand, to exit.
            let dir = "\(scratch)/raw-\(round)"
            var same = req
            same.directory = dir
            let files = RunFiles(directory: dir)
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            let plan = PlanBuilder.plan(topology: topology, fabric: same.fabric, scenario: nil, runID: "raw", stepTimeout: 20)
            try image.initramfs(appending: ["isolab/plan.json": try JSONEncoder().encode(plan)], to: files.initramfs)
            let xml = try DomainXML.render(topology, fabric: same.fabric, parameters: DomainParameters(
                name: "isolab-bench-raw", kernelPath: req.bootKernel.path, initrdPath: files.initramfs,
                kernelCommandLine: same.kernelCommandLine, consoleLogPath: files.console, recordsPath: files.records))
            let argv = try connection.domainXMLToNative(xml)
            let command = rawCommand(argv)
            let rawStart = Date()
            let p = Process()
            p.executableURL = URL(fileURLWithPath: "/bin/sh")
            p.arguments = ["-c", "exec timeout 120 " + command]
            p.standardOutput = FileHandle.nullDevice
            FileManager.default.createFile(atPath: dir + "/qemu.stderr", contents: nil)
            p.standardError = FileHandle(forWritingAtPath: dir + "/qemu.stderr")
            try p.run()
            // The first complete record line, polled every 10 ms like the runner's.
            var first: Double?
            while p.isRunning {
                if first == nil, let text = try? String(contentsOfFile: files.records, encoding: .utf8), text.contains("\n") {
                    first = Date().timeIntervalSince(rawStart)
                }
                Thread.sleep(forTimeInterval: 0.01)
            }
            p.waitUntilExit()
            raw.append(Date().timeIntervalSince(rawStart))
            rawFirst.append(first ?? raw.last!)
            let records = (try? String(contentsOfFile: files.records, encoding: .utf8)) ?? ""
            guard records.contains("\"type\":\"done\"") else {
                let stderr = (try? String(contentsOfFile: dir + "/qemu.stderr", encoding: .utf8)) ?? ""
                throw BenchError("raw QEMU run gave no done record (exit \(p.terminationStatus)): \(stderr.suffix(600))\ncommand: \(command)")
            }
        }
        func median(_ xs: [Double]) -> Double { xs.sorted()[xs.count / 2] }
        func f(_ x: Double) -> String { String(format: "%.2f", x) }
        print("isolab-bench run: \(fabric) on \(kernel) (\(image.kernelRelease)), TCG, boot \(image.bootKernel(boot).boot.rawValue), \(rounds) rounds paired")
        print("  first agent record: raw qemu-system-x86_64 (libvirt's command line), exec → record: median \(f(median(rawFirst))) s  [\(rawFirst.map(f).joined(separator: " "))]")
        print("                      isolab (embedded libvirt), run() → record:                  median \(f(median(isolabFirst))) s  [\(isolabFirst.map(f).joined(separator: " "))]")
        print("                      ratio isolab / raw: \(f(median(isolabFirst) / median(rawFirst)))×, paired rounds' median \(f(median(zip(isolabFirst, rawFirst).map { $0 / $1 })))×  (issue 18: ≤ 1.05×)")
        print("  whole run: raw, exec → agent done → exit: median \(f(median(raw))) s  [\(raw.map(f).joined(separator: " "))]")
        print("             isolab, run() → records → domain gone: median \(f(median(isolab))) s  [\(isolab.map(f).joined(separator: " "))]")
        print("             ratio isolab / raw: \(f(median(isolab) / median(raw)))×  (goal ≤ 1.15×)")
        print("  isolab stages (median): prepare \(f(median(stages.map(\.prepare)))) s, create \(f(median(stages.map(\.create)))) s, boot \(f(median(stages.map(\.boot)))) s, records \(f(median(stages.map(\.steps)))) s, teardown \(f(median(stages.map(\.teardown)))) s")
    }

    /// libvirt's native command line without its environment prefix, monitor, master-key secret, `-S` (start
    /// paused) and `-no-shutdown` (keep QEMU after poweroff), which only libvirt needs.
    static func rawCommand(_ native: String) -> String {
        let words = native.replacingOccurrences(of: "\\\n", with: " ").split(separator: " ").map(String.init)
        var out: [String] = []
        var i = 0
        while i < words.count {
            let w = words[i]
            if out.isEmpty && w.contains("=") && !w.hasPrefix("-") { i += 1; continue }   // LC_ALL=C …
            if w == "-S" || w == "-no-shutdown" { i += 1; continue }
            if w == "-mon" { i += 2; continue }
            if w == "-object", i + 1 < words.count, words[i + 1].contains("\"secret\"") { i += 2; continue }
            if w == "-chardev", i + 1 < words.count, words[i + 1].contains("id=charmonitor") { i += 2; continue }
            out.append(w)
            i += 1
        }
        return out.joined(separator: " ")
    }
}

struct BenchError: Error, CustomStringConvertible {
    var description: String
    init(_ d: String) { description = d }
}
