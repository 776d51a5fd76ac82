import Foundation

/// Seconds that count toward a deadline on a loaded host: wall seconds divided by how
/// overcommitted the CPUs are (runnable tasks per core), never by more than `cap`. A guest that
/// is slow because the host is busy gets more wall time; a guest that hangs still hangs, after
/// at most `cap` times its deadline (issue 24: slow observations, not false hangs).
public struct LoadScaledClock: Sendable {
    /// At most this many wall seconds count as one.
    public var cap: Double
    public private(set) var elapsed: Double = 0
    /// Wall seconds since the start.
    public private(set) var wall: Double = 0
    /// The highest overcommit seen.
    public private(set) var peak: Double = 1
    private var last: Date

    public init(start: Date = Date(), cap: Double = 4) {
        last = start
        self.cap = cap
    }

    /// Counts the time since the last tick at `overcommit` runnable tasks per core.
    public mutating func tick(_ now: Date = Date(), overcommit: Double) {
        let dt = max(0, now.timeIntervalSince(last))
        last = now
        let f = min(cap, max(1, overcommit))
        peak = max(peak, f)
        wall += dt
        elapsed += dt / f
    }

    /// Starts counting again from `now`.
    public mutating func reset(_ now: Date = Date()) {
        last = now; elapsed = 0; wall = 0; peak = 1
    }

    /// `150 s`, or `150 s (212 s wall, up to 1.8 runnable tasks per core)` when load stretched it.
    public func describe(_ deadline: Double) -> String {
        wall > deadline + 0.5
            ? String(format: "%d s (load-scaled: %.0f s wall, up to %.1f runnable tasks per core)", Int(deadline), wall, peak)
            : "\(Int(deadline)) s"
    }
}

/// The host's CPU overcommit: runnable tasks (`procs_running` of /proc/stat, this process's
/// reading thread not counted) per online core, sampled at most twice a second.
public final class HostLoad: @unchecked Sendable {
    public static let shared = HostLoad()
    private let lock = NSLock()
    private var sampledAt = Date.distantPast
    private var value = 1.0
    private let cores = Double(max(1, ProcessInfo.processInfo.activeProcessorCount))

    public func overcommit(_ now: Date = Date()) -> Double {
        lock.lock(); defer { lock.unlock() }
        if now.timeIntervalSince(sampledAt) >= 0.5 {
            sampledAt = now
            if let data = FileManager.default.contents(atPath: "/proc/stat"),
               let running = Self.procsRunning(String(decoding: data, as: UTF8.self)) {
                value = Double(max(0, running - 1)) / cores
            }
        }
        return value
    }

    /// `procs_running N` of a /proc/stat text.
    static func procsRunning(_ stat: String) -> Int? {
        for line in stat.split(separator: "\n") where line.hasPrefix("procs_running ") {
            return Int(line.dropFirst("procs_running ".count).trimmingCharacters(in: .whitespaces))
        }
        return nil
    }
}
