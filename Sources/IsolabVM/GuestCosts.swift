import Foundation
import IsolabProtocol

/// What a fresh boot, a saved boot and a restore cost (wall seconds of one guest) for one kernel,
/// emulator and guest size: the scheduler's reason to save a fabric's boot or not.
public struct GuestCosts: Codable, Equatable, Sendable {
    /// Domain creation plus boot to the agent's first record.
    public var boot: Double
    /// Booting the guest that is saved, and saving it (``Timing/snapshot``).
    public var snapshot: Double
    /// Restoring a saved guest until the agent's first record.
    public var restore: Double
    /// A scenario's own steps, on average.
    public var steps: Double
    /// Starting a saved boot from the boot cache until the agent is ready; nil until a guest
    /// measured it (``defaultCachedStart`` then), and in books written before it was kept.
    public var cachedStart: Double?
    /// How many guests measured each figure (`boot`, `snapshot`, `restore`, `steps`); a figure
    /// no guest measured is ``typical``'s.
    public var samples: [String: Int]

    public init(boot: Double, snapshot: Double, restore: Double, steps: Double, samples: [String: Int] = [:]) {
        self.boot = boot; self.snapshot = snapshot; self.restore = restore; self.steps = steps; self.samples = samples
    }

    /// The default matrix on QEMU 7.2 under TCG, 2 cores (issue 18's figures): boots 3.6 s, saves
    /// 4.7 s on top of a boot, restores 0.5 s, steps about 1.1 s per scenario.
    public static let typical = GuestCosts(boot: 3.8, snapshot: 8.5, restore: 0.5, steps: 1.1)

    /// Whether one saved boot serving `scenarios` guests costs less guest time than booting
    /// each: `snapshot + n × restore < n × boot`.
    public func savesTime(scenarios n: Int) -> Bool {
        n >= 2 && snapshot + Double(n) * restore < Double(n) * boot
    }

    /// The expected guest seconds of `n` scenarios run from one saved boot (`saved`) or booted
    /// each; `cached`: the saved boot is in the boot cache, so it starts from there (about
    /// ``cachedStart``, else ``defaultCachedStart``) instead of a boot and a save.
    /// `stepSeconds`: the scenarios' own steps when known one by one (``CostBook``), else
    /// `n × steps`. Every scenario of a saved boot, the first one after a cached start
    /// included, pays a restore: its plan is handed over after a `loadvm`.
    public func expectedSeconds(scenarios n: Int, saved: Bool, cached: Bool = false, stepSeconds: Double? = nil) -> Double {
        let steps = stepSeconds ?? Double(n) * self.steps
        guard saved else { return Double(n) * boot + steps }
        return (cached ? cachedStart ?? Self.defaultCachedStart : snapshot) + Double(n) * restore + steps
    }

    /// Starting a saved boot from the boot cache (unpack, create, `-loadvm`): median 0.54 s on
    /// the default matrix's QEMU 7.2 half.
    public static let defaultCachedStart = 0.6
}

/// Measured ``GuestCosts`` per kernel, emulator and guest RAM, kept between runs (a JSON file
/// in isolab's cache); each new measurement moves the figures a quarter of the way. A
/// scenario's steps are also kept one by one: they differ far more between scenarios (edu's
/// DMA waits, a step the kernel blocks for its whole timeout) than between kernels.
public struct CostBook: Codable, Equatable, Sendable {
    public var entries: [String: GuestCosts] = [:]
    /// A scenario's step seconds under its book key (``scenarioKey(_:topology:scenario:)``),
    /// the last measurement weighed like all earlier ones together.
    public var scenarioSteps: [String: Double] = [:]

    public init() {}

    public init(from decoder: Decoder) throws {
        // A book written before `scenarioSteps` existed is still read whole.
        let c = try decoder.container(keyedBy: CodingKeys.self)
        entries = try c.decode([String: GuestCosts].self, forKey: .entries)
        scenarioSteps = try c.decodeIfPresent([String: Double].self, forKey: .scenarioSteps) ?? [:]
    }

    /// `6.1|host|512|in-qemu|switch-no-acs|p2p-blocked`: a scenario's own steps on one
    /// kernel, emulator, guest size and store.
    public static func scenarioKey(_ key: String, topology: String, scenario: String?) -> String {
        "\(key)|\(topology)|\(scenario ?? "-")"
    }

    /// `6.1|10.0|512|in-qemu`: what makes boots, saves and restores cost differently (the
    /// snapshot store: a state file on a daemon costs more than an in-QEMU snapshot).
    public static func key(kernel: String, emulator: String?, memoryMiB: Int, store: SnapshotStore) -> String {
        "\(kernel)|\(emulator ?? "host")|\(memoryMiB)|\(store.rawValue)"
    }

    public static func key(_ r: RunRequest, store: SnapshotStore) -> String {
        key(kernel: r.kernelLabel, emulator: r.emulator, memoryMiB: r.topology.memoryMiB, store: store)
    }

    /// The figures for a request's guests on a connection with `store`: measured, else
    /// ``GuestCosts/typical``; `steps` is this request's scenario's own where a guest measured it.
    public func costs(_ r: RunRequest, store: SnapshotStore) -> GuestCosts {
        let key = Self.key(r, store: store)
        var c = entries[key] ?? .typical
        if let own = scenarioSteps[Self.scenarioKey(key, topology: r.topology.name, scenario: r.scenario?.name)] { c.steps = own }
        return c
    }

    /// Folds finished guests, each under its book key (``key(_:store:)``), into the book: fresh
    /// boots give `boot`, the first guest of a saved boot `snapshot` (or `cachedStart`, when it
    /// started from the boot cache), restored ones `restore`;
    /// every completed guest its steps. Failed guests say nothing about costs and are left out.
    public mutating func record(keyed runs: [(key: String, observation: VMObservation)]) {
        for (k, o) in runs where o.outcome == .completed {
            var c = entries[k] ?? .typical
            /// `old` moved a quarter of the way to `new`, or `new` where no guest measured `name` yet.
            func moved(_ old: Double?, _ name: String, _ new: Double) -> Double {
                let n = c.samples[name, default: 0]
                c.samples[name] = n + 1
                guard n > 0, let old else { return new }
                return old * 0.75 + new * 0.25
            }
            func fold(_ figure: WritableKeyPath<GuestCosts, Double>, _ name: String, _ new: Double) {
                c[keyPath: figure] = moved(c[keyPath: figure], name, new)
            }
            let t = o.timing
            // A saved boot started from the boot cache cost no boot or save, but its own start.
            if t.snapshot > 0 {
                if o.bootCache == nil {
                    fold(\.snapshot, "snapshot", t.snapshot)
                } else {
                    c.cachedStart = moved(c.cachedStart, "cachedStart", t.snapshot)
                }
            }
            if o.restoredFrom != nil, t.restore > 0 { fold(\.restore, "restore", t.restore) }
            if o.restoredFrom == nil, t.snapshot == 0, t.boot > 0 { fold(\.boot, "boot", t.create + t.boot) }
            if t.steps > 0 {
                fold(\.steps, "steps", t.steps)
                let sk = Self.scenarioKey(k, topology: o.topology, scenario: o.scenario)
                scenarioSteps[sk] = scenarioSteps[sk].map { ($0 + t.steps) / 2 } ?? t.steps
            }
            entries[k] = c
        }
    }

    /// Reads the book at `path`; a missing or unreadable file is an empty book (costs are a
    /// hint: a bad file must never stop a run).
    public static func load(_ path: String) -> CostBook {
        guard let data = FileManager.default.contents(atPath: path),
              let book = try? JSONDecoder().decode(CostBook.self, from: data) else { return CostBook() }
        return book
    }

    /// Writes the book atomically; failures are ignored for the same reason.
    public func save(_ path: String) {
        let e = JSONEncoder()
        e.outputFormatting = [.prettyPrinted, .sortedKeys]
        guard let data = try? e.encode(self) else { return }
        try? FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try? data.write(to: URL(fileURLWithPath: path), options: .atomic)
    }
}
