import ArgumentParser
import Foundation
import IsolabImages
import IsolabLibvirt
import IsolabVM

/// `isolab doctor`: checks, one line each, what a run needs and says what to fix.
struct DoctorCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "doctor",
        abstract: "Check what a run needs (QEMU, libvirt and its embedded root, KVM, Debian sources, the agent, disk) and say what to fix.",
        discussion: """
        Prints one line per check: `ok`, `warn` (runs work, something is slower or missing for \
        some commands) or `FAIL` with what to do. Exit status 0 when nothing failed, 1 otherwise. \
        The KVM check boots the smallest fabric with a cached image and gives up after \
        --kvm-deadline seconds; without a cached image it only opens /dev/kvm.
        """)

    @Option(help: "Seconds the KVM probe boot may take before KVM counts as unusable.")
    var kvmDeadline: Double = 20
    @Option(help: "Free space the cache needs, in GiB (kernels, images, a source-built kernel).")
    var minFreeGiB: Double = 10
    @OptionGroup var mirrorOptions: MirrorOptions

    struct Check {
        enum Status: String { case ok, warn, FAIL }
        var status: Status
        var what: String
        var detail: String
    }

    func run() throws {
        var checks: [Check] = []
        func add(_ s: Check.Status, _ what: String, _ detail: String) {
            let c = Check(status: s, what: what, detail: detail)
            checks.append(c)
            print("\(c.status.rawValue.padded(4)) \(c.what): \(c.detail)")
        }
        // QEMU.
        if let qemu = Self.which("qemu-system-x86_64") {
            let out = Self.output([qemu, "--version"]).split(separator: "\n").first.map(String.init) ?? "no version"
            add(.ok, "qemu", "\(qemu): \(out)")
        } else {
            add(.FAIL, "qemu", "qemu-system-x86_64 is not on PATH; run ci/bootstrap.sh (Debian package qemu-system-x86)")
        }
        // libvirt's embedded root: the default connection of run and matrix.
        let state = EmbeddedRoot.defaultStateDirectory()
        do {
            let c = try LibvirtConnection.open(connect: nil)
            add(.ok, "libvirt", "embedded root under \(state): libvirt \(c.libvirtVersion()), driving QEMU \(c.hypervisorVersion())")
            c.close()
        } catch {
            add(.FAIL, "libvirt", "cannot open the embedded root under \(state): \(Self.describe(error)); check that the directory can be created and written (XDG_STATE_HOME), and run ci/bootstrap.sh (libvirt-daemon-driver-qemu, the libvirt-qemu user)")
        }
        if getpwnam("libvirt-qemu") == nil {
            add(.FAIL, "libvirt-qemu user", "missing: libvirt resolves it before reading qemu.conf; run ci/bootstrap.sh")
        }
        // The guest agent.
        do { add(.ok, "agent", try AgentBinary.locate()) } catch {
            add(.FAIL, "agent", "\(error); run ci/build-agent")
        }
        // Debian sources for kernels.
        do {
            let s = try DebianSources.configured()
            let mirror = ProcessInfo.processInfo.environment[DebianSources.mirrorVariable].map { !$0.isEmpty } ?? false
            add(.ok, "debian sources", (mirror ? "kernels and emulators come from the mirror \(s.archive)" : "kernels come from the archive this machine's apt names")
                + " (\(s.security == nil ? "no" : "with") security suites), verified with \(s.keyring)")
        } catch {
            add(.FAIL, "debian sources", "\(error); isolab builds its private apt configuration from the Debian URIs in /etc/apt, or from --debian-mirror URI")
        }
        // The cache and its disk.
        let cache = ImageCache(root: ImageCache.defaultRoot())
        do {
            try FileManager.default.createDirectory(atPath: cache.root, withIntermediateDirectories: true)
            let free = (try FileManager.default.attributesOfFileSystem(forPath: cache.root)[.systemFreeSize] as? NSNumber)?.doubleValue ?? 0
            let gib = free / 1_073_741_824
            let line = "\(cache.root): \(String(format: "%.1f", gib)) GiB free, \(cache.list().count) image(s) cached"
            add(gib >= minFreeGiB ? .ok : .FAIL, "cache", gib >= minFreeGiB ? line : line + "; free at least \(Int(minFreeGiB)) GiB or set ISOLAB_CACHE_DIR")
        } catch {
            add(.FAIL, "cache", "cannot create \(cache.root): \(error); set ISOLAB_CACHE_DIR to a writable directory")
        }
        checks.append(kvm(cache: cache, log: add))
        if checks.contains(where: { $0.status == .FAIL }) { throw ExitCode(1) }
    }

    /// /dev/kvm, proven by a boot within the deadline when an image is cached.
    func kvm(cache: ImageCache, log add: (Check.Status, String, String) -> Void) -> Check {
        guard FileManager.default.fileExists(atPath: "/dev/kvm") else {
            add(.warn, "kvm", "no /dev/kvm: guests run under TCG (the default)")
            return Check(status: .warn, what: "kvm", detail: "")
        }
        guard let image = cache.list().first else {
            add(.warn, "kvm", "/dev/kvm exists; not probed (no cached image: isolab images build); guests run under TCG unless --accel kvm proves it")
            return Check(status: .warn, what: "kvm", detail: "")
        }
        guard let c = try? LibvirtConnection.open(connect: nil), let runner = try? GuestRunner(connection: c) else {
            add(.warn, "kvm", "/dev/kvm exists; not probed (no libvirt connection)")
            return Check(status: .warn, what: "kvm", detail: "")
        }
        defer { c.close() }
        let probe = AccelProbe.probeKVM(runner: runner, image: image, kernelLabel: image.metadata.kernelID,
                                        directory: RunsDirectory.new(in: RunsDirectory.root(), label: "doctor-kvm"),
                                        deadline: kvmDeadline)
        if probe.works {
            add(.ok, "kvm", "a guest booted under KVM in \(String(format: "%.1f", probe.seconds)) s: --accel kvm or auto can use it")
        } else {
            add(.warn, "kvm", "/dev/kvm does not run a guest (\(probe.reason ?? "no answer") after \(String(format: "%.0f", probe.seconds)) s): guests run under TCG, the default")
        }
        return Check(status: probe.works ? .ok : .warn, what: "kvm", detail: "")
    }

    /// A Foundation file error as the POSIX error under it says it (`…: Not a directory`).
    static func describe(_ error: Error) -> String {
        let e = error as NSError
        if let path = e.userInfo[NSFilePathErrorKey] as? String, let under = e.userInfo[NSUnderlyingErrorKey] as? Error {
            let u = under as NSError
            if u.domain == NSPOSIXErrorDomain { return "\(path): \(String(cString: strerror(Int32(u.code))))" }
        }
        return String(describing: error)
    }

    static func which(_ tool: String) -> String? {
        for dir in (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin").split(separator: ":") {
            let p = "\(dir)/\(tool)"
            if FileManager.default.isExecutableFile(atPath: p) { return p }
        }
        return nil
    }

    static func output(_ argv: [String]) -> String {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: argv[0])
        p.arguments = Array(argv.dropFirst())
        let pipe = Pipe()
        p.standardOutput = pipe
        p.standardError = FileHandle.nullDevice
        guard (try? p.run()) != nil else { return "" }
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return String(decoding: data, as: UTF8.self)
    }
}
