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

    public init() {}

    /// One request per scenario of `topology` (or one inventory boot when it declares none),
    /// each with a fresh run directory under `runsRoot`.
    public func requests(_ topology: Topology, scenarios: [Scenario?], image: GuestImage, kernel: String,
                         emulator: ProvidedEmulator?, runsRoot: String) -> [RunRequest] {
        let fabric = Fabric(topology)
        return scenarios.map { s in
            let dir = RunsDirectory.new(in: runsRoot, label: [topology.name, kernel, s?.name ?? "inventory"].joined(separator: "-"))
            var r = RunRequest(topology: topology, fabric: fabric, scenario: s, image: image, kernelLabel: kernel, directory: dir)
            r.boot = boot
            r.clock = clock
            r.emulator = emulator?.binary
            r.emulatorVersion = emulator?.facts.version
            if let bootDeadline { r.bootDeadline = bootDeadline }
            if let stepTimeout { r.stepTimeout = stepTimeout }
            r.extraKernelArguments = extraKernelArguments
            return r
        }
    }
}
