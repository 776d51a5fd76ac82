/// TAP version 13 in the style of the kernel's kselftests: a plan, one `ok`/`not ok` line per
/// checked item, a YAML block with the model's reasoning under every failure, `# SKIP` only for
/// an unrealizable node (not booted), and a `# Totals:` line.
public enum TAPRenderer {
    public static func render(_ doc: ResultsDocument) -> String {
        let checks = doc.checks
        var out = "TAP version 13\n1..\(checks.count)\n"
        out += "# " + Escape.tap(doc.environmentLine) + "\n"
        var n = 0
        var current: String?
        var totals = (pass: 0, fail: 0, xfail: 0, skip: 0, error: 0)
        for c in checks {
            n += 1
            if c.suite != current {
                current = c.suite
                let release = doc.kernels.first { $0.label == c.run.kernel }?.release
                out += "# " + Escape.tap(c.suite + (release.map { " (\($0))" } ?? "")) + "\n"
            }
            let v = c.verdict
            let desc = Escape.tap("\(c.suite): \(c.name)")
            switch v.standing {
            case .pass:
                let note = v.kind == .match ? "" : " [\(v.label)]"
                out += "ok \(n) - \(desc)\(Escape.tap(note))\n"
                if v.kind == .crash { totals.xfail += 1 } else { totals.pass += 1 }
            case .neutral:
                out += "ok \(n) - \(desc) # SKIP \(Escape.tap(v.label + ": " + (v.detail ?? "")))\n"
                totals.skip += 1
            case .fail, .infrastructure:
                out += "not ok \(n) - \(desc)\n"
                out += diagnostics(c)
                if v.standing == .fail { totals.fail += 1 } else { totals.error += 1 }
            }
        }
        out += "# Totals: pass:\(totals.pass) fail:\(totals.fail) xfail:\(totals.xfail) xpass:0 skip:\(totals.skip) error:\(totals.error)\n"
        return out
    }

    static func diagnostics(_ c: Check) -> String {
        let v = c.verdict
        var fields: [(String, String)] = [("verdict", v.label)]
        if let e = v.expected { fields.append(("expected", e)) }
        if let o = v.observed { fields.append(("observed", o)) }
        if let e = v.errno { fields.append(("errno", String(e))) }
        if let r = v.rule { fields.append(("rule", "\(r.kernelFunction): \(r.text)")) }
        if let b = v.because { fields.append(("because", b)) }
        if let d = v.detail { fields.append(("detail", d)) }
        var out = "  ---\n"
        for (k, val) in fields { out += "  \(k): \(Escape.yamlString(val))\n" }
        for (k, lines) in [("kernel_log", v.kernelLog), ("console_tail", v.consoleTail)] where !lines.isEmpty {
            out += "  \(k):\n" + lines.map { "    - \(Escape.yamlString($0))\n" }.joined()
        }
        return out + "  ...\n"
    }
}
