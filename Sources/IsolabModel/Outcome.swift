import IsolabProtocol

/// The outcome of one scenario step, as the model predicts it and the agent reports it.
public enum StepResult: Sendable, Equatable, CustomStringConvertible {
    case ok
    case error(Errno)
    /// The kernel dies in the step (BUG, Oops, panic); the text says where.
    case crash(String)
    /// The call does not return (the kernel waits for something the scenario holds).
    case blocked
    case delivered
    /// The DMA faulted in the IOMMU; `requester` is the guest path the fault is attributed to.
    case faulted(requester: String?)
    /// The step cannot be carried out on this kernel or fabric.
    case unsupported
    /// The step is not run: an earlier step crashed the guest, or a precondition is missing.
    case notRun
    /// `selftest`: the program reported a failure (exit status 1, or another but 0 and 4).
    case failed
    /// `selftest`: the program skipped as a whole (exit status 4, KSFT_SKIP).
    case skipped

    /// The short form used in reports and in `expect:` pins: `ok`, `EBUSY`, `crash`, `blocked`,
    /// `delivered`, `faulted`, `unsupported`, `not-run`.
    public var token: String {
        switch self {
        case .ok: return "ok"
        case .error(let e): return e.name
        case .crash: return "crash"
        case .blocked: return "blocked"
        case .delivered: return "delivered"
        case .faulted: return "faulted"
        case .unsupported: return "unsupported"
        case .notRun: return "not-run"
        case .failed: return "failed"
        case .skipped: return "skipped"
        }
    }

    /// Tokens an `expect:` pin may name, besides errno names.
    public static let tokens = ["ok", "crash", "blocked", "delivered", "faulted", "unsupported", "not-run", "failed", "skipped"]

    public var description: String {
        switch self {
        case .error(let e): return e.description
        case .crash(let what): return "crash (\(what))"
        case .faulted(let r): return r.map { "faulted (requester \($0))" } ?? "faulted"
        default: return token
        }
    }
}

/// A sub-step of `vfio-open` (container, group, ioctls) with its own result.
public struct SubstepPrediction: Sendable, Equatable {
    public var name: Substep
    public var result: StepResult
    public var detail: String?
}

/// The model's prediction for one step.
public struct StepPrediction: Sendable, Equatable {
    public var index: Int
    public var step: Step
    public var result: StepResult
    /// The rule that produced the result, naming the kernel function it mirrors.
    public var rule: Reason
    public var substeps: [SubstepPrediction] = []
    /// For driver steps: the devices bound by the step.
    public var bound: [String] = []
    /// For `load-driver`: devices whose probe the ownership check refused (silently).
    public var refused: [String] = []
    /// For `sriov`: the PF's VFs that exist after the step, with their groups.
    public var virtualFunctions: [VirtualFunctionPrediction] = []
    /// For `selftest`: the program's and each subtest's expected outcome.
    public var selftest: SelftestPrediction?

    /// This prediction ending at a failed sub-step: the sub-step's errno becomes the step's.
    func failing(_ substep: Substep, _ e: Errno, _ rule: Reason) -> StepPrediction {
        var p = self
        p.substeps.append(SubstepPrediction(name: substep, result: .error(e), detail: nil))
        p.result = .error(e)
        p.rule = rule
        return p
    }
}

public struct ScenarioPrediction: Sendable, Equatable {
    public var name: String
    public var steps: [StepPrediction]
}
