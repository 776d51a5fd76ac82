import Foundation

/// "In which release did this change?": for every checked item of a results document that ran
/// several kernels (or emulators), the kernels in version order and the first one where the
/// observation changed, with what it changed from and to, and whether the model predicted it.
public struct HistoryReport: Codable, Equatable, Sendable {
    /// One observation change of one item between two neighbouring kernels (same fabric and
    /// emulator) or two neighbouring emulators (same fabric and kernel).
    public struct Entry: Codable, Equatable, Sendable {
        /// `kernel`: `from`/`to` are kernels run on `emulator`; `emulator`: emulators that ran `kernel`.
        public var axis: String
        public var topology: String
        public var item: String
        public var title: String
        public var scenario: String?
        /// The fixed side: the emulator (kernel axis) or the kernel (emulator axis).
        public var on: String?
        /// The last kernel (or emulator) with the old observation, and the first with the new.
        public var from: String
        public var to: String
        public var before: String
        public var after: String
        /// The model's expectation on each side, and whether the change was predicted (both
        /// sides judged as agreeing with the model).
        public var expectedBefore: String?
        public var expectedAfter: String?
        public var predicted: Bool
        /// The model's reason on the new side (the kernel function it mirrors).
        public var rule: String?
    }

    /// The kernels in the order compared (oldest first), and the emulators.
    public var kernels: [String]
    public var emulators: [String]
    public var entries: [Entry]

    public init(_ doc: ResultsDocument) {
        let order = Self.kernelOrder(doc)
        kernels = order
        var emus: [String] = []
        for r in doc.runs { if let e = r.emulator, !emus.contains(e) { emus.append(e) } }
        emulators = emus.sorted { Self.versionKey($0).lexicographicallyPrecedes(Self.versionKey($1)) }
        var out: [Entry] = []
        let rank = Dictionary(uniqueKeysWithValues: order.enumerated().map { ($1, $0) })
        let emuRank = Dictionary(uniqueKeysWithValues: emulators.enumerated().map { ($1, $0) })
        // Kernel axis: per fabric and emulator, runs in kernel order.
        let byFabricEmulator = Dictionary(grouping: doc.runs.filter(\.booted)) { [$0.topology, $0.emulator ?? ""] }
        for key in byFabricEmulator.keys.sorted(by: { $0.lexicographicallyPrecedes($1) }) {
            let runs = byFabricEmulator[key]!.sorted { (rank[$0.kernel] ?? .max) < (rank[$1.kernel] ?? .max) }
            out += Self.changes(runs, axis: "kernel", step: \.kernel, on: key[1].isEmpty ? nil : key[1])
        }
        // Emulator axis: per fabric and kernel, runs in emulator order.
        if emulators.count > 1 {
            let byFabricKernel = Dictionary(grouping: doc.runs.filter { $0.booted && $0.emulator != nil }) { [$0.topology, $0.kernel] }
            for key in byFabricKernel.keys.sorted(by: { (rank[$0[1]] ?? .max, $0[0]) < (rank[$1[1]] ?? .max, $1[0]) }) {
                let runs = byFabricKernel[key]!.sorted { (emuRank[$0.emulator!] ?? .max) < (emuRank[$1.emulator!] ?? .max) }
                out += Self.changes(runs, axis: "emulator", step: { $0.emulator! }, on: key[1])
            }
        }
        entries = out
    }

    /// Consecutive runs of one fabric whose observation of an item differs.
    static func changes(_ runs: [FabricRun], axis: String, step: (FabricRun) -> String, on: String?) -> [Entry] {
        var out: [Entry] = []
        var items: [String] = []
        for r in runs { for v in r.verdicts where !items.contains(v.item) && v.kind != .unrealizable { items.append(v.item) } }
        for item in items {
            var last: (run: FabricRun, verdict: Verdict)?
            for r in runs {
                guard let v = r.verdicts.first(where: { $0.item == item }) else { continue }
                defer { last = (r, v) }
                guard let (pr, pv) = last, observation(pv) != observation(v) else { continue }
                out.append(Entry(axis: axis, topology: r.topology, item: item, title: v.title, scenario: v.scenario, on: on,
                                 from: step(pr), to: step(r), before: observation(pv), after: observation(v),
                                 expectedBefore: pv.expected, expectedAfter: v.expected,
                                 predicted: pv.standing == .pass && v.standing == .pass,
                                 rule: v.rule.map { "\($0.kernelFunction): \($0.text)" }))
            }
        }
        return out
    }

    /// What the guest did with the item: the observed token (a crash as `crash`), else the kind.
    static func observation(_ v: Verdict) -> String {
        if v.kind == .crash { return "crash" }
        if v.kind == .infrastructure { return "infrastructure" }
        return v.observed ?? v.kind.rawValue
    }

    /// The document's kernels, oldest first: by the version in the release (`6.1.0-57-amd64`
    /// → 6.1.0), else in the label; ties keep the document's order.
    static func kernelOrder(_ doc: ResultsDocument) -> [String] {
        var labels = doc.kernels.map(\.label)
        for r in doc.runs where !labels.contains(r.kernel) { labels.append(r.kernel) }
        let release = Dictionary(doc.kernels.map { ($0.label, $0.release ?? $0.label) }, uniquingKeysWith: { a, _ in a })
        return labels.enumerated().sorted { a, b in
            let ka = versionKey(release[a.element] ?? a.element), kb = versionKey(release[b.element] ?? b.element)
            return ka == kb ? a.offset < b.offset : ka.lexicographicallyPrecedes(kb)
        }.map(\.element)
    }

    /// The leading numbers of a version (`6.12.118+deb13-amd64` → [6, 12, 118]), three at most.
    static func versionKey(_ s: String) -> [Int] {
        var out: [Int] = []
        var digits = ""
        for c in s {
            if c.isNumber { digits.append(c); continue }
            if !digits.isEmpty { out.append(Int(digits) ?? 0); digits = "" }
            if c != "." || out.count >= 3 { break }
        }
        if !digits.isEmpty, out.count < 3 { out.append(Int(digits) ?? 0) }
        return out
    }
}

extension HistoryReport {
    public func json() throws(ReportError) -> String {
        let e = JSONEncoder()
        e.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        do { return String(decoding: try e.encode(self), as: UTF8.self) } catch { throw .encodingFailed("\(error)") }
    }

    static func sideText(_ e: Entry) -> String {
        e.predicted ? "predicted by the model" : "**not as the model predicted** (expected \(e.expectedBefore ?? "?") → \(e.expectedAfter ?? "?"))"
    }

    /// Markdown: one line per change, grouped by fabric.
    public func markdown() -> String {
        var out = "## isolab history: kernels \(kernels.joined(separator: " → "))"
            + (emulators.count > 1 ? ", QEMU \(emulators.joined(separator: " → "))" : "") + "\n\n"
        guard !entries.isEmpty else { return out + "No observation changed between kernels or emulators.\n" }
        out += "\(entries.count) observation change(s); the first release with the new behaviour is named.\n\n"
        var topology = ""
        for e in entries {
            if e.topology != topology {
                out += (topology.isEmpty ? "" : "\n") + "### \(Escape.markdown(e.topology))\n\n"
                topology = e.topology
            }
            let place = e.axis == "kernel" ? "kernel **\(Escape.markdown(e.to))**" + (e.on.map { " (QEMU \(Escape.markdown($0)))" } ?? "")
                                           : "QEMU **\(Escape.markdown(e.to))** (kernel \(Escape.markdown(e.on ?? "?")))"
            out += "- " + (e.scenario.map { "\(Escape.markdown($0)): " } ?? "") + "\(Escape.markdown(e.title)): changed in \(place): "
                + "\(Escape.markdown(e.before)) on \(Escape.markdown(e.from)) → \(Escape.markdown(e.after)); \(Self.sideText(e))"
                + (e.rule.map { " — \(Escape.markdown($0))" } ?? "") + "\n"
        }
        return out
    }

    /// A self-contained HTML page with the same table.
    public func html() -> String {
        var out = HTMLRenderer.page(title: "isolab history")
        out += "<h1>isolab history</h1>\n<p class=\"headline\">kernels \(Escape.xml(kernels.joined(separator: " → ")))"
            + (emulators.count > 1 ? " · QEMU \(Escape.xml(emulators.joined(separator: " → ")))" : "")
            + " · \(entries.count) observation change(s)</p>\n"
        out += "<table>\n<tr><th>fabric</th><th>item</th><th>changed in</th><th>before</th><th>after</th><th>model</th></tr>\n"
        for e in entries {
            let place = e.axis == "kernel" ? "kernel \(e.to)" + (e.on.map { " · QEMU \($0)" } ?? "") : "QEMU \(e.to) · kernel \(e.on ?? "?")"
            out += "<tr class=\"\(e.predicted ? "pass" : "fail")\"><td>\(Escape.xml(e.topology))</td><td>"
                + Escape.xml((e.scenario.map { "\($0): " } ?? "") + e.title) + "</td><td>\(Escape.xml(place))</td>"
                + "<td>\(Escape.xml(e.before)) (\(Escape.xml(e.from)))</td><td>\(Escape.xml(e.after))</td>"
                + "<td>\(e.predicted ? "predicted" : "not predicted")\(e.rule.map { ": " + Escape.xml($0) } ?? "")</td></tr>\n"
        }
        return out + "</table>\n</body>\n</html>\n"
    }
}
