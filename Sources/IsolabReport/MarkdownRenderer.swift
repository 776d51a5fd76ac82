/// Markdown for a CI step summary or a PR comment: a table of verdict counts per fabric ×
/// kernel, then every failing item with the model's reasoning beside the observation, then the
/// pins that held. Everything a topology author or a guest wrote is escaped.
public enum MarkdownRenderer {
    /// `limit` caps the failures listed (GitHub comments stop at 65,536 characters).
    public static func render(_ doc: ResultsDocument, limit: Int = 50) -> String {
        let h = Headline(doc)
        var out = "## isolab results: \(h.status)\n\n"
        out += "**\(h.status)** — \(Escape.markdown(h.countsText))  \n\(Escape.markdown(h.runText)) · \(Escape.markdown(h.platformText))\n\n"
        out += Escape.markdown(doc.environmentLine) + "\n\n"
        for k in doc.kernels {
            guard let t = k.tree else { continue }
            out += "Kernel **\(Escape.markdown(k.label))** (\(Escape.markdown(k.release ?? "?"))) from tree \(Escape.markdown(t.summary))"
                + (k.imageSha256.map { ", kernel image sha256 \($0.prefix(12))" } ?? "") + "\n\n"
        }
        for e in doc.emulators ?? [] {
            out += "Emulator **\(Escape.markdown(e.label))**: \(Escape.markdown(e.version))"
                + (e.binarySha256.map { ", binary sha256 \($0.prefix(12))" } ?? "")
                + (e.packages.isEmpty ? "" : ", from " + e.packages.map { Escape.markdown("\($0.name) \($0.version)") }.joined(separator: ", "))
                + (e.libvirt.map { ", driven by libvirt \($0)" } ?? "") + "\n\n"
        }
        out += summaryTable(doc) + "\n"
        let failing = doc.checks.filter { $0.verdict.standing == .fail || $0.verdict.standing == .infrastructure }
        if failing.isEmpty {
            out += "Every checked item agrees with the model or a pin.\n"
        } else {
            out += "### Mismatches and failures (\(failing.count))\n\n"
            for c in failing.prefix(limit) { out += item(c) }
            if failing.count > limit { out += "\n… and \(failing.count - limit) more (see the JUnit or HTML report).\n" }
        }
        let pinned = doc.checks.filter { $0.verdict.kind == .pinned }
        if !pinned.isEmpty {
            out += "\n### Pinned results that held (\(pinned.count))\n\n"
            for c in pinned.prefix(limit) {
                out += "- **\(Escape.markdown(c.suite))** — \(Escape.markdown(c.name)): \(Escape.markdown(c.verdict.observed ?? "")), because \(Escape.markdown(c.verdict.because ?? ""))\n"
            }
        }
        let unrealizable = doc.checks.filter { $0.verdict.kind == .unrealizable }
        if !unrealizable.isEmpty {
            out += "\n### Not booted: unrealizable (\(unrealizable.count))\n\n"
            for c in unrealizable {
                out += "- **\(Escape.markdown(c.suite))** — \(Escape.markdown(c.name)): \(Escape.markdown(c.verdict.detail ?? ""))\n"
            }
        }
        return out
    }

    /// The per fabric × kernel count table.
    public static func summaryTable(_ doc: ResultsDocument) -> String {
        let cols = SummaryColumn.allCases
        var out = "| fabric | kernel | status | " + cols.map(\.title).joined(separator: " | ") + " |\n"
        out += "|---|---|---|" + cols.map { _ in "--:|" }.joined() + "\n"
        for r in doc.runs {
            out += "| \(Escape.markdown(r.topology)) | \(Escape.markdown(r.platform)) | \(r.status == "FAIL" ? "**FAIL**" : Escape.markdown(r.status)) | "
            out += cols.map { c in let n = c.count(r.verdicts); return n == 0 ? "" : String(n) }.joined(separator: " | ") + " |\n"
        }
        return out
    }

    static func item(_ c: Check) -> String {
        let v = c.verdict
        var out = "- **\(Escape.markdown(c.suite))** — \(Escape.markdown(c.name)): \(Escape.markdown(c.headline))\n"
        if let r = v.rule { out += "  - model: \(Escape.markdown(r.kernelFunction)): \(Escape.markdown(r.text))\n" }
        if let b = v.because { out += "  - pinned because: \(Escape.markdown(b))\n" }
        if let d = v.detail { out += "  - observed: \(Escape.markdown(d))\n" }
        let log = v.kernelLog.isEmpty ? v.consoleTail.suffix(5) : v.kernelLog.prefix(5)
        for l in log { out += "  - `\(codeSpan(l))`\n" }
        return out
    }

    /// Text inside a one-backtick code span: backticks cannot end it early, nor can a newline.
    static func codeSpan(_ s: String) -> String {
        String(s.map { $0 == "`" ? "'" : ($0 == "\n" || $0 == "\r" ? " " : $0) })
    }
}
