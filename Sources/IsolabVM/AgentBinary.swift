import Foundation

/// Finds the statically linked `isolab-agent` that guest images carry.
public enum AgentBinary {
    /// `$ISOLAB_AGENT`, else `.build-agent/release/isolab-agent` in the package that built the
    /// running executable (found by walking up from it), else in the current directory's package.
    public static func locate() throws -> String {
        let fm = FileManager.default
        if let env = ProcessInfo.processInfo.environment["ISOLAB_AGENT"] {
            guard fm.isExecutableFile(atPath: env) else { throw AgentBinaryError.notFound(env) }
            return env
        }
        var starts: [String] = [fm.currentDirectoryPath]
        if let exe = Bundle.main.executablePath { starts.insert((exe as NSString).deletingLastPathComponent, at: 0) }
        if let exe = try? fm.destinationOfSymbolicLink(atPath: "/proc/self/exe") {
            starts.insert((exe as NSString).deletingLastPathComponent, at: 0)
        }
        for start in starts {
            var dir = start
            while dir != "/" && !dir.isEmpty {
                let candidate = dir + "/.build-agent/release/isolab-agent"
                if fm.isExecutableFile(atPath: candidate) { return candidate }
                dir = (dir as NSString).deletingLastPathComponent
            }
        }
        throw AgentBinaryError.notFound(nil)
    }
}

public enum AgentBinaryError: Error, CustomStringConvertible {
    case notFound(String?)
    public var description: String {
        switch self {
        case .notFound(let p?): return "ISOLAB_AGENT=\(p) is not an executable file"
        case .notFound(nil):
            return "the guest agent is not built: run `ci/build-agent` (static build into .build-agent/release/isolab-agent) or set ISOLAB_AGENT"
        }
    }
}
