import Foundation
import IsolabProtocol

/// Runs many VMs at once on one libvirt connection, at most `jobs` at a time.
///
/// Cancelling (`cancellation.cancel()`, e.g. from a SIGINT handler) makes every running guest
/// be destroyed and every queued one be reported `interrupted` without starting; `run` still
/// returns one observation per request, in request order.
public final class Scheduler: @unchecked Sendable {
    public let runner: GuestRunner
    public let jobs: Int
    public let cancellation: Cancellation
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
        let state = QueueState(count: requests.count)
        let group = DispatchGroup()
        for _ in 0..<min(jobs, requests.count) {
            group.enter()
            let thread = Thread { [self] in
                defer { group.leave() }
                while true {
                    lock.lock()
                    guard state.next < requests.count else { lock.unlock(); return }
                    let i = state.next
                    state.next += 1
                    lock.unlock()
                    let req = requests[i]
                    let obs: VMObservation
                    if cancellation.isCancelled {
                        obs = VMObservation(topology: req.topology.name, kernel: req.kernelLabel,
                                            iommu: req.topology.iommu.rawValue, scenario: req.scenario?.name,
                                            outcome: .interrupted, problem: "interrupted before it started")
                    } else {
                        lock.lock(); onStart?(i, req); lock.unlock()
                        obs = runner.run(req, cancel: cancellation)
                    }
                    lock.lock()
                    state.results[i] = obs
                    onFinish?(i, obs)
                    lock.unlock()
                }
            }
            thread.stackSize = 1 << 22
            thread.start()
        }
        group.wait()
        return state.results.map { $0! }
    }
}

/// The queue position and results shared by the worker threads (guarded by the scheduler's lock).
private final class QueueState: @unchecked Sendable {
    var next = 0
    var results: [VMObservation?]
    init(count: Int) { results = Array(repeating: nil, count: count) }
}
