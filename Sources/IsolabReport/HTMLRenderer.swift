/// One self-contained HTML page (no script, no external resource): the summary table, then per
/// fabric its description, a cross-kernel table of every checked item (rows whose observed
/// result changed between kernels are marked), and per kernel an SVG of the fabric with its
/// groups, hazards and mismatches, and every verdict with the model's reasoning.
public enum HTMLRenderer {
    public static func render(_ doc: ResultsDocument, title: String = "isolab results") -> String {
        var out = page(title: title)
        out += "<h1>\(Escape.xml(title))</h1>\n" + headline(Headline(doc))
        out += "<p class=\"env\">\(Escape.xml(doc.environmentLine))</p>\n"
        out += kernels(doc)
        out += emulators(doc)
        out += summary(doc)
        for (ti, t) in doc.topologies.enumerated() {
            let runs = doc.runs.filter { $0.topology == t.name }
            out += "<section id=\"t\(ti)\">\n<h2>\(Escape.xml(t.name))</h2>\n"
            if let d = t.description { out += "<p>\(Escape.xml(d))</p>\n" }
            out += "<p class=\"meta\">\(Escape.xml(t.file)) · iommu \(Escape.xml(t.iommu)) · sha256 <code>\(Escape.xml(t.sha256))</code></p>\n"
            if runs.count > 1 { out += crossKernel(runs) }
            for (ri, r) in runs.enumerated() { out += run(r, topology: t, id: "t\(ti)k\(ri)") }
            out += "</section>\n"
        }
        return out + "</body>\n</html>\n"
    }

    /// The answer first: status, verdict counts, what ran and on what.
    static func headline(_ h: Headline) -> String {
        let standing = h.status == "PASS" ? "pass" : (h.status == "FAIL" ? "fail" : "infrastructure")
        return "<p class=\"headline \(standing)\"><strong>\(h.status)</strong> — \(Escape.xml(h.countsText))<br/>"
            + "\(Escape.xml(h.runText)) · \(Escape.xml(h.platformText))</p>\n"
    }

    static func page(title: String) -> String {
        """
        <!DOCTYPE html>
        <html lang="en">
        <head>
        <meta charset="utf-8"/>
        <meta name="viewport" content="width=device-width, initial-scale=1"/>
        <title>\(Escape.xml(title))</title>
        <style>
        body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #222; }
        table { border-collapse: collapse; margin: .6em 0; }
        th, td { border: 1px solid #ccc; padding: 2px 6px; text-align: left; vertical-align: top; }
        td.n { text-align: right; }
        .pass { background: #e6f6e6; } .fail { background: #fbdada; } .infrastructure { background: #fdebc8; }
        .neutral { background: #eee; }
        table.summary td:nth-child(-n+3) { white-space: nowrap; }
        table.cross caption { caption-side: top; text-align: left; font-weight: bold; padding: 2px 0; }
        .changed td:first-child { border-left: 4px solid #c60; font-weight: bold; background: #fff1d9; }
        .changed td:first-child::before { content: "◆ "; color: #c60; }
        td.step { border-left: 3px solid #c60; font-weight: bold; }
        .pinned { background: #e3e9ff; } .env, .meta { color: #555; }
        p.headline { font-size: 16px; padding: .4em .6em; border: 1px solid #ccc; display: inline-block; }
        svg.fabric { display: block; margin: .5em 0; max-width: 100%; height: auto; }
        svg text.name { font: bold 12px sans-serif; } svg text.sub { font: 10px monospace; fill: #333; }
        svg text.bus { font: 10px sans-serif; fill: #fff; }
        pre { margin: 0; white-space: pre-wrap; font-size: 12px; }
        details { margin: .8em 0; } summary { cursor: pointer; font-weight: bold; }
        .legend .entry { white-space: nowrap; margin-right: 1em; display: inline-block; }
        .swatch { display: inline-block; width: 1em; height: 1em; border: 1px solid #333; vertical-align: middle; }
        </style>
        </head>
        <body>

        """
    }

    static func kernels(_ doc: ResultsDocument) -> String {
        guard !doc.kernels.isEmpty else { return "" }
        var out = "<table><tr><th>kernel</th><th>release</th><th>packages (version, sha256)</th></tr>\n"
        for k in doc.kernels {
            let pkgs = k.packages.map { "\(Escape.xml($0.name)) \(Escape.xml($0.version)) <code>\(Escape.xml($0.sha256))</code>" }
            var source = pkgs
            if let t = k.tree { source.append("tree " + Escape.xml(t.summary)) }
            if let sha = k.imageSha256, k.packages.isEmpty { source.append("kernel image sha256 <code>\(Escape.xml(sha))</code>") }
            out += "<tr><td>\(Escape.xml(k.label))</td><td>\(Escape.xml(k.release ?? ""))</td><td>\(source.joined(separator: "<br/>"))</td></tr>\n"
        }
        return out + "</table>\n"
    }

    static func emulators(_ doc: ResultsDocument) -> String {
        guard let es = doc.emulators, !es.isEmpty else { return "" }
        var out = "<table><tr><th>emulator</th><th>version</th><th>binary, packages (version, sha256)</th><th>libvirt</th></tr>\n"
        for e in es {
            var source = [Escape.xml(e.binary ?? "libvirt's default") + (e.binarySha256.map { " <code>\(Escape.xml($0))</code>" } ?? "")]
            source += e.packages.map { "\(Escape.xml($0.name)) \(Escape.xml($0.version)) <code>\(Escape.xml($0.sha256))</code>" }
            out += "<tr><td>\(Escape.xml(e.label))</td><td>\(Escape.xml(e.version))</td><td>\(source.joined(separator: "<br/>"))</td><td>\(Escape.xml(e.libvirt ?? ""))</td></tr>\n"
        }
        return out + "</table>\n"
    }

    static func standingClass(_ s: String) -> String {
        switch s {
        case "pass": return "pass"
        case "FAIL": return "fail"
        case "not booted": return "neutral"
        default: return "infrastructure"
        }
    }

    static func summary(_ doc: ResultsDocument) -> String {
        let cols = SummaryColumn.allCases
        var out = "<table class=\"summary\"><tr><th>fabric</th><th>kernel</th><th>status</th>"
        out += cols.map { "<th>\(Escape.xml($0.title))</th>" }.joined() + "</tr>\n"
        for r in doc.runs {
            let ti = doc.topologies.firstIndex { $0.name == r.topology } ?? 0
            out += "<tr class=\"\(standingClass(r.status))\"><td><a href=\"#t\(ti)\">\(Escape.xml(r.topology))</a></td><td>\(Escape.xml(r.platform))</td><td>\(Escape.xml(r.status))</td>"
            out += cols.map { c in let n = c.count(r.verdicts); return "<td class=\"n\">\(n == 0 ? "" : String(n))</td>" }.joined()
            out += "</tr>\n"
        }
        return out + "</table>\n"
    }

    static func cssClass(_ v: Verdict) -> String {
        v.kind == .pinned ? "pinned" : v.standing.rawValue
    }

    /// Every item of a fabric down the side, its kernels across. A row whose observed result
    /// differs between the booted kernels (an item judged on some and absent on others counts)
    /// is marked `changed`, and each cell that differs from the kernel before it `step`.
    static func crossKernel(_ runs: [FabricRun]) -> String {
        var items: [(item: String, title: String)] = []
        for r in runs {
            for v in r.verdicts where !items.contains(where: { $0.item == v.item }) {
                items.append((v.item, (v.scenario.map { "\($0): " } ?? "") + v.title))
            }
        }
        var rows = "", changedCount = 0
        for (item, title) in items {
            let cells = runs.map { r in (booted: r.booted, verdict: r.verdicts.first { $0.item == item }) }
            let shown = cells.map { $0.verdict.map { $0.observed ?? $0.label } }
            let booted = zip(cells, shown).filter { $0.0.booted }.map { $0.1 ?? "\u{0}absent" }
            let changed = Set(booted).count > 1
            if changed { changedCount += 1 }
            rows += "<tr\(changed ? " class=\"changed\"" : "")><td>\(Escape.xml(title))</td>"
            for (i, c) in cells.enumerated() {
                let step = changed && i > 0 && cells[i - 1].booted && c.booted && shown[i] != shown[i - 1]
                guard let v = c.verdict else { rows += "<td\(step ? " class=\"step\"" : "")>—</td>"; continue }
                rows += "<td class=\"\(cssClass(v))\(step ? " step" : "")\" title=\"\(Escape.xml(v.label))\">\(Escape.xml(shown[i]!))</td>"
            }
            rows += "</tr>\n"
        }
        let both = Set(runs.map(\.emulator)).count > 1
        let axis = both ? "kernels and emulators" : "kernels", column = both ? "column" : "kernel"
        let caption = changedCount == 0 ? "Across \(axis): every item observed the same on each \(column)"
            : "Across \(axis): ◆ \(changedCount) of \(items.count) items changed between \(axis) (a thick left edge where the \(column) before differs)"
        return "<table class=\"cross\"><caption>\(Escape.xml(caption))</caption><tr><th>item</th>"
            + runs.map { "<th>\(Escape.xml($0.platform))</th>" }.joined() + "</tr>\n" + rows + "</table>\n"
    }

    static func run(_ r: FabricRun, topology t: TopologyRecord, id: String) -> String {
        let counts = SummaryColumn.allCases.compactMap { c -> String? in
            let n = c.count(r.verdicts)
            return n == 0 ? nil : "\(n) \(c.title)"
        }.joined(separator: ", ")
        var out = "<details id=\"\(id)\"\(r.status == "pass" ? "" : " open=\"open\"")>\n"
        out += "<summary class=\"\(standingClass(r.status))\">kernel \(Escape.xml(r.platform)) (model \(Escape.xml(r.generation))) — \(Escape.xml(r.status)) — \(Escape.xml(counts))</summary>\n"
        if let note = r.iommuNote { out += "<p>\(Escape.xml(note))</p>\n" }
        out += FabricSVG.render(t, run: r, id: id) + "\n"
        out += legend(r, topology: t)
        out += "<table class=\"verdicts\"><tr><th>verdict</th><th>item</th><th>expected</th><th>observed</th><th>why</th></tr>\n"
        // A selftest step's subtests follow it; they are grouped in one row under the step.
        var i = 0
        while i < r.verdicts.count {
            guard r.verdicts[i].subject == .subtest else { out += row(r.verdicts[i]); i += 1; continue }
            var j = i
            while j < r.verdicts.count, r.verdicts[j].subject == .subtest, r.verdicts[j].step == r.verdicts[i].step,
                  r.verdicts[j].scenario == r.verdicts[i].scenario { j += 1 }
            out += subtests(Array(r.verdicts[i..<j]))
            i = j
        }
        return out + "</table>\n</details>\n"
    }

    /// One row holding a selftest step's subtest verdicts: a count by observed outcome, opened
    /// when any of them does not pass its judgement.
    static func subtests(_ vs: [Verdict]) -> String {
        var counts: [String: Int] = [:]
        for v in vs { counts[v.observed ?? "?", default: 0] += 1 }
        let summary = counts.keys.sorted().map { "\(counts[$0]!) \($0)" }.joined(separator: ", ")
        let worst = vs.contains { $0.standing == .fail } ? "fail" : vs.contains { $0.standing == .infrastructure } ? "infrastructure" : "pass"
        let program = vs[0].title.split(separator: " ").first.map(String.init) ?? "selftest"
        var out = "<tr class=\"\(worst)\"><td colspan=\"5\"><details class=\"subtests\"\(worst == "pass" ? "" : " open=\"open\"")>"
        out += "<summary>\(Escape.xml(vs[0].scenario.map { "\($0): " } ?? ""))\(Escape.xml(program)): \(vs.count) subtests (\(Escape.xml(summary)))</summary>\n"
        out += "<table class=\"verdicts\"><tr><th>verdict</th><th>subtest</th><th>expected</th><th>observed</th><th>why</th></tr>\n"
        for v in vs { out += row(v, title: String(v.title.dropFirst(program.count + 1))) }
        return out + "</table></details></td></tr>\n"
    }

    /// One verdict's row of a verdicts table.
    static func row(_ v: Verdict, title: String? = nil) -> String {
        var out = ""
        out += "<tr class=\"\(cssClass(v))\"><td>\(Escape.xml(v.label))</td>"
        out += "<td>\(Escape.xml(title ?? ((v.scenario.map { "\($0): " } ?? "") + v.title)))</td>"
        out += "<td>\(Escape.xml(v.expected ?? ""))</td><td>\(Escape.xml((v.observed ?? "") + (v.errno.map { " (\($0))" } ?? "")))</td><td>"
        var why: [String] = []
        if let rule = v.rule { why.append("<b>\(Escape.xml(rule.kernelFunction))</b>: \(Escape.xml(rule.text))") }
        if let b = v.because { why.append("pinned because: \(Escape.xml(b))") }
        if let d = v.detail { why.append("observed: \(Escape.xml(d))") }
        out += why.joined(separator: "<br/>")
        let log = v.kernelLog + (v.consoleTail.isEmpty ? [] : ["— console tail —"] + v.consoleTail)
        if !log.isEmpty { out += "<pre>\(Escape.xmlText(log.joined(separator: "\n")))</pre>" }
        out += "</td></tr>\n"
        return out
    }

    /// The groups drawn, each with its colour swatch and members.
    static func legend(_ r: FabricRun, topology t: TopologyRecord) -> String {
        let names = Dictionary(t.functions.map { ($0.path, $0.name) }, uniquingKeysWith: { a, _ in a })
        var groups: [(String, [String])] = []
        let observed = r.observedGroupOf
        if observed.isEmpty {
            groups = r.predictedGroups.enumerated().map { ("predicted \($0.offset)", $0.element) }
        } else {
            let byID = Dictionary(grouping: observed.keys, by: { observed[$0]! })
            groups = byID.keys.sorted().map { ("group \($0)", byID[$0]!.sorted()) }
        }
        guard !groups.isEmpty else { return "<p>No IOMMU groups.</p>\n" }
        var out = "<p class=\"legend\">"
        for (i, g) in groups.enumerated() {
            let colour = FabricSVG.palette[i % FabricSVG.palette.count]
            out += "<span class=\"entry\"><span class=\"swatch\" style=\"background:\(colour)\"></span> \(Escape.xml(g.0)): \(Escape.xml(g.1.map { names[$0] ?? $0 }.joined(separator: ", ")))</span> "
        }
        return out + "</p>\n"
    }
}
