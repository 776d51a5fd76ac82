import Foundation
import IsolabImages
import IsolabModel
import IsolabVM

/// How every guest of a run is started (the same for each request).
public struct RunSettings: Sendable {
    public var boot: BootPath = .pvh
    public var clock: GuestClock = .host
    /// Seconds from guest start to the agent's first record; nil: ``RunRequest``'s default.
    public var bootDeadline: Double?
    /// Seconds one step may take in the guest; nil: ``RunRequest``'s default.
    public var stepTimeout: Double?
    public var extraKernelArguments: [String] = []
    /// Only these scenarios (empty: all).
    public var only: [String] = []

    public init() {}

    /// The runs of `topology`: each scenario `only` allows, or one inventory boot (nil) when
    /// it declares none.
    public func scenarios(of topology: Topology) -> [Scenario?] {
        topology.scenarios.isEmpty ? [nil] : topology.scenarios.filter { only.isEmpty || only.contains($0.name) }
    }

    /// One request per run of `topology` (``scenarios(of:)``), each with a fresh run directory
    /// under `runsRoot`.
    public func requests(_ topology: Topology, image: GuestImage, kernel: String,
                         emulator: ProvidedEmulator?, runsRoot: String, programs: [String: String] = [:]) -> [RunRequest] {
        let fabric = Fabric(topology)
        return scenarios(of: topology).map { s in
            let dir = RunsDirectory.new(in: runsRoot, label: [topology.name, kernel, s?.name ?? "inventory"].joined(separator: "-"))
            var r = RunRequest(topology: topology, fabric: fabric, scenario: s, image: image, kernelLabel: kernel, directory: dir)
            r.boot = boot
            r.clock = clock
            r.emulator = emulator?.binary
            r.emulatorVersion = emulator?.facts.version
            if let bootDeadline { r.bootDeadline = bootDeadline }
            if let stepTimeout { r.stepTimeout = stepTimeout }
            r.extraKernelArguments = extraKernelArguments
            r.programs = programs
            return r
        }
    }
}
