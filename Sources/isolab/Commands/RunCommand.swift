import ArgumentParser
import Foundation
import IsolabEngine
import IsolabImages
import IsolabLibvirt
import IsolabModel
import IsolabProtocol
import IsolabVM

/// `isolab run`: boot a fabric through libvirt, run its scenarios, print what was observed.
struct RunCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Boot a fabric through libvirt, run its scenarios in the guest and print what was observed.",
        discussion: """
        Each scenario runs in a freshly booted guest (a fabric without scenarios boots once \
        for its inventory). With several files, a fabric the emulator cannot realize is \
        reported as unrealizable and the others run; with one, it is refused (exit 2). The default connection is libvirt's embedded QEMU driver, with its \
        state under $XDG_STATE_HOME/isolab/libvirt; --connect qemu:///system or \
        qemu+ssh://HOST/system uses a libvirt daemon. Exit status: 0 when every guest gave its \
        observation (crashes and hangs are observations), 2 on bad input or a fabric the \
        emulator cannot realize, 3 on an infrastructure failure, 130 when interrupted.
        """)

    @Argument(help: "Topology files.")
    var files: [String]
    /// Default 6.1, or only the --kernel-tree / --kernel-image kernel.
    @OptionGroup var kernelOptions: KernelOptions
    @OptionGroup var mirrorOptions: MirrorOptions
    @OptionGroup var developer: DeveloperKernelOptions
    @Option(help: "Override the topology's vIOMMU.")
    var iommu: IOMMUModel?
    @OptionGroup var connectOptions: ConnectOptions
    @Option(help: "Run only this scenario (repeatable).")
    var scenario: [String] = []
    @OptionGroup var formatOptions: FormatOptions
    @OptionGroup var jobsOptions: JobsOptions
    @Option(help: "CPU emulation: tcg; kvm (a probe boot must prove it works, else exit 3); auto (kvm if the probe works, else tcg).")
    var accel: Accel = .tcg
    @OptionGroup var bootOptions: BootOptions
    @Option(help: "Seconds from guest start to the agent's first record before the guest counts as hung.")
    var bootDeadline: Double = 150
    @Option(help: "Seconds one step may take in the guest.")
    var stepTimeout: Double = 10
    @Flag(help: "Leave the guest up after the plan, with a shell on its console attached to this terminal (Ctrl-] ends it; the guest is destroyed). One file, one kernel, at most one scenario.")
    var interactive = false
    @Flag(help: "Boot every scenario afresh instead of restoring one saved boot of the fabric per kernel.")
    var noSnapshot = false
    @OptionGroup var emulatorOptions: EmulatorOptions
    @Option(name: .customLong("kernel-arg"), help: ArgumentHelp("Extra kernel command-line word (repeatable).", visibility: .hidden))
    var kernelArgs: [String] = []

    func run() throws {
        var inputs: (topologies: [Topology], kernels: [(label: String, generation: KernelGeneration)], developer: DeveloperKernel?)!
        var boot = BootPath.pvh, clock = GuestClock.host
        var format = OutputFormat.text
        try reportingInputErrors {
            inputs = try validatedInputs(); boot = try bootOptions.resolve(); clock = try bootOptions.resolveClock()
            format = try formatOptions.accepted([.text, .json])
        }
        let jobs = jobsOptions.resolve()
        let kernels = inputs.kernels
        let log: (String) -> Void = { cliLogger.info("\($0)") }
        let fail: (String) -> Void = { cliLogger.warning("\($0)") }
        let provisioner = try asInputOrExit { try Provisioner(log: log) }
        provisioner.around = { try SignalTrap.cancellingImageBuilds($0) }
        let sources = emulatorOptions.sources(or: [try asInputOrExit { try provisioner.hostEmulatorID() }])
        guard sources.count == 1 else { Isolab.badInput("--emulator: run boots on one emulator; isolab matrix takes several") }
        let emulator = try SignalTrap.cancellingImageBuilds { try EmulatorOptions.provide(sources, with: provisioner)[0] }
        var topologies: [Topology] = []
        var unrealizable: [(Topology, [Unrealizable])] = []
        for var t in inputs.topologies {
            t.emulator = emulator.facts
            let problems = Realizability.check(t)
            if inputs.topologies.count == 1, let p = problems.first {
                Isolab.badInput("\(p.location): \(p.node): the emulator cannot realize this fabric as declared: \(p.reason)")
            }
            if problems.isEmpty { topologies.append(t); continue }
            unrealizable.append((t, problems))
            for p in problems { log("\(p.location): \(p.node): unrealizable, not booted: \(p.reason)") }
        }
        var settings = RunSettings()
        settings.boot = boot
        settings.clock = clock
        settings.bootDeadline = bootDeadline
        settings.stepTimeout = stepTimeout
        settings.extraKernelArguments = kernelArgs
        settings.only = scenario
        var requests: [RunRequest] = []
        var images: [String: GuestImage] = [:]
        do {
            let runsRoot = RunsDirectory.root()
            for k in kernels {
                let dev = inputs.developer.flatMap { $0.label == k.label ? $0 : nil }
                let image = try provisioner.image(dev?.source ?? .catalog(k.label))
                if let dev {
                    log("kernel \(dev.label): \(dev.release), generation \(dev.generation.id)"
                        + (dev.treeSource.map { ", tree \($0.summary)" } ?? "") + ", kernel image sha256 \(image.metadata.kernelSha256.prefix(12))")
                }
                images[k.label] = image
                for topology in topologies {
                    requests += settings.requests(topology, image: image, kernel: k.label, emulator: emulator, runsRoot: runsRoot,
                                                  programs: try provisioner.programs(for: topology))
                }
            }
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
        let connection = connections[0]
        if accel != .tcg, let first = requests.first {
            let runner = try GuestRunner(connection: connection)
            let probe = AccelProbe.probeKVM(runner: runner, image: first.image, kernelLabel: first.kernelLabel,
                                            directory: RunsDirectory.new(in: RunsDirectory.root(), label: "kvm-probe"))
            if probe.works {
                log("KVM works here (probe answered in \(String(format: "%.1f", probe.seconds)) s)")
                for i in requests.indices { requests[i].accel = .kvm }
            } else if accel == .kvm {
                fail("--accel kvm: KVM does not work here (\(probe.reason ?? "no answer")); use --accel tcg")
                throw ExitCode(3)
            } else {
                log("KVM does not work here (\(probe.reason ?? "no answer")); using TCG")
            }
        }
        if interactive {
            let session = InteractiveSession(request: requests[0], connection: connection)
            let cancel = Cancellation()
            let signals = SignalTrap(cancel: cancel, log: log)
            defer { signals.release() }
            let obs: VMObservation
            do { obs = try session.run(cancel: cancel) } catch {
                fail("interactive session: \(error)")
                throw ExitCode(3)
            }
            let report = RunReport(topologies: topologies, unrealizable: [], kernels: kernels.map(\.label),
                                   images: images, observations: [obs], emulator: emulator)
            FileHandle.standardError.write(Data(report.text().utf8))
            return
        }
        // Several connections: one live progress line as the matrix has; one: a line per guest.
        let observer: FleetObserver = connections.count > 1
            ? Progress(total: requests.count) : GuestLog(total: requests.count, booting: noSnapshot)
        let fleet = Fleet(connections: connections, jobs: jobs, snapshots: !noSnapshot)
        let signals = SignalTrap(cancel: fleet.cancellation, log: log)
        defer { signals.release() }
        let observations: [VMObservation]
        do { observations = try fleet.run(requests, observer: observer) } catch {
            fail(String(describing: error))
            throw ExitCode(3)
        }
        let cancelled = fleet.cancellation.isCancelled

        let report = RunReport(topologies: topologies, unrealizable: unrealizable, kernels: kernels.map(\.label),
                               images: images, observations: observations, emulator: emulator)
        switch format {
        case .json: print(try report.json())
        default: print(report.text(), terminator: "")
        }
        if cancelled { throw ExitCode(130) }
        if observations.contains(where: { $0.outcome == .infrastructure }) { throw ExitCode(3) }
    }

    private func validatedInputs() throws -> ([Topology], [(label: String, generation: KernelGeneration)], DeveloperKernel?) {
        guard !files.isEmpty else { throw InputError("run: give at least one topology file") }
        var topologies = try loadTopologies(files)
        if let iommu {
            for i in topologies.indices { topologies[i].iommu = iommu }
        }
        let names = Set(topologies.flatMap { $0.scenarios.map(\.name) })
        for name in scenario where !names.contains(name) {
            throw InputError("--scenario: no scenario '\(name)' in \(files.joined(separator: ", ")) (accepted: \(names.sorted().joined(separator: ", ")))")
        }
        let dev = try developer.resolve(requirements: true)
        var kernels: [(label: String, generation: KernelGeneration)] = []
        if dev == nil || kernelOptions.given {
            let ids = try kernelOptions.bootable(or: ["6.1"])
            kernels = try kernelOptions.resolve(or: ids).filter { ids.contains($0.label) }
        }
        if let dev { kernels.append((dev.label, dev.generation)) }
        if interactive {
            guard topologies.count == 1, kernels.count == 1, connectOptions.connect.count <= 1 else {
                throw InputError("--interactive: give one topology file, one --kernel and at most one --connect")
            }
            guard scenario.count <= 1, scenario.count == 1 || topologies[0].scenarios.count <= 1 else {
                throw InputError("--interactive: choose one scenario with --scenario (accepted: \(topologies[0].scenarios.map(\.name).joined(separator: ", ")))")
            }
        }
        return (topologies, kernels, dev)
    }
}

/// `isolab run` on one connection: a line as each guest starts and finishes.
final class GuestLog: FleetObserver, @unchecked Sendable {
    private let total: Int
    private let booting: Bool
    init(total: Int, booting: Bool) { self.total = total; self.booting = booting }

    func started(_ i: Int, _ r: RunRequest) {
        let line = "[\(i + 1)/\(total)] \(booting ? "booting" : "starting") \(r.topology.name) on \(r.kernelLabel)" + (r.scenario.map { ", scenario \($0.name)" } ?? "")
        cliLogger.info("\(line)")
    }

    func finished(_ i: Int, _ o: VMObservation) {
        let line = "[\(i + 1)/\(total)] \(o.outcome.rawValue) in \(String(format: "%.1f", o.timing.total)) s" + (o.problem.map { ": \($0)" } ?? "")
        cliLogger.info("\(line)")
    }

    func ended() {}
}
