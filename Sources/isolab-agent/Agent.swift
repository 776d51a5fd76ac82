#if canImport(Glibc)
import Glibc
#endif
import IsolabAgentCore
import IsolabProtocol

/// How a sysfs write or modprobe run in a child ended, as a step reports it.
enum ChildOutcome: Equatable {
    case ok
    case failed(Int32)
    /// Not finished at the step timeout: left behind.
    case blocked
    /// Killed by a signal (the kernel killed the task: BUG, oops).
    case killed(Int32)

    var result: String {
        switch self {
        case .ok: return "ok"
        case .failed(let e): return ErrnoName.name(e)
        case .blocked: return "blocked"
        case .killed: return "crash"
        }
    }

    var errno: Int? {
        if case .failed(let e) = self { return Int(e) }
        return nil
    }
}

/// One step's record while it is carried out.
struct StepDraft {
    var record: StepRecord

    init(_ step: PlanStep) { record = StepRecord(index: step.index, op: step.op, result: "ok") }

    mutating func set(_ outcome: ChildOutcome, _ detail: String? = nil) {
        record.result = outcome.result
        record.errno = outcome.errno
        if let detail { record.detail = detail }
    }

    mutating func fail(_ result: String, errno: Int32? = nil, _ detail: String) {
        record.result = result
        record.errno = errno.map(Int.init)
        record.detail = detail
    }

    /// Set by the first failed `substep`.
    var substepFailed = false

    /// Records a sub-step (`r` ≥ 0: ok, else -errno); the first failure becomes the step's result.
    mutating func substep(_ name: Substep, _ r: Int32, _ detail: String? = nil) {
        let ok = r >= 0
        record.substeps.append(SubstepRecord(name: name, result: ok ? "ok" : ErrnoName.name(r),
                                             errno: ok ? nil : Int(-r), detail: detail))
        guard !ok, !substepFailed else { return }
        substepFailed = true
        record.result = ErrnoName.name(r)
        record.errno = Int(-r)
        record.detail = "\(name.rawValue): \(Posix.errorText(-r))" + (detail.map { " (\($0))" } ?? "")
    }

    mutating func note(_ text: String) {
        record.detail = record.detail.map { "\($0); \(text)" } ?? text
    }
}

/// An inventory as reported, with the mutable state it was read with.
struct SavedInventory {
    var inventory: Inventory
    var state: [String]
    var busPaths: [Int: String]
}

/// Runs a plan: inventory, then each step in order, streaming records.
final class Agent {
    let plan: GuestPlan
    let channel: Channel
    let kmsg: KernelLogReader
    /// Plan node id → BDF (nodes the guest does not have are absent).
    var bdfOfNode: [String: String] = [:]
    var nodeOfBDF: [String: String] = [:]
    /// BDF → guest path, for fault attribution.
    var pathOfBDF: [String: String] = [:]
    /// Bus number → guest path of the bus (root bus `""`).
    var busPaths: [Int: String] = [:]
    var vfio = VFIOState()
    /// What the kernel said when it declared the last child blocked (``write(_:_:)``); nil when
    /// that child ended or ran into the step timeout.
    var blockedBy: String?
    /// Children still running after their step (blocked writes), with what they do.
    var leftBehind: [(child: RunningChild, what: String)] = []
    /// Kernel log lines seen outside any step (they go into the next step's record).
    var pendingLog: [String] = []
    /// Seconds the end of the current step waits for left-behind children (set by `vfio-close`).
    var leftBehindGrace = 0.0
    let timeout: Double

    /// The guest as it was saved (snapshot mode), for a restored copy's inventory.
    let saved: SavedInventory?

    init(plan: GuestPlan, channel: Channel, kmsg: KernelLogReader, saved: SavedInventory? = nil) {
        self.plan = plan
        self.saved = saved
        self.channel = channel
        self.kmsg = kmsg
        // A plan is input: NaN, negative or absurd timeouts must not trap a conversion.
        let t = plan.stepTimeoutSeconds
        timeout = t.isFinite && t > 0 ? min(max(t, 0.1), 3600) : 20
    }

    /// Loads the plan's preload modules and sends the inventory; learns the declared nodes' BDFs.
    /// A restored copy that loaded nothing and whose mutable state (``Sysfs/mutableState(of:)``)
    /// is the saved guest's sends the saved inventory: the rest is read-only hardware or kernel
    /// memory the restore put back, and reading it again is most of a restored scenario's
    /// start under TCG, whose translated code `loadvm` drops. Any difference reads it all.
    @discardableResult
    func reportInventory() -> Inventory {
        var preloadFailures: [String: String] = [:]
        var loadedNow = false, settle = false
        for module in plan.preload {
            // A restored copy finds its preload loaded already: modprobe would do nothing.
            if Posix.exists("/sys/module/\(module)") { continue }
            let outcome = modprobe(module)
            if outcome != .ok { preloadFailures[module] = describe(outcome, "modprobe \(module)") }
            loadedNow = loadedNow || outcome == .ok
            // A VFIO driver binds nothing it is not told to: no probes to wait for.
            settle = settle || (outcome == .ok && !module.hasPrefix("vfio"))
        }
        if settle { Sysfs.waitForProbesToSettle() }
        var inventory: Inventory
        if let saved, !loadedNow, preloadFailures.isEmpty, Sysfs.mutableState(of: saved.inventory) == saved.state {
            inventory = saved.inventory
            inventory.preloadFailures = preloadFailures
            busPaths = saved.busPaths
        } else {
            inventory = Sysfs.inventory(preloadFailures: preloadFailures)
            busPaths = Sysfs.busPaths(inventory.functions)
        }
        pendingLog = kmsg.drain()
        channel.send { Record(seq: $0, type: .inventory, inventory: inventory) }
        for f in inventory.functions { pathOfBDF[f.bdf] = f.path }
        let bdfOfPath = Dictionary(inventory.functions.map { ($0.path, $0.bdf) }, uniquingKeysWith: { a, _ in a })
        for node in plan.nodes {
            if let bdf = bdfOfPath[node.path] {
                bdfOfNode[node.id] = bdf
                nodeOfBDF[bdf] = node.id
            }
        }
        return inventory
    }

    /// What a restored copy needs of this guest's inventory, read now (before the save).
    func savedInventory(_ inventory: Inventory) -> SavedInventory {
        SavedInventory(inventory: inventory, state: Sysfs.mutableState(of: inventory), busPaths: busPaths)
    }

    /// The inventory, then every step of the plan with its record.
    func run() {
        reportInventory()
        var crashed: String?
        for step in plan.steps {
            channel.send { Record(seq: $0, type: .stepStart, index: step.index) }
            var draft = StepDraft(step)
            let started = ContinuousClock.now
            if let crashed {
                draft.fail("not-run", "an earlier step crashed the kernel: \(crashed)")
            } else {
                perform(step, &draft)
            }
            reapLeftBehind(&draft)
            let log = pendingLog + kmsg.drain()
            pendingLog = []
            draft.record.kernelLog = log
            if crashed == nil, let line = KernelCrash.find(in: log) {
                crashed = line
                draft.record.result = "crash"
                draft.record.errno = nil
                draft.record.detail = line
            } else if crashed == nil, draft.record.result == "crash" {
                // Killed by a signal with no crash line in the log: still a dead task.
                crashed = draft.record.detail ?? "a task was killed"
            }
            let elapsed = ContinuousClock.now - started
            draft.record.milliseconds = Int(elapsed.components.seconds * 1000 + elapsed.components.attoseconds / 1_000_000_000_000_000)
            let record = draft.record
            channel.send { Record(seq: $0, type: .step, step: record) }
        }
    }

    // MARK: - steps

    func perform(_ step: PlanStep, _ d: inout StepDraft) {
        if step.op == .loadDriver {
            guard let module = step.module ?? step.driver else { return d.fail("not-run", "load-driver names no module") }
            return loadDriver(module, options: step.options ?? [], &d)
        }
        if step.op == .selftest { return selftest(step, &d) }
        guard let id = step.device else { return d.fail("not-run", "the step names no device") }
        guard let bdf = bdfOfNode[id] else {
            let path = plan.nodes.first(where: { $0.id == id })?.path ?? "?"
            return d.fail("not-run", "\(id) (guest path \(path)) is not in the guest's inventory")
        }
        guard Posix.exists(Sysfs.device(bdf)) else {
            return d.fail("not-run", "\(id) (\(bdf)) no longer exists (an SR-IOV VF whose PF disabled its VFs)")
        }
        switch step.op {
        case .loadDriver: break
        case .bind:
            // The host resolves a bind without a driver to the model's default (PlanBuilder).
            guard let driver = step.driver else { return d.fail("not-run", "the plan's bind of \(id) names no driver") }
            bind(bdf, driver: driver, &d)
        case .unbind: unbind(bdf, &d)
        case .vfioBind: vfioBind(bdf, &d)
        case .vfioOpen: step.via == "cdev" ? vfioCdevOpen(bdf, &d) : vfioOpen(bdf, vfToken: step.vfToken, &d)
        case .vfioClose: vfioClose(bdf, &d)
        case .dma: dma(step, from: bdf, &d)
        case .sriov: sriov(bdf, vfs: step.vfs ?? 0, online: step.online ?? false, &d)
        case .vfToken: setVFToken(bdf, step.vfToken ?? "", &d)
        case .selftest: selftest(step, &d)
        }
    }

    /// Drivers of the declared nodes now.
    func declaredDrivers() -> [String: String?] {
        Dictionary(uniqueKeysWithValues: bdfOfNode.map { ($0.key, Sysfs.driver(of: $0.value)) })
    }

    func newlyBound(since before: [String: String?]) -> [String] {
        let after = declaredDrivers()
        return plan.nodes.map(\.id).filter { id in
            guard let now = after[id] ?? nil else { return false }
            return (before[id] ?? nil) != now
        }
    }

    func loadDriver(_ module: String, options: [String], _ d: inout StepDraft) {
        _ = Posix.write("/sys/bus/pci/drivers_autoprobe", "1")
        let before = declaredDrivers()
        let outcome = modprobe(module, options: options)
        d.set(outcome, describe(outcome, (["modprobe", module] + options).joined(separator: " ")))
        d.record.bound = newlyBound(since: before)
        d.record.refused = stillUnbound(matching: module, since: before)
    }

    /// Declared devices that had no driver before a `load-driver`, still have none, and that
    /// the module's driver matches: by `driver_override` naming it, or (without an override)
    /// by its id table as `modules.alias` lists it (`pci_match_device()`). Its registration
    /// probed them, and auto-probing reports no failure.
    func stillUnbound(matching module: String, since before: [String: String?]) -> [String] {
        let aliases = ModuleAliases(text: Posix.text("/lib/modules/\(Posix.kernelRelease())/modules.alias") ?? "")
        let driver = String(ModuleAliases.moduleName(module).map { $0 == "_" ? "-" : $0 })
        let after = declaredDrivers()
        return plan.nodes.map(\.id).filter { id in
            guard let bdf = bdfOfNode[id], (before[id] ?? nil) == nil, (after[id] ?? nil) == nil else { return false }
            let override = Posix.text(Sysfs.device(bdf) + "/driver_override")
            if let o = override, !o.isEmpty, o != "(null)" { return o == driver || ModuleAliases.moduleName(o) == ModuleAliases.moduleName(module) }
            guard let modalias = Posix.text(Sysfs.device(bdf) + "/modalias") else { return false }
            return aliases.matches(module: module, modalias: modalias)
        }
    }

    /// Loads a driver's module with auto-probing off (so it binds nothing on its own), unless
    /// the driver is registered already. Nil on success, else what went wrong.
    func ensureDriver(_ driver: String) -> (ChildOutcome, String)? {
        if Posix.exists("/sys/bus/pci/drivers/\(driver)") { return nil }
        let module = Drivers.module(forDriver: driver)
        _ = Posix.write("/sys/bus/pci/drivers_autoprobe", "0")
        let outcome = modprobe(module)
        _ = Posix.write("/sys/bus/pci/drivers_autoprobe", "1")
        if outcome != .ok { return (outcome, describe(outcome, "modprobe \(module)")) }
        if !Posix.exists("/sys/bus/pci/drivers/\(driver)") {
            return (.failed(ENOENT), "modprobe \(module) succeeded but /sys/bus/pci/drivers/\(driver) does not exist")
        }
        return nil
    }

    func bind(_ bdf: String, driver: String, _ d: inout StepDraft) {
        if let (outcome, why) = ensureDriver(driver) { return d.set(outcome, why) }
        let before = declaredDrivers()
        let override = write(Sysfs.device(bdf) + "/driver_override", driver)
        guard override == .ok else { return d.set(override, describe(override, "write \(driver) to \(bdf)/driver_override")) }
        let outcome = write("/sys/bus/pci/drivers/\(driver)/bind", bdf)
        d.set(outcome, describe(outcome, "write \(bdf) to drivers/\(driver)/bind"))
        d.record.bound = newlyBound(since: before)
    }

    func unbind(_ bdf: String, _ d: inout StepDraft) {
        guard let current = Sysfs.driver(of: bdf) else {
            return d.fail("ENOENT", errno: ENOENT, "\(bdf) has no driver: no driver/unbind file")
        }
        let outcome = write("/sys/bus/pci/drivers/\(current)/unbind", bdf)
        d.set(outcome, describe(outcome, "write \(bdf) to drivers/\(current)/unbind"))
    }

    func vfioBind(_ bdf: String, _ d: inout StepDraft) {
        if let current = Sysfs.driver(of: bdf) {
            if current == "vfio-pci" { return d.set(.ok, "\(bdf) is already bound to vfio-pci") }
            let outcome = write("/sys/bus/pci/drivers/\(current)/unbind", bdf)
            guard outcome == .ok else { return d.set(outcome, describe(outcome, "unbind \(bdf) from \(current)")) }
            d.note("unbound from \(current)")
        }
        var bound = StepDraft(PlanStep(index: d.record.index, op: .bind))
        bind(bdf, driver: "vfio-pci", &bound)
        let note = d.record.detail
        d.record.result = bound.record.result
        d.record.errno = bound.record.errno
        d.record.detail = [note, bound.record.detail].compactMap { $0 }.joined(separator: "; ")
        d.record.bound = bound.record.bound
    }

    // MARK: - children

    /// Writes in a child (``Child/write(_:_:seconds:declaredBlocked:)``), with the step timeout.
    /// A write the kernel says waits for the agent to release a VFIO device (``VFIORelease``:
    /// removing a VF or unbinding a device whose fd the agent holds) is blocked at once: only
    /// a later step of the agent's own could end it, so waiting out the timeout shows nothing more.
    func write(_ path: String, _ value: String) -> ChildOutcome {
        let log = KernelLogReader()   // records logged from now on; the step's own reader keeps its place
        var said: String?
        let (running, end) = Child.write(path, value, seconds: timeout, declaredBlocked: {
            said = said ?? log.drain().first(where: VFIORelease.declaresBlocked)
            return said != nil
        })
        return outcome(end, running, what: "write \(value) to \(path)", declared: said)
    }

    func modprobe(_ module: String, options: [String] = []) -> ChildOutcome {
        let outcome = runChild(["/sbin/modprobe", module] + options, what: (["modprobe", module] + options).joined(separator: " "))
        // modprobe exits 1 on any failure; there is no errno to report.
        if case .failed = outcome { return .failed(ENOENT) }
        return outcome
    }

    func runChild(_ argv: [String], what: String) -> ChildOutcome {
        let (running, end) = Child.run(argv, seconds: timeout)
        return outcome(end, running, what: what)
    }

    /// A child's end as a step reports it; a child still running is left behind. `declared`:
    /// what the kernel said when it declared the child blocked (kept for ``describe(_:_:)``).
    func outcome(_ end: ChildEnd, _ running: RunningChild?, what: String, declared: String? = nil) -> ChildOutcome {
        blockedBy = end == .running ? declared : nil
        switch end {
        case .exited(0): return .ok
        case .exited(let code): return .failed(HelperExit.errno(forCode: code))
        case .signaled(let sig): return .killed(sig)
        case .spawnFailed(let e): return .failed(e)
        case .running:
            if let running { leftBehind.append((running, what)) }
            return .blocked
        }
    }

    func describe(_ outcome: ChildOutcome, _ what: String) -> String {
        switch outcome {
        case .ok: return what
        case .failed(let e): return "\(what): \(Posix.errorText(e))"
        case .blocked:
            if let said = blockedBy { return "\(what): blocked, the kernel says \"\(said)\"; left behind" }
            return "\(what): still running after \(timeout) s, left behind"
        case .killed(let sig): return "\(what): the task was killed by signal \(sig)"
        }
    }

    /// Notes children left behind by earlier steps that have ended since.
    func reapLeftBehind(_ d: inout StepDraft) {
        let deadline = ContinuousClock.now + .milliseconds(Int(leftBehindGrace * 1000))
        leftBehindGrace = 0
        leftBehind.removeAll { child in
            var end = child.child.poll()
            while end == nil, ContinuousClock.now < deadline {
                Posix.sleep(milliseconds: 10)
                end = child.child.poll()
            }
            guard let end else { return false }
            switch end {
            case .exited(let code):
                d.note("earlier blocked \(child.what) finished: " + (code == 0 ? "ok" : ErrnoName.name(HelperExit.errno(forCode: code))))
            case .signaled(let sig): d.note("earlier blocked \(child.what) was killed by signal \(sig)")
            default: break
            }
            return true
        }
    }
}
