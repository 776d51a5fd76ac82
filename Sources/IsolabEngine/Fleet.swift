import Foundation
import Logging
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
    /// Measured guest costs: saves only where they pay, longest units first (see ``Scheduler/costs``).
    public var costs: CostBook?
    /// Saved boots kept between runs (``GuestRunner/bootCache``); nil: none.
    public var bootCache: BootCache?

    public init(connections: [LibvirtConnection], jobs: Int, snapshots: Bool = true, cancellation: Cancellation = Cancellation()) {
        self.connections = connections; self.jobs = jobs; self.snapshots = snapshots; self.cancellation = cancellation
    }

    /// Every request's observation, in the order given. Throws only when a connection cannot
    /// run guests at all (its lifecycle watch cannot be set up).
    ///
    /// A connection lost mid-run (its host died, the network broke): its finished guests are
    /// kept, and what it could not finish runs again on the connections still alive, each
    /// observation saying which connection was lost (``VMObservation/rerunAfterLosing``);
    /// with none alive, those guests stay infrastructure failures.
    public func run(_ requests: [RunRequest], observer: FleetObserver? = nil) throws -> [VMObservation] {
        let shared = Shared(count: requests.count)
        runRound(requests, indices: Array(requests.indices), on: Array(connections.indices), shared: shared, observer: observer)
        let orphans = shared.orphans.sorted()
        if !orphans.isEmpty {
            let alive = connections.indices.filter { connections[$0].isAlive }
            if alive.isEmpty {
                // Nowhere to run them again: they are what they were, infrastructure failures.
                for i in orphans { observer?.finished(i, shared.results[i]!) }
            } else {
                let lostURIs = shared.lock.withLock { orphans.map { shared.results[$0]?.connection ?? "?" } }
                Logger(label: "isolab.fleet").notice("\(Set(lostURIs).sorted().joined(separator: ", ")) lost: running its \(orphans.count) unfinished guests again on \(alive.map { connections[$0].uri }.joined(separator: ", "))")
                let again = Shared(count: requests.count)
                runRound(requests, indices: orphans, on: alive, shared: again, observer: observer, relayOrphans: true)
                for (k, i) in orphans.enumerated() {
                    var o = again.results[i]!
                    o.rerunAfterLosing = lostURIs[k]
                    shared.results[i] = o
                }
            }
        }
        observer?.ended()
        if let failure = shared.failure { throw EngineError.libvirt(String(describing: failure)) }
        return shared.results.map { $0! }
    }

    /// Runs `indices` of `requests` over the connections `on` (whole fabrics each). A guest
    /// that failed on a connection that is no longer alive is kept back as an orphan, untold
    /// to the observer, unless `relayOrphans` (the last round).
    private func runRound(_ requests: [RunRequest], indices: [Int], on usable: [Int], shared: Shared,
                          observer: FleetObserver?, relayOrphans: Bool = false) {
        let subset = indices.map { requests[$0] }
        let owner = Self.connectionIndex(subset, count: usable.count)
        let group = DispatchGroup()
        for (slot, c) in usable.enumerated() {
            let connection = connections[c]
            let mine = subset.indices.filter { owner[$0] == slot }.map { indices[$0] }
            guard !mine.isEmpty else { continue }
            group.enter()
            Thread.detachNewThread { [jobs, snapshots, cancellation, costs, bootCache] in
                defer { group.leave() }
                do {
                    let runner = try GuestRunner(connection: connection)
                    runner.bootCache = bootCache
                    let scheduler = Scheduler(runner: runner, jobs: jobs, cancellation: cancellation)
                    // A host that boots from shipped images keeps no saved boots (their state files would be there).
                    scheduler.snapshots = snapshots && runner.shipping == nil
                    if let book = costs { let store = runner.snapshotStore; scheduler.costs = { book.costs($0, store: store) } }
                    scheduler.onStart = { i, r in observer?.started(mine[i], r) }
                    scheduler.onFinish = { i, o in
                        if !relayOrphans, o.outcome == .infrastructure, !connection.isAlive {
                            shared.lock.withLock { _ = shared.orphans.insert(mine[i]) }
                        } else {
                            observer?.finished(mine[i], o)
                        }
                    }
                    let obs = scheduler.run(mine.map { requests[$0] })
                    shared.lock.lock(); for (i, o) in zip(mine, obs) { shared.results[i] = o }; shared.lock.unlock()
                } catch {
                    shared.lock.lock(); shared.failure = error; shared.lock.unlock()
                }
            }
        }
        group.wait()
    }

    /// The snapshot store of each connection (in-QEMU on the embedded driver, state files on a daemon).
    public var stores: [SnapshotStore] { connections.map { $0.isEmbedded ? .inQEMU : .stateFile } }

    /// Which connection runs a request: whole fabrics, dealt out in order of first appearance.
    public func connectionIndex(_ requests: [RunRequest]) -> [Int] {
        Self.connectionIndex(requests, count: connections.count)
    }

    static func connectionIndex(_ requests: [RunRequest], count: Int) -> [Int] {
        var fabrics: [Scheduler.UnitKey: Int] = [:]
        return requests.map { r -> Int in
            let key = Scheduler.UnitKey(r)
            if let i = fabrics[key] { return i % count }
            fabrics[key] = fabrics.count
            return (fabrics.count - 1) % count
        }
    }

    /// The guest seconds the plan expects, over every connection (each runs its own fabrics),
    /// planned exactly as ``run(_:observer:)`` plans: by cost only when there is a book.
    public func expectedSeconds(_ requests: [RunRequest]) -> Double {
        let owner = connectionIndex(requests)
        return stores.enumerated().reduce(0) { total, c in
            let mine = requests.indices.filter { owner[$0] == c.offset }.map { requests[$0] }
            let store = c.element
            // A host booting from shipped images keeps no saved boots (as `run` plans it).
            let saves = snapshots && !GuestRunner.shipsImages(connections[c.offset])
            let libvirt = connections[c.offset].libvirtVersion()
            let cached = { (r: RunRequest) -> Bool in
                bootCache.map { GuestRunner.hasCachedBoot(r, in: $0, libvirt: libvirt) } ?? false
            }
            return total + Scheduler.plan(mine, jobs: jobs, snapshots: saves, costs: costs.map { book in { book.costs($0, store: store) } },
                                          keepBoots: bootCache != nil && store == .inQEMU, cached: cached)
                .reduce(0) { $0 + $1.expectedSeconds }
        }
    }

    private final class Shared: @unchecked Sendable {
        let lock = NSLock()
        var results: [VMObservation?]
        var failure: Error?
        /// Guests that failed on a connection lost meanwhile.
        var orphans: Set<Int> = []
        init(count: Int) { results = Array(repeating: nil, count: count) }
    }
}
