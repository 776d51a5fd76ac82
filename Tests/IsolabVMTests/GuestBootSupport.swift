import Foundation
import IsolabImages
import IsolabLibvirt
import IsolabModel
import IsolabVM
import XCTest

/// Boots a topology through the embedded connection to the guest's poweroff, waiting on
/// lifecycle events with a deadline (the domain is destroyed at the deadline).
enum GuestBootSupport {
    struct Outcome {
        var name: String
        var console: String
        var xml: String
        var events: [LifecycleEvent]
        var timedOut: Bool
        /// Seconds in `createDomain`.
        var createSeconds: Double
        /// From calling `createDomain` to the `stopped` event.
        var wallSeconds: Double
        /// From the kernel's "reboot: Power down" appearing in the console file to `stopped`.
        var powerDownToStopped: Double?
        /// From the `shutdown` event to `stopped`.
        var shutdownToStopped: Double?

        var stopped: LifecycleEvent? { events.last(where: \.isStopped) }
        func tail(_ n: Int = 40) -> String { console.split(separator: "\n").suffix(n).joined(separator: "\n") }
    }

    static let builder: Result<ImageBuilder, Error> = Result {
        try ImageBuilder(cache: ImageCache(root: ImageCache.defaultRoot()),
                         recipe: Recipe(directory: VMTestSupport.repository + "/vm-images"))
    }

    static func image(kernel id: String) throws -> GuestImage {
        let b = try builder.get()
        return try b.build(kernel: b.catalog.kernel(id: id))
    }

    nonisolated(unsafe) private static var counter = 0
    private static let counterLock = NSLock()

    /// The kernel arguments a vIOMMU needs on the catalog kernels.
    static func kernelArguments(for iommu: IOMMUModel) -> [String] {
        switch iommu {
        case .intel: return ["intel_iommu=on"]
        case .virtio: return ["isolab.modprobe=virtio_iommu"]
        case .amd, .none: return []  // AMD-Vi is on by default ("amd_iommu=on" is not an option)
        }
    }

    static func boot(_ topology: Topology, kernel: String = "6.1", extraArguments: [String] = [],
                     deadline: TimeInterval = 150) throws -> Outcome {
        let image = try image(kernel: kernel)
        let connection = try VMTestSupport.connect()
        counterLock.lock(); counter += 1; let n = counter; counterLock.unlock()
        let name = "isolab-test-\(topology.name)-\(getpid())-\(n)"
        let dir = try VMTestSupport.temporaryDirectory("boot-\(topology.name)")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let consolePath = dir + "/console.log"
        let args = ["console=ttyS0", "panic=-1"] + kernelArguments(for: topology.iommu) + extraArguments
        let parameters = DomainParameters(name: name, kernelPath: image.kernelPath, initrdPath: image.initramfsPath,
                                          kernelCommandLine: args.joined(separator: " "),
                                          consoleLogPath: consolePath, recordsPath: dir + "/records.jsonl")
        let xml = try DomainXML.render(topology, parameters: parameters)

        let state = EventState()
        let token = try connection.addLifecycleHandler { domainName, event in
            guard domainName == name else { return }
            state.record(event)
        }
        defer { connection.removeLifecycleHandler(token) }

        let start = Date()
        let domain = try connection.createDomain(xml: xml)
        let createSeconds = Date().timeIntervalSince(start)
        // Measurement only: when the kernel's last line reaches the console file.
        let powerDown = PowerDownWatch(path: consolePath, until: state)
        var timedOut = false
        if !state.waitStopped(seconds: deadline) {
            timedOut = true
            try? domain.destroy()
            _ = state.waitStopped(seconds: 30)
        }
        let stoppedAt = state.stoppedAt ?? Date()
        let console = (try? String(contentsOfFile: consolePath, encoding: .utf8))?
            .replacingOccurrences(of: "\r\n", with: "\n") ?? ""
        return Outcome(name: name, console: console, xml: xml, events: state.events, timedOut: timedOut,
                       createSeconds: createSeconds, wallSeconds: stoppedAt.timeIntervalSince(start),
                       powerDownToStopped: powerDown.seenAt.map { stoppedAt.timeIntervalSince($0) },
                       shutdownToStopped: state.shutdownAt.map { stoppedAt.timeIntervalSince($0) })
    }

    /// QEMU processes still running for a domain name (`-name guest=<name>,…`).
    static func leftoverQEMUs(_ name: String) -> [String] {
        VMTestSupport.runningQEMUs().filter { $0.contains("guest=\(name),") }
    }
}

/// Lifecycle events of one domain, from the event-loop thread.
final class EventState: @unchecked Sendable {
    private let lock = NSLock()
    private let stoppedSignal = DispatchSemaphore(value: 0)
    private(set) var events: [LifecycleEvent] = []
    private(set) var stoppedAt: Date?
    private(set) var shutdownAt: Date?

    func record(_ event: LifecycleEvent) {
        lock.lock()
        events.append(event)
        if event == .shutdown, shutdownAt == nil { shutdownAt = Date() }
        let stopped = event.isStopped && stoppedAt == nil
        if stopped { stoppedAt = Date() }
        lock.unlock()
        if stopped { stoppedSignal.signal() }
    }

    var isStopped: Bool {
        lock.lock(); defer { lock.unlock() }
        return stoppedAt != nil
    }

    /// True once `stopped` has come (or came before), false at the deadline.
    func waitStopped(seconds: TimeInterval) -> Bool {
        if isStopped { return true }
        let ok = stoppedSignal.wait(timeout: .now() + seconds) == .success
        if ok { stoppedSignal.signal() }  // later waits return at once
        return ok
    }
}

/// Notes when "reboot: Power down" reaches the console file (checked every 5 ms).
final class PowerDownWatch: @unchecked Sendable {
    private let lock = NSLock()
    private var seen: Date?
    var seenAt: Date? { lock.lock(); defer { lock.unlock() }; return seen }

    init(path: String, until state: EventState) {
        let thread = Thread { [self] in
            let marker = Data("reboot: Power down".utf8)
            while !state.isStopped {
                if let d = FileManager.default.contents(atPath: path), d.range(of: marker) != nil {
                    lock.lock(); seen = Date(); lock.unlock()
                    return
                }
                usleep(5_000)
            }
        }
        thread.start()
    }
}
