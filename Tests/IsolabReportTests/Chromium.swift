import Foundation

/// Headless Chromium (Debian's `chromium`, installed by ci/bootstrap.sh) run on a local file:
/// its DOM after load, its console log, a screenshot.
struct Chromium {
    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    /// What one Chromium run printed.
    struct Output {
        var status: Int32
        var stdout: String
        var stderr: String
    }

    let executable: String

    /// Finds `chromium` (or `$ISOLAB_CHROMIUM`); a missing browser is an error, never a skip.
    static func locate() throws -> Chromium {
        if let path = ProcessInfo.processInfo.environment["ISOLAB_CHROMIUM"], !path.isEmpty {
            guard FileManager.default.isExecutableFile(atPath: path) else {
                throw Failure(description: "ISOLAB_CHROMIUM=\(path) is not an executable file")
            }
            return Chromium(executable: path)
        }
        let dirs = (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin").split(separator: ":").map(String.init) + ["/usr/bin"]
        for d in dirs {
            for name in ["chromium", "chromium-browser"] where FileManager.default.isExecutableFile(atPath: d + "/" + name) {
                return Chromium(executable: d + "/" + name)
            }
        }
        throw Failure(description: "chromium is not installed: the HTML report test needs it; run ci/bootstrap.sh as root (Debian package chromium)")
    }

    /// Runs headless Chromium on `url` with `arguments` added, in a fresh profile, killed after
    /// `timeout` seconds.
    func run(_ arguments: [String], url: URL, timeout: TimeInterval = 90) throws -> Output {
        let fm = FileManager.default
        let scratch = fm.temporaryDirectory.appendingPathComponent("isolab-chromium-\(UUID().uuidString.prefix(8))")
        try fm.createDirectory(at: scratch, withIntermediateDirectories: true)
        defer { try? fm.removeItem(at: scratch) }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: executable)
        p.arguments = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                       "--hide-scrollbars", "--user-data-dir=\(scratch.path)/profile",
                       "--enable-logging=stderr", "--v=0"] + arguments + [url.absoluteString]
        var env = ProcessInfo.processInfo.environment
        env["HOME"] = scratch.path   // no writes to the caller's home
        p.environment = env
        let out = scratch.appendingPathComponent("stdout"), err = scratch.appendingPathComponent("stderr")
        _ = fm.createFile(atPath: out.path, contents: nil)
        _ = fm.createFile(atPath: err.path, contents: nil)
        p.standardOutput = try FileHandle(forWritingTo: out)
        p.standardError = try FileHandle(forWritingTo: err)
        p.standardInput = FileHandle.nullDevice
        try p.run()
        let deadline = Date().addingTimeInterval(timeout)
        while p.isRunning && Date() < deadline { Thread.sleep(forTimeInterval: 0.05) }
        if p.isRunning {
            kill(p.processIdentifier, SIGKILL)
            p.waitUntilExit()
            throw Failure(description: "chromium did not finish within \(Int(timeout)) s: \(executable) \(p.arguments!.joined(separator: " "))")
        }
        p.waitUntilExit()
        return Output(status: p.terminationStatus,
                      stdout: (try? String(contentsOf: out, encoding: .utf8)) ?? "",
                      stderr: (try? String(contentsOf: err, encoding: .utf8)) ?? "")
    }

    /// Console lines (`[…:INFO:CONSOLE:12] "…", source: …`) that report a page error: uncaught
    /// exceptions, `console.error`, and the errors Blink logs for markup it cannot use (an SVG
    /// attribute it cannot parse, say).
    static func pageErrors(_ stderr: String) -> [String] {
        stderr.split(separator: "\n").map(String.init).filter { line in
            line.contains("CONSOLE") && (line.contains("Uncaught") || line.contains("Error") || line.contains(":ERROR:"))
        }
    }
}
