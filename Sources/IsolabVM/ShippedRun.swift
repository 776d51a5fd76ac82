import Foundation
import IsolabImages
import IsolabLibvirt
import IsolabProtocol

/// A guest on a host that shares no files with isolab: its kernel and initramfs are volumes in
/// the host's pool (``ImageShipping``), its serial ports are ptys there, read and written
/// through libvirt, and its plan goes over the channel instead of inside the initramfs (so the
/// image's initramfs, uploaded once, serves every run). Locally the run keeps the same files
/// as any other: console, records, plan and domain XML.
extension GuestRunner {
    func runShipped(_ req: RunRequest, shipping: ImageShipping, cancel: Cancellation) -> VMObservation {
        var run = RunBook(req)
        run.connection = connection.uri
        let plan = run.plan, files = run.files
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
                let programs = Dictionary(uniqueKeysWithValues: req.programs.map { (String(GuestPlan.programsDirectory.dropFirst()) + "/" + $0.key, $0.value) })
                try req.image.initramfs(appending: [:], executables: programs, to: files.initramfs)
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
            try domain.resume()
        } catch {
            var end = VMEnd.infrastructure("cannot attach to the guest's serial ports through libvirt: \(error)")
            tearDown(domain, name, &end)
            return finish(end)
        }
        run.timing.create = Date().timeIntervalSince(created)

        let running = Date()
        var watched = supervise(name, req: req, cancel: cancel, stream: &run.stream, console: &run.console, records: &run.records)
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
        if case .finished = watched.end, !connection.isAlive {
            watched.end = .infrastructure("the connection to \(connection.uri) was lost")
        }
        return finish(watched.end)
    }
}

/// Copies what a guest's serial port sends (a libvirt stream) into a local file, on its own
/// thread, until the stream ends. With `handingOver`, the agent's channel: everything up to the
/// agent's first `ready` line is held back, then the plan is sent and the agent's new stream
/// is written from there on.
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
            var waiting = plan
            var held = Data()
            while let chunk = try? stream.receive(), !chunk.isEmpty {
                guard let line = waiting else { file.write(chunk); continue }
                held.append(chunk)
                guard let end = Self.readyLineEnd(held) else { continue }
                do { try stream.send(line + Data("\n".utf8)) } catch { break }
                waiting = nil
                file.write(held.suffix(from: end))
                held = Data()
            }
            // The guest never asked for its plan: keep what it said, for the observation.
            if !held.isEmpty { file.write(held) }
        }
        thread.start()
    }

    /// The offset just past the first complete line of `data` that is the agent's `ready` record.
    static func readyLineEnd(_ data: Data) -> Data.Index? {
        var start = data.startIndex
        while let nl = data[start...].firstIndex(of: UInt8(ascii: "\n")) {
            if let r = try? JSONDecoder().decode(Record.self, from: data[start..<nl]), r.type == .ready { return nl + 1 }
            start = nl + 1
        }
        return nil
    }

    /// Waits up to `seconds` for the stream to end, then aborts it.
    func wait(seconds: Double) {
        if done.wait(timeout: .now() + seconds) == .timedOut {
            stream.end(abort: true)
            _ = done.wait(timeout: .now() + 1)
        }
    }
}
