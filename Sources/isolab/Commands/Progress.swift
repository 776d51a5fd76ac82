import Foundation
import IsolabEngine
import IsolabProtocol
import IsolabLibvirt
import IsolabVM

/// Progress of many guests: on a terminal one live line (done/total, running, failures, ETA);
/// off a terminal one plain line per finished guest.
final class Progress: FleetObserver, @unchecked Sendable {
    private let lock = NSLock()
    private let total: Int
    private let start = Date()
    private var live: Bool { Terminal.shared.isLive }
    private var done = 0
    private var running = 0
    private var failures = 0

    init(total: Int) { self.total = total }

    func started(_ index: Int, _ r: RunRequest) {
        lock.lock(); defer { lock.unlock() }
        running += 1
        if live { draw() }
    }

    func finished(_ index: Int, _ o: VMObservation) {
        lock.lock(); defer { lock.unlock() }
        running = max(0, running - 1)
        done += 1
        if o.outcome != .completed { failures += 1 }
        let what = "\(o.topology) \(o.kernel) \(o.scenario ?? "inventory")"
        if live {
            if o.outcome != .completed { cliLogger.warning("\(what): \(o.outcome.rawValue)\(o.problem.map { ": \($0)" } ?? "")") }
            draw()
        } else {
            cliLogger.info("[\(done)/\(total)] \(what): \(o.outcome.rawValue) in \(String(format: "%.1f", o.timing.total)) s\(o.problem.map { ": \($0)" } ?? "")")
        }
    }

    func ended() { Terminal.shared.setStatus(nil) }

    private func draw() {
        let elapsed = Date().timeIntervalSince(start)
        let eta = done > 0 ? elapsed / Double(done) * Double(total - done) : 0
        Terminal.shared.setStatus("isolab: \(done)/\(total) done, \(running) running, \(failures) not completed, ETA \(Int(eta)) s")
    }
}
