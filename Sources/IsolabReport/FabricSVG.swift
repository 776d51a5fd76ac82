/// An inline SVG of one fabric on one kernel: the PCI tree from pcie.0 down, every function a
/// box filled with its IOMMU group's colour (observed groups, else predicted), hazards as red
/// dashed arcs between endpoints, and functions in mismatched items outlined in red. Hover
/// titles (`<title>`) give path, kind and group. No script.
public enum FabricSVG {
    static let boxW = 118, boxH = 38, gapX = 14, gapY = 34, margin = 12
    /// Light fills that stay readable under black text.
    static let palette = ["#cfe8ff", "#ffe3b3", "#d6f5d6", "#f3d1f4", "#fff3a8", "#d0f0f0", "#ffd6d6",
                          "#e0d9ff", "#e6f2c2", "#f9dcc4", "#c9e4de", "#f0e0a0"]

    /// `id` makes the SVG's marker id unique in a page that holds several drawings.
    public static func render(_ topology: TopologyRecord, run: FabricRun, id: String = "fabric") -> String {
        let marker = "\(id)-arrow"
        let nodes = topology.functions
        var children: [String?: [DiagramNode]] = [:]
        for n in nodes { children[n.parentPath, default: []].append(n) }
        // Leaves take the next column; a bridge sits above the middle of its children.
        var x: [String: Double] = [:], depth: [String: Int] = [:]
        var nextLeaf = 0.0, maxDepth = 0
        func place(_ n: DiagramNode, _ d: Int) {
            depth[n.path] = d
            maxDepth = max(maxDepth, d)
            let kids = (children[n.path] ?? []).sorted { $0.path < $1.path }
            if kids.isEmpty {
                x[n.path] = nextLeaf
                nextLeaf += 1
            } else {
                for k in kids { place(k, d + 1) }
                x[n.path] = (x[kids.first!.path]! + x[kids.last!.path]!) / 2
            }
        }
        let top = (children[nil] ?? []).sorted { $0.path < $1.path }
        for n in top { place(n, 1) }
        let width = margin * 2 + max(1, Int(nextLeaf)) * (boxW + gapX)
        // The deepest row of boxes, then room for a hazard arc dipping under it.
        let height = margin + maxDepth * (boxH + gapY) + boxH + 26
        func cx(_ p: String) -> Int { margin + Int(x[p]! * Double(boxW + gapX)) + boxW / 2 }
        func ty(_ p: String) -> Int { margin + depth[p]! * (boxH + gapY) }

        let observedGroup = run.observedGroupOf
        var groupOf: [String: Int] = observedGroup
        if groupOf.isEmpty {
            for (i, g) in run.predictedGroups.enumerated() { for m in g { groupOf[m] = i } }
        }
        let groupIDs = Array(Set(groupOf.values)).sorted()
        func fill(_ p: String) -> String {
            guard let g = groupOf[p], let i = groupIDs.firstIndex(of: g) else { return "#ffffff" }
            return palette[i % palette.count]
        }
        let byName = Dictionary(nodes.map { ($0.name, $0.path) }, uniquingKeysWith: { a, _ in a })
        var flagged = Set<String>()
        for v in run.verdicts where v.standing == .fail || v.standing == .infrastructure {
            if v.subject == .group, v.item.hasPrefix("group:") {
                for p in v.item.dropFirst("group:".count).split(separator: ",") { flagged.insert(String(p.hasPrefix("+") ? p.dropFirst() : p)) }
            }
            if let d = v.device, let p = byName[d] { flagged.insert(p) }
        }

        var out = "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"fabric\" width=\"\(width)\" height=\"\(height)\" viewBox=\"0 0 \(width) \(height)\" role=\"img\" aria-label=\"\(Escape.xml("fabric \(topology.name) on kernel \(run.platform)"))\">\n"
        out += "<style>text { font-family: sans-serif; } .name { font-weight: bold; font-size: 12px; } .sub { font-family: monospace; font-size: 10px; fill: #333; } .bus { font-size: 10px; fill: #fff; }</style>\n"
        out += "<defs><marker id=\"\(marker)\" viewBox=\"0 0 10 10\" refX=\"9\" refY=\"5\" markerWidth=\"6\" markerHeight=\"6\" orient=\"auto-start-reverse\"><path d=\"M0,0 L10,5 L0,10 z\" fill=\"#c00\"/></marker></defs>\n"
        // The root bus.
        let rootW = width - 2 * margin
        out += "<rect x=\"\(margin)\" y=\"\(margin)\" width=\"\(rootW)\" height=\"14\" rx=\"3\" fill=\"#555\"/>"
        out += "<text x=\"\(margin + 6)\" y=\"\(margin + 11)\" class=\"bus\">pcie.0</text>\n"
        for n in nodes {
            let parentBottom = n.parentPath.map { ty($0) + boxH } ?? (margin + 14)
            out += "<line x1=\"\(n.parentPath.map(cx) ?? cx(n.path))\" y1=\"\(parentBottom)\" x2=\"\(cx(n.path))\" y2=\"\(ty(n.path))\" stroke=\"#888\"/>\n"
        }
        for n in nodes {
            let left = cx(n.path) - boxW / 2, y = ty(n.path)
            let bad = flagged.contains(n.path)
            let group = observedGroup[n.path].map { "observed group \($0)" } ?? (groupOf[n.path].map { _ in "predicted group" } ?? "no group")
            out += "<g class=\"node\(bad ? " flagged" : "")\"><title>\(Escape.xml("\(n.name) \(n.path) \(n.kind)\(n.detail.map { " (\($0))" } ?? ""), \(group)\(bad ? "; in a mismatch" : "")"))</title>"
            out += "<rect x=\"\(left)\" y=\"\(y)\" width=\"\(boxW)\" height=\"\(boxH)\" rx=\"5\" fill=\"\(fill(n.path))\" stroke=\"\(bad ? "#d00" : "#333")\" stroke-width=\"\(bad ? 3 : 1)\"/>"
            out += "<text x=\"\(left + 6)\" y=\"\(y + 15)\" class=\"name\">\(Escape.xml(clip(n.name, 16)))</text>"
            let sub = [n.kind == "device" ? nil : n.kind, n.detail].compactMap { $0 }.joined(separator: " ")
            out += "<text x=\"\(left + 6)\" y=\"\(y + 30)\" class=\"sub\">\(Escape.xml(clip(n.path.split(separator: "/").last.map(String.init) ?? n.path, 5) + " " + clip(sub, 13)))</text></g>\n"
        }
        // Hazards: one arc per unordered pair, over the endpoints' boxes.
        var drawn = Set<String>()
        for v in run.verdicts where v.subject == .hazard && (v.kind == .hazard || v.kind == .hazardAsExpected || v.kind == .mismatch) {
            let pair = v.item.dropFirst("hazard:".count).components(separatedBy: "->")
            guard pair.count == 2, let a = byName[pair[0]], let b = byName[pair[1]], x[a] != nil, x[b] != nil else { continue }
            guard drawn.insert([a, b].sorted().joined(separator: "|")).inserted else { continue }
            let ax = cx(a), bx = cx(b), ay = ty(a) + boxH, by = ty(b) + boxH
            let dip = max(ay, by) + 18
            let colour = v.kind == .mismatch ? "#999" : "#c00"
            out += "<path class=\"hazard\" d=\"M\(ax),\(ay) C\(ax),\(dip) \(bx),\(dip) \(bx),\(by)\" fill=\"none\" stroke=\"\(colour)\" stroke-width=\"2\" stroke-dasharray=\"6 4\" marker-start=\"url(#\(marker))\" marker-end=\"url(#\(marker))\"><title>\(Escape.xml(v.title + ": " + v.label + (v.rule.map { " — " + $0.text } ?? "")))</title></path>\n"
        }
        out += "</svg>"
        return out
    }

    static func clip(_ s: String, _ n: Int) -> String { s.count <= n ? s : String(s.prefix(n - 1)) + "…" }
}
