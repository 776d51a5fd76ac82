import Foundation
import IsolabModel

/// The stable JSON form of predictions (schema `isolab-predict/2`, docs/predict-json.md).
enum PredictionJSON {
    struct Document: Encodable {
        var schema = "isolab-predict/2"
        var predictions: [Entry]
    }

    struct Entry: Encodable {
        var file: String
        var topology: String
        var iommu: String
        var kernel: String
        var generation: String
        var ownership: String
        var iommuActive: Bool
        var iommuNote: String?
        var groups: [Group]
        var functions: [Function]
        /// Where endpoints reach each other past the IOMMU, by what connects them.
        var reaches: [ReachJSON]
        /// Ordered pairs the groups separate: counted always, listed with `--hazards pairs`.
        var hazardCount: Int
        var hazards: [HazardJSON]?
        /// Hazards involving an SR-IOV VF once every declared VF is enabled (predicted only).
        var virtualFunctionHazards: [HazardJSON]
        var unrealizable: [UnrealizableJSON]
        var scenarios: [ScenarioJSON]
    }

    struct Group: Encodable {
        var id: Int
        var members: [Member]
    }

    /// `node` is null for the chipset's and the vIOMMU's own functions (encoded explicitly).
    struct Member: Encodable {
        var node: String?
        var path: String
        var device: String?
        enum CodingKeys: String, CodingKey { case node, path, device }
        func encode(to encoder: Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(node, forKey: .node)
            try c.encode(path, forKey: .path)
            try c.encodeIfPresent(device, forKey: .device)
        }
    }

    struct Function: Encodable {
        var node: String?
        var path: String
        var vendorDevice: String
        var pcieType: String
        var acsCapability: Bool
        var multifunction: Bool
        var group: Int?
        var dmaRequester: String
    }

    struct HazardJSON: Encodable {
        var from: String
        var to: String
        var fromGroup: Int
        var toGroup: Int
        var reason: String
    }

    struct ReachJSON: Encodable {
        var connector: String
        var sides: [SideJSON]
        var hazardCount: Int
    }

    struct SideJSON: Encodable {
        var via: String
        var path: String
        var turns: Bool
        var reason: String
        var endpoints: [EndpointJSON]
    }

    struct EndpointJSON: Encodable {
        var node: String
        var group: Int?
    }

    struct UnrealizableJSON: Encodable {
        var node: String
        var reason: String
        var line: Int
        var column: Int
    }

    struct ScenarioJSON: Encodable {
        var name: String
        var steps: [StepJSON]
    }

    struct StepJSON: Encodable {
        var index: Int
        var step: String
        var line: Int
        var result: String
        var errno: Int32?
        var requester: String?
        var crash: String?
        var rule: Reason
        var substeps: [SubstepJSON]
        var bound: [String]
        var refused: [String]
        var expect: ExpectJSON?
        /// `selftest`: the rules each subtest's expected outcome comes from.
        var selftest: SelftestJSON?
    }

    struct SelftestJSON: Encodable {
        var program: String
        var prelude: String?
        var preludeRule: Reason?
        var rules: [SubtestRuleJSON]
        var otherwise: Reason
    }

    struct SubtestRuleJSON: Encodable {
        var subtests: String
        var outcome: String
        var rule: Reason
    }

    struct SubstepJSON: Encodable {
        var name: String
        var result: String
        var errno: Int32?
        var detail: String?
    }

    struct ExpectJSON: Encodable {
        var result: String
        var because: String
    }

    static func entry(_ p: KernelPrediction, label: String, pairs: Bool) -> Entry {
        let f = p.fabric
        let groups = (p.grouping?.groups ?? []).map { g in
            Group(id: g.id, members: g.members.map { i in
                let fn = f.functions[i]
                return Member(node: fn.nodeID, path: fn.path, device: fn.nodeID == nil ? fn.displayName : nil)
            })
        }
        let functions = f.functions.map { fn in
            Function(node: fn.nodeID, path: fn.path, vendorDevice: fn.vendorDevice, pcieType: fn.pcieType.rawValue,
                     acsCapability: fn.hasACSCapability, multifunction: fn.multifunction,
                     group: p.grouping?.groupOf[fn.index], dmaRequester: DMAAlias.requesterPath(of: fn, in: f))
        }
        let scenarios = p.scenarios.map { s in
            ScenarioJSON(name: s.name, steps: s.steps.map { st in
                var errno: Int32?
                var requester: String?
                var crash: String?
                switch st.result {
                case .error(let e): errno = e.rawValue
                case .faulted(let r): requester = r
                case .crash(let c): crash = c
                default: break
                }
                return StepJSON(index: st.index, step: st.step.action.summary, line: st.step.location.line,
                                result: st.result.token, errno: errno, requester: requester, crash: crash, rule: st.rule,
                                substeps: st.substeps.map { sub in
                                    var e: Int32?
                                    if case .error(let x) = sub.result { e = x.rawValue }
                                    return SubstepJSON(name: sub.name.rawValue, result: sub.result.token, errno: e, detail: sub.detail)
                                },
                                bound: st.bound, refused: st.refused,
                                expect: st.step.expect.map { ExpectJSON(result: $0.result, because: $0.because) },
                                selftest: st.selftest.map { sel in
                                    SelftestJSON(program: sel.program, prelude: sel.prelude?.result.token, preludeRule: sel.prelude?.rule,
                                                 rules: sel.rules.map { SubtestRuleJSON(subtests: $0.pattern.description, outcome: $0.outcome.rawValue, rule: $0.rule) },
                                                 otherwise: sel.otherwise)
                                })
            })
        }
        return Entry(file: p.topology.file, topology: p.topology.name, iommu: p.topology.iommu.rawValue,
                     kernel: label, generation: p.kernel.id, ownership: p.kernel.ownership.rawValue,
                     iommuActive: p.iommuActive, iommuNote: p.iommuNote, groups: groups, functions: functions,
                     reaches: p.reaches.map { r in
                         ReachJSON(connector: r.connector, sides: r.sides.map { s in
                             SideJSON(via: f.functions[s.function].displayName, path: f.functions[s.function].path, turns: s.turns,
                                      reason: s.reason, endpoints: s.endpoints.map {
                                          EndpointJSON(node: f.functions[$0].displayName, group: p.grouping?.groupOf[$0])
                                      })
                         }, hazardCount: p.grouping.map(r.hazardCount) ?? 0)
                     },
                     hazardCount: p.hazardCount,
                     hazards: pairs ? p.hazards.map { HazardJSON(from: $0.from, to: $0.to, fromGroup: $0.fromGroup, toGroup: $0.toGroup, reason: $0.reason) } : nil,
                     virtualFunctionHazards: p.virtualFunctionHazards.map { HazardJSON(from: $0.from, to: $0.to, fromGroup: $0.fromGroup, toGroup: $0.toGroup, reason: $0.reason) },
                     unrealizable: p.unrealizable.map { UnrealizableJSON(node: $0.node, reason: $0.reason, line: $0.location.line, column: $0.location.column) },
                     scenarios: scenarios)
    }

    static func render(_ predictions: [(label: String, p: KernelPrediction)], pairs: Bool = false) -> String {
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        let doc = Document(predictions: predictions.map { entry($0.p, label: $0.label, pairs: pairs) })
        return String(data: try! enc.encode(doc), encoding: .utf8)!
    }
}
