import Foundation
import IsolabImages
import IsolabLibvirt
import IsolabModel
import IsolabProtocol
import IsolabTopology
import IsolabVM
import XCTest

/// Shared by the tests that boot real guests through the embedded libvirt driver.
enum BootSupport {
    static let repository: String = {
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { url.deleteLastPathComponent() }
        return url.path
    }()

    static func topology(_ name: String) throws -> Topology {
        try TopologyLoader.load(path: "\(repository)/topologies/\(name).yaml")
    }

    static var catalogTopologies: [Topology] {
        get throws {
            let dir = repository + "/topologies"
            return try FileManager.default.contentsOfDirectory(atPath: dir).filter { $0.hasSuffix(".yaml") }.sorted()
                .map { try TopologyLoader.load(path: dir + "/" + $0) }
        }
    }

    /// One embedded connection for the whole test process (opening a root costs time).
    static let connection: Result<LibvirtConnection, Error> = Result {
        try LibvirtConnection.open(connect: nil)
    }

    static func runner() throws -> GuestRunner {
        try GuestRunner(connection: connection.get())
    }

    private static let imageLock = NSLock()
    nonisolated(unsafe) private static var images: [String: GuestImage] = [:]

    /// The catalog kernel's image with the agent; the agent must be built (`ci/build-agent`).
    static func image(_ kernel: String) throws -> GuestImage {
        imageLock.lock(); defer { imageLock.unlock() }
        if let i = images[kernel] { return i }
        let builder = try ImageBuilder(cache: ImageCache(root: ImageCache.defaultRoot()),
                                       recipe: Recipe(directory: repository + "/vm-images"))
        builder.log = { print("isolab: \($0)") }
        let image = try builder.build(kernel: try builder.catalog.kernel(id: kernel), agent: try AgentBinary.locate())
        images[kernel] = image
        return image
    }

    static let runsRoot: String = {
        // One folder per test process, so that its leftover check sees its own guests only.
        let dir = NSTemporaryDirectory() + "isolab-vmtests-runs/\(getpid())"
        try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return dir
    }()

    static func request(_ topology: Topology, kernel: String, scenario: Scenario?) throws -> RunRequest {
        let label = [topology.name, kernel, scenario?.name ?? "inventory"].joined(separator: "-")
        var r = RunRequest(topology: topology, fabric: Fabric(topology), scenario: scenario, image: try image(kernel),
                           kernelLabel: kernel, directory: RunsDirectory.new(in: runsRoot, label: label))
        r.bootDeadline = 120
        r.programs = try programs(for: topology)
        return r
    }

    nonisolated(unsafe) private static var suite: SelftestSuite?

    /// The programs the topology's `selftest` steps run (the kernel's selftests, built once and
    /// cached; a developer's files as given).
    static func programs(for topology: Topology) throws -> [String: String] {
        var out: [String: String] = [:]
        for step in topology.scenarios.flatMap(\.steps) {
            guard case .selftest(let run) = step.action else { continue }
            switch run.source {
            case .file(let path): out[run.program] = path
            case .kernelSelftest:
                imageLock.lock(); defer { imageLock.unlock() }
                if suite == nil {
                    let builder = try ImageBuilder(cache: ImageCache(root: ImageCache.defaultRoot()),
                                                   recipe: Recipe(directory: repository + "/vm-images"))
                    builder.log = { print("isolab: \($0)") }
                    suite = try builder.selftestSuite()
                }
                out[run.program] = suite?.path(of: run.program)
            }
        }
        return out
    }

    /// Runs the requests two at a time (fabrics with several scenarios from one saved boot
    /// unless `snapshots` is false) and prints one line per VM.
    static func run(_ requests: [RunRequest], jobs: Int = 2, snapshots: Bool = true,
                    cancellation: Cancellation = Cancellation()) throws -> [VMObservation] {
        let scheduler = Scheduler(runner: try runner(), jobs: jobs, cancellation: cancellation)
        scheduler.snapshots = snapshots
        scheduler.onFinish = { _, o in
            print("vm \(o.topology) \(o.kernel) \(o.scenario ?? "inventory"): \(o.outcome.rawValue) in \(String(format: "%.1f", o.timing.total)) s (boot \(String(format: "%.1f", o.timing.boot)) s)" + (o.problem.map { ": \($0)" } ?? ""))
        }
        return scheduler.run(requests)
    }

    /// QEMU processes still running whose command line names an isolab domain of this test
    /// process (a file under its `runsRoot`), or, when `requests` is given, one of their run
    /// directories: other processes on this machine may have guests of their own up.
    static func leftoverQEMU(of requests: [RunRequest]? = nil) -> [String] {
        let fm = FileManager.default
        var found: [String] = []
        for pid in (try? fm.contentsOfDirectory(atPath: "/proc")) ?? [] where Int(pid) != nil {
            guard let raw = fm.contents(atPath: "/proc/\(pid)/cmdline") else { continue }
            let cmd = String(decoding: raw, as: UTF8.self).replacingOccurrences(of: "\0", with: " ")
            guard cmd.contains("qemu-system"), cmd.contains("guest=isolab-") else { continue }
            if let requests, !requests.contains(where: { cmd.contains($0.directory + "/") }) { continue }
            if requests == nil, !cmd.contains(runsRoot + "/") { continue }
            found.append("\(pid): \(cmd.prefix(160))")
        }
        return found
    }

    static func qemuPID(domainPrefix: String) -> Int32? {
        let fm = FileManager.default
        for pid in (try? fm.contentsOfDirectory(atPath: "/proc")) ?? [] where Int(pid) != nil {
            guard let raw = fm.contents(atPath: "/proc/\(pid)/cmdline") else { continue }
            let cmd = String(decoding: raw, as: UTF8.self)
            if cmd.contains("qemu-system"), cmd.contains("guest=\(domainPrefix)") { return Int32(pid) }
        }
        return nil
    }
}
