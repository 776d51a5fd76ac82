#if canImport(Glibc)
import Glibc
#endif
import IsolabAgentCore
import IsolabProtocol

extension Agent {
    /// `selftest`: runs `/isolab/programs/NAME ARGS… BDF…` with the step's environment added,
    /// stdout and stderr into one file, to its end or the step's timeout (then SIGKILL). The
    /// result is `ok` (exit 0), `skipped` (exit 4, kselftest's KSFT_SKIP), `failed` (any other
    /// status), `crash` (a signal), or `timed-out`; the output comes back whole (its last
    /// 256 KiB) for the host to read the TAP results from.
    func selftest(_ step: PlanStep, _ d: inout StepDraft) {
        guard let name = step.program else { return d.fail("not-run", "the selftest step names no program") }
        let path = GuestPlan.programsDirectory + "/" + name
        guard Posix.exists(path) else {
            return d.fail("not-run", "\(path) is not in the guest: the run's initramfs did not ship it")
        }
        var bdfs: [String] = []
        for id in step.devices ?? [] {
            guard let bdf = bdfOfNode[id], Posix.exists(Sysfs.device(bdf)) else {
                return d.fail("not-run", "\(id) is not in the guest's inventory (or no longer exists)")
            }
            bdfs.append(bdf)
        }
        // As on a systemd host: debugfs at /sys/kernel/debug (the mapping test reads the Intel
        // IOMMU's page tables there when the kernel exports them; iommufd_fail_nth injects faults).
        if Posix.exists("/sys/kernel/debug"), Posix.list("/sys/kernel/debug").isEmpty {
            _ = mount("debugfs", "/sys/kernel/debug", "debugfs", 0, nil)
        }
        // vfio.ko declares MODULE_SOFTDEP("post: vfio_iommu_type1 …"): kmod's modprobe loads
        // type1 with vfio, busybox's (the image's) does not. A selftest runs as on a real host.
        if Posix.exists("/sys/module/vfio"), !Posix.exists("/sys/module/vfio_iommu_type1") {
            let outcome = modprobe("vfio_iommu_type1")
            if outcome != .ok { d.note("vfio's softdep vfio_iommu_type1: " + describe(outcome, "modprobe vfio_iommu_type1")) }
        }
        // iommufd declares MODULE_ALIAS("devname:iommu"): on a host, kmod's static nodes give
        // /dev/iommu before the module loads and its first open loads it. The image has no
        // static nodes, so the module is loaded here when the kernel has it and vfio did not.
        if !Posix.exists("/dev/iommu"), !Posix.exists("/sys/module/iommufd"), moduleAvailable("iommufd") {
            let outcome = modprobe("iommufd")
            if outcome != .ok { d.note("iommufd for /dev/iommu: " + describe(outcome, "modprobe iommufd")) }
        }
        if let pages = step.hugepages, pages > 0 {
            let outcome = write("/proc/sys/vm/nr_hugepages", String(pages))
            let got = Posix.text("/proc/sys/vm/nr_hugepages") ?? "?"
            d.note("vm.nr_hugepages \(pages): " + (outcome == .ok ? "\(got) reserved" : describe(outcome, "write /proc/sys/vm/nr_hugepages")))
        }
        let argv = [path] + (step.args ?? []) + bdfs
        let outPath = "/tmp/isolab-selftest-\(step.index).out"
        let seconds = step.timeoutSeconds.map { $0.isFinite && $0 > 0 ? min($0, 3600) : timeout } ?? timeout
        var env = Self.environment()
        for (k, v) in (step.env ?? [:]).sorted(by: { $0.key < $1.key }) { env[k] = v }
        var record = ProgramRecord(argv: argv)
        switch Child.spawn(argv, environment: env.map { "\($0.key)=\($0.value)" }.sorted(), output: outPath) {
        case .failure(let e):
            d.fail("not-run", errno: e.errno, "cannot start \(path): \(Posix.errorText(e.errno))")
        case .success(let pid):
            var end = Child.wait(pid, seconds: seconds)
            if end == .running {
                record.timedOut = true
                // The harness forks a child per test: kill the whole process group.
                kill(-pid, SIGKILL)
                kill(pid, SIGKILL)
                end = Child.wait(pid, seconds: 5)
            }
            switch end {
            case .exited(let status):
                record.exitStatus = Int(status)
                d.record.result = record.timedOut ? "timed-out" : status == 0 ? "ok" : status == 4 ? "skipped" : "failed"
                d.note("\(name) exited with status \(status)")
            case .signaled(let sig):
                record.signal = Int(sig)
                d.record.result = record.timedOut ? "timed-out" : "crash"
                d.note(record.timedOut ? "\(name) still running after \(seconds) s: killed" : "\(name) was killed by signal \(sig)")
            case .running:
                d.record.result = "timed-out"
                d.note("\(name) still running after \(seconds) s and did not die on SIGKILL (stuck in the kernel)")
            case .spawnFailed(let e):
                d.fail("not-run", errno: e, "cannot start \(path): \(Posix.errorText(e))")
            }
            let bytes = Posix.read(outPath, limit: 64 << 20) ?? []
            record.output = String(decoding: bytes.suffix(256 << 10), as: UTF8.self)
            d.record.program = record
        }
        unlink(outPath)
    }

    /// Whether `modules.dep` of the running kernel lists the module.
    func moduleAvailable(_ name: String) -> Bool {
        guard let dep = Posix.read("/lib/modules/\(Posix.kernelRelease())/modules.dep", limit: 8 << 20) else { return false }
        let text = String(decoding: dep, as: UTF8.self)
        return text.contains("/\(name).ko:") || text.contains("/\(name).ko.xz:") || text.contains("/\(name).ko.zst:")
    }

    /// The agent's environment as a dictionary.
    static func environment() -> [String: String] {
        var out: [String: String] = ["PATH": "/sbin:/bin:/usr/sbin:/usr/bin"]
        var p = environ
        while let entry = p.pointee {
            let text = String(cString: entry)
            if let eq = text.firstIndex(of: "=") { out[String(text[..<eq])] = String(text[text.index(after: eq)...]) }
            p += 1
        }
        return out
    }
}

extension Child {
    /// Starts `argv` in a process group of its own with `environment`, stdin from /dev/null and
    /// stdout and stderr into `output` (created, truncated). The pid, or the errno.
    static func spawn(_ argv: [String], environment: [String], output: String) -> Result<pid_t, SpawnError> {
        var actions = posix_spawn_file_actions_t()
        var attr = posix_spawnattr_t()
        posix_spawn_file_actions_init(&actions)
        posix_spawnattr_init(&attr)
        defer { posix_spawn_file_actions_destroy(&actions); posix_spawnattr_destroy(&attr) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, output, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        posix_spawnattr_setpgroup(&attr, 0)
        posix_spawnattr_setflags(&attr, Int16(POSIX_SPAWN_SETPGROUP))
        var pid: pid_t = 0
        var cargs: [UnsafeMutablePointer<CChar>?] = argv.map { strdup($0) }
        cargs.append(nil)
        var cenv: [UnsafeMutablePointer<CChar>?] = environment.map { strdup($0) }
        cenv.append(nil)
        defer { for p in cargs + cenv { free(p) } }
        let rc = posix_spawn(&pid, argv[0], &actions, &attr, cargs, cenv)
        return rc == 0 ? .success(pid) : .failure(SpawnError(errno: rc))
    }
}
