import Foundation

/// Runs external tools (apt-get, dpkg-deb, depmod, xz, make, …) and captures their output.
///
/// Foundation starts each tool as the leader of a process group of its own, so a terminal's
/// Ctrl-C never reaches it, and a deadline or ``cancelAll()`` ends it with everything it
/// started (make's compilers, apt's methods) by signalling the group. A tool still running at
/// its deadline is killed and the call throws `commandTimedOut`.
public enum Shell {
    /// Seconds a tool may run: a kernel build gets hours, everything else ten minutes.
    static func deadline(for arguments: [String]) -> Double {
        arguments.contains { $0.hasPrefix("make") || $0.contains("exec make") } ? 4 * 3600 : 600
    }

    /// Ends every running tool and makes later calls throw `cancelled`: Ctrl-C during an image
    /// build. Entries under construction live in the cache's `tmp/` and are never published.
    public static func cancelAll() {
        running.lock.lock()
        running.cancelled = true
        let pids = running.pids
        running.lock.unlock()
        for pid in pids { kill(-pid, SIGTERM) }
    }

    /// Whether ``cancelAll()`` was called.
    public static var isCancelled: Bool {
        running.lock.lock(); defer { running.lock.unlock() }
        return running.cancelled
    }

    private final class Running: @unchecked Sendable {
        let lock = NSLock()
        var pids: Set<Int32> = []
        var cancelled = false
    }
    private static let running = Running()

    struct Result {
        var status: Int32
        var stdout: Data
        var stderr: Data
        var text: String { String(decoding: stdout, as: UTF8.self) }
        var errorText: String { String(decoding: stderr, as: UTF8.self) }
    }

    /// Runs `arguments[0]` (looked up in PATH) and waits. Never throws on a non-zero exit.
    static func run(_ arguments: [String], environment: [String: String]? = nil,
                    currentDirectory: String? = nil, stdoutTo file: String? = nil,
                    deadline: Double? = nil) throws -> Result {
        if isCancelled { throw ImagesError.cancelled(command: arguments.joined(separator: " ")) }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: try which(arguments[0]))
        process.arguments = Array(arguments.dropFirst())
        if let environment {
            process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        }
        if let currentDirectory { process.currentDirectoryURL = URL(fileURLWithPath: currentDirectory) }
        let outPipe = Pipe(), errPipe = Pipe()
        var outHandle: FileHandle?
        if let file {
            _ = FileManager.default.createFile(atPath: file, contents: nil)
            guard let h = FileHandle(forWritingAtPath: file) else {
                throw ImagesError.io(path: file, problem: "cannot open for writing")
            }
            outHandle = h
            process.standardOutput = h
        } else {
            process.standardOutput = outPipe
        }
        process.standardError = errPipe
        process.standardInput = FileHandle.nullDevice
        try process.run()
        let pid = process.processIdentifier
        running.lock.lock(); running.pids.insert(pid); let cancelledMeanwhile = running.cancelled; running.lock.unlock()
        if cancelledMeanwhile { kill(-pid, SIGTERM) }
        let limit = deadline ?? Self.deadline(for: arguments)
        let timedOut = Flag()
        let watchdog = DispatchWorkItem { timedOut.set(); kill(-pid, SIGKILL) }
        DispatchQueue.global().asyncAfter(deadline: .now() + limit, execute: watchdog)
        defer {
            watchdog.cancel()
            running.lock.lock(); running.pids.remove(pid); running.lock.unlock()
        }
        // Drain both pipes concurrently so a chatty tool cannot block on a full pipe.
        let out = Collected(), err = Collected()
        let group = DispatchGroup()
        if file == nil {
            group.enter()
            DispatchQueue.global().async { out.data = outPipe.fileHandleForReading.readDataToEndOfFile(); group.leave() }
        }
        group.enter()
        DispatchQueue.global().async { err.data = errPipe.fileHandleForReading.readDataToEndOfFile(); group.leave() }
        group.wait()
        process.waitUntilExit()
        try? outHandle?.close()
        let command = arguments.joined(separator: " ")
        if timedOut.isSet { throw ImagesError.commandTimedOut(command: command, seconds: limit) }
        if isCancelled, process.terminationReason == .uncaughtSignal || process.terminationStatus != 0 {
            throw ImagesError.cancelled(command: command)
        }
        return Result(status: process.terminationStatus, stdout: out.data, stderr: err.data)
    }

    /// Output of one pipe, written by one reader thread and read after it finished.
    private final class Collected: @unchecked Sendable { var data = Data() }

    /// Set once by the watchdog, read after the tool ended.
    private final class Flag: @unchecked Sendable {
        private let lock = NSLock()
        private var value = false
        func set() { lock.lock(); value = true; lock.unlock() }
        var isSet: Bool { lock.lock(); defer { lock.unlock() }; return value }
    }

    /// Runs and throws `ImagesError.commandFailed` on a non-zero exit.
    @discardableResult
    static func check(_ arguments: [String], environment: [String: String]? = nil,
                      currentDirectory: String? = nil, stdoutTo file: String? = nil) throws -> Result {
        let r = try run(arguments, environment: environment, currentDirectory: currentDirectory, stdoutTo: file)
        guard r.status == 0 else {
            throw ImagesError.commandFailed(command: arguments.joined(separator: " "), status: r.status,
                                            output: r.errorText + r.text)
        }
        return r
    }

    /// Tools and the Debian package that provides each.
    static let packages = [
        "apt-get": "apt", "apt-cache": "apt", "dpkg-deb": "dpkg", "depmod": "kmod",
        "xz": "xz-utils", "zstd": "zstd", "busybox": "busybox-static", "ldd": "libc-bin",
        "qemu-system-x86_64": "qemu-system-x86", "qemu-img": "qemu-utils", "timeout": "coreutils", "strip": "binutils",
    ]

    /// Full path of a tool from PATH (plus the sbin dirs, which a user's PATH may lack).
    static func which(_ tool: String) throws -> String {
        if tool.hasPrefix("/") { return tool }
        let path = (ProcessInfo.processInfo.environment["PATH"] ?? "") + ":/usr/sbin:/sbin:/usr/bin:/bin"
        for dir in path.split(separator: ":") {
            let candidate = "\(dir)/\(tool)"
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        throw ImagesError.toolMissing(tool: tool, package: packages[tool] ?? tool)
    }
}
