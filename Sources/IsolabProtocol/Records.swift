#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// One JSON line the agent writes on the control channel.
///
/// Records are numbered from 0 (`seq`) and a complete stream ends with a `done` record whose
/// `count` is the number of records before it; a stream without one was cut short.
public struct Record: Codable, Equatable, Sendable {
    public enum Kind: String, Codable, Sendable {
        /// The agent started: protocol version, kernel, command line.
        case hello
        /// What the guest enumerated, before any step.
        case inventory
        /// A step begins; if the guest dies now, the host marks this step crashed.
        case stepStart = "step-start"
        /// A step's observed outcome.
        case step
        /// Snapshot mode: the inventory is sent and the agent waits for a plan on the channel.
        /// The stream of the saved boot ends here; each restored copy starts a stream of its own.
        case ready
        /// The agent cannot go on (unreadable plan, version mismatch); `message` says why.
        case fatal
        /// The last record.
        case done
    }

    public var seq: Int
    public var type: Kind
    public var hello: Hello?
    public var inventory: Inventory?
    /// `step-start`: the step's index.
    public var index: Int?
    public var step: StepRecord?
    public var message: String?
    /// `done`: how many records came before it.
    public var count: Int?

    public init(seq: Int, type: Kind, hello: Hello? = nil, inventory: Inventory? = nil, index: Int? = nil,
                step: StepRecord? = nil, message: String? = nil, count: Int? = nil) {
        self.seq = seq
        self.type = type
        self.hello = hello
        self.inventory = inventory
        self.index = index
        self.step = step
        self.message = message
        self.count = count
    }
}

public struct Hello: Codable, Equatable, Sendable {
    public var version: Int
    public var runID: String
    public var agent: String
    /// A restored guest: the functions whose config header (BARs, command register) the
    /// restore lost and the agent wrote back as the kernel had programmed them (devices QEMU
    /// does not migrate, such as edu). nil: not restored.
    public var restoredConfig: [String]?
    public init(version: Int = isolabProtocolVersion, runID: String, agent: String, restoredConfig: [String]? = nil) {
        self.version = version
        self.runID = runID
        self.agent = agent
        self.restoredConfig = restoredConfig
    }
}

/// What the guest kernel enumerated and how it grouped it.
public struct Inventory: Codable, Equatable, Sendable {
    /// `uname -r`.
    public var kernelRelease: String
    public var cmdline: String
    /// `intel`, `amd`, `virtio` or nil: the IOMMU driving groups (from `/sys/class/iommu`).
    public var iommu: String?
    public var functions: [FunctionRecord]
    /// Groups by the kernel's id, members as guest paths.
    public var groups: [GroupRecord]
    /// Modules the plan asked to preload that failed (name: message).
    public var preloadFailures: [String: String]
    /// Whether the kernel offers iommufd (`/dev/iommu`, after `modprobe iommufd`) and VFIO device
    /// cdevs (`vfio-open via: cdev`); none of the catalog kernels does.
    public var iommufd: Bool?
    public var vfioCdev: Bool?

    public init(kernelRelease: String, cmdline: String, iommu: String?, functions: [FunctionRecord],
                groups: [GroupRecord], preloadFailures: [String: String] = [:]) {
        self.kernelRelease = kernelRelease
        self.cmdline = cmdline
        self.iommu = iommu
        self.functions = functions
        self.groups = groups
        self.preloadFailures = preloadFailures
    }
}

/// One PCI function as the guest sees it.
public struct FunctionRecord: Codable, Equatable, Sendable {
    /// Slot.function chain from the root bus.
    public var path: String
    /// `0000:02:00.0`.
    public var bdf: String
    /// `1234:11e8`.
    public var vendorDevice: String
    /// 24-bit class code, `0x00ff00`.
    public var classCode: String
    /// Config header type with the multifunction bit masked off (0 normal, 1 bridge).
    public var headerType: Int
    public var multifunction: Bool
    public var driver: String?
    public var group: Int?
    /// PCIe capability device/port type name (`root-port`, `endpoint`, …); nil for conventional PCI.
    public var pcieType: String?
    /// The ACS extended capability, nil when the function has none.
    public var acs: ACSRecord?
    /// The SR-IOV extended capability, nil when the function has none.
    public var sriov: SRIOVRecord?

    public init(path: String, bdf: String, vendorDevice: String, classCode: String, headerType: Int,
                multifunction: Bool, driver: String?, group: Int?, pcieType: String?, acs: ACSRecord?,
                sriov: SRIOVRecord? = nil) {
        self.sriov = sriov
        self.path = path
        self.bdf = bdf
        self.vendorDevice = vendorDevice
        self.classCode = classCode
        self.headerType = headerType
        self.multifunction = multifunction
        self.driver = driver
        self.group = group
        self.pcieType = pcieType
        self.acs = acs
    }
}

/// A PF's SR-IOV capability as read from config space at boot.
public struct SRIOVRecord: Codable, Equatable, Sendable {
    public var offset: Int
    public var totalVFs: Int
    public var firstVFOffset: Int
    public var vfStride: Int
    /// The VF device ID, four hex digits (the VF's vendor is the PF's).
    public var vfDevice: String
    public init(offset: Int, totalVFs: Int, firstVFOffset: Int, vfStride: Int, vfDevice: String) {
        self.offset = offset
        self.totalVFs = totalVFs
        self.firstVFOffset = firstVFOffset
        self.vfStride = vfStride
        self.vfDevice = vfDevice
    }
}

/// The ACS capability and control registers as read from config space.
public struct ACSRecord: Codable, Equatable, Sendable {
    /// Config-space offset of the extended capability.
    public var offset: Int
    public var capability: Int
    public var control: Int
    public init(offset: Int, capability: Int, control: Int) {
        self.offset = offset
        self.capability = capability
        self.control = control
    }
}

public struct GroupRecord: Codable, Equatable, Sendable {
    public var id: Int
    public var members: [String]
    public init(id: Int, members: [String]) {
        self.id = id
        self.members = members
    }
}

/// What one step really did.
public struct StepRecord: Codable, Equatable, Sendable {
    public var index: Int
    public var op: PlanStep.Op
    /// `ok`, an errno name (`EBUSY`), `blocked`, `crash` (detail: the BUG/Oops line), `not-run`
    /// (an earlier step crashed, or a precondition such as an open VFIO device is missing),
    /// `delivered`, `faulted`, `timed-out` (edu never finished), `mismatch` (the DMA data did not
    /// arrive and no fault was logged), `unsupported`.
    public var result: String
    /// With an errno result.
    public var errno: Int?
    /// Human-readable detail (which write failed, what was read back).
    public var detail: String?
    /// `vfio-open`: each sub-step run, with its own result, named as the model names them:
    /// find-group, open-container (API version and TYPE1v2 extension in the detail), open-group,
    /// get-status (detail `VIABLE|CONTAINER_SET`, `0`), set-container, set-iommu, get-device-fd.
    /// Sub-steps an earlier `vfio-open` of the group completed are not repeated (get-status is).
    public var substeps: [SubstepRecord]
    /// Driver steps: ids of the declared devices bound by the step.
    public var bound: [String]
    /// `load-driver`: ids of the declared devices the driver matches (by its module aliases, or
    /// `driver_override` naming it) that had no driver before the step and still have none:
    /// auto-probing tried them and reported nothing. nil: not a `load-driver`, or an agent
    /// from before this was recorded.
    public var refused: [String]?
    /// Kernel log lines the step produced (from /dev/kmsg).
    public var kernelLog: [String]
    /// DMA probes: what was done and seen.
    public var dma: DMAEvidence?
    /// `sriov`: the PF's VFs that exist after the step (its `virtfnN` links), in VF order.
    public var virtualFunctions: [VirtualFunctionRecord]?
    /// `selftest`: how the program ran and what it printed.
    public var program: ProgramRecord?
    public var milliseconds: Int

    public init(index: Int, op: PlanStep.Op, result: String, errno: Int? = nil, detail: String? = nil,
                substeps: [SubstepRecord] = [], bound: [String] = [], refused: [String]? = nil, kernelLog: [String] = [],
                dma: DMAEvidence? = nil, milliseconds: Int = 0) {
        self.index = index
        self.op = op
        self.result = result
        self.errno = errno
        self.detail = detail
        self.substeps = substeps
        self.bound = bound
        self.refused = refused
        self.kernelLog = kernelLog
        self.dma = dma
        self.milliseconds = milliseconds
    }
}

/// A `selftest` step's program run.
public struct ProgramRecord: Codable, Equatable, Sendable {
    /// The command line as run (the program's guest path, `args`, the devices' BDFs).
    public var argv: [String]
    /// The exit status; nil when a signal ended it or it was still running at the timeout.
    public var exitStatus: Int?
    /// The signal that ended it (`SIGKILL` at the timeout included).
    public var signal: Int?
    /// Still running at the step's timeout (then killed).
    public var timedOut: Bool
    /// stdout and stderr as written, interleaved (the last 256 KiB if longer).
    public var output: String

    public init(argv: [String], exitStatus: Int? = nil, signal: Int? = nil, timedOut: Bool = false, output: String = "") {
        self.argv = argv
        self.exitStatus = exitStatus
        self.signal = signal
        self.timedOut = timedOut
        self.output = output
    }

    /// The TAP results in the output.
    public var tap: TAPResults { TAPResults(parsing: output) }
}

/// An SR-IOV VF as the guest shows it after an `sriov` step.
public struct VirtualFunctionRecord: Codable, Equatable, Sendable {
    /// The VF index (`virtfnN`).
    public var index: Int
    public var bdf: String
    /// Guest path (`04.0/10.2`).
    public var path: String
    public var vendorDevice: String?
    public var driver: String?
    /// IOMMU group number, and the guest paths of every member of that group, sorted.
    public var group: Int?
    public var groupMembers: [String]

    public init(index: Int, bdf: String, path: String, vendorDevice: String? = nil, driver: String? = nil,
                group: Int? = nil, groupMembers: [String] = []) {
        self.index = index
        self.bdf = bdf
        self.path = path
        self.vendorDevice = vendorDevice
        self.driver = driver
        self.group = group
        self.groupMembers = groupMembers
    }
}

public struct SubstepRecord: Codable, Equatable, Sendable {
    public var name: Substep
    public var result: String
    public var errno: Int?
    public var detail: String?
    public init(name: Substep, result: String, errno: Int? = nil, detail: String? = nil) {
        self.name = name
        self.result = result
        self.errno = errno
        self.detail = detail
    }
}

/// The evidence of a DMA probe: addresses, the pattern, what came back, the fault lines.
public struct DMAEvidence: Codable, Equatable, Sendable {
    /// `vfio` (through a type1 container), `iommufd` (a device cdev attached to an IOAS),
    /// `noiommu` (a no-IOMMU VFIO device, physical addresses) or `physical` (no IOMMU: sysfs
    /// BAR, guest-physical addresses).
    public var path: String
    /// The bus address edu was told to use.
    public var busAddress: String
    /// What was written/expected (hex), and what was read back.
    public var expected: String
    public var observed: String
    /// DMAR / virtio-iommu fault lines from the kernel log during the probe.
    public var faultLines: [String]
    /// The requester the fault names, as a guest path, when the line could be attributed.
    public var faultRequester: String?
    /// edu transfers the probe ran. QEMU's edu completes each one on a fixed 100 ms timer of
    /// the virtual clock (`edu_dma_rw` arms `dma_timer`, hw/misc/edu.c), so on the host's clock the step
    /// waits at least ``eduTransferSeconds`` × this. Absent from agents before it was counted.
    public var eduTransfers: Int?

    /// Virtual time edu's DMA timer needs per transfer.
    public static let eduTransferSeconds = 0.1

    public init(path: String, busAddress: String, expected: String, observed: String,
                faultLines: [String] = [], faultRequester: String? = nil, eduTransfers: Int? = nil) {
        self.path = path
        self.busAddress = busAddress
        self.expected = expected
        self.observed = observed
        self.faultLines = faultLines
        self.faultRequester = faultRequester
        self.eduTransfers = eduTransfers
    }
}
