import IsolabImages
import IsolabModel

/// How QEMU executes the guest.
public enum Accelerator: String, Sendable, CaseIterable {
    /// TCG: runs anywhere (domain type `qemu`).
    case tcg
    /// KVM (domain type `kvm`). Whether it works on this host is for a probe to find out.
    case kvm

    /// The libvirt domain type.
    public var domainType: String {
        switch self {
        case .tcg: return "qemu"
        case .kvm: return "kvm"
        }
    }
}

/// The guest's clock under TCG.
public enum GuestClock: String, Sendable, CaseIterable {
    /// The host's (TCG's default): a guest second is a wall-clock second, and so are the
    /// steps' `milliseconds`.
    case host
    /// Counted in executed instructions, and jumping to the next timer deadline whenever the
    /// guest idles (`-icount shift=auto,sleep=off`): a wait on a device timer (edu's DMA takes
    /// 100 ms) or an `msleep` costs no wall time, but a busy boot runs about 1.5× longer and
    /// the steps' `milliseconds` are guest time.
    case icount
}

/// What one boot of a topology needs besides the topology itself.
public struct DomainParameters: Sendable, Equatable {
    /// The libvirt domain name (unique among running domains of the connection).
    public var name: String
    /// The guest kernel (`<os><kernel>`): a bzImage, or a PVH-capable ELF `vmlinux`
    /// (`GuestImage.bootKernel(_:)` chooses it).
    public var kernelPath: String
    /// How `kernelPath` is entered; said in a comment in `<os>` (QEMU tells the two apart by the
    /// file itself: an ELF with a PVH note is started at that entry). nil: no comment.
    public var boot: BootPath?
    /// The initramfs (`<os><initrd>`).
    public var initrdPath: String
    /// The kernel command line, used as is (`console=ttyS0`, `intel_iommu=on`, … are the caller's).
    public var kernelCommandLine: String
    /// Guest memory; nil takes the topology's `memory`.
    public var memoryMiB: Int?
    public var vcpus: Int
    /// Serial port 0 (ttyS0, the kernel console), written by QEMU to this file.
    public var consoleLogPath: String
    /// Serial port 1 (ttyS1, the agent's record stream), written by QEMU to this file.
    public var recordsPath: String
    public var accelerator: Accelerator
    /// When set, serial port 0 is a Unix socket at this path that QEMU listens on (for an
    /// interactive console) instead of the `consoleLogPath` file.
    public var consoleSocketPath: String?
    /// The QEMU binary (`<emulator>`); nil lets libvirt take its default for x86_64.
    public var emulator: String?
    /// When set, serial port 1 (the agent's channel) is a Unix socket at this path that QEMU
    /// listens on, so the host can also send plans (snapshot mode); the host relays what the
    /// agent writes into `recordsPath`.
    public var channelSocketPath: String?
    /// Snapshot mode: a qcow2 file QEMU opens as a drive no guest device uses (`-drive
    /// if=none`), where `savevm` keeps the saved guest. It adds nothing the guest can see.
    public var vmstateDrivePath: String?
    /// Starts QEMU from this internal snapshot of `vmstateDrivePath` (`-loadvm`) instead of
    /// booting the kernel; the domain then names no kernel, initrd or command line.
    public var loadSnapshotTag: String?
    /// The guest's clock (`-icount` for ``GuestClock/icount``).
    public var clock: GuestClock = .host
    /// Both serial ports are ptys on the guest's host, read and written through libvirt
    /// (``LibvirtDomain/openConsole(_:)``) instead of files and sockets on isolab's machine:
    /// the paths above are then isolab's local copies, not QEMU's.
    public var serialsOverLibvirt = false

    public init(name: String, kernelPath: String, initrdPath: String, kernelCommandLine: String,
                memoryMiB: Int? = nil, vcpus: Int = 1, consoleLogPath: String, recordsPath: String,
                accelerator: Accelerator = .tcg, emulator: String? = nil, boot: BootPath? = nil) {
        self.name = name
        self.kernelPath = kernelPath
        self.boot = boot
        self.initrdPath = initrdPath
        self.kernelCommandLine = kernelCommandLine
        self.memoryMiB = memoryMiB
        self.vcpus = vcpus
        self.consoleLogPath = consoleLogPath
        self.recordsPath = recordsPath
        self.accelerator = accelerator
        self.emulator = emulator
    }
}

/// Why a topology cannot be turned into a domain.
public enum DomainXMLError: Error, CustomStringConvertible, Equatable {
    /// The emulator (or the guest's enumeration) cannot build the fabric as declared
    /// (`Realizability.check`): it is never booted.
    case unrealizable(topology: String, problems: [Unrealizable])
    /// The vIOMMU's own PCI function needs a free slot on pcie.0 and there is none.
    case noSlotForVIOMMU(topology: String, iommu: IOMMUModel)
    /// The AMD vIOMMU's function always lands in pcie.0 slot 01 (`DomainXML.amdVIOMMUSlot`);
    /// a declared node there collides with it.
    case amdVIOMMUSlotTaken(topology: String, node: String, location: SourceLocation)

    public var description: String {
        switch self {
        case .unrealizable(let name, let problems):
            return "topology \(name) cannot be built by the emulator as declared:\n"
                + problems.map { "\($0.location): \($0.node): \($0.reason)" }.joined(separator: "\n")
        case .noSlotForVIOMMU(let name, let iommu):
            return "topology \(name): the \(iommu.rawValue) vIOMMU needs a free slot on pcie.0 and every slot is taken"
        case .amdVIOMMUSlotTaken(let name, let node, let location):
            return "\(location): \(node): topology \(name): QEMU 7.2 puts the AMD vIOMMU's AMDVI-PCI function in pcie.0 slot 01 "
                + "(it is created before every other device), which \(node) declares; choose another slot or iommu"
        }
    }
}
