import Foundation
import Logging

/// isolab's stderr: log lines (`isolab: …`) and, on a terminal, one live status line that a
/// log line never breaks (it is cleared, the line written, the status drawn again).
final class Terminal: @unchecked Sendable {
    static let shared = Terminal()
    private let lock = NSLock()
    private var status: String?
    /// Whether stderr is a terminal, where a live status line is drawn.
    let isLive = isatty(2) == 1

    /// One whole line.
    func line(_ text: String) {
        lock.lock(); defer { lock.unlock() }
        write((status == nil ? "" : "\r\u{1b}[K") + text + "\n" + (status ?? ""))
    }

    /// Replaces the live status line (terminals only); nil clears it.
    func setStatus(_ text: String?) {
        guard isLive else { return }
        lock.lock(); defer { lock.unlock() }
        status = text
        write("\r\u{1b}[K" + (text ?? ""))
    }

    private func write(_ s: String) { FileHandle.standardError.write(Data(s.utf8)) }
}

/// swift-log's handler for the CLI: every library's messages as `isolab: …` lines on stderr,
/// at the level `--quiet` (warnings and errors) or `--verbose` (debug) chose.
struct StderrLogHandler: LogHandler {
    var logLevel: Logger.Level
    var metadata: Logger.Metadata = [:]

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        Terminal.shared.line("isolab: " + event.message.description)
    }
}

/// `--quiet` and `--verbose`, which every command takes anywhere on its command line: they
/// set the level of the one log handler before the command runs.
enum Verbosity {
    static let quietFlags: Set<String> = ["--quiet", "-q"]
    static let verboseFlags: Set<String> = ["--verbose", "-v"]
    static let help = "Every command takes --quiet (-q: only warnings and errors on stderr) and --verbose (-v: debug messages too)."

    /// The arguments without the verbosity flags, and the level they ask for.
    static func extract(_ arguments: [String]) -> (arguments: [String], level: Logger.Level) {
        var level = Logger.Level.info
        var rest: [String] = []
        var passthrough = false
        for a in arguments {
            if passthrough || a == "--" { passthrough = true; rest.append(a); continue }
            if quietFlags.contains(a) { level = .warning } else if verboseFlags.contains(a) { level = .debug } else { rest.append(a) }
        }
        return (rest, level)
    }

    static func bootstrap(_ level: Logger.Level) {
        LoggingSystem.bootstrap { _ in StderrLogHandler(logLevel: level) }
    }
}

/// The CLI's own logger: progress and notes at `info`, what went wrong at `warning`.
let cliLogger = Logger(label: "isolab")
