import IsolabProtocol

/// How a VM run ended, as the runner saw it from outside the guest.
public enum VMEnd: Sendable, Equatable {
    /// The agent finished and the guest powered off (or was torn down after `done`).
    case finished
    /// The domain stopped before `done`.
    case stopped(String)
    /// A deadline passed (`what` says which) and the domain was destroyed.
    case deadline(String)
    /// libvirt or QEMU failed.
    case infrastructure(String)
    case interrupted
}

/// Builds the observation of one VM run from the record stream, the console and the end.
public struct ObservationAssembler: Sendable {
    public var topology: String
    public var kernel: String
    public var iommu: String
    public var scenario: String?
    /// The plan's steps, so that steps the agent never reported are still listed.
    public var plan: GuestPlan

    public init(topology: String, kernel: String, iommu: String, scenario: String?, plan: GuestPlan) {
        self.topology = topology
        self.kernel = kernel
        self.iommu = iommu
        self.scenario = scenario
        self.plan = plan
    }

    public func assemble(stream: RecordStreamParser, console: String, end: VMEnd, timing: Timing) -> VMObservation {
        var obs = VMObservation(topology: topology, kernel: kernel, iommu: iommu, scenario: scenario,
                                outcome: .completed, timing: timing)
        obs.streamComplete = stream.complete
        obs.inventory = stream.records.last(where: { $0.type == .inventory })?.inventory
        var reported: [Int: StepRecord] = [:]
        var inFlight: Int?
        for r in stream.records {
            switch r.type {
            case .stepStart: inFlight = r.index
            case .step:
                if let s = r.step { reported[s.index] = s; if inFlight == s.index { inFlight = nil } }
            default: break
            }
        }
        let fatal = stream.records.first(where: { $0.type == .fatal })?.message
        let crash = ConsoleScanner.crashLines(in: console)
        obs.crashLines = crash

        switch end {
        case .finished where stream.complete:
            obs.outcome = .completed
            if let fatal { obs.outcome = .infrastructure; obs.problem = "agent: \(fatal)" }
        case .finished, .stopped:
            let why: String
            if case .stopped(let s) = end { why = s } else { why = "the guest powered off" }
            if let e = stream.error {
                obs.outcome = .infrastructure
                obs.problem = e.description
            } else if !crash.isEmpty || ConsoleScanner.showsPanic(console) {
                obs.outcome = .crashed
                obs.problem = "the guest kernel crashed: " + (crash.first ?? "panic")
            } else {
                obs.outcome = .infrastructure
                obs.problem = "\(why) before the agent finished (record stream cut short after \(stream.records.count) records)"
            }
        case .deadline(let what):
            obs.outcome = stream.error == nil ? .hung : .infrastructure
            obs.problem = stream.error?.description ?? "\(what); the domain was destroyed"
        case .infrastructure(let what):
            obs.outcome = .infrastructure
            obs.problem = what
        case .interrupted:
            obs.outcome = .interrupted
            obs.problem = "interrupted; the domain was destroyed"
        }

        // One record per plan step: reported, in flight, or never reached.
        var afterLoss = false
        for step in plan.steps {
            if let r = reported[step.index] {
                obs.steps.append(r)
                if r.result == "crash" { afterLoss = true }
                continue
            }
            if !afterLoss, step.index == inFlight, obs.outcome != .completed {
                let result = obs.outcome == .crashed ? "crash" : (obs.outcome == .hung ? "timed-out" : "not-run")
                obs.steps.append(StepRecord(index: step.index, op: step.op, result: result,
                                            detail: obs.problem, kernelLog: obs.outcome == .crashed ? crash : []))
                afterLoss = true
                continue
            }
            obs.steps.append(StepRecord(index: step.index, op: step.op, result: "not-run"))
        }
        if obs.outcome != .completed { obs.consoleTail = ConsoleScanner.tail(console) }
        return obs
    }
}
