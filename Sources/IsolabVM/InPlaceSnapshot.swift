import Foundation
import Logging
import IsolabImages
import IsolabLibvirt
import IsolabProtocol

/// Where snapshot mode keeps the saved guest.
public enum SnapshotStore: String, Sendable {
    /// In the guest's own QEMU, as an internal snapshot in a scratch qcow2 drive the guest
    /// cannot see (HMP `savevm`): each scenario puts the same QEMU back into it (`loadvm`: a
    /// machine reset, then the saved RAM and devices) and nothing is started again. A QEMU that
    /// ended (a guest that powered off or reset) is started again from the snapshot (`-loadvm`).
    /// Needs QEMU to open a file isolab made, so the embedded driver's (the default there).
    case inQEMU = "in-qemu"
    /// In a state file (`virDomainSave`); each scenario restores a new QEMU from it
    /// (`virDomainRestoreFlags`). Works on any connection (the default on a daemon's).
    case stateFile = "state-file"
}

extension GuestRunner {
    /// The internal snapshot's name in the vmstate drive.
    static let snapshotTag = "isolab-ready"

    /// A booted fabric whose agent waits for a plan, saved inside its running QEMU.
    final class LiveGuest {
        let request: RunRequest
        let directory: String
        /// The boot's domain XML (each run keeps a copy of it).
        let xml: String
        /// The parameters of the QEMU that runs now (the boot's, then a start from the snapshot's).
        var parameters: DomainParameters
        let inventory: Inventory
        /// Boot to `ready` plus the `savevm`.
        let seconds: Double
        var domain: LibvirtDomain
        var relay: ChannelRelay
        /// QEMUs started so far (1: the boot's).
        var starts = 1
        /// The guest is still where `savevm` left it (it ran on, its agent waiting for a plan):
        /// the first scenario needs no `loadvm`.
        var untouched = true
        /// The boot cache's key when the guest was started from it, not booted.
        var fromCache: String?

        var name: String { parameters.name }
        var vmstatePath: String { parameters.vmstateDrivePath ?? "" }
        var socketPath: String { parameters.channelSocketPath ?? "" }
        var consolePath: String { parameters.consoleLogPath }

        init(request: RunRequest, directory: String, xml: String, parameters: DomainParameters,
             inventory: Inventory, seconds: Double, domain: LibvirtDomain, relay: ChannelRelay) {
            self.request = request
            self.directory = directory
            self.xml = xml
            self.parameters = parameters
            self.inventory = inventory
            self.seconds = seconds
            self.domain = domain
            self.relay = relay
        }
    }

    /// Saves the booted `domain`, whose agent said `ready`, as the internal snapshot.
    func saveInPlace(_ domain: LibvirtDomain, request: RunRequest, directory: String, xml: String,
                     parameters: DomainParameters, inventory: Inventory, relay: ChannelRelay,
                     started: Date) -> Result<LiveGuest, SnapshotError> {
        do {
            try domain.saveInternalSnapshot(tag: Self.snapshotTag)
        } catch {
            return .failure(.save("\(error)"))
        }
        return .success(LiveGuest(request: request, directory: directory, xml: xml, parameters: parameters,
                                  inventory: inventory, seconds: Date().timeIntervalSince(started), domain: domain,
                                  relay: relay))
    }

    /// Starts `req`'s saved boot from the boot cache: QEMU on a copy of `entry`'s vmstate drive,
    /// from its snapshot (`-loadvm`), under the boot's own files and a new name. The guest is
    /// then where `savevm` left it: its agent waits for a plan, so the first scenario needs no
    /// `loadvm`. Returns why it did not start; the caller boots instead.
    func startFromCache(_ entry: BootCache.Entry, _ req: RunRequest, directory: String,
                        parameters boot: DomainParameters, started: Date) -> Result<LiveGuest, SnapshotError> {
        let files = RunFiles(directory: directory)
        var parameters = boot
        parameters.loadSnapshotTag = Self.snapshotTag
        // The runs keep the boot's XML; QEMU gets the start's, which has no kernel to load.
        let xml: String, startXML: String
        do {
            try VMStateDrive.unpack(entry.packedPath, to: files.vmstate)
            xml = try DomainXML.render(req.topology, fabric: req.fabric, parameters: boot)
            startXML = try DomainXML.render(req.topology, fabric: req.fabric, parameters: parameters)
            try xml.write(toFile: files.domainXML, atomically: true, encoding: .utf8)
        } catch {
            return .failure(.prepare("\(error)"))
        }
        watch.expect(parameters.name)
        let domain: LibvirtDomain
        do {
            domain = try connection.createDomain(xml: startXML, paused: false, autodestroy: true)
        } catch {
            watch.failedToStart(parameters.name)
            watch.forget(parameters.name)
            return .failure(.cannotStart("\(error)"))
        }
        let relay: ChannelRelay
        do {
            relay = try ChannelRelay(socketPath: parameters.channelSocketPath ?? "", recordsPath: files.records)
        } catch {
            var end = VMEnd.finished
            tearDown(domain, parameters.name, &end)
            watch.forget(parameters.name)
            return .failure(.libvirt("\(error)"))
        }
        let live = LiveGuest(request: req, directory: directory, xml: xml, parameters: parameters, inventory: entry.inventory,
                             seconds: Date().timeIntervalSince(started), domain: domain, relay: relay)
        live.fromCache = entry.key
        return .success(live)
    }

    /// One scenario on `live`, put back into its snapshot first.
    func revert(_ live: LiveGuest, _ req: RunRequest, cancel: Cancellation) -> VMObservation {
        var run = RunBook(req)
        run.restoredFrom = live.vmstatePath
        run.connection = connection.uri
        let plan = run.plan, files = run.files
        guard !cancel.isCancelled else { return run.finish(.interrupted) }
        let planLine: Data
        do {
            planLine = try files.writeRestore(plan: plan, xml: live.xml)
        } catch {
            return run.finish(.infrastructure("cannot prepare the run: \(error)"))
        }
        let restoring = Date()
        run.timing.prepare = restoring.timeIntervalSince(run.start)
        if live.untouched, live.domain.isActive(), watch.stopped(live.name) == nil {
            live.untouched = false   // already the saved state: `loadvm` would only reset and reload it
        } else if let problem = putBack(live) {
            return run.finish(.infrastructure(problem))
        }
        // This run's console is what the shared console file gains from now on.
        let offset = (try? FileManager.default.attributesOfItem(atPath: live.consolePath)[.size] as? UInt64) ?? 0
        run.console = FileTail(path: live.consolePath, from: offset)
        do {
            try live.relay.redirect(to: files.records)
            try live.relay.send(planLine)
        } catch {
            return run.finish(.infrastructure("\(error)"))
        }
        var watched = supervise(live.name, req: req, cancel: cancel, stream: &run.stream, console: &run.console,
                                records: &run.records, stopAtGoal: true)
        Self.account(&watched, &run, restoredAt: restoring, saved: live.inventory)
        var obs = run.finish(watched.end)
        try? run.console.bytes.write(to: URL(fileURLWithPath: files.console))
        obs.consolePath = files.console
        return obs
    }

    /// Puts `live` back into its snapshot: `loadvm` in its QEMU, or, when that QEMU has ended
    /// or refuses, a new QEMU started from the snapshot. Returns why neither worked.
    func putBack(_ live: LiveGuest) -> String? {
        if live.domain.isActive(), watch.stopped(live.name) == nil {
            do {
                try live.domain.loadInternalSnapshot(tag: Self.snapshotTag)
                return nil
            } catch {
                Logger(label: "isolab.vm").warning("\(live.name): \(error); starting it again from its snapshot")
            }
        }
        return startAgain(live)
    }

    /// Ends `live`'s QEMU if it still runs and starts a new one from the snapshot, with a new
    /// console file and channel socket.
    func startAgain(_ live: LiveGuest) -> String? {
        end(live)
        live.relay.close(waiting: 0)
        try? FileManager.default.removeItem(atPath: live.socketPath)
        live.starts += 1
        var parameters = live.parameters
        parameters.consoleLogPath = "\(live.directory)/console-\(live.starts).log"
        parameters.channelSocketPath = Self.socketPath()
        parameters.loadSnapshotTag = Self.snapshotTag
        _ = FileManager.default.createFile(atPath: parameters.consoleLogPath, contents: nil)
        let xml: String
        do {
            xml = try DomainXML.render(live.request.topology, fabric: live.request.fabric, parameters: parameters)
        } catch {
            return "cannot start the guest again from its snapshot: \(error)"
        }
        watch.forget(live.name)
        watch.expect(live.name)
        do {
            live.domain = try connection.createDomain(xml: xml, paused: false, autodestroy: true)
        } catch {
            watch.failedToStart(live.name)
            return "cannot start the guest again from its snapshot: \(error)"
        }
        do {
            live.parameters = parameters
            live.relay = try ChannelRelay(socketPath: live.socketPath, recordsPath: "\(live.directory)/records.jsonl")
        } catch {
            return "cannot start the guest again from its snapshot: \(error)"
        }
        return nil
    }

    /// Ends `live`'s QEMU: killed and reaped here when it is this process's (libvirt's own
    /// destroy waits 200 ms for the process it finds a zombie), else destroyed through libvirt.
    /// Returns once libvirt has dropped the domain and its stop event is in (at most 10 s), as
    /// `startAgain`'s new QEMU of the same name needs: a QEMU that ended on its own (killed,
    /// crashed) can leave libvirt seconds behind ("domain … already exists"). (The watch
    /// attributes a late stop event to the instance it belongs to in any case.)
    func end(_ live: LiveGuest) {
        if live.domain.isActive(), ChildReaper.endAdoptedQEMU(domain: live.name, holding: SocketHold.adoptedQEMU(domain: live.name)) {
            _ = watch.waitStopped(live.name, seconds: 2)
        }
        var end = VMEnd.finished
        tearDown(live.domain, live.name, &end)
        let until = Date().addingTimeInterval(10)
        _ = watch.waitStopped(live.name, seconds: 10)
        while (try? connection.domain(named: live.name)) != nil, Date() < until { Thread.sleep(forTimeInterval: 0.01) }
    }

    /// Ends `live` for good: its QEMU, channel and scratch files.
    func finish(_ live: LiveGuest) {
        end(live)
        watch.forget(live.name)
        live.relay.close(waiting: 0)
        try? FileManager.default.removeItem(atPath: live.socketPath)
        try? FileManager.default.removeItem(atPath: live.vmstatePath)
    }
}
