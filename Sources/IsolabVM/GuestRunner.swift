import Foundation
import IsolabImages
import IsolabLibvirt
import IsolabModel
import IsolabProtocol

/// Everything one VM run needs.
public struct RunRequest: Sendable {
    public var topology: Topology
    public var fabric: Fabric
    /// nil: boot, report the inventory, power off.
    public var scenario: Scenario?
    public var image: GuestImage
    /// The label the kernel is reported under (catalog id).
    public var kernelLabel: String
    public var accel: Accelerator = .tcg
    /// An emulator binary other than libvirt's default.
    public var emulator: String?
    /// What the emulator is (`QEMU emulator version 10.0.2 …`), named when libvirt cannot start it.
    public var emulatorVersion: String?
    /// Where the run keeps its console, records, plan and domain XML.
    public var directory: String
    /// Seconds from domain start to the agent's first record.
    public var bootDeadline: Double = 150
    /// Seconds the agent may take for one step (its own timeout for blocking calls).
    public var stepTimeout: Double = 10
    /// Seconds the host waits for a step's record after its `step-start` (beyond `stepTimeout`).
    public var stepGrace: Double = 20
    /// Seconds the guest may take to power off after the agent's `done` before it is destroyed
    /// (everything the run observes is in by then; a restored 5.10 guest takes 5 s to reset).
    public var afterDoneGrace: Double = 1
    /// Extra kernel command-line words (tests use them for fault injection).
    public var extraKernelArguments: [String] = []
    /// How to enter the kernel: the PVH `vmlinux` by default, the bzImage when the image has none.
    public var boot: BootPath = .pvh
    /// The guest's clock: the host's by default.
    public var clock: GuestClock = .host
    /// Programs the fabric's `selftest` steps run: guest name → host file, shipped in the boot's
    /// initramfs under `/isolab/programs` (every scenario's, so a saved boot serves them all).
    public var programs: [String: String] = [:]

    /// Seconds the host waits for step `index`'s record before calling the guest hung: the
    /// step's own timeout (a `selftest`'s) or `stepTimeout`, plus `stepGrace`.
    func quietSeconds(step index: Int?) -> Double {
        if let index, let steps = scenario?.steps, index < steps.count, case .selftest(let run) = steps[index].action {
            return run.timeout + stepGrace
        }
        return stepTimeout + stepGrace
    }

    /// `programs` as the initramfs holds them: path inside it → host file.
    var initramfsPrograms: [String: String] {
        Dictionary(uniqueKeysWithValues: programs.map { (String(GuestPlan.programsDirectory.dropFirst()) + "/" + $0.key, $0.value) })
    }

    /// The kernel file this run boots (`boot`, or the fallback the image allows).
    public var bootKernel: BootKernel { image.bootKernel(boot) }

    /// The domain parameters of this run (`name`, the run's files, the chosen kernel).
    func domainParameters(name: String, files: RunFiles) -> DomainParameters {
        let kernel = bootKernel
        var p = DomainParameters(name: name, kernelPath: kernel.path, initrdPath: files.initramfs,
                                 kernelCommandLine: kernelCommandLine, consoleLogPath: files.console,
                                 recordsPath: files.records, accelerator: accel, emulator: emulator, boot: kernel.boot)
        p.clock = clock
        return p
    }

    /// What the observation records of the boot.
    var bootRecord: BootRecord {
        let k = bootKernel
        return BootRecord(kernel: k.path, entry: k.boot.rawValue, requested: k.requested.rawValue,
                          fallback: k.fallback, firmware: DomainXML.firmware, clock: clock == .host ? nil : clock.rawValue)
    }

    public init(topology: Topology, fabric: Fabric, scenario: Scenario?, image: GuestImage, kernelLabel: String,
                directory: String) {
        self.topology = topology
        self.fabric = fabric
        self.scenario = scenario
        self.image = image
        self.kernelLabel = kernelLabel
        self.directory = directory
    }

    /// The kernel command line (`KernelCommandLine`, one home for every boot).
    public var kernelCommandLine: String {
        KernelCommandLine.text(intelIOMMU: topology.iommu == .intel, extra: extraKernelArguments)
    }
}

/// Runs one VM to completion on a libvirt connection: create, watch the record stream and the
/// console, enforce the deadlines, destroy, and assemble the observation. Whatever happens,
/// the domain is gone when `run` returns.
public final class GuestRunner: @unchecked Sendable {
    public let connection: LibvirtConnection
    let watch: LifecycleWatch
    /// Where snapshot mode keeps a fabric's saved guest: in its QEMU on the embedded driver,
    /// in a state file on a daemon's connection (whose QEMU may run as another user, or elsewhere).
    public var snapshotStore: SnapshotStore
    /// Set for a host that does not share isolab's files (a URI that names a host, or
    /// `ISOLAB_SHIP_IMAGES=1`): every guest boots from volumes put into that host's pool
    /// (``ImageShipping``), with its ports read through libvirt. Such a host boots every
    /// scenario (no saved boot: its state files would be on the host).
    public let shipping: ImageShipping?
    /// Saved boots kept between runs (in-QEMU store only): a fabric whose boot is there starts
    /// from it instead of booting, and every fabric saved here is kept there. nil: none.
    public var bootCache: BootCache?

    public init(connection: LibvirtConnection) throws {
        self.connection = connection
        self.watch = try LifecycleWatch(connection: connection)
        snapshotStore = connection.isEmbedded ? .inQEMU : .stateFile
        shipping = Self.shipsImages(connection) ? ImageShipping(connection: connection) : nil
    }

    /// Whether guests on `connection` boot from shipped volumes.
    public static func shipsImages(_ connection: LibvirtConnection) -> Bool {
        !connection.isEmbedded && (connection.remoteHost != nil || ProcessInfo.processInfo.environment["ISOLAB_SHIP_IMAGES"] == "1")
    }

    deinit { watch.stop() }

    /// The domain name for a run: `isolab-` + a unique suffix (libvirt names are global per connection).
    static func domainName(_ req: RunRequest) -> String {
        let parts = [req.topology.name, req.kernelLabel, req.scenario?.name ?? "inventory"]
        let base = parts.joined(separator: "-").map { $0.isLetter || $0.isNumber || $0 == "-" || $0 == "." ? $0 : "_" }
        return "isolab-" + String(base.prefix(60)) + "-" + String(UUID().uuidString.prefix(8)).lowercased()
    }

    /// An infrastructure failure that names both sides of the libvirt/QEMU pair.
    static func cannotStart(_ req: RunRequest, on connection: LibvirtConnection, _ error: Error) -> String {
        "libvirt \(connection.libvirtVersion()) could not start the guest on \(req.emulatorVersion ?? "libvirt's default QEMU")"
            + (req.emulator.map { " (\($0))" } ?? "") + ": \(error)"
    }

    public func run(_ req: RunRequest, cancel: Cancellation = Cancellation()) -> VMObservation {
        if let shipping { return runShipped(req, shipping: shipping, cancel: cancel) }
        var run = RunBook(req)
        run.connection = connection.uri
        let plan = run.plan, files = run.files
        func finish(_ end: VMEnd) -> VMObservation { run.finish(end) }

        // Files: plan, initramfs with the plan appended, domain XML.
        let name = Self.domainName(req)
        let xml: String
        do {
            xml = try files.writeBoot(req, plan: plan, parameters: req.domainParameters(name: name, files: files))
        } catch {
            return finish(.infrastructure("cannot prepare the run: \(error)"))
        }
        guard !cancel.isCancelled else { return finish(.interrupted) }

        // Create.
        let created = Date()
        let domain: LibvirtDomain
        switch start(name, xml: xml, req, &run, paused: false) {
        case .success(let d): domain = d
        case .failure(let refused): return finish(refused.end)
        }
        run.timing.create = Date().timeIntervalSince(created)
        defer { watch.forget(name) }

        // Watch.
        let running = Date()
        var watched = supervise(name, req: req, cancel: cancel, stream: &run.stream, console: &run.console, records: &run.records)
        if let f = watched.firstRecordAt { run.timing.boot = f.timeIntervalSince(running) }
        if let f = watched.firstRecordAt { run.timing.steps = (watched.goalAt ?? Date()).timeIntervalSince(f) }

        // Tear down.
        let teardown = Date()
        // A guest ended at `done` is gone; its domain name is never used again.
        if !watched.endedHere { tearDown(domain, name, &watched.end) }
        run.timing.teardown = Date().timeIntervalSince(teardown)
        // The run's initramfs is the image's plus the plan (both kept): a few MB per run, gone.
        try? FileManager.default.removeItem(atPath: files.initramfs)
        return finish(watched.end)
    }
}

/// The bookkeeping of one run: its plan and files, the record stream and console as read so
/// far, the timing, and how they become the observation.
struct RunBook {
    let request: RunRequest
    let start = Date()
    let plan: GuestPlan
    let assembler: ObservationAssembler
    let files: RunFiles
    var timing = Timing()
    var stream = RecordStreamParser()
    var console: FileTail
    var records: FileTail
    /// Snapshot mode: the state file this run was restored from.
    var restoredFrom: String?
    /// The URI of the connection that runs the guest.
    var connection: String?

    init(_ req: RunRequest) {
        request = req
        plan = PlanBuilder.plan(topology: req.topology, fabric: req.fabric, scenario: req.scenario,
                                runID: (req.directory as NSString).lastPathComponent, stepTimeout: req.stepTimeout)
        assembler = ObservationAssembler(topology: req.topology.name, kernel: req.kernelLabel,
                                         iommu: req.topology.iommu.rawValue, scenario: req.scenario?.name, plan: plan)
        files = RunFiles(directory: req.directory)
        console = FileTail(path: files.console)
        records = FileTail(path: files.records)
    }

    /// Reads what is left, assembles the observation and closes the files.
    mutating func finish(_ end: VMEnd) -> VMObservation {
        timing.total = Date().timeIntervalSince(start)
        _ = console.poll(); stream.feed(records.poll())
        if case .finished = end {} else { stream.finish() }
        var obs = assembler.assemble(stream: stream, console: console.text, end: end, timing: timing)
        obs.consolePath = files.console
        obs.recordsPath = files.records
        obs.boot = request.bootRecord
        obs.restoredFrom = restoredFrom
        obs.connection = connection
        console.close(); records.close()
        return obs
    }
}

/// How watching a running guest ended.
struct Supervision {
    var end: VMEnd
    var firstRecordAt: Date?
    /// When the stream reached its goal (`done`, or `ready` while booting a snapshot).
    var goalAt: Date?
    /// The guest's QEMU was killed and reaped here at the goal: the guest is gone, and
    /// libvirt's own bookkeeping of the stop (about 0.2 s) need not be waited for.
    var endedHere = false
}

extension GuestRunner {
    /// Watches the domain `name` until its record stream reaches `goal` and the guest stops
    /// (or, with `stopAtGoal`, as soon as the goal is reached), a deadline passes, the stream
    /// turns bad, QEMU stops, or the run is cancelled. At the goal an adopted QEMU is ended
    /// at once, and the watch ends then too unless `waitForStop` (a restored copy's name is
    /// used again: libvirt must be done with it first). `hold`, the QEMU's sockets held open,
    /// makes that wait short (``SocketHold``); it is released once QEMU is gone.
    func supervise(_ name: String, req: RunRequest, cancel: Cancellation, stream: inout RecordStreamParser,
                   console: inout FileTail, records: inout FileTail, stopAtGoal: Bool = false, waitForStop: Bool = false,
                   hold: SocketHold? = nil, goal: (RecordStreamParser) -> Bool = { $0.complete }) -> Supervision {
        let running = Date()
        var firstRecordAt: Date?
        var goalAt: Date?
        // The boot deadline and the step timeout count load-scaled seconds (LoadScaledClock).
        var sinceStart = LoadScaledClock(start: running), sinceProgress = LoadScaledClock(start: running)
        var inFlight: Int?
        var end: VMEnd?
        var endedHere = false
        var aliveCheckedAt = running
        while end == nil {
            let chunk = records.poll()
            if !chunk.isEmpty {
                let before = stream.records.count
                stream.feed(chunk)
                if stream.records.count > before {
                    sinceProgress.reset()
                    if firstRecordAt == nil { firstRecordAt = Date() }
                    for r in stream.records[before...] {
                        if r.type == .stepStart { inFlight = r.index }
                        if r.type == .step { inFlight = nil }
                    }
                }
                if goalAt == nil, goal(stream) {
                    goalAt = Date()
                    // Everything the run observes is in. The guest's own poweroff costs libvirt
                    // a SIGTERM and a 200 ms wait (virProcessKillPainfully); a QEMU already gone
                    // and reaped costs it none, so an adopted one is ended at once.
                    if !stopAtGoal { endedHere = ChildReaper.endAdoptedQEMU(domain: name, holding: hold) }
                }
            }
            _ = console.poll()
            // A QEMU that exited on its own: libvirt must see its sockets close now.
            if let hold, hold.processEnded { hold.release() }
            let now = Date()
            let load = HostLoad.shared.overcommit(now)
            sinceStart.tick(now, overcommit: load)
            sinceProgress.tick(now, overcommit: load)
            let quiet = req.quietSeconds(step: inFlight)
            if (stopAtGoal || (endedHere && !waitForStop)), goalAt != nil, stream.error == nil {
                end = .finished
            } else if endedHere, stream.error == nil, watch.waitStopped(name, seconds: req.afterDoneGrace) {
                // Killed and reaped here: libvirt's stop event follows in some 10 ms; wake on it.
                end = .finished
            } else if let stop = watch.stopped(name) {
                end = goalAt != nil ? .finished : .stopped(stop)
            } else if stream.error != nil {
                end = .infrastructure(stream.error!.description)
            } else if now.timeIntervalSince(aliveCheckedAt) > 0.5, ({ aliveCheckedAt = now; return !connection.isAlive })() {
                // A remote host or daemon gone: no stop event will come, and no more records.
                // After `done` everything the run observes is in: it stands.
                end = goalAt != nil ? .finished : .infrastructure("the connection to \(connection.uri) was lost")
            } else if cancel.isCancelled {
                end = .interrupted
            } else if let d = goalAt, now.timeIntervalSince(d) > req.afterDoneGrace {
                end = .finished   // the agent is done; the poweroff is late: destroy it
            } else if firstRecordAt == nil, sinceStart.elapsed > req.bootDeadline {
                end = .deadline("no agent record \(sinceStart.describe(req.bootDeadline)) after the guest started")
            } else if let i = inFlight, sinceProgress.elapsed > quiet {
                end = .deadline("step \(i) gave no record for \(sinceProgress.describe(quiet))")
            } else if firstRecordAt != nil, inFlight == nil, goalAt == nil, sinceProgress.elapsed > quiet {
                end = .deadline("the agent went quiet for \(sinceProgress.describe(quiet))")
            } else {
                // Every 10 ms: `done` noticed 15 ms sooner on average than at 30 ms, for reading two
                // small files a few hundred times per guest.
                Thread.sleep(forTimeInterval: 0.01)
            }
        }
        return Supervision(end: end!, firstRecordAt: firstRecordAt, goalAt: goalAt, endedHere: endedHere)
    }

    /// Starts the run's domain, watched under `name` (the caller forgets it); records the
    /// prepare time. A refusal is the infrastructure end that names libvirt and QEMU.
    func start(_ name: String, xml: String, _ req: RunRequest, _ run: inout RunBook, paused: Bool) -> Result<LibvirtDomain, StartRefused> {
        run.timing.prepare = Date().timeIntervalSince(run.start)
        watch.expect(name)
        do {
            return .success(try connection.createDomain(xml: xml, paused: paused, autodestroy: true))
        } catch {
            watch.failedToStart(name)
            return .failure(StartRefused(end: .infrastructure(Self.cannotStart(req, on: connection, error))))
        }
    }

    /// libvirt would not start a run's domain: how the run ends.
    struct StartRefused: Error { var end: VMEnd }

    /// Destroys the domain if it still runs and waits for libvirt to say it stopped; a domain
    /// that cannot be destroyed turns `end` into an infrastructure failure.
    func tearDown(_ domain: LibvirtDomain, _ name: String, _ end: inout VMEnd) {
        guard domain.isActive() else { return }
        do { try domain.destroy() } catch {
            if domain.isActive() { end = .infrastructure("cannot destroy the guest: \(error)") }
        }
        _ = watch.waitStopped(name, seconds: 10)
    }
}

/// The files of one run, kept whole in its directory.
public struct RunFiles: Sendable {
    public var directory: String
    public var console: String { directory + "/console.log" }
    public var records: String { directory + "/records.jsonl" }
    public var plan: String { directory + "/plan.json" }
    public var initramfs: String { directory + "/initramfs.cpio" }
    public var domainXML: String { directory + "/domain.xml" }
    /// Snapshot mode, in QEMU: the scratch qcow2 of a fabric's saved boot.
    public var vmstate: String { directory + "/vmstate.qcow2" }

    public init(directory: String) { self.directory = directory }

    /// Prepares the folder and writes a boot's files: the plan, the initramfs (the image's
    /// with the plan appended) and the domain XML, which it returns.
    func writeBoot(_ req: RunRequest, plan: GuestPlan, parameters: DomainParameters) throws -> String {
        try prepare()
        let planData = try JSONEncoder().encode(plan)
        try planData.write(to: URL(fileURLWithPath: self.plan))
        try req.image.initramfs(appending: [String(GuestPlan.path.dropFirst()): planData], executables: req.initramfsPrograms, to: initramfs)
        let xml = try DomainXML.render(req.topology, fabric: req.fabric, parameters: parameters)
        try xml.write(toFile: domainXML, atomically: true, encoding: .utf8)
        return xml
    }

    /// Prepares the folder and writes a restored run's files: its plan and the domain XML it
    /// runs under. Returns the plan as the line to send on the agent's channel.
    func writeRestore(plan: GuestPlan, xml: String) throws -> Data {
        try prepare()
        let line = try JSONEncoder().encode(plan)
        try line.write(to: URL(fileURLWithPath: self.plan))
        try xml.write(toFile: domainXML, atomically: true, encoding: .utf8)
        return line
    }

    func prepare() throws {
        let fm = FileManager.default
        try fm.createDirectory(atPath: directory, withIntermediateDirectories: true)
        for f in [console, records] {
            try? fm.removeItem(atPath: f)
            fm.createFile(atPath: f, contents: nil)
        }
    }
}
