/// JUnit XML: one `<testsuite>` per fabric × kernel, one `<testcase>` per checked item.
/// Mismatches, unpredicted hazards and unexpected crashes are `<failure>`s carrying the model's
/// reasoning; infrastructure failures are `<error>`s with the console tail. An unrealizable node
/// passes with a `isolab.verdict` property and its reason in `<system-out>`: `<skipped>` is
/// never used, so CI cannot hide it as a skip.
public enum JUnitRenderer {
    public static func render(_ doc: ResultsDocument) -> String {
        let checks = doc.checks
        func count(_ s: Verdict.Standing, _ cs: [Check]) -> Int { cs.filter { $0.verdict.standing == s }.count }
        var out = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
        out += "<testsuites name=\"isolab\" tests=\"\(checks.count)\" failures=\"\(count(.fail, checks))\" errors=\"\(count(.infrastructure, checks))\" skipped=\"0\">\n"
        for run in doc.runs {
            let cs = run.verdicts.map { Check(run: run, verdict: $0) }
            let topology = doc.topology(named: run.topology)
            let kernel = doc.kernels.first { $0.label == run.kernel }
            let suite = "\(run.topology) on \(run.platform)"
            let time = run.observations.reduce(0) { $0 + $1.timing.total }
            out += "  <testsuite name=\"\(Escape.xml(suite))\" tests=\"\(cs.count)\" failures=\"\(count(.fail, cs))\" errors=\"\(count(.infrastructure, cs))\" skipped=\"0\" time=\"\(seconds(time))\">\n"
            var props: [(String, String)] = [
                ("isolab.version", run.environment.isolab), ("qemu.version", run.environment.qemu),
                ("libvirt.version", run.environment.libvirt), ("kernel.label", run.kernel),
                ("kernel.generation", run.generation),
            ]
            if let e = run.emulator { props.append(("emulator.label", e)) }
            if let e = doc.emulators?.first(where: { $0.label == run.emulator }) {
                if let sha = e.binarySha256 { props.append(("emulator.sha256", sha)) }
                for p in e.packages { props.append(("emulator.package", "\(p.name) \(p.version) sha256:\(p.sha256)")) }
            }
            if let r = kernel?.release { props.append(("kernel.release", r)) }
            for p in kernel?.packages ?? [] { props.append(("kernel.package", "\(p.name) \(p.version) sha256:\(p.sha256)")) }
            if let t = topology {
                props += [("topology.file", t.file), ("topology.sha256", t.sha256), ("topology.iommu", t.iommu)]
            }
            props.append(("booted", run.booted ? "true" : "false"))
            out += "    <properties>\n"
            for (k, v) in props { out += "      <property name=\"\(Escape.xml(k))\" value=\"\(Escape.xml(v))\"/>\n" }
            out += "    </properties>\n"
            let classname = "isolab." + run.topology + ".kernel-" + run.kernel.replacingDots
                + (run.emulator.map { ".qemu-" + $0.replacingDots } ?? "")
            for c in cs { out += testcase(c, classname: classname, file: topology?.file) }
            out += "  </testsuite>\n"
        }
        out += "</testsuites>\n"
        return out
    }

    static func testcase(_ c: Check, classname: String, file: String?) -> String {
        let v = c.verdict
        var attrs = "classname=\"\(Escape.xml(classname))\" name=\"\(Escape.xml(c.name))\""
        if let file { attrs += " file=\"\(Escape.xml(file))\"" }
        if let l = v.line, l > 0 { attrs += " line=\"\(l)\"" }
        var out = "    <testcase \(attrs)>\n"
        out += "      <properties>\n"
        out += "        <property name=\"isolab.verdict\" value=\"\(Escape.xml(v.kind.rawValue))\"/>\n"
        out += "        <property name=\"isolab.subject\" value=\"\(Escape.xml(v.subject.rawValue))\"/>\n"
        if let e = v.expected { out += "        <property name=\"isolab.expected\" value=\"\(Escape.xml(e))\"/>\n" }
        if let o = v.observed { out += "        <property name=\"isolab.observed\" value=\"\(Escape.xml(o))\"/>\n" }
        out += "      </properties>\n"
        let body = Escape.xmlText(c.explanation.joined(separator: "\n"))
        switch v.standing {
        case .fail:
            out += "      <failure type=\"\(Escape.xml(v.label))\" message=\"\(Escape.xml(c.headline))\">\(body)</failure>\n"
        case .infrastructure:
            out += "      <error type=\"infrastructure\" message=\"\(Escape.xml(c.headline))\">\(body)</error>\n"
        case .pass, .neutral:
            if v.kind != .match { out += "      <system-out>\(body)</system-out>\n" }
        }
        out += "    </testcase>\n"
        return out
    }

    static func seconds(_ t: Double) -> String {
        let ms = Int((t * 1000).rounded())
        return "\(ms / 1000).\(String(ms % 1000).leftPadded(to: 3))"
    }
}

extension String {
    /// `6.1` → `6_1`: keeps a kernel label from splitting a JUnit class name.
    var replacingDots: String { String(map { $0 == "." ? "_" : $0 }) }
}
