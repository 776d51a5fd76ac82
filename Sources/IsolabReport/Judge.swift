import IsolabModel
import IsolabProtocol

/// Compares what the guest observed with what the model predicted, item by item.
public enum Judge {
    /// Every verdict for one fabric on one kernel: unrealizable nodes (and nothing else, since
    /// such a fabric is not booted), then the boot, the groups, the hazards and each scenario's
    /// steps. `observations` are the guest runs of this fabric on this kernel: the inventory
    /// boot (`scenario == nil`) and one per scenario.
    public static func verdicts(_ p: KernelPrediction, observations: [VMObservation]) -> [Verdict] {
        if !p.unrealizable.isEmpty {
            return p.unrealizable.map { u in
                Verdict(kind: .unrealizable, subject: .node, item: "node:\(u.node)", title: "node \(u.node)",
                        line: u.location.line, detail: u.reason)
            }
        }
        var out: [Verdict] = []
        let names = Names(p.fabric)
        let boot = observations.first { $0.scenario == nil }
        let inventory = boot?.inventory ?? observations.first { $0.inventory != nil }?.inventory
        if let boot, boot.outcome != .completed, let v = runVerdict(boot, item: "run:inventory", title: "boot") {
            out.append(v)
        } else if inventory == nil {
            out.append(Verdict(kind: .infrastructure, subject: .run, item: "run:inventory", title: "boot",
                               detail: "no guest reported an inventory: groups and hazards were not judged"))
        }
        if let inventory {
            // A fabric QEMU built otherwise than declared is not judged against the model.
            let realized = realizationVerdicts(p, inventory: inventory)
            if !realized.isEmpty { return out + realized }
            out += groupVerdicts(p, inventory: inventory, names: names)
            out += hazardVerdicts(p, inventory: inventory, names: names)
        }
        for s in p.scenarios {
            guard let o = observations.first(where: { $0.scenario == s.name }) else {
                out.append(Verdict(kind: .infrastructure, subject: .run, item: "run:\(s.name)", title: "scenario \(s.name)",
                                   scenario: s.name, detail: "no observation of this scenario"))
                continue
            }
            out += stepVerdicts(s, observation: o)
        }
        return out
    }

    /// Display names by guest path; undeclared paths show as themselves.
    struct Names {
        var byPath: [String: String] = [:]
        init(_ fabric: Fabric) {
            for f in fabric.functions { byPath[f.path] = f.displayName }
        }
        func name(_ path: String) -> String { byPath[path] ?? "undeclared \(path)" }
        func group(_ paths: [String]) -> String { "{" + paths.sorted().map(name).joined(separator: ", ") + "}" }
    }

    /// A run that ended without `done`: a boot crash, a hang, an infrastructure failure or an
    /// interruption. nil for a completed run.
    static func runVerdict(_ o: VMObservation, item: String, title: String) -> Verdict? {
        let kind: Verdict.Kind
        switch o.outcome {
        case .completed: return nil
        case .crashed: kind = .crash
        case .hung, .infrastructure, .interrupted: kind = .infrastructure
        }
        return Verdict(kind: kind, subject: .run, item: item, title: title, scenario: o.scenario,
                       observed: o.outcome.rawValue, detail: o.problem, kernelLog: o.crashLines,
                       consoleTail: o.consoleTail, crashExpected: kind == .crash ? false : nil)
    }

    // MARK: groups

    /// Each predicted group (at boot) against the inventory's groups, as sets of guest paths.
    static func groupVerdicts(_ p: KernelPrediction, inventory: Inventory, names: Names) -> [Verdict] {
        let predicted = p.iommuActive ? p.groupsAtBoot.map { Set($0.map(\.path)) } : []
        let observed = inventory.groups.map { Set($0.members) }
        var groupOf: [String: Set<String>] = [:]
        for g in observed { for m in g { groupOf[m] = g } }
        var out: [Verdict] = []
        for g in predicted {
            let paths = g.sorted()
            let item = "group:" + paths.joined(separator: ",")
            let title = "group " + names.group(paths)
            let why = p.grouping.flatMap { grouping in
                p.fabric.functions.first { $0.path == paths.last }.flatMap { grouping.reasons[$0.index]?.last }
            }
            if observed.contains(g) {
                out.append(Verdict(kind: .match, subject: .group, item: item, title: title,
                                   expected: names.group(paths), observed: names.group(paths), rule: why))
                continue
            }
            var seen: [Set<String>] = []
            var ungrouped: [String] = []
            for m in paths {
                if let o = groupOf[m] { if !seen.contains(o) { seen.append(o) } } else { ungrouped.append(m) }
            }
            var shown = seen.map { names.group(Array($0)) }
            if !ungrouped.isEmpty { shown.append("ungrouped " + names.group(ungrouped)) }
            out.append(Verdict(kind: .mismatch, subject: .group, item: item, title: title,
                               expected: names.group(paths), observed: shown.joined(separator: " "), rule: why))
        }
        let predictedMembers = predicted.reduce(into: Set<String>()) { $0.formUnion($1) }
        for g in observed where !predicted.contains(g) && g.isDisjoint(with: predictedMembers) {
            let paths = g.sorted()
            out.append(Verdict(kind: .mismatch, subject: .group, item: "group:+" + paths.joined(separator: ","),
                               title: "group " + names.group(paths), expected: "no group",
                               observed: names.group(paths),
                               detail: p.iommuActive ? "the model predicts none of these functions grouped"
                                                     : (p.iommuNote ?? "the model predicts no IOMMU")))
        }
        return out
    }

    // MARK: hazards

    /// Pairs of endpoints PCIe connects past the IOMMU, judged against the observed groups:
    /// different groups is a hazard (as expected when the model predicted it); the model's
    /// hazards that the guest grouped together are mismatches.
    static func hazardVerdicts(_ p: KernelPrediction, inventory: Inventory, names: Names) -> [Verdict] {
        guard p.iommuActive, let reach = p.reachability else { return [] }
        var groupOf: [String: Int] = [:]
        for g in inventory.groups { for m in g.members { groupOf[m] = g.id } }
        let predicted = Set(p.hazards.map { "\($0.from)->\($0.to)" })
        // Functions the model expects grouped in the freshly booted guest (virtio-iommu on 6.12
        // groups a function only when a driver probes it): pairs outside it are not judged.
        let groupedAtBoot = Set(p.groupsAtBoot.flatMap { $0.map(\.path) })
        var out: [Verdict] = []
        for route in p.bypasses {
            let a = p.fabric.functions[route.from], b = p.fabric.functions[route.to]
            guard groupedAtBoot.contains(a.path), groupedAtBoot.contains(b.path) else { continue }
            let key = "\(a.displayName)->\(b.displayName)"
            let ga = groupOf[a.path], gb = groupOf[b.path]
            let separated = ga != nil && gb != nil && ga != gb
            let rule = Reason("PCIe routing (ACS, PCIe Base Spec §6.12)", reach.reason(route))
            let observed = "\(a.displayName) in \(ga.map { "group \($0)" } ?? "no group"), \(b.displayName) in \(gb.map { "group \($0)" } ?? "no group")"
            let title = "hazard \(a.displayName) → \(b.displayName)"
            if separated {
                out.append(Verdict(kind: predicted.contains(key) ? .hazardAsExpected : .hazard, subject: .hazard,
                                   item: "hazard:" + key, title: title, expected: predicted.contains(key) ? "hazard" : "no hazard",
                                   observed: observed, rule: rule))
            } else if predicted.contains(key) {
                out.append(Verdict(kind: .mismatch, subject: .hazard, item: "hazard:" + key, title: title,
                                   expected: "hazard", observed: observed,
                                   detail: "the model predicted different groups; the guest did not separate them",
                                   rule: rule))
            }
        }
        return out
    }

    // MARK: steps

    /// One scenario's steps. A run that failed outside the guest gives one infrastructure
    /// verdict; a hang is judged at the step in flight (a match where the model predicts
    /// `blocked`), and the steps after it are not judged.
    static func stepVerdicts(_ s: ScenarioPrediction, observation o: VMObservation) -> [Verdict] {
        if o.outcome == .infrastructure || o.outcome == .interrupted {
            return [runVerdict(o, item: "run:\(s.name)", title: "scenario \(s.name)")!]
        }
        var out: [Verdict] = []
        var crashedAt: Int?
        // The host marks the step in flight at a hang `timed-out` and every later one `not-run`.
        let inFlight = o.outcome == .hung ? o.steps.last(where: { $0.result != "not-run" }).flatMap { $0.result == "timed-out" ? $0.index : nil } : nil
        if o.outcome == .hung, inFlight == nil, var v = runVerdict(o, item: "run:\(s.name)", title: "scenario \(s.name)") {
            v.detail = (o.problem ?? "the guest hung") + " after its last step"
            out.append(v)
        }
        for st in s.steps {
            let subject: Verdict.Subject = { if case .dma = st.step.action { return .probe } else { return .step } }()
            var v = Verdict(kind: .match, subject: subject, item: "step:\(s.name):\(st.index)",
                            title: "step \(st.index + 1) \(st.step.action.summary)", scenario: s.name, step: st.index,
                            device: st.step.action.device, line: st.step.location.line, expected: st.step.expect?.result ?? st.result.token,
                            rule: st.rule, because: st.step.expect?.because)
            guard let r = o.steps.first(where: { $0.index == st.index }) else {
                v.kind = .infrastructure
                v.detail = "the observation has no record of this step"
                out.append(v)
                continue
            }
            v.observed = r.result
            v.errno = r.errno
            v.detail = r.detail
            v.kernelLog = r.kernelLog
            if st.index == inFlight {
                if v.expected == StepResult.blocked.token {
                    v.kind = .match
                    v.observed = "blocked"
                    v.detail = "the guest hung in this step, as predicted; " + (o.problem ?? "")
                } else {
                    v.kind = .infrastructure
                    v.consoleTail = o.consoleTail
                    v.detail = (o.problem ?? "the guest hung") + "; later steps not judged"
                }
                out.append(v)
                break
            }
            if let s = st.selftest, st.step.expect == nil, let program = r.program {
                // The harness exits 1 exactly when a test failed: the expected status follows
                // from the expected outcome of each test the program ran.
                v.expected = s.result(for: program.tap.tests.map(\.name)).token
            }
            v.kind = judge(expected: v.expected!, pinned: st.step.expect != nil, observed: r.result,
                           predicted: st, record: r)
            if v.kind == .crash {
                v.crashExpected = v.expected == "crash"
                v.consoleTail = o.consoleTail
                if v.kernelLog.isEmpty { v.kernelLog = o.crashLines }
                crashedAt = st.index
            } else if v.kind == .mismatch {
                v.detail = mismatchDetail(st, expected: st.selftest != nil ? v.expected! : st.result.token, record: r, crashedAt: crashedAt)
            }
            out.append(v)
            if let sel = st.selftest, let program = r.program {
                out += subtestVerdicts(sel, program, scenario: s.name, step: st, line: v.line)
            }
        }
        return out
    }

    /// One verdict per TAP result of a `selftest` step: the outcome the model expects for its
    /// name (pass unless a rule says skip, fail or xfail) against the line the program printed.
    /// A mismatch carries the test's own output lines (assertion messages) as its detail.
    static func subtestVerdicts(_ s: SelftestPrediction, _ program: ProgramRecord, scenario: String, step st: StepPrediction,
                                line: Int?) -> [Verdict] {
        program.tap.tests.map { t in
            let (want, rule) = s.expectation(for: t.name)
            var v = Verdict(kind: want.rawValue == t.status.rawValue ? .match : .mismatch, subject: .subtest,
                            item: "subtest:\(scenario):\(st.index):\(t.name)", title: "\(s.program) \(t.name)",
                            scenario: scenario, step: st.index, device: st.step.action.device, line: line,
                            expected: want.rawValue, observed: t.status.rawValue, rule: rule)
            var detail: [String] = []
            if let reason = t.reason { detail.append(reason) }
            if v.kind == .mismatch || t.status == .fail { detail += t.log.suffix(12) }
            v.detail = detail.isEmpty ? nil : detail.joined(separator: "\n")
            return v
        }
    }

    /// The verdict kind of one observed step: a pin compares the final token only; otherwise
    /// the token and then everything else the model predicts (``StepComparison``) must hold.
    static func judge(expected: String, pinned: Bool, observed: String, predicted: StepPrediction,
                      record r: StepRecord) -> Verdict.Kind {
        if pinned { return observed == expected ? .pinned : (observed == "crash" ? .crash : .mismatch) }
        if observed == "crash" { return .crash }
        guard observed == expected else { return .mismatch }
        return StepComparison.firstDifference(predicted, r) == nil ? .match : .mismatch
    }

    /// What differed, the first difference first, then the agent's detail, or the crash that
    /// kept the step from running.
    static func mismatchDetail(_ st: StepPrediction, expected: String, record r: StepRecord, crashedAt: Int?) -> String? {
        var parts: [String] = []
        if r.result == expected, let first = StepComparison.firstDifference(st, r) { parts.append(first) }
        if r.result != st.result.token, !st.substeps.isEmpty, let first = StepComparison.substepDifference(st.substeps, r.substeps) {
            parts.append(first)
        }
        if let d = r.detail { parts.append(d) }
        if r.result == "not-run", let c = crashedAt { parts.append("not run: the guest crashed at step \(c)") }
        return parts.isEmpty ? nil : parts.joined(separator: "; ")
    }

    // MARK: repetitions

    /// The verdicts of several repetitions of one cell, combined item by item: an item every
    /// repetition judged alike keeps the first repetition's verdict; one judged differently
    /// (another kind, or another observation) becomes `flaky`, its detail naming each
    /// repetition's verdict and observation. Items seen in some repetitions only are flaky too.
    public static func combining(_ repetitions: [[Verdict]]) -> [Verdict] {
        guard let first = repetitions.first, repetitions.count > 1 else { return repetitions.first ?? [] }
        var order = first.map(\.item)
        for r in repetitions.dropFirst() { for v in r where !order.contains(v.item) { order.append(v.item) } }
        let byItem = repetitions.map { Dictionary($0.map { ($0.item, $0) }, uniquingKeysWith: { a, _ in a }) }
        return order.map { item in
            let seen = byItem.map { $0[item] }
            let present = seen.compactMap { $0 }
            let alike = present.count == seen.count && present.allSatisfy {
                $0.kind == present[0].kind && $0.observed == present[0].observed && $0.crashExpected == present[0].crashExpected
            }
            if alike { return present[0] }
            var v = present[0]
            v.kind = .flaky
            v.observed = seen.map { $0?.observed ?? "absent" }.joined(separator: " | ")
            v.detail = seen.enumerated().map { i, r in
                "repetition \(i + 1): " + (r.map { "\($0.label), observed \($0.observed ?? "nothing")" + ($0.detail.map { " (\($0))" } ?? "") } ?? "no such item")
            }.joined(separator: "; ")
            v.crashExpected = nil
            return v
        }
    }
}
