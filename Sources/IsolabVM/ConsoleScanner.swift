import IsolabProtocol

/// Reads a guest kernel console for signs that the kernel died or was wounded.
public enum ConsoleScanner {
    /// The crash lines of `console` with up to `context` lines after the first one, or [] when
    /// the console shows no crash.
    public static func crashLines(in console: String, context: Int = 12) -> [String] {
        let lines = console.split(separator: "\n", omittingEmptySubsequences: false).map {
            String($0.filter { $0 != "\r" })
        }
        guard let first = lines.firstIndex(where: isCrashLine) else { return [] }
        let end = min(lines.count, first + 1 + context)
        return Array(lines[first..<end])
    }

    public static func isCrashLine(_ line: String) -> Bool {
        KernelCrash.isCrashLine(line)
    }

    /// True when the console shows the kernel itself going down (not only a killed task).
    public static func showsPanic(_ console: String) -> Bool {
        console.contains("Kernel panic") || console.contains("Rebooting in")
    }

    /// The last `count` lines.
    public static func tail(_ console: String, count: Int = 40) -> [String] {
        var lines = console.split(separator: "\n", omittingEmptySubsequences: false).map {
            String($0.filter { $0 != "\r" })
        }
        while lines.last?.isEmpty == true { lines.removeLast() }
        return Array(lines.suffix(count))
    }
}
