import IsolabModel
import Yams

/// Where a list of nodes sits, which decides what may go there and where auto slots start.
enum Placement {
    /// pcie.0, the root complex's bus.
    case rootComplex
    /// The secondary bus of a root port or switch downstream port (PCIe, device 0 only).
    case port(String)
    /// A switch's internal bus (its `downstream:` list).
    case switchBus(String)
    /// A conventional PCI bus behind a pcie-pci-bridge or pci-bridge.
    case conventional(String)

    var firstAutoSlot: Int {
        switch self {
        case .rootComplex, .conventional: return 1
        case .port, .switchBus: return 0
        }
    }
}

/// Declared node facts that scenarios are checked against.
struct DeclaredNode {
    var kind: NodeKind
    var location: SourceLocation
    /// `vfs:` of an SR-IOV device (its VFs are declared nodes of their own, `<id>.vfN`).
    var virtualFunctions = 0
}

/// Builds the node tree: kinds, attributes, placement rules, slots and functions.
struct FabricBuilder {
    let reader: YAMLReader
    var declared: [String: DeclaredNode] = [:]
    var order: [String] = []

    init(reader: YAMLReader) { self.reader = reader }

    static let kinds = ["root-port", "switch", "pcie-pci-bridge", "pci-bridge", "device"]

    mutating func nodes(_ node: Yams.Node, _ field: String, placement: Placement) throws -> [FabricNode] {
        let items = try reader.sequence(node, field)
        var parsed: [(node: FabricNode, explicitSlot: Bool, yaml: Yams.Node)] = []
        for (i, item) in items.enumerated() {
            let f = "\(field)[\(i)]"
            let (n, es) = try self.node(item, f, placement: placement)
            parsed.append((n, es, item))
        }
        return try assignSlots(parsed, field: field, placement: placement)
    }

    /// One node mapping: exactly one kind key whose value is the node's id.
    mutating func node(_ item: Yams.Node, _ field: String, placement: Placement) throws -> (FabricNode, Bool) {
        let isSwitchBus: Bool
        if case .switchBus = placement { isSwitchBus = true } else { isSwitchBus = false }
        let kindKeys = isSwitchBus ? ["port"] : Self.kinds
        guard case .mapping(let m) = item else {
            throw reader.error(item, field, "expected a node mapping, found \(reader.describe(item))", accepted: "a mapping with one of \(kindKeys.joined(separator: ", "))")
        }
        let keys = m.keys.compactMap { k -> String? in if case .scalar(let s) = k { return s.string } else { return nil } }
        let present = keys.filter { Self.kinds.contains($0) || $0 == "port" }
        guard present.count == 1, let kind = present.first else {
            let msg = present.isEmpty ? "no node kind" : "more than one node kind (\(present.joined(separator: ", ")))"
            throw reader.error(item, field, msg, accepted: "exactly one of \(kindKeys.joined(separator: ", "))")
        }
        if kind == "port" && !isSwitchBus {
            throw reader.error(m.keys.first { $0.string == "port" }, field, "a downstream port outside a switch", accepted: "port: only inside a switch's downstream: list")
        }
        if isSwitchBus && kind != "port" {
            throw reader.error(item, field, "a switch's downstream: list holds only ports, found \(kind)", accepted: "port")
        }
        let allowed: [String]
        switch kind {
        case "root-port", "port": allowed = [kind, "slot", "function", "acs", "children"]
        case "switch": allowed = [kind, "downstream"]
        case "pcie-pci-bridge", "pci-bridge": allowed = [kind, "slot", "function", "children"]
        default: allowed = [kind, "model", "slot", "function", "dma-mask", "vfs", "vf-names"]
        }
        let entries = try reader.mapping(item, field, allowed: allowed)
        let kindEntry = entries.first { $0.key == kind }!
        let id = try reader.identifier(kindEntry.value, field + "." + kind)
        let loc = reader.location(kindEntry.keyNode)
        if let prev = declared[id] {
            throw reader.error(kindEntry.value, field + "." + kind, "duplicate id '\(id)' (first declared at line \(prev.location.line))", accepted: "ids unique across the file")
        }
        try checkPlacement(kind: kind, placement: placement, at: kindEntry.keyNode, field: field)
        declared[id] = DeclaredNode(kind: .pciBridge, location: loc)
        order.append(id)

        var slot: Int?
        var function: Int?
        var acs: Bool?
        var model: DeviceModel?
        var maskBits: Int?
        var childrenNode: Yams.Node?
        var maskNode: Yams.Node?
        var vfs = 0
        var vfsNode: Yams.Node?
        var vfNames: [String] = []
        var vfNamesNode: Yams.Node?
        for (key, _, value) in entries where key != kind {
            let f = field + "." + key
            switch key {
            case "slot": slot = try reader.int(value, f, range: 0...31)
            case "function": function = try reader.int(value, f, range: 0...7)
            case "acs": acs = try reader.bool(value, f)
            case "model":
                model = DeviceModel(rawValue: try reader.oneOf(value, f, DeviceModel.declarable.map(\.rawValue)))
            case "dma-mask":
                maskBits = try reader.int(value, f, range: 28...64)
                maskNode = value
            case "vfs":
                vfs = try reader.int(value, f, range: 1...255)
                vfsNode = value
            case "vf-names":
                vfNames = try reader.sequence(value, f).enumerated().map { i, n in try reader.identifier(n, "\(f)[\(i)]") }
                vfNamesNode = value
            case "children", "downstream": childrenNode = value
            default: break
            }
        }
        let nodeKind: NodeKind
        var children: [FabricNode] = []
        switch kind {
        case "root-port":
            nodeKind = .rootPort(acs: acs ?? true)
            if let c = childrenNode { children = try nodes(c, field + ".children", placement: .port(id)) }
        case "port":
            nodeKind = .downstreamPort(acs: acs)
            if let c = childrenNode { children = try nodes(c, field + ".children", placement: .port(id)) }
        case "switch":
            guard let c = childrenNode else {
                throw reader.error(item, field, "a switch needs downstream ports", accepted: "downstream: a list of port: nodes")
            }
            nodeKind = .switchUpstream
            children = try nodes(c, field + ".downstream", placement: .switchBus(id))
            guard !children.isEmpty else {
                throw reader.error(c, field + ".downstream", "a switch needs at least one downstream port", accepted: "a list of port: nodes")
            }
        case "pcie-pci-bridge":
            nodeKind = .pciePCIBridge
            if let c = childrenNode { children = try nodes(c, field + ".children", placement: .conventional(id)) }
        case "pci-bridge":
            nodeKind = .pciBridge
            if let c = childrenNode { children = try nodes(c, field + ".children", placement: .conventional(id)) }
        default:
            guard let model else {
                throw reader.error(item, field, "device '\(id)' has no model", accepted: DeviceModel.declarable.map(\.rawValue).joined(separator: ", "))
            }
            if maskBits != nil && model != .edu {
                throw reader.error(maskNode, field + ".dma-mask", "dma-mask applies to edu only, not \(model.rawValue)", accepted: "dma-mask on edu devices")
            }
            nodeKind = .device(model, dmaMaskBits: maskBits)
            if let vfsNode {
                guard let sriov = SRIOVCapability.of(model, vfs: vfs) else {
                    let offering = DeviceModel.declarable.filter { SRIOVCapability.of($0, vfs: 1) != nil }.map(\.rawValue)
                    throw reader.error(vfsNode, field + ".vfs", "\(model.rawValue) has no SR-IOV capability", accepted: "vfs on \(offering.joined(separator: ", "))")
                }
                guard vfs <= sriov.maxDeclarable else {
                    throw reader.error(vfsNode, field + ".vfs", "\(model.rawValue) offers \(sriov.maxDeclarable) VFs, not \(vfs)", accepted: "1...\(sriov.maxDeclarable)")
                }
                guard vfNames.count <= vfs else {
                    throw reader.error(vfNamesNode, field + ".vf-names", "\(vfNames.count) names for \(vfs) VFs", accepted: "at most vfs: names, in VF order")
                }
                for i in 0..<vfs {
                    let vf = i < vfNames.count ? vfNames[i] : SRIOVCapability.vfID(pf: id, index: i)
                    if let prev = declared[vf] {
                        throw reader.error(vfNamesNode ?? vfsNode, field + ".vf-names", "duplicate id '\(vf)' (first declared at line \(prev.location.line))", accepted: "ids unique across the file")
                    }
                    declared[vf] = DeclaredNode(kind: .device(sriov.vfModel, dmaMaskBits: nil), location: reader.location(vfNamesNode ?? vfsNode))
                }
                declared[id]?.virtualFunctions = vfs
            }
            if let vfNamesNode, vfsNode == nil {
                throw reader.error(vfNamesNode, field + ".vf-names", "vf-names without vfs:", accepted: "vf-names beside vfs: N")
            }
        }
        declared[id]?.kind = nodeKind
        var node = FabricNode(id: id, kind: nodeKind, slot: kind == "switch" ? 0 : (slot ?? -1),
                        function: function ?? 0, children: children, location: loc, virtualFunctions: vfs)
        node.virtualFunctionNames = vfNames
        return (node, slot != nil || kind == "switch")
    }

    /// Each VF takes the routing ID `pci_iov_virtfn_devfn()` gives it on its PF's bus: it must
    /// stay on that bus (isolab does not model the extra bus a VF past devfn 0xff needs) and
    /// must not land on another function.
    func checkVirtualFunctions(_ nodes: [FabricNode], _ yaml: [Yams.Node], field: String, taken: [Int: [Int: String]]) throws {
        var taken = taken
        for (i, n) in nodes.enumerated() where n.virtualFunctions > 0 {
            guard let model = n.deviceModel, let sriov = SRIOVCapability.of(model, vfs: n.virtualFunctions) else { continue }
            for v in 0..<n.virtualFunctions {
                let devfn = sriov.routingID(ofVF: v, pfDevfn: n.slot << 3 | n.function)
                let vf = n.virtualFunctionID(v)
                guard devfn <= 0xff else {
                    throw reader.error(yaml[i], "\(field)[\(i)].vfs", "\(vf) would be at routing ID 0x\(String(devfn, radix: 16)), past the PF's bus (offset 0x\(String(sriov.firstVFOffset, radix: 16)), stride \(sriov.vfStride) from slot \(slotText(n.slot)).\(n.function))", accepted: "fewer vfs, or the PF in a lower slot")
                }
                if let owner = taken[devfn >> 3]?[devfn & 7] {
                    throw reader.error(yaml[i], "\(field)[\(i)].vfs", "\(vf) would be at \(slotText(devfn >> 3)).\(devfn & 7), which \(owner) uses", accepted: "a slot for \(n.id) whose VF routing IDs are free on its bus")
                }
                taken[devfn >> 3, default: [:]][devfn & 7] = "\(vf)"
            }
        }
    }

    func checkPlacement(kind: String, placement: Placement, at node: Yams.Node, field: String) throws {
        switch (kind, placement) {
        case ("root-port", .rootComplex), ("port", .switchBus):
            return
        case ("root-port", .conventional(let p)), ("switch", .conventional(let p)):
            throw reader.error(node, field, "a \(kind) cannot sit on the conventional PCI bus behind '\(p)'", accepted: kind == "root-port" ? "root-port at the top level of fabric:" : "switch under a root-port or a downstream port")
        case ("root-port", .port(let p)):
            throw reader.error(node, field, "a root port cannot sit below '\(p)'", accepted: "root-port at the top level of fabric:")
        case ("switch", .rootComplex):
            throw reader.error(node, field, "a switch's upstream port needs a PCIe port above it", accepted: "switch under a root-port or a downstream port")
        case ("pcie-pci-bridge", .conventional(let p)):
            throw reader.error(node, field, "a pcie-pci-bridge needs a PCIe bus, but '\(p)' has a conventional one below it", accepted: "pcie-pci-bridge on pcie.0 or under a root-port or downstream port")
        default:
            return
        }
    }

    /// Resolves slots (declared, or the next free one on the bus; a function > 0 without a slot
    /// joins the slot of the node before it) and rejects collisions and orphan functions.
    func assignSlots(_ parsed: [(node: FabricNode, explicitSlot: Bool, yaml: Yams.Node)],
                     field: String, placement: Placement) throws -> [FabricNode] {
        var taken: [Int: [Int: String]] = [:]  // slot -> function -> owner
        if case .rootComplex = placement {
            for c in Fabric.chipset { taken[c.slot, default: [:]][c.function] = "the q35 chipset's \(c.name)" }
        }
        var usedSlots = Set(parsed.filter(\.explicitSlot).map(\.node.slot))
        if case .rootComplex = placement { usedSlots.formUnion([0, 0x1f]) }
        var out: [FabricNode] = []
        var lastSlot: Int?
        for (i, p) in parsed.enumerated() {
            var n = p.node
            let f = "\(field)[\(i)]"
            if !p.explicitSlot {
                if n.function > 0 {
                    guard let s = lastSlot else {
                        throw reader.error(p.yaml, f + ".function", "function \(n.function) without a slot, and no node before it whose slot it could join", accepted: "slot: N, or list it after its function 0")
                    }
                    n.slot = s
                } else {
                    guard let free = (placement.firstAutoSlot...31).first(where: { !usedSlots.contains($0) }) else {
                        throw reader.error(p.yaml, f, "no free slot left: a bus has at most 32 slots", accepted: "at most 32 slots per bus")
                    }
                    n.slot = free
                    usedSlots.insert(free)
                }
            }
            if let owner = taken[n.slot]?[n.function] {
                throw reader.error(p.yaml, f, "slot.function \(slotText(n.slot)).\(n.function) is already used by \(owner)", accepted: "a free slot.function on this bus")
            }
            taken[n.slot, default: [:]][n.function] = "'\(n.id)'"
            lastSlot = n.slot
            out.append(n)
        }
        for (i, p) in parsed.enumerated() where out[i].function > 0 && taken[out[i].slot]?[0] == nil {
            throw reader.error(p.yaml, "\(field)[\(i)].function", "function \(out[i].function) in slot \(slotText(out[i].slot)) has no function 0 beside it", accepted: "a multifunction slot with function 0 present")
        }
        try checkVirtualFunctions(out, parsed.map(\.yaml), field: field, taken: taken)
        return out
    }
}
