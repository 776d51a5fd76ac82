import Foundation
import IsolabLibvirt

/// Lifecycle events of the domains a runner started, each attributed to the instance (one
/// start of a domain) it belongs to, not merely to its name.
///
/// A name is reused by design: a state-file restore must keep its saved domain's name (and
/// UUID), and an in-QEMU snapshot's guest is started again under its name when its QEMU died.
/// libvirt's events carry only the name (the domain id is already -1 in a stop event), but
/// the instances of one name are sequential and each ends with exactly one stop event, so a
/// stop event belongs to the oldest instance of its name still waiting for one. An instance
/// whose run is over stays in line until its stop event is in (at most `abandonAfter`
/// seconds), so a late event cannot be taken for the next instance's.
final class LifecycleWatch: @unchecked Sendable {
    private let connection: LibvirtConnection
    private var token: Int32 = -1
    private let lock = NSCondition()
    private var instances: [String: [Instance]] = [:]
    private var nextID = 0
    /// Seconds an instance nobody watches any more waits for its stop event.
    let abandonAfter: Double = 30

    private struct Instance {
        var id: Int
        /// Why it stopped (its stop event); nil while it has not.
        var stop: String?
        /// QEMU reported a guest crash (a stop event still follows).
        var crash: String?
        /// When its run stopped watching it; nil while watched.
        var abandoned: Date?
    }

    init(connection: LibvirtConnection) throws {
        self.connection = connection
        token = try connection.addLifecycleHandler { [weak self] name, event in
            self?.record(name, event)
        }
    }

    func stop() { if token >= 0 { connection.removeLifecycleHandler(token); token = -1 } }

    /// A new instance of `name` is about to start; `stopped`/`waitStopped` now answer for it.
    func expect(_ name: String) {
        lock.lock(); defer { lock.unlock() }
        let now = Date()
        var line = (instances[name] ?? []).filter { i in
            // Drop what can no longer be in doubt: stopped and abandoned, or abandoned long ago.
            guard let a = i.abandoned else { return true }
            return i.stop == nil && now.timeIntervalSince(a) < abandonAfter
        }
        if let last = line.indices.last, line[last].abandoned == nil { line[last].abandoned = now }
        nextID += 1
        line.append(Instance(id: nextID))
        instances[name] = line
    }

    /// The current instance's run no longer watches it; it keeps its place in line until its
    /// stop event is in.
    func forget(_ name: String) {
        lock.lock(); defer { lock.unlock() }
        guard var line = instances[name], let last = line.indices.last else { return }
        if line[last].stop != nil { line.remove(at: last) } else { line[last].abandoned = line[last].abandoned ?? Date() }
        instances[name] = line.isEmpty ? nil : line
    }

    /// The current instance never started (libvirt refused it): no event will come for it.
    func failedToStart(_ name: String) {
        lock.lock(); defer { lock.unlock() }
        guard var line = instances[name], !line.isEmpty else { return }
        line.removeLast()
        instances[name] = line.isEmpty ? nil : line
    }

    func record(_ name: String, _ event: LifecycleEvent) {
        lock.lock(); defer { lock.unlock() }
        guard var line = instances[name] else { return }
        switch event {
        case .stopped(let why):
            guard let i = line.firstIndex(where: { $0.stop == nil }) else { return }
            line[i].stop = Self.describe(why)
            if line[i].abandoned != nil { line.remove(at: i) }
        case .crashed:
            guard let i = line.firstIndex(where: { $0.stop == nil && $0.crash == nil }) else { return }
            line[i].crash = "QEMU reported a guest crash"
        default: return
        }
        instances[name] = line.isEmpty ? nil : line
        lock.broadcast()
    }

    static func describe(_ why: StopReason) -> String {
        switch why {
        case .shutdown: return "the guest powered off"
        case .destroyed: return "the domain was destroyed"
        case .crashed: return "the guest crashed"
        case .failed: return "QEMU exited unexpectedly (killed or failed)"
        case .migrated, .saved, .fromSnapshot: return "the domain was saved or moved"
        case .unknown(let n): return "the domain stopped (reason \(n))"
        }
    }

    /// Why the current instance of `name` stopped (or crashed); nil while it runs.
    func stopped(_ name: String) -> String? {
        lock.lock(); defer { lock.unlock() }
        return current(name).flatMap { $0.stop ?? $0.crash }
    }

    /// Waits for the current instance's stop (or crash) event; false when `seconds` passed.
    func waitStopped(_ name: String, seconds: Double) -> Bool {
        let until = Date().addingTimeInterval(seconds)
        lock.lock(); defer { lock.unlock() }
        while current(name).map({ $0.stop == nil && $0.crash == nil }) ?? false {
            if !lock.wait(until: until) { return false }
        }
        return true
    }

    /// Waits until every instance of `name` so far has its stop event, so that a new one can
    /// start under the name; false when `seconds` passed first.
    func waitFree(_ name: String, seconds: Double) -> Bool {
        let until = Date().addingTimeInterval(seconds)
        lock.lock(); defer { lock.unlock() }
        while !(instances[name] ?? []).allSatisfy({ $0.stop != nil }) {
            if !lock.wait(until: until) { return false }
        }
        return true
    }

    /// Instances of `name` in line (tests).
    func count(_ name: String) -> Int {
        lock.lock(); defer { lock.unlock() }
        return instances[name]?.count ?? 0
    }

    private func current(_ name: String) -> Instance? {
        guard let last = instances[name]?.last, last.abandoned == nil else { return nil }
        return last
    }
}
