import Foundation
import IsolabImages
import IsolabModel
import IsolabProtocol

/// What `isolab run` prints: per kernel, the observed groups, the inventory and every scenario's
/// observation (schema `isolab-run/1`).
struct RunReport {
    var topologies: [Topology]
    var unrealizable: [(Topology, [Unrealizable])]
    var kernels: [String]
    var images: [String: GuestImage]
    var observations: [VMObservation]
    /// The emulator the guests ran on.
    var emulator: ProvidedEmulator?

    struct Document: Encodable {
        var schema = "isolab-run/1"
        var runs: [Entry]
        var unrealizable: [Refused]
    }

    /// A fabric that was not booted because the emulator cannot build it as declared.
    struct Refused: Encodable {
        var file: String
        var topology: String
        var node: String
        var reason: String
        var line: Int
        var column: Int
    }

    struct Entry: Encodable {
        var file: String
        var topology: String
        var iommu: String
        var kernel: String
        /// The emulator's label and version line.
        var emulator: String?
        var emulatorVersion: String?
        var kernelRelease: String?
        var kernelPackages: [String]
        var observed: Observed
    }

    struct Observed: Encodable {
        /// Same shape as `predict`'s groups; ids are the guest kernel's.
        var groups: [PredictionJSON.Group]
        var inventory: Inventory?
        var scenarios: [VMObservation]
    }

    func entries() -> [(Topology, Entry)] {
        topologies.flatMap { topology in
            kernels.map { k in
                let obs = observations.filter { $0.kernel == k && $0.topology == topology.name }
                let inventory = obs.first(where: { $0.inventory != nil })?.inventory
                return (topology, Entry(file: topology.file, topology: topology.name, iommu: topology.iommu.rawValue, kernel: k,
                             emulator: emulator?.label, emulatorVersion: emulator?.facts.version,
                             kernelRelease: inventory?.kernelRelease ?? images[k]?.kernelRelease,
                             kernelPackages: images[k]?.metadata.packages.map { "\($0.name) \($0.version)" } ?? [],
                             observed: Observed(groups: groups(inventory, fabric: Fabric(topology)), inventory: inventory, scenarios: obs)))
            }
        }
    }

    var refused: [Refused] {
        unrealizable.flatMap { t, problems in
            problems.map { Refused(file: t.file, topology: t.name, node: $0.node, reason: $0.reason,
                                   line: $0.location.line, column: $0.location.column) }
        }
    }

    func groups(_ inventory: Inventory?, fabric: Fabric) -> [PredictionJSON.Group] {
        guard let inventory else { return [] }
        var byPath: [String: PCIFunction] = [:]
        for f in fabric.functions { byPath[f.path] = f }
        return inventory.groups.sorted { $0.id < $1.id }.map { g in
            PredictionJSON.Group(id: g.id, members: g.members.sorted().map { path in
                let f = byPath[path]
                return PredictionJSON.Member(node: f?.nodeID, path: path,
                                             device: f?.nodeID == nil ? (f?.displayName ?? "undeclared") : nil)
            })
        }
    }

    func json() throws -> String {
        let e = JSONEncoder()
        e.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        return String(decoding: try e.encode(Document(runs: entries().map(\.1), unrealizable: refused)), as: UTF8.self)
    }

    func text() -> String {
        // The answer first: how the guests ended, on what.
        let all = entries().flatMap { $0.1.observed.scenarios }
        var outcomes: [String: Int] = [:]
        for o in all { outcomes[o.outcome.rawValue, default: 0] += 1 }
        let kernelsRun = entries().reduce(into: [String]()) { if !$0.contains($1.1.kernel) { $0.append($1.1.kernel) } }
        let counts: String = outcomes.isEmpty ? "none booted" : outcomes.keys.sorted().map { "\(outcomes[$0]!) \($0)" }.joined(separator: ", ")
        var out = "isolab run: \(all.count) guest" + (all.count == 1 ? "" : "s") + ": " + counts
        if !refused.isEmpty { out += ", \(refused.count) unrealizable node(s) not booted" }
        out += " · kernel" + (kernelsRun.count == 1 ? " " : "s ") + kernelsRun.joined(separator: ", ")
        if let e = entries().first?.1.emulator { out += " · QEMU \(e)" }
        out += "\n"
        for r in refused { out += "\(r.topology): unrealizable, not booted: \(r.file):\(r.line):\(r.column): \(r.node): \(r.reason)\n" }
        for (topology, entry) in entries() {
            out += "\(entry.topology) on \(entry.kernel)" + (entry.emulator.map { " · QEMU \($0)" } ?? "")
            out += entry.kernelRelease.map { " (\($0))" } ?? ""
            out += ", iommu \(entry.iommu)"
            out += entry.observed.inventory.map { ", guest IOMMU \($0.iommu ?? "none")" } ?? ""
            out += entry.observed.scenarios.first?.boot.map { ", boot \($0.entry) (\($0.firmware))" } ?? ""
            out += "\n"
            if entry.observed.inventory != nil {
                out += "  groups observed:\n"
                if entry.observed.groups.isEmpty { out += "    (none)\n" }
                for g in entry.observed.groups {
                    let members = g.members.map { m in m.path + " " + (m.node ?? m.device ?? "?") }
                    out += "    group \(g.id): " + members.joined(separator: ", ") + "\n"
                }
            }
            for o in entry.observed.scenarios {
                out += "  scenario \(o.scenario ?? "(inventory)"): \(o.outcome.rawValue)"
                out += o.problem.map { ": \($0)" } ?? ""
                out += "\n"
                let scenario = topology.scenarios.first { $0.name == o.scenario }
                for s in o.steps {
                    let summary = scenario.flatMap { $0.steps.indices.contains(s.index) ? $0.steps[s.index].action.summary : nil }
                        ?? s.op.rawValue
                    var line = "    \(s.index) \(summary): \(s.result)"
                    if let n = s.errno { line += " (\(n))" }
                    if let d = s.detail, s.result != "ok" { line += " — \(d)" }
                    out += line + "\n"
                    if let program = s.program {
                        // The program's TAP results: a count by outcome, then each one not passing.
                        let tap = program.tap
                        var counts: [String: Int] = [:]
                        for t in tap.tests { counts[t.status.rawValue, default: 0] += 1 }
                        out += "      \(tap.tests.count) subtests" + (tap.planned.map { " of \($0) announced" } ?? "") + ": "
                            + (counts.isEmpty ? "none reported" : counts.keys.sorted().map { "\(counts[$0]!) \($0)" }.joined(separator: ", ")) + "\n"
                        for t in tap.tests where t.status != .pass {
                            out += "        \(t.status.rawValue) \(t.name)" + (t.reason.map { " — \($0)" } ?? "") + "\n"
                        }
                    }
                }
                for l in o.crashLines.prefix(3) { out += "    | \(l)\n" }
                if o.outcome != .completed, let c = o.consolePath { out += "    console: \(c)\n" }
            }
        }
        return out
    }
}
