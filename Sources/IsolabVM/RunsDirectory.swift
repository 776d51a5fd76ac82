import Foundation

/// Where runs keep their console, records, plan and domain XML:
/// `$XDG_STATE_HOME/isolab/runs` (default `~/.local/state/isolab/runs`), newest 200 kept.
public enum RunsDirectory {
    public static func root() -> String {
        let env = ProcessInfo.processInfo.environment
        if let dir = env["ISOLAB_RUNS_DIR"], !dir.isEmpty { return dir }
        let state = env["XDG_STATE_HOME"].flatMap { $0.isEmpty ? nil : $0 }
            ?? (NSHomeDirectory() + "/.local/state")
        return state + "/isolab/runs"
    }

    /// A new, unique run directory path under `root` (created by the runner).
    public static func new(in root: String, label: String) -> String {
        let stamp = ISO8601DateFormatter().string(from: Date())
            .replacingOccurrences(of: ":", with: "").replacingOccurrences(of: "-", with: "")
        let safe = String(label.map { $0.isLetter || $0.isNumber || $0 == "-" || $0 == "." ? $0 : "_" }.prefix(80))
        return "\(root)/\(stamp)-\(safe)-\(UUID().uuidString.prefix(6).lowercased())"
    }

    /// Removes all but the newest `keep` run directories.
    public static func prune(_ root: String, keep: Int = 200) {
        let fm = FileManager.default
        guard let names = try? fm.contentsOfDirectory(atPath: root), names.count > keep else { return }
        for name in names.sorted().dropLast(keep) { try? fm.removeItem(atPath: root + "/" + name) }
    }
}
