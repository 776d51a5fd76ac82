/// A developer's regression report: what changed between a baseline kernel (a catalog kernel, or
/// one of a saved results document) and the developer's kernel, fabric by fabric and item by
/// item, with the model's reasoning for both and a verdict per change. `ResultsDiff` does the
/// comparison; this pairs two kernels' runs instead of equal labels.
public struct RegressionReport: Codable, Equatable, Sendable {
    /// Whether the model's prediction for the developer's kernel holds for a changed item.
    public enum Holds: String, Codable, Sendable {
        /// The new observation is what the model predicts for the developer's kernel (a change the
        /// model expects, e.g. a configuration the baseline does not build).
        case holds = "prediction-holds"
        /// It is not: a behaviour change the developer must own (or a model gap to fix).
        case doesNotHold = "prediction-does-not-hold"
        /// The item was not judged on the developer's kernel (removed, not booted).
        case notJudged = "not-judged"
    }

    public struct Entry: Codable, Equatable, Sendable {
        public var change: Change
        public var holds: Holds
    }

    public var baselineKernel: String
    public var kernel: String
    public var entries: [Entry]

    /// Changes between `baseKernel`'s runs in `base` and `newKernel`'s runs in `new` (one
    /// document may be both).
    public init(base: ResultsDocument, baseKernel: String, new: ResultsDocument, newKernel: String) {
        let (b, n) = ResultsDiff.paired(base: base, new: new, kernels: (baseKernel, newKernel))
        baselineKernel = baseKernel
        kernel = newKernel
        entries = ResultsDiff.diff(base: b, new: n).map { c in
            var c = c
            c.kernel = newKernel
            let holds: Holds = c.after.map { $0.standing == .fail || $0.standing == .infrastructure ? .doesNotHold : .holds } ?? .notJudged
            return Entry(change: c, holds: holds)
        }
    }

    public var regressions: [Entry] { entries.filter { $0.change.kind == .regression } }

    static func reasoning(_ v: Verdict?) -> String {
        guard let v else { return "—" }
        var s = "expected \(v.expected ?? "?")"
        if let r = v.rule { s += " (\(r.kernelFunction): \(r.text))" }
        return s
    }

    /// Markdown: a summary line, then one section per change.
    public func markdown() -> String {
        var out = "## isolab: \(kernel) against \(baselineKernel)\n\n"
        let bad = entries.filter { $0.holds == .doesNotHold }.count
        out += "\(entries.count) items changed; \(regressions.count) regressions; on \(bad) the model's prediction for \(kernel) does not hold.\n\n"
        guard !entries.isEmpty else { return out + "No item changed.\n" }
        for e in entries {
            let c = e.change
            out += "### \(c.kind == .regression ? "**regression**" : c.kind.rawValue): \(Escape.markdown(c.topology)) — "
                + (c.scenario.map { "\(Escape.markdown($0)): " } ?? "") + "\(Escape.markdown(c.title))\n\n"
            out += "- \(Escape.markdown(baselineKernel)): \(Escape.markdown(ResultsDiff.describe(c.before))); model: \(Escape.markdown(Self.reasoning(c.before)))\n"
            out += "- \(Escape.markdown(kernel)): \(Escape.markdown(ResultsDiff.describe(c.after))); model: \(Escape.markdown(Self.reasoning(c.after)))\n"
            switch e.holds {
            case .holds: out += "- verdict: the model's prediction for \(Escape.markdown(kernel)) holds\n"
            case .doesNotHold: out += "- verdict: **the model's prediction for \(Escape.markdown(kernel)) does not hold** — a behaviour change to own\n"
            case .notJudged: out += "- verdict: not judged on \(Escape.markdown(kernel))\n"
            }
            let crash = (c.after?.kind == .crash ? c.after : c.before?.kind == .crash ? c.before : nil)
            if let crash, !crash.kernelLog.isEmpty {
                out += "- crash lines:\n\n```\n" + crash.kernelLog.prefix(20).joined(separator: "\n") + "\n```\n"
            }
            out += "\n"
        }
        return out
    }
}
