import Foundation
import Logging
import IsolabImages
import IsolabLibvirt
import IsolabModel
import IsolabProtocol

/// Snapshot mode: one boot per fabric, one restore per scenario.
///
/// The fabric boots with a plan that says `serve`: the agent reports its inventory, says
/// `ready` and waits on the channel (a Unix socket here, serial port 1 in the guest). The
/// guest is saved where `snapshotStore` says: inside its QEMU (``SnapshotStore/inQEMU``,
/// `InPlaceSnapshot.swift`), each scenario putting that QEMU back with `loadvm`; or in a
/// state file (`virDomainSave`), each scenario restoring a new QEMU with its own console file
/// and socket. Either way the scenario's plan goes over the channel and the run is watched
/// exactly like a booted one. The inventory each restored agent reports must equal the saved
/// one, or the run is an infrastructure failure: the snapshot did not give the freshly booted
/// state TOPOLOGY.md promises. A scenario that crashes or hangs its guest costs only its own
/// restore.
extension GuestRunner {
    /// Runs `requests`, which must share their topology, kernel, image and guest options, from
    /// one saved boot; `starting(i)` is called before request `i` runs and `finished(i, obs)`
    /// after. Falls back to a boot per request when the snapshot cannot be made.
    public func runFromSnapshot(_ requests: [RunRequest], cancel: Cancellation = Cancellation(),
                                starting: (Int) -> Void = { _ in },
                                finished: (Int, VMObservation) -> Void = { _, _ in }) {
        guard let base = requests.first else { return }
        guard shipping == nil else {
            // A shipped guest's state file would live on its host: boot each scenario there.
            for (i, req) in requests.enumerated() {
                starting(i)
                finished(i, run(req, cancel: cancel))
            }
            return
        }
        let bootDirectory = base.directory + "/snapshot"
        let saved: SavedBase
        var booted = bootSnapshot(base, directory: bootDirectory, store: snapshotStore, cancel: cancel)
        if snapshotStore == .inQEMU, case .failure(let why) = booted, why.mayBeTheStore {
            // A QEMU that cannot open the vmstate drive (no io_uring, say) or refuses `savevm`.
            Logger(label: "isolab.vm").notice("\(base.topology.name) on \(base.kernelLabel): cannot keep the snapshot in QEMU (\(why)); saving it to a file")
            booted = bootSnapshot(base, directory: bootDirectory, store: .stateFile, cancel: cancel)
        }
        switch booted {
        case .success(let s):
            saved = s
        case .failure(let why):
            // The boot that would be saved failed: every scenario boots on its own, so each
            // reports what really happens to it (a crash at boot shows as each one's crash).
            Logger(label: "isolab.vm").notice("\(base.topology.name) on \(base.kernelLabel): no snapshot (\(why)); booting each scenario")
            try? FileManager.default.removeItem(atPath: RunFiles(directory: bootDirectory).initramfs)
            for (i, req) in requests.enumerated() {
                starting(i)
                finished(i, run(req, cancel: cancel))
            }
            return
        }
        defer {
            // The saved state (tens of MB) and the boot's initramfs serve only these scenarios.
            switch saved {
            case .inQEMU(let live): finish(live)
            case .file(let snapshot): try? FileManager.default.removeItem(atPath: snapshot.statePath)
            }
            try? FileManager.default.removeItem(atPath: RunFiles(directory: bootDirectory).initramfs)
        }
        for (i, req) in requests.enumerated() {
            starting(i)
            var obs: VMObservation
            switch saved {
            case .inQEMU(let live):
                obs = revert(live, req, cancel: cancel)
                if i == 0 { obs.timing.snapshot = live.seconds }
                obs.bootCache = live.fromCache
                if let key = live.fromCache, obs.outcome == .infrastructure, !cancel.isCancelled {
                    bootCache?.evict(key)   // maybe not the saved guest any more: boot it next time
                }
            case .file(let snapshot):
                obs = restore(snapshot, req, cancel: cancel)
                if i == 0 { obs.timing.snapshot = snapshot.seconds }
            }
            finished(i, obs)
        }
    }

    /// The booted, saved fabric the scenarios start from.
    enum SavedBase {
        case inQEMU(LiveGuest)
        case file(SavedGuest)
    }

    /// A saved guest whose agent waits for a plan.
    struct SavedGuest {
        var name: String
        var statePath: String
        /// The saved domain definition, with the paths to swap for each restore.
        var xml: String
        var consolePath: String
        var socketPath: String
        var inventory: Inventory
        /// Boot to `ready` plus the save.
        var seconds: Double
    }

    /// A short Unix socket path (sun_path holds 108 bytes; run directories can be longer).
    static func socketPath() -> String {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("isolab-\(getuid())").path
        try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        return dir + "/" + UUID().uuidString.prefix(12).lowercased() + ".sock"
    }

    /// The plan of a guest booted to be saved: inventory, `ready`, then a plan per scenario.
    static func servingPlan(_ req: RunRequest, runID: String) -> GuestPlan {
        var plan = PlanBuilder.plan(topology: req.topology, fabric: req.fabric, scenario: nil, runID: runID, stepTimeout: req.stepTimeout)
        plan.serve = true
        return plan
    }

    /// The boot cache's key for `req`'s saved boot, saved in QEMU and started by libvirt
    /// `libvirt` (``BootCache/key(_:plan:parameters:libvirt:)``, which sets every run's own
    /// path and name aside).
    public static func bootCacheKey(_ req: RunRequest, libvirt: String) -> String? {
        let files = RunFiles(directory: "/isolab-saved-boot")
        var parameters = req.domainParameters(name: "isolab-saved-boot", files: files)
        parameters.channelSocketPath = "/channel"
        parameters.vmstateDrivePath = files.vmstate
        return try? BootCache.key(req, plan: servingPlan(req, runID: ""), parameters: parameters, libvirt: libvirt)
    }

    /// This runner's key for `req`'s saved boot; nil without a boot cache or the in-QEMU store.
    func bootCacheKey(_ req: RunRequest) -> String? {
        guard bootCache != nil, snapshotStore == .inQEMU else { return nil }
        return Self.bootCacheKey(req, libvirt: connection.libvirtVersion())
    }

    /// Whether `cache` holds `req`'s saved boot, so that its fabric starts from it instead of
    /// booting (for the plan's estimate; nothing is marked used).
    public static func hasCachedBoot(_ req: RunRequest, in cache: BootCache, libvirt: String) -> Bool {
        bootCacheKey(req, libvirt: libvirt).map(cache.contains) ?? false
    }

    /// ``hasCachedBoot(_:in:libvirt:)`` with this runner's boot cache; false without one or
    /// the in-QEMU store.
    public func hasCachedBoot(_ req: RunRequest) -> Bool {
        guard let cache = bootCache, snapshotStore == .inQEMU else { return false }
        return Self.hasCachedBoot(req, in: cache, libvirt: connection.libvirtVersion())
    }

    /// Boots `req`'s fabric with a serving plan, waits for `ready`, saves the guest in `store`.
    func bootSnapshot(_ req: RunRequest, directory: String, store: SnapshotStore,
                      cancel: Cancellation) -> Result<SavedBase, SnapshotError> {
        let start = Date()
        let files = RunFiles(directory: directory)
        let plan = Self.servingPlan(req, runID: (directory as NSString).lastPathComponent)
        var snapshotReq = req
        snapshotReq.scenario = nil
        let name = Self.domainName(snapshotReq)
        let socket = Self.socketPath()
        let xml: String
        var parameters = req.domainParameters(name: name, files: files)
        parameters.channelSocketPath = socket
        do {
            if store == .inQEMU {
                parameters.vmstateDrivePath = files.vmstate
                try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
                try VMStateDrive.create(at: files.vmstate)
            }
            xml = try files.writeBoot(req, plan: plan, parameters: parameters)
        } catch {
            return .failure(.prepare("\(error)"))
        }
        let cacheKey = store == .inQEMU ? bootCacheKey(req) : nil
        if let cache = bootCache, let key = cacheKey, let entry = cache.lookup(key) {
            switch startFromCache(entry, req, directory: directory, parameters: parameters, started: start) {
            case .success(let live):
                return .success(.inQEMU(live))
            case .failure(let why):
                Logger(label: "isolab.vm").notice("\(req.topology.name) on \(req.kernelLabel): the saved boot in the boot cache did not start (\(why)); dropped it, booting")
                cache.evict(key)
                do {
                    try VMStateDrive.create(at: files.vmstate)
                    try xml.write(toFile: files.domainXML, atomically: true, encoding: .utf8)
                } catch {
                    return .failure(.prepare("\(error)"))
                }
            }
        }
        watch.expect(name)
        var keepWatching = false   // an in-QEMU snapshot's scenarios run under this name
        defer { if !keepWatching { watch.forget(name) } }
        let domain: LibvirtDomain
        do {
            domain = try connection.createDomain(xml: xml, paused: false, autodestroy: true)
        } catch {
            watch.failedToStart(name)
            return .failure(.cannotStart(Self.cannotStart(req, on: connection, error)))
        }
        let relay: ChannelRelay
        do {
            relay = try ChannelRelay(socketPath: socket, recordsPath: files.records)
        } catch {
            var end = VMEnd.finished
            tearDown(domain, name, &end)
            return .failure(.libvirt("\(error)"))
        }
        var stream = RecordStreamParser()
        var console = FileTail(path: files.console)
        var records = FileTail(path: files.records)
        defer { console.close(); records.close() }
        var watched = supervise(name, req: req, cancel: cancel, stream: &stream, console: &console, records: &records,
                                stopAtGoal: true, goal: { $0.records.last?.type == .ready })
        guard case .finished = watched.end, watched.goalAt != nil,
              let inventory = stream.records.last(where: { $0.type == .inventory })?.inventory else {
            relay.close(waiting: 0)
            tearDown(domain, name, &watched.end)
            try? FileManager.default.removeItem(atPath: socket)
            return .failure(.boot("\(watched.end)"))
        }
        if store == .inQEMU {
            let saved = saveInPlace(domain, request: req, directory: directory, xml: xml, parameters: parameters,
                                    inventory: inventory, relay: relay, started: start)
            guard case .success(let live) = saved else {
                relay.close(waiting: 0)
                var end = VMEnd.finished
                tearDown(domain, name, &end)
                try? FileManager.default.removeItem(atPath: socket)
                try? FileManager.default.removeItem(atPath: files.vmstate)
                return saved.map { .inQEMU($0) }
            }
            keepWatching = true   // until `finish(live)`
            if let cache = bootCache, let key = cacheKey { cache.store(key, vmstate: files.vmstate, inventory: inventory) }
            return .success(.inQEMU(live))
        }
        let statePath = directory + "/guest.save"
        do {
            try domain.save(to: statePath)
            // libvirt reports the save as a stop (reason: saved) on its event loop, maybe late:
            // take it now, or it could land on the first restored copy, which has the same name.
            _ = watch.waitStopped(name, seconds: 10)
            relay.close()
            try? FileManager.default.removeItem(atPath: socket)
            let saved = try connection.savedDomainXML(at: statePath)
            return .success(.file(SavedGuest(name: name, statePath: statePath, xml: saved, consolePath: files.console,
                                             socketPath: socket, inventory: inventory, seconds: Date().timeIntervalSince(start))))
        } catch {
            relay.close(waiting: 0)
            var end = VMEnd.finished
            tearDown(domain, name, &end)
            try? FileManager.default.removeItem(atPath: statePath)
            return .failure(.save("\(error)"))
        }
    }

    /// One scenario on a restored copy of `saved`.
    func restore(_ saved: SavedGuest, _ req: RunRequest, cancel: Cancellation) -> VMObservation {
        var run = RunBook(req)
        run.restoredFrom = saved.statePath
        run.connection = connection.uri
        let plan = run.plan, files = run.files
        func finish(_ end: VMEnd) -> VMObservation { run.finish(end) }
        guard !cancel.isCancelled else { return finish(.interrupted) }
        let socket = Self.socketPath()
        defer { try? FileManager.default.removeItem(atPath: socket) }
        let planLine: Data
        let xml = saved.xml.replacingOccurrences(of: saved.consolePath, with: files.console)
            .replacingOccurrences(of: saved.socketPath, with: socket)
        do {
            planLine = try files.writeRestore(plan: plan, xml: xml)
        } catch {
            return finish(.infrastructure("cannot prepare the run: \(error)"))
        }

        // The copy before this one has the same name: start only once its stop event is in, so
        // that no event of it can be taken for this copy's (libvirt's lookup is waited for by
        // `restoreDomain`).
        let free = watch.waitFree(saved.name, seconds: 10)
        watch.expect(saved.name)
        defer { watch.forget(saved.name) }
        let restored = Date()
        run.timing.prepare = restored.timeIntervalSince(run.start)
        let domain: LibvirtDomain
        let relay: ChannelRelay
        do {
            domain = try connection.restoreDomain(from: saved.statePath, xml: xml, name: saved.name)
        } catch {
            watch.failedToStart(saved.name)
            return finish(.infrastructure("libvirt could not restore the saved guest: \(error)"
                                          + (free ? "" : " (the copy before it had not reported its stop after 10 s)")))
        }
        do {
            relay = try ChannelRelay(socketPath: socket, recordsPath: files.records)
        } catch {
            var end = VMEnd.infrastructure("\(error)")
            tearDown(domain, saved.name, &end)
            return finish(end)
        }
        do {
            try relay.send(planLine)
        } catch {
            var end = VMEnd.infrastructure("\(error)")
            tearDown(domain, saved.name, &end)
            relay.close(waiting: 0)
            return finish(end)
        }
        // Where isolab cannot end the QEMU itself at `done` (a daemon's), a restored guest's own
        // poweroff is slow (5.10 falls back to its 5 s reset) and shows nothing the run needs:
        // destroy it right after.
        var quick = req
        quick.afterDoneGrace = min(req.afterDoneGrace, 0.05)
        let hold = SocketHold.adoptedQEMU(domain: saved.name)
        var watched = supervise(saved.name, req: quick, cancel: cancel, stream: &run.stream, console: &run.console,
                                records: &run.records, waitForStop: true, hold: hold)
        hold?.release()
        Self.account(&watched, &run, restoredAt: restored, saved: saved.inventory)
        let teardown = Date()
        tearDown(domain, saved.name, &watched.end)
        // Everything up to `done` (or the end) has been read: no need to wait for QEMU's EOF.
        relay.close(waiting: 0)
        run.timing.teardown = Date().timeIntervalSince(teardown)
        return finish(watched.end)
    }

    /// A restored run's restore and steps times, and its check: the restored guest must be the
    /// fabric as booted (its agent enumerates it again and must find the `saved` inventory).
    static func account(_ watched: inout Supervision, _ run: inout RunBook, restoredAt: Date, saved: Inventory) {
        if let f = watched.firstRecordAt {
            run.timing.restore = f.timeIntervalSince(restoredAt)
            run.timing.steps = (watched.goalAt ?? Date()).timeIntervalSince(f)
        }
        if case .finished = watched.end,
           let again = run.stream.records.first(where: { $0.type == .inventory })?.inventory, again != saved {
            watched.end = .infrastructure("the restored guest's inventory differs from the saved one: \(inventoryDifference(saved, again))")
        }
    }

    /// A short account of how two inventories differ, for the failure message.
    static func inventoryDifference(_ a: Inventory, _ b: Inventory) -> String {
        var parts: [String] = []
        if a.kernelRelease != b.kernelRelease || a.cmdline != b.cmdline { parts.append("kernel or command line") }
        if a.groups != b.groups { parts.append("groups") }
        let fa = Dictionary(a.functions.map { ($0.path, $0) }, uniquingKeysWith: { x, _ in x })
        for f in b.functions where fa[f.path] != f { parts.append("function \(f.path)") }
        if a.functions.count != b.functions.count { parts.append("\(a.functions.count) vs \(b.functions.count) functions") }
        return parts.isEmpty ? "other fields" : parts.prefix(5).joined(separator: ", ")
    }
}

/// Why the guest to be saved could not be made; the scenarios then boot one by one.
public enum SnapshotError: Error, CustomStringConvertible {
    case prepare(String)
    case libvirt(String)
    /// libvirt refused to start the guest: the text names libvirt's and QEMU's versions.
    case cannotStart(String)
    case boot(String)
    case save(String)

    /// The failure may come from where the guest was to be saved, not from the guest.
    var mayBeTheStore: Bool {
        switch self {
        case .prepare, .libvirt, .cannotStart, .save: return true
        case .boot: return false
        }
    }

    public var description: String {
        switch self {
        case .prepare(let s): return "cannot prepare the boot: \(s)"
        case .libvirt(let s): return "libvirt could not start the guest: \(s)"
        case .cannotStart(let s): return s
        case .boot(let s): return "the guest did not reach the agent's ready state: \(s)"
        case .save(let s): return "cannot save the guest: \(s)"
        }
    }
}
