import Foundation
import IsolabImages
import IsolabLibvirt
import IsolabProtocol
import Logging

/// A guest on a host that shares no files with isolab: its kernel and initramfs are volumes in
/// the host's pool (``ImageShipping``), its serial ports are ptys there, read and written
/// through libvirt, and its plan goes over the channel instead of inside the initramfs (so the
/// image's initramfs, uploaded once, serves every run). Locally the run keeps the same files
/// as any other: console, records, plan and domain XML.
extension GuestRunner {
    func runShipped(_ req: RunRequest, shipping: ImageShipping, cancel: Cancellation) -> VMObservation {
        var run = RunBook(req)
        run.connection = connection.uri
        var plan = run.plan
        let files = run.files
        // The agent leaves the guest up after `done` and the host ends it: its last records
        // would otherwise race QEMU's exit through the pty and libvirt's stream, and be lost.
        plan.hostEndsGuest = true
        func finish(_ end: VMEnd) -> VMObservation { run.finish(end) }

        // Files: the plan (sent on the channel), the boot files on the host, the domain XML.
        let name = Self.domainName(req)
        let xml: String, planLine: Data
        do {
            try files.prepare()
            planLine = try JSONEncoder().encode(plan)
            try planLine.write(to: URL(fileURLWithPath: files.plan))
            var initramfs = req.image.initramfsPath
            if !req.programs.isEmpty {
                // The selftest programs ride in the initramfs (named by content on the host, so
                // runs with the same programs share one volume).
                try req.image.initramfs(appending: [:], executables: req.initramfsPrograms, to: files.initramfs)
                initramfs = files.initramfs
            }
            var parameters = req.domainParameters(name: name, files: files)
            parameters.kernelPath = try shipping.ship(req.bootKernel.path)
            parameters.initrdPath = try shipping.ship(initramfs)
            parameters.serialsOverLibvirt = true
            xml = try DomainXML.render(req.topology, fabric: req.fabric, parameters: parameters)
            try xml.write(toFile: files.domainXML, atomically: true, encoding: .utf8)
        } catch {
            return finish(.infrastructure("cannot prepare the run: \(error)"))
        }
        try? FileManager.default.removeItem(atPath: files.initramfs)
        guard !cancel.isCancelled else { return finish(.interrupted) }

        // Create paused: a pty drops what the guest writes while nobody holds it.
        let created = Date()
        let domain: LibvirtDomain
        switch start(name, xml: xml, req, &run, paused: true) {
        case .success(let d): domain = d
        case .failure(let refused): return finish(refused.end)
        }
        defer { watch.forget(name) }
        let console: SerialPump, channel: SerialPump
        do {
            console = try SerialPump(domain.openConsole("serial0"), into: files.console)
            channel = try SerialPump(domain.openConsole("serial1"), into: files.records, handingOver: planLine)
            // QEMU 7.2's pty backend drops what the guest writes until it notices the port is
            // held, which it checks once a second (char-pty.c's reconnect timer; QEMU 8.1 also
            // checks on every write): the wait keeps the console whole from the first line.
            // (A lost `ready` or plan is the handover's to retry, see PlanHandover.)
            Thread.sleep(forTimeInterval: Self.ptyConnectSeconds)
            try domain.resume()
        } catch {
            var end = VMEnd.infrastructure("cannot attach to the guest's serial ports through libvirt: \(error)")
            tearDown(domain, name, &end)
            return finish(end)
        }
        run.timing.create = Date().timeIntervalSince(created)

        let running = Date()
        var quick = req
        quick.afterDoneGrace = min(req.afterDoneGrace, 0.05)   // nothing comes after `done`
        var watched = supervise(name, req: quick, cancel: cancel, stream: &run.stream, console: &run.console, records: &run.records)
        if let f = watched.firstRecordAt {
            run.timing.boot = f.timeIntervalSince(running)
            run.timing.steps = (watched.goalAt ?? Date()).timeIntervalSince(f)
        }
        let teardown = Date()
        if !watched.endedHere { tearDown(domain, name, &watched.end) }
        // The ports' streams end with QEMU; what they still carry is read before the observation.
        console.wait(seconds: 2)
        channel.wait(seconds: 2)
        run.timing.teardown = Date().timeIntervalSince(teardown)
        return finish(watched.end)
    }
}

extension GuestRunner {
    /// How long a shipped guest stays paused after its ports are opened: longer than QEMU
    /// 7.2's one-second pty reconnect timer.
    static let ptyConnectSeconds = 1.1
}

/// Copies what a guest's serial port sends (a libvirt stream) into a local file, on its own
/// thread, until the stream ends. With `handingOver`, the agent's channel: the agent says
/// `ready` (again every 2 s while it has no plan), each `ready` is answered with the plan, and
/// the agent's own stream, from its first line that is not `ready`, goes into the file.
final class SerialPump: @unchecked Sendable {
    private let stream: LibvirtStream
    private let done = DispatchSemaphore(value: 0)

    init(_ stream: LibvirtStream, into path: String, handingOver plan: Data? = nil) throws {
        guard let file = FileHandle(forWritingAtPath: path) else {
            throw CocoaError(.fileNoSuchFile, userInfo: [NSFilePathErrorKey: path])
        }
        self.stream = stream
        let thread = Thread { [stream, done] in
            defer { try? file.close(); done.signal() }
            var handover = plan.map { PlanHandover(plan: $0) }
            while true {
                // Polled (LibvirtDomain.openConsole: a blocking read can lose a quiet guest's last
                // bytes): what the connection queued is taken every 5 ms.
                let received: Data?
                do { received = try stream.receive() } catch { break }
                guard let chunk = received else { usleep(5000); continue }
                if chunk.isEmpty { break }
                guard var h = handover else { file.write(chunk); continue }
                let (answers, rest) = h.feed(chunk)
                for _ in 0..<answers {
                    do { try stream.send(h.plan + Data("\n".utf8)) } catch { return }
                }
                h.answered += answers
                if answers > 0, h.answered > 1 {
                    Logger(label: "isolab.vm").notice("\((path as NSString).deletingLastPathComponent): the agent asked for its plan again (\(h.answered) times)")
                }
                handover = h
                if let rest {
                    file.write(rest)
                    handover = nil
                }
            }
            // The guest never started its stream: keep what it said, for the observation.
            if let held = handover?.held, !held.isEmpty { file.write(held) }
        }
        thread.start()
    }

    /// Waits up to `seconds` for the stream to end, then aborts it.
    func wait(seconds: Double) {
        if done.wait(timeout: .now() + seconds) == .timedOut {
            stream.end(abort: true)
            _ = done.wait(timeout: .now() + 1)
        }
    }
}

/// The host's side of the plan handover on the agent's channel (``SerialPump``): which lines
/// are the agent asking for its plan, and where its own stream begins.
struct PlanHandover {
    let plan: Data
    /// Bytes not yet a whole line.
    private(set) var held = Data()
    /// How often the plan was sent.
    var answered = 0

    init(plan: Data) { self.plan = plan }

    /// Takes the next bytes; returns how many `ready` lines they completed (each is answered
    /// with the plan) and, once a whole line that is not `ready` came, everything from that
    /// line on (the agent's stream; the handover is over).
    mutating func feed(_ chunk: Data) -> (answers: Int, rest: Data?) {
        held.append(chunk)
        var answers = 0
        while let nl = held.firstIndex(of: UInt8(ascii: "\n")) {
            let line = held[held.startIndex..<nl]
            if let r = try? JSONDecoder().decode(Record.self, from: line), r.type == .ready {
                answers += 1
                held = Data(held[(nl + 1)...])
            } else {
                return (answers, held)
            }
        }
        return (answers, nil)
    }
}
