import Foundation
import IsolabLibvirt
import IsolabProtocol

/// `isolab run --interactive`: boots the fabric, runs the plan, then leaves the guest up with a
/// shell on its console, relayed between this terminal and QEMU's console socket. Ctrl-]
/// (or the guest powering off) ends the session; the domain is destroyed either way and the
/// console is kept whole in the run directory.
public struct InteractiveSession {
    /// The byte that ends the session from the keyboard (Ctrl-], as telnet and virsh use).
    public static let escape: UInt8 = 0x1d

    public var request: RunRequest
    public var connection: LibvirtConnection

    public init(request: RunRequest, connection: LibvirtConnection) {
        self.request = request
        self.connection = connection
    }

    /// Runs the session on `input`/`output` (file descriptors); returns what the agent reported.
    public func run(input: Int32 = 0, output: Int32 = 1, cancel: Cancellation = Cancellation()) throws -> VMObservation {
        var req = request
        req.extraKernelArguments.append("isolab.shell")
        let files = RunFiles(directory: req.directory)
        let socketPath = NSTemporaryDirectory() + "isolab-console-\(getpid())-\(UUID().uuidString.prefix(6)).sock"
        defer { unlink(socketPath) }
        let name = GuestRunner.domainName(req)
        let plan = PlanBuilder.plan(topology: req.topology, fabric: req.fabric, scenario: req.scenario,
                                    runID: (req.directory as NSString).lastPathComponent, stepTimeout: req.stepTimeout)
        var parameters = req.domainParameters(name: name, files: files)
        parameters.consoleSocketPath = socketPath
        let xml = try files.writeBoot(req, plan: plan, parameters: parameters)

        let domain = try connection.createDomain(xml: xml)
        defer { if domain.isActive() { try? domain.destroy() } }
        let sock = try Self.connect(socketPath, seconds: 10)
        defer { close(sock) }
        let log = FileHandle(forWritingAtPath: files.console)
        defer { try? log?.close() }

        var saved = termios()
        let raw = isatty(input) == 1 && tcgetattr(input, &saved) == 0
        if raw {
            var t = saved
            cfmakeraw(&t)
            tcsetattr(input, TCSANOW, &t)
        }
        defer { if raw { var t = saved; tcsetattr(input, TCSANOW, &t) } }
        Self.write(output, Array("isolab: \(req.topology.name) on \(req.kernelLabel) is up; Ctrl-] ends the session\r\n".utf8))

        var buffer = [UInt8](repeating: 0, count: 4096)
        var inputOpen = true
        relay: while !cancel.isCancelled {
            var fds = [pollfd(fd: sock, events: Int16(POLLIN), revents: 0),
                       pollfd(fd: inputOpen ? input : -1, events: Int16(POLLIN), revents: 0)]
            guard poll(&fds, 2, 200) >= 0 || errno == EINTR else { break }
            if fds[0].revents != 0 {
                let n = read(sock, &buffer, buffer.count)
                if n <= 0 { break relay }   // QEMU closed the console: the guest is gone
                let bytes = Array(buffer[0..<n])
                Self.write(output, bytes)
                log?.seekToEndOfFile()
                log?.write(Data(bytes))
            }
            if fds[1].revents != 0 {
                let n = read(input, &buffer, buffer.count)
                if n <= 0 { inputOpen = false; continue }
                let bytes = Array(buffer[0..<n])
                if let i = bytes.firstIndex(of: Self.escape) {
                    Self.write(sock, Array(bytes[..<i]))
                    break relay
                }
                Self.write(sock, bytes)
            }
        }
        if domain.isActive() { try? domain.destroy() }
        Self.write(output, Array("\r\nisolab: session over; the guest is destroyed (console: \(files.console))\r\n".utf8))

        var stream = RecordStreamParser()
        stream.feed(Array((try? Data(contentsOf: URL(fileURLWithPath: files.records))) ?? Data()))
        stream.finish()
        let console = (try? String(contentsOfFile: files.console, encoding: .utf8)) ?? ""
        var obs = ObservationAssembler(topology: req.topology.name, kernel: req.kernelLabel, iommu: req.topology.iommu.rawValue,
                                       scenario: req.scenario?.name, plan: plan)
            .assemble(stream: stream, console: console, end: .finished, timing: Timing())
        obs.consolePath = files.console
        obs.recordsPath = files.records
        obs.boot = req.bootRecord
        return obs
    }

    static func connect(_ path: String, seconds: Double) throws -> Int32 {
        let until = Date().addingTimeInterval(seconds)
        while true {
            let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
            var addr = sockaddr_un()
            addr.sun_family = sa_family_t(AF_UNIX)
            withUnsafeMutableBytes(of: &addr.sun_path) { raw in
                for (i, b) in path.utf8.prefix(raw.count - 1).enumerated() { raw[i] = b }
            }
            let ok = withUnsafePointer(to: &addr) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
            }
            if ok == 0 { return fd }
            close(fd)
            if Date() > until { throw InteractiveError.noConsole(path) }
            Thread.sleep(forTimeInterval: 0.05)
        }
    }

    static func write(_ fd: Int32, _ bytes: [UInt8]) {
        var offset = 0
        while offset < bytes.count {
            let n = bytes[offset...].withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
            if n <= 0 { if errno == EINTR { continue }; return }
            offset += n
        }
    }
}

public enum InteractiveError: Error, CustomStringConvertible {
    case noConsole(String)
    public var description: String {
        switch self {
        case .noConsole(let p): return "the guest's console socket \(p) never accepted a connection"
        }
    }
}
