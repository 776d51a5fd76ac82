/// One difference between a baseline and a new results document, for one checked item.
public struct Change: Codable, Equatable, Sendable {
    public enum Kind: String, Codable, Sendable, CaseIterable {
        /// Passed before (match, pinned, expected hazard or crash), fails now (mismatch, hazard,
        /// unexpected crash, infrastructure).
        case regression
        /// Failed before, passes now.
        case fix
        /// Same standing, but the observed result or the verdict kind changed.
        case change
        /// Checked only in the new results.
        case added
        /// Checked only in the baseline.
        case removed
    }

    public var kind: Kind
    public var topology: String
    public var kernel: String
    /// The emulator label of the runs compared, when they record one.
    public var emulator: String?
    public var scenario: String?
    /// The verdict's `item` key (`step:<scenario>:<index>`, `group:<paths>`, …).
    public var item: String
    public var title: String
    public var before: Verdict?
    public var after: Verdict?
}

extension Change {
    /// The kernel, and the emulator when the runs record one.
    public var platform: String { emulator.map { "\(kernel) · QEMU \($0)" } ?? kernel }
}

/// Baseline comparison of two results documents, keyed by fabric, kernel and item.
public enum ResultsDiff {
    public static func diff(base: ResultsDocument, new: ResultsDocument) -> [Change] {
        func key(_ r: FabricRun, _ v: Verdict) -> String { [r.topology, r.kernel, r.emulator ?? "", v.item].joined(separator: "\u{0}") }
        var old: [String: (FabricRun, Verdict)] = [:]
        for r in base.runs { for v in r.verdicts { old[key(r, v)] = (r, v) } }
        var out: [Change] = []
        var seen = Set<String>()
        for r in new.runs {
            for v in r.verdicts {
                let k = key(r, v)
                seen.insert(k)
                guard let (_, b) = old[k] else {
                    out.append(Change(kind: .added, topology: r.topology, kernel: r.kernel, emulator: r.emulator, scenario: v.scenario,
                                      item: v.item, title: v.title, before: nil, after: v))
                    continue
                }
                let was = b.standing, now = v.standing
                let kind: Change.Kind?
                if was == .pass && (now == .fail || now == .infrastructure) {
                    kind = .regression
                } else if (was == .fail || was == .infrastructure) && now == .pass {
                    kind = .fix
                } else if b.observed != v.observed || b.kind != v.kind || b.crashExpected != v.crashExpected {
                    kind = .change
                } else {
                    kind = nil
                }
                if let kind {
                    out.append(Change(kind: kind, topology: r.topology, kernel: r.kernel, emulator: r.emulator, scenario: v.scenario,
                                      item: v.item, title: v.title, before: b, after: v))
                }
            }
        }
        for r in base.runs {
            for v in r.verdicts where !seen.contains(key(r, v)) {
                out.append(Change(kind: .removed, topology: r.topology, kernel: r.kernel, emulator: r.emulator, scenario: v.scenario,
                                  item: v.item, title: v.title, before: v, after: nil))
            }
        }
        let order = Change.Kind.allCases
        return out.enumerated().sorted {
            (order.firstIndex(of: $0.element.kind)!, $0.offset) < (order.firstIndex(of: $1.element.kind)!, $1.offset)
        }.map(\.element)
    }

    /// The two documents reduced to the runs of one kernel and/or one emulator each, the base's
    /// relabelled as the new one's, so that `diff` pairs them: "what did QEMU 10 change?"
    /// (`emulators: ("7.2", "10.0")`), "what did my kernel change?" (`kernels: ("6.12", "mine")`).
    public static func paired(base: ResultsDocument, new: ResultsDocument, kernels: (base: String, new: String)? = nil,
                              emulators: (base: String, new: String)? = nil) -> (base: ResultsDocument, new: ResultsDocument) {
        func keep(_ r: FabricRun, _ k: String?, _ e: String?) -> Bool {
            (k == nil || r.kernel == k) && (e == nil || r.emulator == e)
        }
        var b = base, n = new
        b.runs = base.runs.filter { keep($0, kernels?.base, emulators?.base) }.map { r in
            var r = r
            if let k = kernels?.new { r.kernel = k }
            if let e = emulators?.new { r.emulator = e }
            return r
        }
        n.runs = new.runs.filter { keep($0, kernels?.new, emulators?.new) }
        return (b, n)
    }

    /// Whether the changes include a regression (a CI gate exits 1 on it).
    public static func hasRegression(_ changes: [Change]) -> Bool { changes.contains { $0.kind == .regression } }

    static func describe(_ v: Verdict?) -> String {
        guard let v else { return "absent" }
        return v.label + (v.observed.map { " (\($0))" } ?? "")
    }

    static func name(_ c: Change) -> String {
        "\(c.topology) on \(c.platform): " + (c.scenario.map { "\($0): " } ?? "") + c.title
    }

    /// One line per change, grouped by kind.
    public static func text(_ changes: [Change]) -> String {
        guard !changes.isEmpty else { return "no changes\n" }
        var out = ""
        for kind in Change.Kind.allCases {
            let cs = changes.filter { $0.kind == kind }
            guard !cs.isEmpty else { continue }
            out += "\(kind.rawValue)s (\(cs.count)):\n"
            for c in cs {
                out += "  \(name(c)): \(describe(c.before)) -> \(describe(c.after))\n"
                if kind == .regression, let r = c.after?.rule { out += "    model: \(r.kernelFunction): \(r.text)\n" }
            }
        }
        return out
    }

    public static func markdown(_ changes: [Change]) -> String {
        var out = "## isolab: changes against the baseline\n\n"
        let counts = Change.Kind.allCases.map { k in "\(changes.filter { $0.kind == k }.count) \(k.rawValue)s" }
        out += counts.joined(separator: " · ") + "\n\n"
        guard !changes.isEmpty else { return out + "No changes.\n" }
        out += "| change | fabric | kernel | item | before | after |\n|---|---|---|---|---|---|\n"
        for c in changes {
            let item = (c.scenario.map { "\($0): " } ?? "") + c.title
            out += "| \(c.kind == .regression ? "**regression**" : c.kind.rawValue) | \(Escape.markdown(c.topology)) | \(Escape.markdown(c.platform)) | \(Escape.markdown(item)) | \(Escape.markdown(describe(c.before))) | \(Escape.markdown(describe(c.after))) |\n"
        }
        return out
    }

    public static func html(_ changes: [Change], title: String = "isolab: changes against the baseline") -> String {
        var out = HTMLRenderer.page(title: title) + "<h1>\(Escape.xml(title))</h1>\n"
        if changes.isEmpty { return out + "<p>No changes.</p>\n</body>\n</html>\n" }
        out += "<table><tr><th>change</th><th>fabric</th><th>kernel</th><th>item</th><th>before</th><th>after</th><th>model</th></tr>\n"
        for c in changes {
            let cls = c.kind == .regression ? "fail" : (c.kind == .fix ? "pass" : "neutral")
            let item = (c.scenario.map { "\($0): " } ?? "") + c.title
            let rule = (c.after ?? c.before)?.rule.map { "\($0.kernelFunction): \($0.text)" } ?? ""
            out += "<tr class=\"\(cls)\"><td>\(c.kind.rawValue)</td><td>\(Escape.xml(c.topology))</td><td>\(Escape.xml(c.platform))</td><td>\(Escape.xml(item))</td><td>\(Escape.xml(describe(c.before)))</td><td>\(Escape.xml(describe(c.after)))</td><td>\(Escape.xml(rule))</td></tr>\n"
        }
        return out + "</table>\n</body>\n</html>\n"
    }
}
