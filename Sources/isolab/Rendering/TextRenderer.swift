import IsolabModel

/// Human-readable predictions: the fabric as a tree with groups, hazards, steps.
enum TextRenderer {
    static func header(_ p: KernelPrediction, label: String) -> String {
        "\(p.topology.name) (\(p.topology.file)) on kernel \(label) [generation \(p.kernel.id), \(p.kernel.ownership.rawValue)], iommu \(p.topology.iommu.rawValue)"
    }

    static func kindText(_ f: PCIFunction, _ p: KernelPrediction) -> String {
        let acs = f.hasACSCapability ? "ACS" : "no ACS"
        switch f.kind {
        case .rootPort?: return "root-port [\(acs)]"
        case .switchUpstream?: return "switch upstream port"
        case .downstreamPort?: return "downstream port [\(acs)]"
        case .pciePCIBridge?: return "pcie-pci-bridge"
        case .pciBridge?: return "pci-bridge"
        case .device(let m, _)?: return m.rawValue
        case nil: return f.vendorDevice
        }
    }

    static func render(_ p: KernelPrediction, label: String, pairs: Bool = false) -> String {
        var lines = [header(p, label: label)]
        if let note = p.iommuNote { lines.append("  note: \(note)") }
        // Endpoints with a hazard: below a turning side, with a peer in another group elsewhere
        // in the same reach (linear: per reach, the groups each side holds).
        var hazardNodes = Set<String>()
        if let grouping = p.grouping {
            for r in p.reaches where r.hazardCount(grouping) > 0 {
                for s in r.sides {
                    for e in s.endpoints where r.hazardCount(of: e, grouping) > 0 { hazardNodes.insert(p.fabric.functions[e].displayName) }
                }
            }
        }
        func walk(bus: Int, indent: String) {
            let fs = p.fabric.buses[bus].functions.map { p.fabric.functions[$0] }
            for (i, f) in fs.enumerated() {
                let last = i == fs.count - 1
                let group = p.grouping?.groupOf[f.index].map { "group \($0)" } ?? "no group"
                let mark = hazardNodes.contains(f.displayName) ? "  !! hazard" : ""
                lines.append("\(indent)\(last ? "└─ " : "├─ ")\(f.path)  \(f.displayName)  \(kindText(f, p))  \(group)\(mark)")
                if let sub = f.subordinate { walk(bus: sub, indent: indent + (last ? "   " : "│  ")) }
            }
        }
        lines.append("  pcie.0")
        walk(bus: 0, indent: "  ")
        if p.iommuActive {
            lines.append("  groups:")
            for g in p.grouping?.groups ?? [] {
                lines.append("    \(g.id): " + g.members.map { p.fabric.functions[$0].displayName }.joined(separator: ", "))
            }
        }
        if p.hazardCount > 0 {
            lines.append("  hazards (PCIe routes around the IOMMU between different groups): \(p.hazardCount) ordered pairs")
            for r in p.reaches where p.grouping.map(r.hazardCount) ?? 0 > 0 { lines += reachLines(r, p) }
            if pairs {
                for h in p.hazards { lines.append("    \(h.from) -> \(h.to): \(h.reason)") }
            }
        }
        if !p.virtualFunctionHazards.isEmpty {
            lines.append("  hazards once every declared VF is enabled (predicted; VFs do not exist at boot): \(p.virtualFunctionHazards.count) ordered pairs")
            for h in p.virtualFunctionHazards { lines.append("    \(h.from) -> \(h.to): \(h.reason)") }
        }
        if !p.unrealizable.isEmpty {
            lines.append("  unrealizable in QEMU \((p.topology.emulator ?? .assumedHostQEMU72).shortVersion):")
            for u in p.unrealizable { lines.append("    \(u.node) (line \(u.location.line)): \(u.reason)") }
        }
        for s in p.scenarios {
            lines.append("  scenario \(s.name):")
            for st in s.steps {
                let pin = st.step.expect.map { "  [pinned: \($0.result) because \($0.because)]" } ?? ""
                lines.append("    \(st.index + 1). \(st.step.action.summary.padded(28)) \(st.result.description)\(pin)")
            }
        }
        return lines.joined(separator: "\n")
    }

    /// One reach: what connects its sides, and per side whether requests from below it turn
    /// there, its endpoints and their groups.
    static func reachLines(_ r: PeerReach, _ p: KernelPrediction) -> [String] {
        var lines = ["    on \(r.connector): endpoints below a side that turns reach every endpoint below the other sides"]
        for s in r.sides {
            let f = p.fabric.functions[s.function]
            let eps = s.endpoints.map { e in
                p.fabric.functions[e].displayName + (p.grouping?.groupOf[e].map { " (group \($0))" } ?? "")
            }
            lines.append("      \(s.turns ? "turns" : "isolated") via \(f.displayName): \(eps.joined(separator: ", ")) — \(s.reason)")
        }
        return lines
    }

    static func explain(_ p: KernelPrediction, label: String, device: String?) -> String {
        var lines = [header(p, label: label)]
        if let note = p.iommuNote { lines.append("note: \(note)") }
        if let caveat = p.kernel.caveat { lines.append("caveat: \(caveat)") }
        lines.append("")
        lines.append("IOMMU groups (pci_device_group(), drivers/iommu/iommu.c):")
        for f in p.fabric.functions where device == nil || f.nodeID == device {
            let g = p.grouping?.groupOf[f.index].map { "group \($0)" } ?? "no group"
            lines.append("  \(f.displayName) at \(f.path) -> \(g)")
            let reasons = p.grouping?.reasons[f.index]
                ?? p.virtio?.whyUngroupedAtBoot(f, in: p.fabric, kernel: p.kernel).map { [$0] } ?? []
            for r in reasons { lines.append("    - \(r)") }
        }
        let relevant = p.hazards.filter { device == nil || $0.from == device || $0.to == device }
        if !relevant.isEmpty {
            lines.append("")
            lines.append("Hazards:")
            for h in relevant { lines.append("  \(h.from) -> \(h.to): \(h.reason)") }
        }
        for s in p.scenarios {
            let steps = s.steps.filter { device == nil || mentions($0.step.action, device!) }
            guard !steps.isEmpty else { continue }
            lines.append("")
            lines.append("Scenario \(s.name):")
            for st in steps {
                lines.append("  \(st.index + 1). \(st.step.action.summary) -> \(st.result.description)")
                lines.append("     because \(st.rule)")
                for sub in st.substeps {
                    lines.append("       \(sub.name): \(sub.result.description)" + (sub.detail.map { " (\($0))" } ?? ""))
                }
                if !st.bound.isEmpty { lines.append("     bound: \(st.bound.joined(separator: ", "))") }
                if !st.refused.isEmpty { lines.append("     refused: \(st.refused.joined(separator: ", "))") }
                for vf in st.virtualFunctions {
                    lines.append("     \(vf.id) (\(vf.physicalFunctionAndIndex)) at \(vf.path), group: \(vf.groupMembers.joined(separator: ", "))")
                }
                if let s = st.selftest {
                    for r in s.rules {
                        lines.append("     \(r.outcome.rawValue): \(r.pattern.description) (\(r.rule))")
                    }
                    if s.prelude == nil { lines.append("     pass: every other subtest (\(s.otherwise))") }
                }
            }
        }
        return lines.joined(separator: "\n")
    }

    static func mentions(_ a: StepAction, _ id: String) -> Bool {
        switch a {
        case .loadDriver: return true
        case .bind(let d, _), .unbind(let d), .vfioBind(let d), .vfioOpen(let d, _, _), .vfioClose(let d): return d == id
        case .dma(let from, let to, _): return from == id || to == .device(id)
        case .sriov(let d, _, _): return d == id
        case .vfToken(let d, _): return d == id
        case .selftest(let run): return run.devices.contains(id)
        }
    }
}

extension String {
    func padded(_ n: Int) -> String { count >= n ? self : self + String(repeating: " ", count: n - count) }
}
