import Foundation
import IsolabProtocol
import IsolabLibvirt
import IsolabVM

/// Progress of many guests: on a terminal one live line (done/total, running, failures, ETA);
/// off a terminal one plain line per finished guest.
final class Progress: @unchecked Sendable {
    private let lock = NSLock()
    private let total: Int
    private let start = Date()
    private var live: Bool { Terminal.shared.isLive }
    private var done = 0
    private var running = 0
    private var failures = 0

    init(total: Int) { self.total = total }

    func started(_ r: RunRequest) {
        lock.lock(); defer { lock.unlock() }
        running += 1
        if live { draw() }
    }

    func finished(_ o: VMObservation) {
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

    func end() { Terminal.shared.setStatus(nil) }

    private func draw() {
        let elapsed = Date().timeIntervalSince(start)
        let eta = done > 0 ? elapsed / Double(done) * Double(total - done) : 0
        Terminal.shared.setStatus("isolab: \(done)/\(total) done, \(running) running, \(failures) not completed, ETA \(Int(eta)) s")
    }
}

/// Runs requests over one or more libvirt connections (round robin), `jobs` guests at a time on
/// each, all cancelled together on SIGINT/SIGTERM.
struct Fleet {
    var connections: [LibvirtConnection]
    var jobs: Int
    /// One saved boot per fabric and kernel, restored for each scenario (`--no-snapshot`: off).
    var snapshots = true
    let cancellation = Cancellation()

    func run(_ requests: [RunRequest], progress: Progress) throws -> [VMObservation] {
        let shared = Shared(count: requests.count)
        var fabrics: [Scheduler.UnitKey: Int] = [:]
        let fabricIndex = requests.map { r -> Int in
            let key = Scheduler.UnitKey(r)
            if let i = fabrics[key] { return i }
            fabrics[key] = fabrics.count
            return fabrics.count - 1
        }
        let group = DispatchGroup()
        for (c, connection) in connections.enumerated() {
            // Whole fabrics per connection, so that each one's scenarios can share a saved boot.
            let mine = requests.indices.filter { fabricIndex[$0] % connections.count == c }
            guard !mine.isEmpty else { continue }
            group.enter()
            Thread.detachNewThread {
                defer { group.leave() }
                do {
                    let scheduler = Scheduler(runner: try GuestRunner(connection: connection), jobs: jobs,
                                              cancellation: cancellation)
                    scheduler.snapshots = snapshots
                    scheduler.onStart = { _, r in progress.started(r) }
                    scheduler.onFinish = { _, o in progress.finished(o) }
                    let obs = scheduler.run(mine.map { requests[$0] })
                    shared.lock.lock(); for (i, o) in zip(mine, obs) { shared.results[i] = o }; shared.lock.unlock()
                } catch {
                    shared.lock.lock(); shared.failure = error; shared.lock.unlock()
                }
            }
        }
        group.wait()
        progress.end()
        if let failure = shared.failure { throw failure }
        return shared.results.map { $0! }
    }

    private final class Shared: @unchecked Sendable {
        let lock = NSLock()
        var results: [VMObservation?]
        var failure: Error?
        init(count: Int) { results = Array(repeating: nil, count: count) }
    }
}
