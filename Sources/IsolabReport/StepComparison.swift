import IsolabModel
import IsolabProtocol

/// Everything the model predicts for one step besides its final token, compared with what the
/// agent recorded: the sub-steps (name, result, errno, and `get-status`'s flags), the devices a
/// driver step bound, the devices a `load-driver` probe refused, and a fault's requester.
///
/// The checks run in that order; the first difference is the one a mismatch names.
enum StepComparison {
    /// The first way `record` differs from `predicted`, or nil when every predicted detail holds.
    static func firstDifference(_ predicted: StepPrediction, _ record: StepRecord) -> String? {
        switch predicted.step.action.op {
        case .vfioOpen:
            return substepDifference(predicted.substeps, record.substeps)
        case .loadDriver:
            if let d = setDifference("bound", predicted.bound, record.bound) { return d }
            // An agent from before `refused` was recorded leaves it nil: nothing to compare.
            guard let refused = record.refused else { return nil }
            return setDifference("refused (probe failed, not reported)", predicted.refused, refused)
        case .bind, .vfioBind:
            return setDifference("bound", predicted.bound, record.bound)
        case .dma:
            return requesterDifference(predicted.result, record)
        case .sriov:
            if let d = setDifference("bound", predicted.bound, record.bound) { return d }
            return virtualFunctionDifference(predicted.virtualFunctions, record.virtualFunctions ?? [])
        case .unbind, .vfioClose, .vfToken:
            return nil
        case .selftest:
            return programDifference(record)
        }
    }

    /// A program whose harness announced more tests (`1..N`) than it reported: it died midway.
    static func programDifference(_ record: StepRecord) -> String? {
        guard let program = record.program else { return "the agent recorded no program run" }
        let tap = program.tap
        if let n = tap.planned, tap.tests.count < n {
            return "the program announced \(n) tests (1..\(n)) and reported \(tap.tests.count)"
        }
        return nil
    }

    /// The VFs after an `sriov` step: the same guest paths in VF order, and each VF's group
    /// holding the same functions (by guest path).
    static func virtualFunctionDifference(_ predicted: [VirtualFunctionPrediction], _ observed: [VirtualFunctionRecord]) -> String? {
        let want = predicted.map(\.path), got = observed.map(\.path)
        guard want == got else {
            return "VFs: observed at [\(got.joined(separator: ", "))], model [\(want.joined(separator: ", "))]"
        }
        for (p, o) in zip(predicted, observed) where p.groupMembers != o.groupMembers {
            return "\(p.id)'s group: observed {\(o.groupMembers.joined(separator: ", "))}, model {\(p.groupMembers.joined(separator: ", "))}"
        }
        return nil
    }

    /// Sub-steps in order: a missing, extra or renamed sub-step, a different result or errno,
    /// or different `VFIO_GROUP_GET_STATUS` flags (the viability the kernel reports).
    static func substepDifference(_ predicted: [SubstepPrediction], _ observed: [SubstepRecord]) -> String? {
        for i in 0..<max(predicted.count, observed.count) {
            let p = i < predicted.count ? predicted[i] : nil
            let o = i < observed.count ? observed[i] : nil
            switch (p, o) {
            case let (p?, o?) where p.name != o.name:
                return "sub-step \(i + 1): observed \(o.name.rawValue) \(o.result), model \(p.name.rawValue) \(p.result.token)"
            case let (p?, o?) where p.result.token != o.result:
                return "\(p.name.rawValue): observed \(describe(o)), model \(p.result.token)"
            case let (p?, o?) where p.name == .getStatus && p.detail != nil && o.detail != nil && p.detail != o.detail:
                return "get-status: observed flags \(o.detail!), model \(p.detail!)"
            case let (p?, nil):
                return "\(p.name.rawValue): the model predicts it (\(p.result.token)), the agent did not run it"
            case let (nil, o?):
                return "\(o.name.rawValue): the agent ran it (\(describe(o))), the model predicts no such sub-step"
            default:
                continue
            }
        }
        return nil
    }

    static func describe(_ o: SubstepRecord) -> String {
        o.errno.map { "\(o.result) (errno \($0))" } ?? o.result
    }

    /// Two sets of declared devices, named by what only one side has.
    static func setDifference(_ what: String, _ predicted: [String], _ observed: [String]) -> String? {
        let p = Set(predicted), o = Set(observed)
        guard p != o else { return nil }
        let show = { (s: Set<String>) in "{" + s.sorted().joined(separator: ", ") + "}" }
        var parts: [String] = []
        let extra = o.subtracting(p), missing = p.subtracting(o)
        if !extra.isEmpty { parts.append("observed \(show(extra)) the model does not") }
        if !missing.isEmpty { parts.append("the model predicts \(show(missing)) not observed") }
        return "\(what): observed \(show(o)), model \(show(p)) (" + parts.joined(separator: "; ") + ")"
    }

    /// The requester a fault is attributed to (after QEMU's alias rewriting), for every vIOMMU
    /// whose fault lines name one; a fault the agent could not attribute is a difference too.
    static func requesterDifference(_ predicted: StepResult, _ record: StepRecord) -> String? {
        guard case .faulted(let want?) = predicted, record.result == StepResult.faulted(requester: nil).token else { return nil }
        guard let got = record.dma?.faultRequester else {
            return "fault requester: the fault lines name none the agent could read (\(record.dma?.faultLines.first ?? "no fault line")), the model expects \(want)"
        }
        return got == want ? nil : "fault attributed to \(got), the model expects requester \(want)"
    }
}
