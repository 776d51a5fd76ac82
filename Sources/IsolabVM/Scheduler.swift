import Foundation
import IsolabModel
import IsolabProtocol

/// Runs many VMs at once on one libvirt connection, at most `jobs` at a time.
///
/// With `snapshots` (the default), requests that share a fabric, kernel, image and guest
/// options run from one saved boot (``GuestRunner/runFromSnapshot(_:cancel:starting:finished:)``);
/// fabrics with the most scenarios start first, and a fabric is split into several saved boots
/// only when there are fewer fabrics than jobs.
///
/// Cancelling (`cancellation.cancel()`, e.g. from a SIGINT handler) makes every running guest
/// be destroyed and every queued one be reported `interrupted` without starting; `run` still
/// returns one observation per request, in request order.
public final class Scheduler: @unchecked Sendable {
    public let runner: GuestRunner
    public let jobs: Int
    public let cancellation: Cancellation
    /// Boot each fabric once and restore it for every scenario; false: boot every request.
    public var snapshots = true
    /// What guests cost (``CostBook/costs(_:)``): with it, a fabric's boot is saved only where
    /// its restores win back more than the save costs, and the units expected to run longest
    /// start first; without it every fabric of two or more scenarios is saved, largest first.
    public var costs: (@Sendable (RunRequest) -> GuestCosts)?
    /// Called (from a worker thread, serialized) when a VM finishes.
    public var onFinish: (@Sendable (_ index: Int, _ observation: VMObservation) -> Void)?
    /// Called (serialized) when a VM starts.
    public var onStart: (@Sendable (_ index: Int, _ request: RunRequest) -> Void)?

    private let lock = NSLock()

    public init(runner: GuestRunner, jobs: Int = ProcessInfo.processInfo.activeProcessorCount,
                cancellation: Cancellation = Cancellation()) {
        self.runner = runner
        self.jobs = max(1, jobs)
        self.cancellation = cancellation
    }

    public func run(_ requests: [RunRequest]) -> [VMObservation] {
        let planned = Self.plan(requests, jobs: jobs, snapshots: snapshots, costs: costs,
                                keepBoots: runner.bootCache != nil && runner.snapshotStore == .inQEMU,
                                cached: runner.hasCachedBoot)
        let units = planned.map(\.requests)
        let state = QueueState(count: requests.count)
        let group = DispatchGroup()
        for _ in 0..<min(jobs, units.count) {
            group.enter()
            let thread = Thread { [self] in
                defer { group.leave() }
                while true {
                    lock.lock()
                    guard state.next < units.count else { lock.unlock(); return }
                    let unit = units[state.next]
                    let saved = planned[state.next].saved
                    state.next += 1
                    lock.unlock()
                    let finished: (Int, VMObservation) -> Void = { [self] i, obs in
                        lock.lock()
                        state.results[i] = obs
                        onFinish?(i, obs)
                        lock.unlock()
                    }
                    if cancellation.isCancelled {
                        for i in unit {
                            let req = requests[i]
                            finished(i, VMObservation(topology: req.topology.name, kernel: req.kernelLabel,
                                                      iommu: req.topology.iommu.rawValue, scenario: req.scenario?.name,
                                                      outcome: .interrupted, problem: "interrupted before it started"))
                        }
                    } else if !saved {
                        lock.lock(); onStart?(unit[0], requests[unit[0]]); lock.unlock()
                        finished(unit[0], runner.run(requests[unit[0]], cancel: cancellation))
                    } else {
                        runner.runFromSnapshot(unit.map { requests[$0] }, cancel: cancellation,
                                               starting: { k in self.lock.lock(); self.onStart?(unit[k], requests[unit[k]]); self.lock.unlock() },
                                               finished: { k, obs in finished(unit[k], obs) })
                    }
                }
            }
            thread.stackSize = 1 << 22
            thread.start()
        }
        group.wait()
        return state.results.map { $0! }
    }

    /// What one saved boot can serve: the same topology (and vIOMMU), kernel, image, boot
    /// path, accelerator, emulator and extra kernel arguments.
    public struct UnitKey: Hashable, Sendable {
        var topology: String
        var iommu: String
        var kernel: String
        var image: String
        var boot: String
        var accel: String
        var emulator: String?
        var kernelArguments: [String]

        public init(_ r: RunRequest) {
            topology = r.topology.name
            iommu = r.topology.iommu.rawValue
            kernel = r.kernelLabel
            image = r.image.directory
            boot = r.boot.rawValue
            accel = r.accel.rawValue
            emulator = r.emulator
            kernelArguments = r.extraKernelArguments
        }
    }

    /// One unit of the plan: requests run from one saved boot, or one request booted.
    public struct PlannedUnit: Equatable, Sendable {
        public var requests: [Int]
        /// The guest seconds the unit is expected to take (``GuestCosts/typical`` without costs).
        public var expectedSeconds: Double
        /// Run from a saved boot (two or more requests, or one whose boot the boot cache keeps).
        public var saved: Bool

        public init(requests: [Int], expectedSeconds: Double, saved: Bool? = nil) {
            self.requests = requests
            self.expectedSeconds = expectedSeconds
            self.saved = saved ?? (requests.count > 1)
        }
    }

    /// The units `run` starts, in order: fabrics grouped (``units(_:jobs:)``), then, with
    /// `costs`, a unit whose saved boot would cost more than it wins back is booted request by
    /// request, and the units expected to end latest start first (longest processing time first,
    /// which keeps every job busy to the end).
    ///
    /// With `keepBoots` (a boot cache that keeps saved boots for later runs) every fabric QEMU
    /// can save is saved, one scenario or many, whatever this run's costs say: the save is paid
    /// once, and later runs start from it instead of booting. `cached` says which requests'
    /// saved boots the cache already holds (``GuestRunner/hasCachedBoot(_:)``): such a unit is
    /// expected to cost a cached start, not a boot and a save.
    public static func plan(_ requests: [RunRequest], jobs: Int, snapshots: Bool,
                            costs: ((RunRequest) -> GuestCosts)?, keepBoots: Bool = false,
                            cached: @escaping (RunRequest) -> Bool = { _ in false }) -> [PlannedUnit] {
        plan(requests.map(UnitKey.init), jobs: jobs, snapshots: snapshots, costs: costs.map { c in { c(requests[$0]) } },
             saveable: { canSave(requests[$0].topology) }, keepBoots: keepBoots,
             cached: { cached(requests[$0]) })
    }

    /// Whether QEMU can save a guest of `topology` at all. Two of the devices isolab builds are
    /// non-migratable in QEMU 7.2 and 10.0 alike (checked with `migrate` on a bare q35 with each
    /// device): every NVMe controller, SR-IOV or not ("State blocked by non-migratable device
    /// '…/nvme'"), and the AMD vIOMMU ("… 'amd-iommu'"). `savevm` and libvirt's save both refuse
    /// them, so such fabrics are booted per scenario without first trying (and failing) a save.
    public static func canSave(_ topology: Topology) -> Bool {
        topology.iommu != .amd && !topology.allNodes.contains { $0.deviceModel == .nvme }
    }

    /// ``plan(_:jobs:snapshots:costs:keepBoots:cached:)`` over unit keys; `costs` gives a request
    /// index's figures, `saveable` whether its guest can be saved, `cached` whether its saved boot
    /// is in the boot cache.
    static func plan<Key: Hashable>(_ keys: [Key], jobs: Int, snapshots: Bool, costs: ((Int) -> GuestCosts)?,
                                    saveable: (Int) -> Bool = { _ in true }, keepBoots: Bool = false,
                                    cached: @escaping (Int) -> Bool = { _ in false }) -> [PlannedUnit] {
        let estimate = { (unit: [Int], saved: Bool) -> Double in
            // Boot, save and restore are the fabric's; the steps each scenario's own.
            (costs?(unit[0]) ?? .typical).expectedSeconds(scenarios: unit.count, saved: saved, cached: keepBoots && saved && cached(unit[0]),
                                                          stepSeconds: costs.map { c in unit.reduce(0) { $0 + c($1).steps } })
        }
        let unit = { (u: [Int]) -> PlannedUnit in
            let saved = keepBoots ? saveable(u[0]) : u.count > 1
            return PlannedUnit(requests: u, expectedSeconds: estimate(u, saved), saved: saved)
        }
        guard snapshots else { return keys.indices.map { PlannedUnit(requests: [$0], expectedSeconds: estimate([$0], false)) } }
        var units = Self.units(keys, jobs: jobs, saveable: saveable)
        guard let costs else { return units.map(unit) }
        if !keepBoots {
            units = units.flatMap { u in u.count > 1 && !costs(u[0]).savesTime(scenarios: u.count) ? u.map { [$0] } : [u] }
        }
        return units.map(unit)
            .enumerated().sorted { ($0.element.expectedSeconds, -$0.offset) > ($1.element.expectedSeconds, -$1.offset) }
            .map(\.element)
    }

    /// Request indices grouped by their unit key into units run from one saved boot each, largest first (the
    /// longest guests start first); while there are fewer units than `jobs`, the largest is
    /// halved so every core has a guest. A unit of one is booted, not saved.
    /// A fabric whose guest cannot be saved (`saveable` false for its first request) is a unit
    /// per request.
    static func units<Key: Hashable>(_ keys: [Key], jobs: Int, saveable: (Int) -> Bool = { _ in true }) -> [[Int]] {
        var order: [Key] = []
        var byKey: [Key: [Int]] = [:]
        for (i, key) in keys.enumerated() {
            if byKey[key] == nil { order.append(key) }
            byKey[key, default: []].append(i)
        }
        var units = order.map { byKey[$0]! }.flatMap { u in u.count > 1 && !saveable(u[0]) ? u.map { [$0] } : [u] }
        while units.count < jobs, let largest = units.indices.max(by: { units[$0].count < units[$1].count }),
              units[largest].count >= 2 {
            let unit = units.remove(at: largest)
            let half = (unit.count + 1) / 2
            units += [Array(unit[..<half]), Array(unit[half...])]
        }
        // Stable: equal sizes keep the order of the requests.
        return units.enumerated().sorted { ($0.element.count, -$0.offset) > ($1.element.count, -$1.offset) }.map(\.element)
    }
}

/// The queue position and results shared by the worker threads (guarded by the scheduler's lock).
private final class QueueState: @unchecked Sendable {
    var next = 0
    var results: [VMObservation?]
    init(count: Int) { results = Array(repeating: nil, count: count) }
}
