import Foundation
import IsolabLibvirt
import IsolabProtocol
import IsolabVM

/// Told of each guest as it starts and finishes; `index` is the request's place in the list
/// given to ``Fleet/run(_:observer:)``.
public protocol FleetObserver: AnyObject, Sendable {
    func started(_ index: Int, _ request: RunRequest)
    func finished(_ index: Int, _ observation: VMObservation)
    /// Every guest has finished.
    func ended()
}

/// Runs requests over one or more libvirt connections, `jobs` guests at a time on each, whole
/// fabrics per connection (so a fabric's scenarios can share a saved boot), all cancelled together.
public struct Fleet: Sendable {
    public var connections: [LibvirtConnection]
    public var jobs: Int
    /// One saved boot per fabric and kernel, restored for each scenario (`--no-snapshot`: off).
    public var snapshots: Bool
    public let cancellation: Cancellation

    public init(connections: [LibvirtConnection], jobs: Int, snapshots: Bool = true, cancellation: Cancellation = Cancellation()) {
        self.connections = connections; self.jobs = jobs; self.snapshots = snapshots; self.cancellation = cancellation
    }

    /// Every request's observation, in the order given. Throws only when a connection cannot
    /// run guests at all (its lifecycle watch cannot be set up).
    public func run(_ requests: [RunRequest], observer: FleetObserver? = nil) throws -> [VMObservation] {
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
            let mine = requests.indices.filter { fabricIndex[$0] % connections.count == c }
            guard !mine.isEmpty else { continue }
            group.enter()
            Thread.detachNewThread { [jobs, snapshots, cancellation] in
                defer { group.leave() }
                do {
                    let scheduler = Scheduler(runner: try GuestRunner(connection: connection), jobs: jobs,
                                              cancellation: cancellation)
                    scheduler.snapshots = snapshots
                    scheduler.onStart = { i, r in observer?.started(mine[i], r) }
                    scheduler.onFinish = { i, o in observer?.finished(mine[i], o) }
                    let obs = scheduler.run(mine.map { requests[$0] })
                    shared.lock.lock(); for (i, o) in zip(mine, obs) { shared.results[i] = o }; shared.lock.unlock()
                } catch {
                    shared.lock.lock(); shared.failure = error; shared.lock.unlock()
                }
            }
        }
        group.wait()
        observer?.ended()
        if let failure = shared.failure { throw EngineError.libvirt(String(describing: failure)) }
        return shared.results.map { $0! }
    }

    private final class Shared: @unchecked Sendable {
        let lock = NSLock()
        var results: [VMObservation?]
        var failure: Error?
        init(count: Int) { results = Array(repeating: nil, count: count) }
    }
}
