#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// The version of the plan/record wire format. Host and agent refuse a different one.
public let isolabProtocolVersion = 1

/// What the host asks the guest agent to do: one scenario's steps on one booted fabric.
///
/// The plan reaches the guest as `/isolab/plan.json` in an initramfs appended to the image's
/// (see ``GuestPlan/path``), or, after a restore, as one JSON line over the control channel.
public struct GuestPlan: Codable, Equatable, Sendable {
    /// Where the agent looks for the plan inside the guest.
    public static let path = "/isolab/plan.json"
    /// Where the programs `selftest` steps run are, shipped in the run's appended initramfs.
    public static let programsDirectory = "/isolab/programs"

    public var version: Int
    /// Free text identifying the run, echoed in the `hello` record.
    public var runID: String
    /// The declared devices and bridges: topology id → guest path (`04.0/00.0/00.0`).
    public var nodes: [PlanNode]
    /// The steps, in order. Empty: report the inventory and finish.
    public var steps: [PlanStep]
    /// A step that takes longer is abandoned and reported `timed-out` (sysfs writes that block
    /// are left behind in their thread; the agent goes on).
    public var stepTimeoutSeconds: Double
    /// Modules to load before the inventory (e.g. `virtio_iommu`), with their outcome reported.
    public var preload: [String]
    /// Snapshot mode: after the inventory the agent sends `ready` and waits for the next plan,
    /// one JSON line on the control channel (the host saves the guest meanwhile and sends the
    /// plan to each restored copy). nil or false: run `steps` and finish.
    public var serve: Bool?
    /// The host ends the guest once it has read `done`, so the agent must not power it off:
    /// set where the serial ports are ptys read through libvirt, whose stream loses what QEMU
    /// had not handed over when it exits (the last records, `done` among them). nil or false:
    /// the guest powers off after `done`.
    public var hostEndsGuest: Bool?

    public init(runID: String, nodes: [PlanNode], steps: [PlanStep], stepTimeoutSeconds: Double = 20,
                preload: [String] = [], serve: Bool? = nil) {
        self.version = isolabProtocolVersion
        self.runID = runID
        self.nodes = nodes
        self.steps = steps
        self.stepTimeoutSeconds = stepTimeoutSeconds
        self.preload = preload
        self.serve = serve
    }
}

/// A declared node and where the guest finds it.
public struct PlanNode: Codable, Equatable, Sendable {
    public var id: String
    /// Slot.function chain from the root bus, e.g. `04.0/00.0/01.0/00.0`.
    public var path: String
    /// Device model (`edu`, `e1000e`, `nvme`, `virtio-net`); nil for ports and bridges.
    public var model: String?
    /// edu's `dma_mask` width as the domain sets it (nil: QEMU's default, 28 bits).
    public var dmaMaskBits: Int?

    public init(id: String, path: String, model: String? = nil, dmaMaskBits: Int? = nil) {
        self.id = id
        self.path = path
        self.model = model
        self.dmaMaskBits = dmaMaskBits
    }
}

/// One step of a plan. `op` is the step keyword of the topology file.
public struct PlanStep: Codable, Equatable, Sendable {
    public enum Op: String, Codable, Sendable, CaseIterable {
        case loadDriver = "load-driver"
        case bind
        case unbind
        case vfioBind = "vfio-bind"
        case vfioOpen = "vfio-open"
        case vfioClose = "vfio-close"
        case dma
        /// Write `vfs` to the device's `sriov_numvfs`.
        case sriov
        /// Set a PF's VF token on its open device fd (`VFIO_DEVICE_FEATURE_PCI_VF_TOKEN`).
        case vfToken = "vf-token"
        /// Run a program shipped in the guest (`/isolab/programs/NAME`): a kernel selftest or a
        /// developer's own static test program.
        case selftest
    }

    /// What a DMA probe targets.
    public enum DMATarget: String, Codable, Sendable {
        /// A buffer the agent maps for the initiator: RAM → device → RAM.
        case memory
        /// An IOVA nothing maps.
        case unmapped
        /// `target`'s BAR0.
        case device
    }

    public var index: Int
    public var op: Op
    /// The device the step acts on (`dma`: the initiator).
    public var device: String?
    /// `bind`: the driver (nil: the model's default driver, resolved by the host).
    public var driver: String?
    /// `load-driver`: the module.
    public var module: String?
    public var to: DMATarget?
    /// `dma` with `to: device`: the peer's id.
    public var target: String?
    /// `dma`: `own` or `peer` (map the peer's BAR into the initiator's container).
    public var map: String?
    /// `vfio-open`: `cdev` for the device cdev + iommufd path; nil: the group/container path.
    public var via: String?
    /// `load-driver`: module options passed to modprobe (`enable_unsafe_noiommu_mode=1`).
    public var options: [String]?
    /// `sriov`: the number of VFs to write to `sriov_numvfs`.
    public var vfs: Int?
    /// `sriov` of an nvme PF: with `sriov_drivers_autoprobe` off, enable the VFs, give each VF's
    /// secondary controller 1 interrupt and 2 queues and bring it online (NVMe Virtualization
    /// Management through the PF's `/dev/nvmeN`), then probe the VFs as autoprobe would have.
    public var online: Bool?
    /// `vfio-open`: a VF token (UUID) appended to the device name as ` vf_token=UUID`;
    /// `vf-token`: the token to set.
    public var vfToken: String?
    /// `selftest`: the program's name under ``GuestPlan/programsDirectory``.
    public var program: String?
    /// `selftest`: the declared devices whose BDFs (`0000:00:04.0`) follow `args` on the
    /// command line, in this order.
    public var devices: [String]?
    /// `selftest`: arguments before the BDFs.
    public var args: [String]?
    /// `selftest`: environment variables added to the agent's.
    public var env: [String: String]?
    /// This step's own timeout (seconds), in place of the plan's ``GuestPlan/stepTimeoutSeconds``.
    public var timeoutSeconds: Double?
    /// `selftest`: 2 MiB huge pages to reserve (`/proc/sys/vm/nr_hugepages`) before the program runs.
    public var hugepages: Int?

    public init(index: Int, op: Op, device: String? = nil, driver: String? = nil, module: String? = nil,
                to: DMATarget? = nil, target: String? = nil, map: String? = nil) {
        self.index = index
        self.op = op
        self.device = device
        self.driver = driver
        self.module = module
        self.to = to
        self.target = target
        self.map = map
    }
}
