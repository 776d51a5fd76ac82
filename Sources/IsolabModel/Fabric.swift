/// The PCI Express device/port type from the PCIe capability (`pci_pcie_type()`),
/// or `conventional` for a function without one (`!pci_is_pcie()`).
public enum PCIeType: String, Sendable, Codable {
    case rootPort = "root-port"
    case upstream = "upstream-port"
    case downstream = "downstream-port"
    /// PCI_EXP_TYPE_PCI_BRIDGE: PCIe-to-PCI bridge.
    case pciBridge = "pcie-to-pci-bridge"
    case endpoint
    /// PCI_EXP_TYPE_RC_END: root-complex integrated endpoint.
    case rcEndpoint = "rc-endpoint"
    case conventional

    /// The `PCI_EXP_TYPE_*` code of the function's PCIe capability; nil for conventional PCI.
    public var expressTypeCode: Int? {
        switch self {
        case .endpoint: return 0x0
        case .rootPort: return 0x4
        case .upstream: return 0x5
        case .downstream: return 0x6
        case .pciBridge: return 0x7
        case .rcEndpoint: return 0x9
        case .conventional: return nil
        }
    }
}

/// What put a function on the bus: the topology author, the q35 chipset, or the vIOMMU.
public enum FunctionOrigin: Sendable, Equatable {
    case declared(String)
    case chipset(String)
    case viommu(String)
}

/// One PCI function as the guest kernel enumerates it.
public struct PCIFunction: Sendable, Equatable {
    /// Position in the kernel's bus list (the order devices are added and IOMMU-probed).
    public var index: Int
    public var origin: FunctionOrigin
    public var bus: Int
    public var slot: Int
    public var function: Int
    /// vendor:device, e.g. `1b36:000c`.
    public var vendorDevice: String
    public var pcieType: PCIeType
    /// An ACS extended capability is present (QEMU 7.2: `pcie-root-port` without `disable-acs`).
    public var hasACSCapability: Bool
    /// `pdev->multifunction`: more than one function populates the slot.
    public var multifunction: Bool
    /// The bus behind this bridge, if it is one.
    public var subordinate: Int?
    /// Slot.function chain from the root bus, e.g. `04.0/00.0/01.0/00.0`.
    public var path: String
    /// The declared node kind, for declared functions.
    public var kind: NodeKind?
    /// For an SR-IOV VF: its physical function's index (`pdev->physfn`); nil otherwise.
    public var physicalFunction: Int? = nil
    /// For an SR-IOV VF: its VF index (0 for `<pf>.vf0`).
    public var virtualFunctionIndex: Int? = nil

    public var nodeID: String? {
        if case .declared(let id) = origin { return id }
        return nil
    }

    public var isBridge: Bool { subordinate != nil }

    public var vendor: String { String(vendorDevice.prefix(4)) }

    /// The device model, for declared endpoints.
    public var deviceModel: DeviceModel? {
        if case .device(let m, _)? = kind { return m }
        return nil
    }

    /// The driver a `bind` step without a driver uses: the device model's
    /// (`DeviceModel.defaultDriver`), `pci-stub` for a function without one (ports, bridges).
    public var defaultDriver: String { deviceModel?.defaultDriver ?? "pci-stub" }

    /// A readable name: the node id, or what the chipset device is.
    public var displayName: String {
        switch origin {
        case .declared(let id): return id
        case .chipset(let what), .viommu(let what): return what
        }
    }
}

/// A PCI bus: the root bus or the secondary bus of a bridge.
public struct PCIBus: Sendable, Equatable {
    public var index: Int
    /// The bridge whose secondary bus this is (`bus->self`); nil for the root bus.
    public var bridge: Int?
    public var parent: Int?
    /// PCI Express link (root bus, port secondaries, switch internal bus) or conventional PCI.
    public var isExpress: Bool
    public var functions: [Int] = []
    public var isRoot: Bool { bridge == nil }
}

/// The realized PCI hierarchy of a topology: what the guest kernel enumerates on q35.
public struct Fabric: Sendable {
    public private(set) var buses: [PCIBus] = []
    public private(set) var functions: [PCIFunction] = []
    /// Declared node id -> function index.
    public private(set) var byNode: [String: Int] = [:]
    /// The functions the guest enumerates at boot come first in `functions`; the SR-IOV VFs
    /// that `sriov` steps may create follow them (present only once created).
    public private(set) var bootFunctionCount = 0

    /// The functions the guest enumerates at boot, in bus-list order.
    public var bootFunctions: ArraySlice<PCIFunction> { functions[..<bootFunctionCount] }

    /// This fabric with every declared VF present, as if each PF's `sriov` step had enabled them
    /// all: they count among the enumerated functions (grouping, endpoints), after the rest.
    public func withVirtualFunctionsEnabled() -> Fabric {
        var f = self
        f.bootFunctionCount = functions.count
        return f
    }

    /// The VFs of the physical function `pf`, by VF index.
    public func virtualFunctions(of pf: PCIFunction) -> [PCIFunction] {
        functions[bootFunctionCount...].filter { $0.physicalFunction == pf.index }
    }

    /// Slots the q35 machine fills itself: 00.0 host bridge, 1f.0/2/3 ICH9.
    public static let chipset: [(slot: Int, function: Int, vendorDevice: String, name: String)] = [
        (0x00, 0, "8086:29c0", "q35 host bridge"),
        (0x1f, 0, "8086:2918", "ICH9 LPC"),
        (0x1f, 2, "8086:2922", "ICH9 AHCI"),
        (0x1f, 3, "8086:2930", "ICH9 SMBus"),
    ]

    /// The slot the vIOMMU's own PCI function takes on pcie.0, if it has one: virtio-iommu-pci
    /// the first slot that neither the chipset nor the topology uses; AMDVI-PCI always slot 1
    /// (amd-iommu goes in as a legacy `-device`, which QEMU creates before libvirt's devices and
    /// places at the first free slot; observed at 00:01.0 on QEMU 7.2).
    public static func viommuSlot(for topology: Topology) -> Int? {
        guard topology.iommu == .virtio || topology.iommu == .amd else { return nil }
        if topology.iommu == .amd { return amdVIOMMUSlot }
        let used = Set(topology.fabric.map(\.slot)).union(chipset.map(\.slot))
        return (1..<0x1f).first { !used.contains($0) }
    }

    /// Where QEMU 7.2 puts AMDVI-PCI.
    public static let amdVIOMMUSlot = 1

    /// QEMU's Intel root port model (vendor:device), an ACS-less root port where
    /// pcie-root-port cannot disable ACS.
    public static let ioh3420 = "8086:3420"

    public init(_ topology: Topology) {
        // Collect, per bus, the entries before ordering them, then number functions in
        // the order pci_scan_child_bus() adds them: every function of a bus by devfn,
        // then each bridge's secondary bus in turn (parents before children).
        var pending: [Int: [Entry]] = [:]
        let root = addBus(bridgeEntry: nil, parent: nil, express: true)
        var rootEntries = topology.fabric.map { Entry.node($0) }
        for c in Fabric.chipset {
            rootEntries.append(.fixed(slot: c.slot, function: c.function, vendorDevice: c.vendorDevice,
                                      origin: .chipset(c.name)))
        }
        if let slot = Fabric.viommuSlot(for: topology) {
            let (vd, name) = topology.iommu == .virtio ? ("1af4:1057", "virtio-iommu-pci") : ("1022:0008", "AMDVI-PCI")
            rootEntries.append(.fixed(slot: slot, function: 0, vendorDevice: vd, origin: .viommu(name)))
        }
        pending[root] = rootEntries
        var queue = [(bus: root, prefix: "")]
        var q = 0
        while q < queue.count {
            let (busIndex, prefix) = queue[q]
            q += 1
            let entries = (pending[busIndex] ?? []).sorted { ($0.slot, $0.function) < ($1.slot, $1.function) }
            let slotCounts = Dictionary(grouping: entries, by: \.slot).mapValues(\.count)
            var bridges: [(Int, String)] = []
            for e in entries {
                let path = (prefix.isEmpty ? "" : prefix + "/") + slotText(e.slot) + ".\(e.function)"
                var f = PCIFunction(index: functions.count, origin: e.origin, bus: busIndex, slot: e.slot,
                                    function: e.function, vendorDevice: e.vendorDevice,
                                    pcieType: .conventional, hasACSCapability: false,
                                    multifunction: (slotCounts[e.slot] ?? 1) > 1, subordinate: nil,
                                    path: path, kind: nil)
                if case .node(let n) = e {
                    describe(&f, node: n, onBus: buses[busIndex])
                    if case .rootPort(false) = n.kind, topology.buildsRootPortWithoutACSAsIOH3420 {
                        f.vendorDevice = Self.ioh3420   // hw/pci-bridge/ioh3420.c: no ACS capability
                    }
                    if n.kind.isBridge {
                        let express: Bool
                        switch n.kind {
                        case .pciePCIBridge, .pciBridge: express = false
                        default: express = true
                        }
                        let child = addBus(bridgeEntry: f.index, parent: busIndex, express: express)
                        f.subordinate = child
                        pending[child] = n.children.map { Entry.node($0) }
                        bridges.append((child, path))
                    }
                    byNode[n.id] = f.index
                }
                functions.append(f)
                buses[busIndex].functions.append(f.index)
            }
            // pci_scan_child_bus_extend(): a bus's bridges are scanned after all of its
            // functions, each bridge's secondary bus depth first, in devfn order.
            queue.insert(contentsOf: bridges.map { (bus: $0.0, prefix: $0.1) }, at: q)
        }
        bootFunctionCount = functions.count
        // The PFs in bus-list order, each once (not a walk of the whole tree per function).
        let pfs = topology.allNodes.filter { $0.virtualFunctions > 0 }.compactMap { n in byNode[n.id].map { (functions[$0], n) } }
        for (pf, node) in pfs.sorted(by: { $0.0.index < $1.0.index }) {
            guard let model = pf.deviceModel, let sriov = SRIOVCapability.of(model, vfs: node.virtualFunctions) else { continue }
            for i in 0..<node.virtualFunctions { addVirtualFunction(i, id: node.virtualFunctionID(i), of: pf, sriov) }
        }
    }

    /// VF `index` of `pf` as `pci_iov_add_virtfn()` creates it: on the PF's bus at the routing
    /// ID the capability gives, the VF device ID, `multifunction = 0`, no ACS capability, and the
    /// PF's PCIe type (QEMU's VF has the PF's endpoint capability). The topology reader refuses
    /// a VF whose routing ID leaves the PF's bus.
    private mutating func addVirtualFunction(_ index: Int, id: String, of pf: PCIFunction, _ sriov: SRIOVCapability) {
        let devfn = sriov.routingID(ofVF: index, pfDevfn: pf.slot << 3 | pf.function)
        let prefix = pf.path.split(separator: "/").dropLast().joined(separator: "/")
        let (slot, function) = (devfn >> 3 & 0x1f, devfn & 7)
        var f = PCIFunction(index: functions.count, origin: .declared(id), bus: pf.bus, slot: slot, function: function,
                            vendorDevice: sriov.vfVendorDevice, pcieType: pf.pcieType, hasACSCapability: false,
                            multifunction: false, subordinate: nil,
                            path: (prefix.isEmpty ? "" : prefix + "/") + slotText(slot) + ".\(function)",
                            kind: .device(sriov.vfModel, dmaMaskBits: nil))
        f.physicalFunction = pf.index
        f.virtualFunctionIndex = index
        byNode[id] = f.index
        functions.append(f)
    }

    private enum Entry {
        case node(FabricNode)
        case fixed(slot: Int, function: Int, vendorDevice: String, origin: FunctionOrigin)
        var slot: Int {
            switch self {
            case .node(let n): return n.slot
            case .fixed(let s, _, _, _): return s
            }
        }
        var function: Int {
            switch self {
            case .node(let n): return n.function
            case .fixed(_, let f, _, _): return f
            }
        }
        var origin: FunctionOrigin {
            switch self {
            case .node(let n): return .declared(n.id)
            case .fixed(_, _, _, let o): return o
            }
        }
        var vendorDevice: String {
            switch self {
            case .fixed(_, _, let vd, _): return vd
            case .node(let n):
                switch n.kind {
                case .rootPort: return "1b36:000c"
                case .switchUpstream: return "104c:8232"
                case .downstreamPort: return "104c:8233"
                case .pciePCIBridge: return "1b36:000e"
                case .pciBridge: return "1b36:0001"
                case .device(let m, _):
                    switch m {
                    case .edu: return "1234:11e8"
                    case .e1000e: return "8086:10d3"
                    case .nvme: return "1b36:0010"
                    case .virtioNet: return "1af4:1041"
                    case .igb: return "8086:10c9"
                    case .igbVF: return "8086:10ca"
                    }
                }
            }
        }
    }

    private mutating func addBus(bridgeEntry: Int?, parent: Int?, express: Bool) -> Int {
        buses.append(PCIBus(index: buses.count, bridge: bridgeEntry, parent: parent, isExpress: express))
        return buses.count - 1
    }

    /// The PCIe type and ACS capability QEMU 7.2 gives a node on a given bus
    /// (hw/pci-bridge/*.c, `pcie_endpoint_cap_common_init`, virtio-pci's `pcie_port`).
    private func describe(_ f: inout PCIFunction, node: FabricNode, onBus bus: PCIBus) {
        f.kind = node.kind
        switch node.kind {
        case .rootPort(let acs):
            f.pcieType = .rootPort
            f.hasACSCapability = acs
        case .switchUpstream:
            f.pcieType = .upstream
        case .downstreamPort(let acs):
            // As declared, so that a switch with ACS can be predicted; QEMU 7.2's
            // xio3130-downstream has none (Realizability reports that).
            f.pcieType = .downstream
            f.hasACSCapability = acs ?? false
        case .pciePCIBridge:
            f.pcieType = .pciBridge
        case .pciBridge:
            f.pcieType = .conventional
        case .device(let model, _):
            switch model {
            case .edu:
                f.pcieType = .conventional
            case .e1000e, .nvme, .igb, .igbVF:
                f.pcieType = (bus.isExpress && bus.isRoot) ? .rcEndpoint : .endpoint
            case .virtioNet:
                f.pcieType = (bus.isExpress && !bus.isRoot) ? .endpoint : .conventional
            }
        }
    }

    /// The function that owns a declared node.
    public func function(of nodeID: String) -> PCIFunction? {
        byNode[nodeID].map { functions[$0] }
    }

    /// The bridge above a function (`pdev->bus->self`), nil on the root bus.
    public func parentBridge(of f: PCIFunction) -> PCIFunction? {
        buses[f.bus].bridge.map { functions[$0] }
    }

    /// Functions sharing `f`'s slot on its bus, `f` excluded.
    public func slotSiblings(of f: PCIFunction) -> [PCIFunction] {
        buses[f.bus].functions.map { functions[$0] }.filter { $0.slot == f.slot && $0.index != f.index }
    }

    /// `f` and every bridge above it, nearest first.
    public func ancestry(of f: PCIFunction) -> [PCIFunction] {
        var out = [f]
        var cur = f
        while let p = parentBridge(of: cur) {
            out.append(p)
            cur = p
        }
        return out
    }

    /// Declared endpoint devices the guest enumerates at boot, in bus-list order.
    public var endpoints: [PCIFunction] {
        bootFunctions.filter { if case .device = $0.kind { return true } else { return false } }
    }
}

/// A slot as the guest prints it: two lowercase hex digits (`04`, `1f`).
public func slotText(_ v: Int) -> String {
    let hex = String(v, radix: 16)
    return hex.count == 1 ? "0" + hex : hex
}
