import Foundation

/// Boots an image under raw QEMU (TCG, q35, intel-iommu) until the init's ready marker,
/// with a deadline. A smoke check of images; real runs go through libvirt elsewhere.
public struct GuestBoot: Sendable {
    /// The line the recipe's init prints once the guest is up.
    public static let readyMarker = "ISOLAB-INIT: ready"

    public var image: GuestImage
    /// Extra words for the kernel command line (e.g. `isolab.modprobe=vfio_pci`).
    public var extraKernelArguments: [String] = []
    /// Give up (and kill QEMU) after this many seconds.
    public var deadline: TimeInterval = 120
    /// How to enter the kernel (falls back to the bzImage when the image has no PVH `vmlinux`).
    public var boot: BootPath = .pvh
    /// The kernel file `boot` resolves to.
    public var kernel: BootKernel { image.bootKernel(boot) }

    public init(image: GuestImage) { self.image = image }

    /// What one boot showed.
    public struct Result: Sendable {
        /// Seconds from starting QEMU to the ready marker; nil when it never came.
        public var secondsToMarker: Double?
        /// Seconds until QEMU exited (or was killed).
        public var secondsTotal: Double
        /// The release the guest printed in the marker line.
        public var reportedRelease: String?
        /// The whole serial console.
        public var console: String
        public var timedOut: Bool
        /// The last `lines` console lines, for failure reports.
        public func tail(_ lines: Int = 40) -> String {
            console.split(separator: "\n", omittingEmptySubsequences: false).suffix(lines).joined(separator: "\n")
        }
    }

    /// The QEMU command line (no KVM: TCG works everywhere, and KVM here is unusable).
    public var arguments: [String] {
        ["qemu-system-x86_64", "-accel", "tcg", "-machine", "q35,kernel-irqchip=split", "-cpu", "max", "-m", "512",
         "-nodefaults", "-display", "none", "-no-reboot", "-serial", "stdio",
         "-device", "intel-iommu,intremap=on",
         "-kernel", kernel.path, "-initrd", image.initramfsPath,
         "-append", KernelCommandLine.text(intelIOMMU: true, extra: extraKernelArguments)]
    }

    /// Boots, waits for the guest to power off (or the deadline), and returns what it saw.
    /// QEMU is always gone when this returns; it also runs under `timeout` so it cannot
    /// outlive a crashed caller by more than the deadline.
    public func run() throws -> Result {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: try Shell.which("timeout"))
        process.arguments = ["--kill-after=5", String(Int(deadline) + 10), try Shell.which(arguments[0])]
            + arguments.dropFirst()
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        process.standardInput = FileHandle.nullDevice
        let state = ConsoleState()
        let start = Date()
        pipe.fileHandleForReading.readabilityHandler = { h in
            let data = h.availableData
            if data.isEmpty { h.readabilityHandler = nil; state.finish() } else { state.append(data, since: start) }
        }
        let exited = DispatchSemaphore(value: 0)
        process.terminationHandler = { _ in exited.signal() }
        try process.run()
        var timedOut = false
        if exited.wait(timeout: .now() + deadline) == .timedOut {
            timedOut = true
            process.terminate()
            kill(process.processIdentifier, SIGKILL)
            exited.wait()
        }
        state.waitForEOF(seconds: 5)
        let (console, markerAt) = state.snapshot()
        var release: String?
        if let line = console.split(separator: "\n").first(where: { $0.contains(Self.readyMarker) }) {
            release = line.components(separatedBy: Self.readyMarker).last?
                .trimmingCharacters(in: .whitespacesAndNewlines)
        }
        return Result(secondsToMarker: markerAt, secondsTotal: Date().timeIntervalSince(start),
                      reportedRelease: release, console: console, timedOut: timedOut)
    }
}

/// Console bytes gathered from QEMU's stdout, and when the marker first appeared.
private final class ConsoleState: @unchecked Sendable {
    private let lock = NSLock()
    private var data = Data()
    private var markerAt: Double?
    private let eof = DispatchSemaphore(value: 0)

    func append(_ chunk: Data, since start: Date) {
        lock.lock(); defer { lock.unlock() }
        data.append(chunk)
        if markerAt == nil, data.range(of: Data(GuestBoot.readyMarker.utf8)) != nil {
            markerAt = Date().timeIntervalSince(start)
        }
    }

    func finish() { eof.signal() }
    func waitForEOF(seconds: Double) { _ = eof.wait(timeout: .now() + seconds) }

    func snapshot() -> (String, Double?) {
        lock.lock(); defer { lock.unlock() }
        return (String(decoding: data, as: UTF8.self).replacingOccurrences(of: "\r\n", with: "\n"), markerAt)
    }
}

/// The guest kernel's command line, built here for every boot: isolab's guests (GuestRunner)
/// and the image check boot alike.
public enum KernelCommandLine {
    /// Serial console on ttyS0, no reboot on panic, the vIOMMU switched on where the kernel
    /// needs telling (`intel_iommu=on`: INTEL_IOMMU_DEFAULT_ON is off in every Debian config;
    /// amd-iommu is on by default and virtio-iommu needs nothing), then `extra`.
    /// `no_timer_check`: under a loaded TCG host the IO-APIC timer check can miss its ticks and
    /// panic at boot ("timer doesn't work through Interrupt-remapped IO-APIC", seen on 6.12).
    public static func text(intelIOMMU: Bool, extra: [String] = []) -> String {
        (["console=ttyS0", "panic=-1", "no_timer_check"] + (intelIOMMU ? ["intel_iommu=on"] : []) + extra)
            .joined(separator: " ")
    }
}
