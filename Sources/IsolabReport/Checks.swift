/// A verdict with the run it belongs to, as the flat renderers (JUnit, TAP) list them.
struct Check {
    var run: FabricRun
    var verdict: Verdict

    /// `switch-no-acs on 6.1` (`… on 6.1 · QEMU 10.0` when the run records its emulator).
    var suite: String { "\(run.topology) on \(run.platform)" }

    /// `p2p-between-switch-ports: 4 dma A -> B`, or the verdict title for items outside scenarios.
    var name: String {
        if let s = verdict.scenario, verdict.subject != .run { return "\(s): \(verdict.title)" }
        return verdict.title
    }

    /// `expected faulted, observed delivered`.
    var headline: String {
        var parts: [String] = [verdict.label]
        if let e = verdict.expected { parts.append("expected \(e)") }
        if let o = verdict.observed { parts.append("observed \(o)" + (verdict.errno.map { " (errno \($0))" } ?? "")) }
        return parts.joined(separator: ", ")
    }

    /// Everything a reader needs to judge the item, one fact a line: the model's reasoning
    /// beside the observation.
    var explanation: [String] {
        let v = verdict
        var lines: [String] = [headline]
        if let r = v.rule { lines.append("model: \(r.kernelFunction): \(r.text)") }
        if let b = v.because { lines.append("pinned because: \(b)") }
        if let d = v.detail { lines.append("detail: \(d)") }
        if let l = v.line, l > 0 { lines.append("topology line: \(l)") }
        if !v.kernelLog.isEmpty { lines.append("kernel log:"); lines += v.kernelLog.map { "  \($0)" } }
        if !v.consoleTail.isEmpty { lines.append("console tail:"); lines += v.consoleTail.map { "  \($0)" } }
        return lines
    }
}

extension ResultsDocument {
    /// Every verdict in run order.
    var checks: [Check] { runs.flatMap { r in r.verdicts.map { Check(run: r, verdict: $0) } } }

    /// `isolab 0.3 · QEMU 7.2.15 · libvirt 9.0.0`, with every distinct environment of the shards.
    var environmentLine: String {
        var seen: [Environment] = []
        for r in runs where !seen.contains(r.environment) { seen.append(r.environment) }
        if seen.isEmpty { return "isolab \(isolab)" }
        return seen.map { "isolab \($0.isolab), QEMU \($0.qemu), libvirt \($0.libvirt)" }.joined(separator: "; ")
    }
}

/// The counts a summary table shows, in column order.
enum SummaryColumn: CaseIterable {
    case match, pinned, hazardAsExpected, expectedCrash, mismatch, hazard, unexpectedCrash, flaky, infrastructure, unrealizable

    var title: String {
        switch self {
        case .match: return "match"
        case .pinned: return "pinned"
        case .hazardAsExpected: return "hazard (expected)"
        case .expectedCrash: return "crash (expected)"
        case .mismatch: return "mismatch"
        case .hazard: return "hazard (new)"
        case .unexpectedCrash: return "crash (unexpected)"
        case .flaky: return "flaky"
        case .infrastructure: return "infrastructure"
        case .unrealizable: return "unrealizable"
        }
    }

    func count(_ verdicts: [Verdict]) -> Int {
        verdicts.filter { v in
            switch self {
            case .match: return v.kind == .match
            case .pinned: return v.kind == .pinned
            case .hazardAsExpected: return v.kind == .hazardAsExpected
            case .expectedCrash: return v.kind == .crash && v.crashExpected == true
            case .mismatch: return v.kind == .mismatch
            case .hazard: return v.kind == .hazard
            case .unexpectedCrash: return v.kind == .crash && v.crashExpected != true
            case .flaky: return v.kind == .flaky
            case .infrastructure: return v.kind == .infrastructure
            case .unrealizable: return v.kind == .unrealizable
            }
        }.count
    }
}

extension FabricRun {
    /// `pass`, `FAIL`, `infrastructure` or `not booted`.
    public var status: String {
        if !booted { return "not booted" }
        switch ExitStatus.of(verdicts) {
        case ExitStatus.success: return "pass"
        case ExitStatus.failure: return "FAIL"
        default: return "infrastructure"
        }
    }
}
