#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// What one guest run showed, as the host assembles it from the record stream, the kernel
/// console and what happened to the VM. This is the observation verdicts are judged on.
public struct VMObservation: Codable, Equatable, Sendable {
    /// How the VM's run ended.
    public enum Outcome: String, Codable, Sendable {
        /// The agent sent `done` (steps may still have failed or crashed inside the guest).
        case completed
        /// The guest kernel died (panic, or BUG/Oops with the agent gone); `crashLines` show it.
        case crashed
        /// The deadline passed; the domain was destroyed.
        case hung
        /// Not the guest's fault: QEMU died under it, libvirt failed, the stream was garbage.
        case infrastructure
        /// isolab was interrupted (SIGINT/SIGTERM) and destroyed the domain.
        case interrupted
    }

    public var topology: String
    /// The kernel catalog id (`6.1`) or a developer kernel's label.
    public var kernel: String
    public var iommu: String
    /// nil: an inventory-only boot.
    public var scenario: String?
    public var outcome: Outcome
    /// One line saying what went wrong, for every outcome but `completed`.
    public var problem: String?
    /// Console lines that show a kernel crash (BUG, Oops, panic), with a little context.
    public var crashLines: [String]
    /// The last console lines (kept for every outcome but `completed`).
    public var consoleTail: [String]
    public var inventory: Inventory?
    /// One record per plan step, in order. Steps the agent never reported are filled in by the
    /// host: the step in flight as `crash` or `timed-out`, the rest `not-run`.
    public var steps: [StepRecord]
    /// True when the record stream ended with a valid `done`.
    public var streamComplete: Bool
    public var timing: Timing
    /// Where the whole console and record stream were kept.
    public var consolePath: String?
    /// The libvirt connection that ran the guest (several `--connect` URIs spread a matrix).
    public var connection: String?
    /// The connection this guest first ran on, lost before it finished: the guest ran again on
    /// `connection`.
    public var rerunAfterLosing: String?
    /// Snapshot mode: the saved guest state this run was restored from (nil: a fresh boot).
    public var restoredFrom: String?
    /// Snapshot mode: the boot cache entry (its key) the saved guest was started from instead
    /// of being booted in this run (nil: booted here).
    public var bootCache: String?
    public var recordsPath: String?
    /// How the host started the guest kernel (nil in observations written before isolab recorded it).
    public var boot: BootRecord?

    public init(topology: String, kernel: String, iommu: String, scenario: String?, outcome: Outcome,
                problem: String? = nil, crashLines: [String] = [], consoleTail: [String] = [],
                inventory: Inventory? = nil, steps: [StepRecord] = [], streamComplete: Bool = false,
                timing: Timing = Timing(), consolePath: String? = nil, recordsPath: String? = nil) {
        self.topology = topology
        self.kernel = kernel
        self.iommu = iommu
        self.scenario = scenario
        self.outcome = outcome
        self.problem = problem
        self.crashLines = crashLines
        self.consoleTail = consoleTail
        self.inventory = inventory
        self.steps = steps
        self.streamComplete = streamComplete
        self.timing = timing
        self.consolePath = consolePath
        self.recordsPath = recordsPath
    }
}

/// How the guest kernel was started, as the host chose it.
public struct BootRecord: Codable, Equatable, Sendable {
    /// The kernel file given to QEMU (`…/vmlinux` or `…/bzImage`).
    public var kernel: String
    /// `pvh` (the ELF vmlinux entered at its PVH entry) or `bzimage` (the Linux boot protocol).
    public var entry: String
    /// The boot path asked for (`--boot`); differs from `entry` after a fallback.
    public var requested: String
    /// Why `entry` is not `requested` (nil when it is).
    public var fallback: String?
    /// The firmware QEMU ran before the kernel (`seabios`: libvirt's q35 default, no `<loader>`).
    public var firmware: String
    /// The guest's clock: nil, the host's (TCG's default); `icount` (`--clock icount`), counted
    /// in executed instructions and jumping to the next timer whenever the guest idles
    /// (`-icount shift=auto,sleep=off`).
    public var clock: String?

    public init(kernel: String, entry: String, requested: String, fallback: String? = nil, firmware: String,
                clock: String? = nil) {
        self.kernel = kernel
        self.entry = entry
        self.requested = requested
        self.fallback = fallback
        self.firmware = firmware
        self.clock = clock
    }
}

/// Where one guest's wall time went, in seconds.
public struct Timing: Codable, Equatable, Sendable {
    /// Writing the run's plan, initramfs and domain XML, before libvirt is asked for anything.
    public var prepare: Double
    /// Domain creation (libvirt + QEMU start); 0 for a restored guest (see `restore`).
    public var create: Double
    /// From the domain running to the agent's first record (0 for a restored guest: its boot
    /// is the snapshot's, counted once in `snapshot`).
    public var boot: Double
    /// From the first record to `done`.
    public var steps: Double
    /// From `done` (or the end) to the domain gone.
    public var teardown: Double
    public var total: Double
    /// Snapshot mode, on the first scenario of a fabric only: booting the guest that is saved
    /// (create, boot to `ready`) and saving it. Not part of `total`, which is this run's own.
    public var snapshot: Double
    /// Snapshot mode: restoring the saved guest (libvirt + QEMU start, state load) until the
    /// agent's first record.
    public var restore: Double

    /// The VM time this run accounts for: its own, plus the saved boot it carries (`snapshot`).
    public var vmSeconds: Double { total + snapshot }

    public init(prepare: Double = 0, create: Double = 0, boot: Double = 0, steps: Double = 0, teardown: Double = 0,
                total: Double = 0, snapshot: Double = 0, restore: Double = 0) {
        self.prepare = prepare
        self.create = create
        self.boot = boot
        self.steps = steps
        self.teardown = teardown
        self.total = total
        self.snapshot = snapshot
        self.restore = restore
    }

    enum CodingKeys: String, CodingKey { case prepare, create, boot, steps, teardown, total, snapshot, restore }

    /// Results written before these fields have no `prepare`, `snapshot` and `restore`: they read as 0.
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        prepare = try c.decodeIfPresent(Double.self, forKey: .prepare) ?? 0
        create = try c.decode(Double.self, forKey: .create)
        boot = try c.decode(Double.self, forKey: .boot)
        steps = try c.decode(Double.self, forKey: .steps)
        teardown = try c.decode(Double.self, forKey: .teardown)
        total = try c.decode(Double.self, forKey: .total)
        snapshot = try c.decodeIfPresent(Double.self, forKey: .snapshot) ?? 0
        restore = try c.decodeIfPresent(Double.self, forKey: .restore) ?? 0
    }
}
