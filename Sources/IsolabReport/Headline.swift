import Foundation

/// What a report opens with, before any table: the answer (pass or fail), the verdict counts,
/// what ran (cells, VMs, VM-seconds, wall time) and on what (kernels, emulators).
public struct Headline: Equatable, Sendable {
    /// `PASS`, `FAIL` or `INFRASTRUCTURE`: what the exit status says.
    public var status: String
    /// Non-zero verdict counts, failing kinds first, in the summary table's column order.
    public var counts: [(label: String, count: Int)]
    public var cells: Int
    public var notBooted: Int
    public var failingCells: Int
    public var vms: Int
    public var vmSeconds: Double
    public var wallSeconds: Double?
    public var kernels: [String]
    public var emulators: [String]

    public init(_ doc: ResultsDocument) {
        let verdicts = doc.runs.flatMap(\.verdicts)
        switch ExitStatus.of(verdicts) {
        case ExitStatus.success: status = "PASS"
        case ExitStatus.failure: status = "FAIL"
        default: status = "INFRASTRUCTURE"
        }
        let failing: [SummaryColumn] = [.mismatch, .hazard, .unexpectedCrash, .flaky, .infrastructure]
        let order = failing + SummaryColumn.allCases.filter { !failing.contains($0) }
        counts = order.map { ($0.title, $0.count(verdicts)) }.filter { $0.1 > 0 }
        cells = doc.runs.count
        notBooted = doc.runs.filter { !$0.booted }.count
        failingCells = doc.runs.filter { $0.status == "FAIL" || $0.status == "infrastructure" }.count
        let observations = doc.runs.flatMap(\.observations)
        vms = observations.count
        vmSeconds = observations.reduce(0) { $0 + $1.timing.vmSeconds }
        wallSeconds = doc.wallSeconds
        kernels = doc.kernels.map(\.label)
        var e: [String] = []
        for r in doc.runs { if let x = r.emulator, !e.contains(x) { e.append(x) } }
        emulators = e.isEmpty ? Array(Set(doc.runs.map(\.environment.qemu))).sorted() : e
    }

    public static func == (a: Headline, b: Headline) -> Bool { a.lines == b.lines }

    /// The counts: `3 mismatch, 3102 match, 123 hazard (expected)`.
    public var countsText: String {
        counts.isEmpty ? "no checked items" : counts.map { "\($0.count) \($0.label)" }.joined(separator: ", ")
    }

    /// What ran: `264 cells (2 failing, 46 not booted), 316 VMs, 2129 VM-s, 1069 s wall`.
    public var runText: String {
        var parts = ["\(cells) cell\(cells == 1 ? "" : "s")"]
        var detail: [String] = []
        if failingCells > 0 { detail.append("\(failingCells) failing") }
        if notBooted > 0 { detail.append("\(notBooted) not booted") }
        if !detail.isEmpty { parts[0] += " (" + detail.joined(separator: ", ") + ")" }
        parts.append("\(vms) VM\(vms == 1 ? "" : "s")")
        parts.append(String(format: "%.0f VM-s", vmSeconds))
        if let w = wallSeconds { parts.append(String(format: "%.0f s wall", w)) }
        return parts.joined(separator: ", ")
    }

    /// On what: `kernels 5.10, 6.1 · QEMU 7.2, 10.0`.
    public var platformText: String {
        "kernel\(kernels.count == 1 ? "" : "s") " + (kernels.isEmpty ? "none" : kernels.joined(separator: ", "))
            + " · QEMU " + (emulators.isEmpty ? "none" : emulators.joined(separator: ", "))
    }

    /// The headline as plain text lines, the first being the answer.
    public var lines: [String] {
        ["isolab: \(status) — \(countsText)", "\(runText) · \(platformText)"]
    }
}
