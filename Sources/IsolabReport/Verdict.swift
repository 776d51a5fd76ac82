import IsolabModel

/// The judgement of one checked item: a group, a step, a DMA probe, a hazard, an unrealizable
/// node or a boot, on one fabric and one kernel.
public struct Verdict: Codable, Equatable, Sendable {
    /// What the comparison found.
    public enum Kind: String, Codable, Sendable, CaseIterable {
        /// Observed as the model predicted.
        case match
        /// Observed otherwise than the model (or a pin) predicted; `rule` says why the model thought so.
        case mismatch
        /// The guest put two endpoints in different groups although PCIe routing lets one reach
        /// the other past the IOMMU, and the model did not predict it.
        case hazard
        /// A hazard the model predicted and the guest's groups confirmed.
        case hazardAsExpected = "hazard-as-expected"
        /// The emulator cannot build the fabric as declared: not booted.
        case unrealizable
        /// A step whose `expect:` pin held; `because` is the author's reason.
        case pinned
        /// The guest kernel crashed in the step; `crashExpected` says whether that was predicted.
        case crash
        /// The run gave no usable observation: QEMU or libvirt failed, the guest hung where no
        /// step was predicted to block, or isolab was interrupted.
        case infrastructure
        /// Repetitions of the same cell (`isolab matrix --repeat N`) judged the item differently;
        /// `detail` lists each repetition's verdict and observation. Never folded into match
        /// or mismatch: a failure unless `--allow-flaky`.
        case flaky
    }

    /// What kind of item was checked.
    public enum Subject: String, Codable, Sendable {
        /// One IOMMU group, compared as a set of guest paths.
        case group
        /// A driver or VFIO step of a scenario.
        case step
        /// A DMA probe (`dma` step) of a scenario.
        case probe
        /// A pair of endpoints PCIe connects past the IOMMU.
        case hazard
        /// A declared node the emulator cannot realize.
        case node
        /// A whole guest run (an infrastructure failure without a step to blame).
        case run
        /// One TAP result of a `selftest` step's program (`FIXTURE.VARIANT.TEST`).
        case subtest
    }

    public var kind: Kind
    public var subject: Subject
    /// Stable identity within a fabric × kernel run: `group:<paths>`, `step:<scenario>:<index>`,
    /// `hazard:<from>-><to>`, `node:<id>`, `run:<scenario or inventory>`. Diff keys on it.
    public var item: String
    /// A one-line title, e.g. `group {dp0, A}` or `2 vfio-open A`.
    public var title: String
    public var scenario: String?
    public var step: Int?
    /// The declared node a step acts on (a probe's initiator).
    public var device: String?
    /// Line of the step or node in the topology file.
    public var line: Int?
    /// The expected result token or group membership (the pin when there is one).
    public var expected: String?
    /// The observed result token or group membership.
    public var observed: String?
    public var errno: Int?
    /// The agent's detail, or what went wrong in the run.
    public var detail: String?
    /// The model's reasoning: the kernel function it mirrors and why.
    public var rule: Reason?
    /// For pins: the topology author's `because:`.
    public var because: String?
    /// Kernel log lines the step produced, or the crash lines.
    public var kernelLog: [String]
    /// The console tail of a crashed, hung or failed run.
    public var consoleTail: [String]
    /// For `crash`: whether the model (or a pin) predicted the crash.
    public var crashExpected: Bool?

    public init(kind: Kind, subject: Subject, item: String, title: String, scenario: String? = nil,
                step: Int? = nil, device: String? = nil, line: Int? = nil, expected: String? = nil, observed: String? = nil,
                errno: Int? = nil, detail: String? = nil, rule: Reason? = nil, because: String? = nil,
                kernelLog: [String] = [], consoleTail: [String] = [], crashExpected: Bool? = nil) {
        self.kind = kind
        self.subject = subject
        self.item = item
        self.title = title
        self.scenario = scenario
        self.step = step
        self.device = device
        self.line = line
        self.expected = expected
        self.observed = observed
        self.errno = errno
        self.detail = detail
        self.rule = rule
        self.because = because
        self.kernelLog = kernelLog
        self.consoleTail = consoleTail
        self.crashExpected = crashExpected
    }

    /// How the verdict counts for the exit status.
    public enum Standing: String, Codable, Sendable {
        /// Agrees with the model or a pin (match, pinned, hazard-as-expected, expected crash).
        case pass
        /// Neither passes nor fails: an unrealizable node, which is reported, not run.
        case neutral
        /// A mismatch, an unpredicted hazard or an unexpected crash.
        case fail
        /// No usable observation.
        case infrastructure
    }

    public var standing: Standing {
        switch kind {
        case .match, .pinned, .hazardAsExpected: return .pass
        case .unrealizable: return .neutral
        case .mismatch, .hazard, .flaky: return .fail
        case .crash: return crashExpected == true ? .pass : .fail
        case .infrastructure: return .infrastructure
        }
    }

    /// A short label for tables: the kind, with `crash` split into expected and unexpected.
    public var label: String {
        guard kind == .crash else { return kind.rawValue }
        return crashExpected == true ? "expected crash" : "unexpected crash"
    }
}

/// The process exit status a run of verdicts earns.
public enum ExitStatus {
    /// Every verdict agrees with the model or a pin (unrealizable nodes are reported, not failed).
    public static let success: Int32 = 0
    /// A mismatch, an unpredicted hazard or an unexpected crash.
    public static let failure: Int32 = 1
    /// Bad input; decided by the CLI, never returned here.
    public static let badInput: Int32 = 2
    /// An infrastructure failure and nothing that failed on its own merits.
    public static let infrastructure: Int32 = 3

    /// 0 when every verdict passes, 1 on any failing verdict (a real observation outranks an
    /// infrastructure failure elsewhere, so a flaky shard cannot hide a regression), else 3 if
    /// any run gave no usable observation.
    public static func of(_ verdicts: [Verdict]) -> Int32 {
        let standings = Set(verdicts.map(\.standing))
        if standings.contains(.fail) { return failure }
        if standings.contains(.infrastructure) { return infrastructure }
        return success
    }

    /// The exit status of a whole results document.
    public static func of(_ document: ResultsDocument) -> Int32 {
        of(document.runs.flatMap(\.verdicts))
    }
}
