import IsolabProtocol

/// A position in a topology file, carried by every declared node and step so
/// that later checks (realizability, scenario validation) can point at it.
public struct SourceLocation: Hashable, Sendable, Codable, CustomStringConvertible {
    public var file: String
    public var line: Int
    public var column: Int

    public init(file: String, line: Int, column: Int) {
        self.file = file
        self.line = line
        self.column = column
    }

    public var description: String { "\(file):\(line):\(column)" }
}

/// The virtual IOMMU a fabric is booted with.
public enum IOMMUModel: String, CaseIterable, Sendable, Codable {
    case intel, virtio, amd, none
}

/// The device models a topology may declare (QEMU device names in comments).
public enum DeviceModel: String, CaseIterable, Sendable, Codable {
    /// `edu` 1234:11e8: conventional PCI, DMA-capable, no kernel driver.
    case edu
    /// `e1000e` 8086:10d3: PCIe endpoint (RC_END on pcie.0), DMA-API driver e1000e.
    case e1000e
    /// `nvme` 1b36:0010: PCIe endpoint (RC_END on pcie.0), DMA-API driver nvme.
    case nvme
    /// `virtio-net-pci` (modern) 1af4:1041: conventional on pcie.0, PCIe endpoint behind a port.
    case virtioNet = "virtio-net"
    /// `igb` 8086:10c9 (82576 PF): PCIe endpoint (RC_END on pcie.0) with SR-IOV, DMA-API
    /// driver igb (QEMU ≥ 8.0).
    case igb
    /// An 82576 virtual function, 8086:10ca, driver igbvf: never declared, created by `sriov`.
    case igbVF = "igbvf"

    /// Models a topology file may declare (`igbvf` functions exist only as an igb's VFs).
    public static let declarable: [DeviceModel] = allCases.filter { $0 != .igbVF }

    /// The kernel driver a `bind:` step uses when none is named.
    public var defaultDriver: String {
        switch self {
        case .edu: return "pci-stub"
        case .e1000e: return "e1000e"
        case .nvme: return "nvme"
        case .virtioNet: return "virtio-pci"
        case .igb: return "igb"
        case .igbVF: return "igbvf"
        }
    }

    /// The module whose `load-driver` binds this model (drivers' own match tables).
    public var matchingDriver: String? {
        switch self {
        case .edu: return nil
        case .e1000e: return "e1000e"
        case .nvme: return "nvme"
        case .virtioNet: return "virtio-pci"
        case .igb: return "igb"
        case .igbVF: return "igbvf"
        }
    }

    /// An MSI capability (QEMU's `msi_init()` in the model's realize): edu, e1000e, igb.
    public var hasMSI: Bool {
        switch self {
        case .edu, .e1000e, .igb: return true
        case .nvme, .virtioNet, .igbVF: return false
        }
    }

    /// An MSI-X capability (`msix_init()`): all but edu.
    public var hasMSIX: Bool { self != .edu }

    /// A reset of the function alone that `pci_probe_reset_function()` finds: FLR (nvme, igb
    /// and its VFs, virtio-net's `x-pcie-flr-init`) or a PM reset (e1000e's power management
    /// capability without No_Soft_Reset). edu has neither: only a bus reset can reset it.
    public var hasFunctionReset: Bool { self != .edu }

    /// The driver in the VFIO selftests' lib/drivers that claims this model (`igb`: 82576 PFs).
    public var selftestDriver: String? { self == .igb ? "igb" : nil }
}

/// What kind of node a topology declares.
public enum NodeKind: Sendable, Equatable {
    /// `pcie-root-port` (1b36:000c). `acs: false` is QEMU's `disable-acs=on`.
    case rootPort(acs: Bool)
    /// A switch: `x3130-upstream` with `xio3130-downstream` ports as children.
    case switchUpstream
    /// A switch downstream port; `acs` is what the file declared (nil: the emulator's default).
    case downstreamPort(acs: Bool?)
    /// `pcie-pci-bridge` (1b36:000e): PCIe-to-PCI, conventional bus behind it.
    case pciePCIBridge
    /// `pci-bridge` (1b36:0001): conventional PCI-to-PCI bridge.
    case pciBridge
    /// An endpoint device.
    case device(DeviceModel, dmaMaskBits: Int?)

    /// The YAML key that declares this kind.
    public var keyword: String {
        switch self {
        case .rootPort: return "root-port"
        case .switchUpstream: return "switch"
        case .downstreamPort: return "port"
        case .pciePCIBridge: return "pcie-pci-bridge"
        case .pciBridge: return "pci-bridge"
        case .device: return "device"
        }
    }

    public var isBridge: Bool {
        if case .device = self { return false }
        return true
    }
}

/// A declared node of the fabric, with its resolved slot and function.
public struct FabricNode: Sendable, Equatable {
    public var id: String
    public var kind: NodeKind
    /// Slot on the parent bus (resolved: declared, or the next free one).
    public var slot: Int
    public var function: Int
    /// Children on this node's secondary bus (downstream ports for a switch).
    public var children: [FabricNode]
    public var location: SourceLocation
    /// `vfs: N`: the SR-IOV virtual functions steps may name (`<id>.vf0` …); 0 for none.
    public var virtualFunctions: Int
    /// `vf-names:`: the ids of the first VFs, in VF order, instead of `<id>.vf<n>`.
    public var virtualFunctionNames: [String] = []

    /// The id of VF `index`: its declared name, or `<id>.vf<index>`.
    public func virtualFunctionID(_ index: Int) -> String {
        index < virtualFunctionNames.count ? virtualFunctionNames[index] : SRIOVCapability.vfID(pf: id, index: index)
    }

    public init(id: String, kind: NodeKind, slot: Int, function: Int = 0, children: [FabricNode] = [],
                location: SourceLocation = SourceLocation(file: "<memory>", line: 0, column: 0),
                virtualFunctions: Int = 0) {
        self.id = id
        self.kind = kind
        self.slot = slot
        self.function = function
        self.children = children
        self.location = location
        self.virtualFunctions = virtualFunctions
    }

    public var deviceModel: DeviceModel? {
        if case .device(let m, _) = kind { return m }
        return nil
    }
}

/// A DMA probe target.
public enum DMATarget: Sendable, Equatable, Hashable {
    /// The initiator's own mapped buffer in RAM: RAM → device → RAM.
    case memory
    /// An IOVA that nothing maps.
    case unmapped
    /// A peer device's BAR0.
    case device(String)
}

/// How the probe maps the target into the initiator's IOVA space.
public enum DMAMapping: String, Sendable, Equatable, Codable {
    /// Whatever the target needs for itself: a buffer for `memory`, nothing for a peer.
    case own
    /// The peer's BAR, mmapped through its VFIO device, mapped into the initiator's container.
    case peer
}

/// Which VFIO uAPI a `vfio-open` uses.
public enum VFIOPath: String, Sendable, Equatable, Codable, CaseIterable {
    /// `/dev/vfio/vfio` container + `/dev/vfio/<group>` + type1 (or no-IOMMU) backend.
    case group
    /// The device cdev `/dev/vfio/devices/vfioN` bound to an iommufd (`/dev/iommu`) and
    /// attached to an IOAS (v6.6+, `CONFIG_VFIO_DEVICE_CDEV`).
    case cdev
}

/// A program a `selftest` step runs in the guest.
public struct ProgramRun: Sendable, Equatable {
    /// The name the guest runs it by (`/isolab/programs/NAME`).
    public var program: String
    /// Where the host takes it from.
    public var source: ProgramSource
    /// Declared devices whose BDFs follow `args` on the command line.
    public var devices: [String]
    public var args: [String]
    public var env: [String: String]
    /// Seconds the program may run before it is killed and the step reported `timed-out`.
    public var timeout: Double
    /// 2 MiB huge pages reserved (`vm.nr_hugepages`) before it runs; 0 leaves the boot's none.
    public var hugepages: Int

    public init(program: String, source: ProgramSource, devices: [String], args: [String] = [],
                env: [String: String] = [:], timeout: Double = ProgramRun.defaultTimeout, hugepages: Int = 0) {
        self.program = program
        self.source = source
        self.devices = devices
        self.args = args
        self.env = env
        self.timeout = timeout
        self.hugepages = hugepages
    }

    /// A selftest under TCG: each harness test sets its device up again (reset, container, maps).
    public static let defaultTimeout = 300.0
}

/// Where a `selftest` step's program comes from.
public enum ProgramSource: Sendable, Equatable {
    /// One of the kernel's selftests (tools/testing/selftests/vfio or iommu), which isolab builds
    /// from the kernel source package of the catalog's selftest kernel.
    case kernelSelftest
    /// A static executable the developer supplies (absolute path on the host).
    case file(String)
}

/// One step of a scenario.
public enum StepAction: Sendable, Equatable {
    /// `modprobe MODULE [OPTION...]`.
    case loadDriver(String, options: [String] = [])
    case bind(device: String, driver: String?)
    case unbind(String)
    case vfioBind(String)
    /// `token`: a VF token (UUID) given with the device name (`"BDF vf_token=UUID"`).
    case vfioOpen(String, via: VFIOPath = .group, token: String? = nil)
    case vfioClose(String)
    case dma(from: String, to: DMATarget, map: DMAMapping)
    /// Writes `vfs` to the physical function's `sriov_numvfs` (0 removes its VFs). `online`: an
    /// nvme PF's VF controllers are given resources and brought online (NVMe virtualization
    /// management) before any driver probes them.
    case sriov(device: String, vfs: Int, online: Bool = false)
    /// Sets a PF's VF token through its open VFIO device (`VFIO_DEVICE_FEATURE_PCI_VF_TOKEN`).
    case vfToken(device: String, token: String)
    /// Runs a program in the guest (a kernel selftest or the developer's own), given the devices'
    /// BDFs; its TAP results are judged one by one.
    case selftest(ProgramRun)

    /// The step's operation: its keyword in a topology file and its `op` in a plan.
    public var op: PlanStep.Op {
        switch self {
        case .loadDriver: return .loadDriver
        case .bind: return .bind
        case .unbind: return .unbind
        case .vfioBind: return .vfioBind
        case .vfioOpen: return .vfioOpen
        case .vfioClose: return .vfioClose
        case .dma: return .dma
        case .sriov: return .sriov
        case .vfToken: return .vfToken
        case .selftest: return .selftest
        }
    }

    /// The step's keyword in a topology file.
    public var keyword: String { op.rawValue }

    /// The device the step acts on (`dma`: the initiator); nil for `load-driver`.
    public var device: String? {
        switch self {
        case .loadDriver: return nil
        case .bind(let d, _), .unbind(let d), .vfioBind(let d), .vfioOpen(let d, _, _), .vfioClose(let d): return d
        case .dma(let from, _, _): return from
        case .sriov(let d, _, _), .vfToken(let d, _): return d
        case .selftest(let run): return run.devices.first
        }
    }

    /// A one-line rendering, e.g. `dma A -> B (map: peer)`.
    public var summary: String {
        switch self {
        case .loadDriver(let d, let options): return ([keyword, d] + options).joined(separator: " ")
        case .bind(let dev, let drv): return "\(keyword) \(dev)" + (drv.map { " to \($0)" } ?? "")
        case .unbind(let d), .vfioBind(let d), .vfioClose(let d): return "\(keyword) \(d)"
        case .vfioOpen(let d, let via, let token):
            return "\(keyword) \(d)" + (via == .cdev ? " (via: cdev)" : "") + (token.map { " (vf_token \($0.prefix(8))…)" } ?? "")
        case .dma(let from, let to, let map):
            let target: String
            switch to {
            case .memory: target = "memory"
            case .unmapped: target = "unmapped IOVA"
            case .device(let d): target = d
            }
            return "\(keyword) \(from) -> \(target)" + (map == .peer ? " (map: peer)" : "")
        case .sriov(let d, let n, let online): return "\(keyword) \(d) vfs \(n)" + (online ? " online" : "")
        case .vfToken(let d, let t): return "\(keyword) \(d) \(t.prefix(8))…"
        case .selftest(let run): return ([keyword, run.program] + run.args + run.devices).joined(separator: " ")
        }
    }
}

/// A result pinned by the topology author where it is known to differ from the model.
public struct PinnedExpectation: Sendable, Equatable {
    /// `ok`, an errno name such as `EBUSY`, `crash`, `blocked`, `delivered`, `faulted` or `timed-out`.
    public var result: String
    public var because: String
    public init(result: String, because: String) {
        self.result = result
        self.because = because
    }
}

public struct Step: Sendable, Equatable {
    public var action: StepAction
    public var expect: PinnedExpectation?
    public var location: SourceLocation
    public init(_ action: StepAction, expect: PinnedExpectation? = nil,
                location: SourceLocation = SourceLocation(file: "<memory>", line: 0, column: 0)) {
        self.action = action
        self.expect = expect
        self.location = location
    }
}

public struct Scenario: Sendable, Equatable {
    public var name: String
    public var description: String?
    public var steps: [Step]
    public init(name: String, description: String? = nil, steps: [Step]) {
        self.name = name
        self.description = description
        self.steps = steps
    }
}

/// A validated topology file: one fabric and the scenarios to run on it.
public struct Topology: Sendable, Equatable {
    public var name: String
    public var description: String?
    public var iommu: IOMMUModel
    public var memoryMiB: Int
    /// Nodes on the root complex's bus, pcie.0.
    public var fabric: [FabricNode]
    public var scenarios: [Scenario]
    public var file: String
    /// The emulator the fabric is built on, as its binary answered a probe; nil: the host's
    /// QEMU as the model assumes it (``EmulatorFacts/assumedHostQEMU72``).
    public var emulator: EmulatorFacts?

    /// An ACS-less root port is QEMU's `ioh3420` where `pcie-root-port` has no `disable-acs`
    /// (QEMU 11 dropped it); its guest path and group are the same.
    public var buildsRootPortWithoutACSAsIOH3420: Bool {
        guard let e = emulator else { return false }
        return !e.rootPortCanDisableACS && e.has("ioh3420")
    }

    public init(name: String, description: String? = nil, iommu: IOMMUModel = .intel, memoryMiB: Int = 512,
                fabric: [FabricNode], scenarios: [Scenario] = [], file: String = "<memory>") {
        self.name = name
        self.description = description
        self.iommu = iommu
        self.memoryMiB = memoryMiB
        self.fabric = fabric
        self.scenarios = scenarios
        self.file = file
    }

    /// Every declared node, depth first, parents before children.
    public var allNodes: [FabricNode] {
        var out: [FabricNode] = []
        func walk(_ nodes: [FabricNode]) {
            for n in nodes {
                out.append(n)
                walk(n.children)
            }
        }
        walk(fabric)
        return out
    }
}
