import ArgumentParser
import Foundation
import IsolabEngine
import IsolabModel

/// `isolab explore`: the model held to the real kernel on fabrics nobody wrote.
struct ExploreCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "explore",
        abstract: "Boot random fabrics, compare each with the model, shrink every mismatch to a minimal topology file.",
        discussion: """
        Fabrics are generated inside what the emulator builds (root ports with and without ACS, \
        switches and nested switches, PCIe-to-PCI and PCI bridges, multifunction slots, integrated \
        endpoints; edu, e1000e, nvme), deterministically by --seed. Each is predicted, booted once \
        for its inventory (groups, guest paths, PCIe types, ACS capabilities, hazards) on every \
        --kernel × --emulator × --iommu, and judged. A fabric the model gets wrong is shrunk by \
        delta debugging (each candidate booted) to a minimal topology file, written to \
        --output with the prediction, the observation and the model's reasoning as comments. \
        explore.json holds every fabric and cell. Exit 1 when a mismatch was found, 3 when a \
        guest gave no observation.
        """)

    @Option(help: "Seed of the fabric generator (the same seed explores the same fabrics).")
    var seed: UInt64 = 1
    @Option(help: "How many fabrics to generate.")
    var count: Int = 10
    @OptionGroup var kernelOptions: KernelOptions
    @OptionGroup var mirrorOptions: MirrorOptions
    @OptionGroup var emulatorOptions: EmulatorOptions
    @Option(name: .long, help: "vIOMMU (repeatable): intel (default), virtio, amd, none.")
    var iommu: [IOMMUModel] = []
    @OptionGroup var jobsOptions: JobsOptions
    @OptionGroup var connectOptions: ConnectOptions
    @Option(help: "Directory for explore.json and the minimal topology files.")
    var output: String = "reports/explore"
    @Option(help: "At most this many candidates booted while shrinking one counterexample.")
    var shrinkBudget: Int = 80

    func run() throws {
        var kernels: [MatrixKernel] = []
        try reportingInputErrors {
            guard count >= 1 else { throw InputError("--count: must be at least 1") }
            kernels = try asInput { try kernelOptions.bootable(or: ["6.1"]).map(MatrixKernel.catalog) }
        }
        let log: (String) -> Void = { cliLogger.info("\($0)") }
        let provisioner = try asInputOrExit { try Provisioner(log: log) }
        provisioner.around = { try SignalTrap.cancellingImageBuilds($0) }
        let emulators = try SignalTrap.cancellingImageBuilds {
            try EmulatorOptions.provide(emulatorOptions.sources(or: [try asInputOrExit { try provisioner.hostEmulatorID() }]), with: provisioner)
        }
        var explorer = Explorer(seed: seed, count: count, kernels: kernels, emulators: emulators,
                                iommus: iommu.isEmpty ? [.intel] : iommu)
        explorer.jobs = jobsOptions.resolve()
        explorer.connections = connectOptions.uris
        explorer.shrinkBudget = shrinkBudget
        explorer.log = log
        explorer.observer = Progress(total: explorer.requestCount)
        let result: Explorer.Result
        do { result = try explorer.run(provisioner) } catch let e as ExitCode { throw e } catch {
            cliLogger.warning("\(error)")
            throw ExitCode(3)
        }
        do {
            try FileManager.default.createDirectory(atPath: output, withIntermediateDirectories: true)
            let e = JSONEncoder()
            e.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
            try e.encode(result).write(to: URL(fileURLWithPath: output + "/explore.json"))
            for m in result.minimal {
                let file = "\(output)/\(m.from)-min-\(m.kernel)-\(m.iommu).yaml"
                var text = "# isolab explore --seed \(result.seed): \(m.from) fails on kernel \(m.kernel), QEMU \(m.emulator), vIOMMU \(m.iommu);\n"
                text += "# shrunk from \(m.originalNodes) to \(m.nodes) nodes (\(m.candidatesBooted) candidates booted). What the model got wrong:\n"
                text += m.failing.map { "#   \($0)\n" }.joined()
                try (text + m.yaml).write(toFile: file, atomically: true, encoding: .utf8)
                log("minimal counterexample: \(file)")
            }
        } catch {
            cliLogger.warning("cannot write \(output): \(error)")
            throw ExitCode(3)
        }
        let cells = result.fabrics.flatMap(\.cells)
        print("isolab explore --seed \(result.seed): \(result.fabrics.count) fabrics, \(cells.count) cells: "
              + "\(cells.filter { $0.status == "pass" }.count) pass, \(result.failingCells) FAIL, "
              + "\(result.infrastructureCells) infrastructure, \(cells.filter { $0.status == "not booted" }.count) not booted; "
              + String(format: "%d VMs, %.0f s, %.1f fabrics per minute; ", result.vms, result.wallSeconds, result.fabricsPerMinute)
              + "\(result.minimal.count) minimal counterexample(s); \(output)/explore.json")
        if result.failingCells > 0 { throw ExitCode(1) }
        if result.infrastructureCells > 0 { throw ExitCode(3) }
    }
}
