import IsolabModel

/// How each declared node of a topology is built in the domain: as a libvirt PCI
/// controller (bus `pci.<index>`) or as a JSON `-device` in `<qemu:commandline>`, at the
/// explicit bus, slot and function of the model's guest path (`Fabric`).
///
/// libvirt 9.0 models root ports, switch ports, pcie-to-pci bridges and pci-bridges, but
/// only where its own PCIe rules allow them (`qemuDomainPCIAddressFlags`): a
/// pcie-to-pci-bridge only below a root or downstream port, a pci-bridge only on a
/// conventional bus and not in slot 0, nothing but root ports on pcie.0. QEMU accepts
/// more (e.g. a pcie-pci-bridge on pcie.0), so a bridge libvirt refuses, and everything
/// below it, is built on the QEMU command line instead. Endpoints libvirt has no element
/// for (edu, e1000e, nvme, virtio-net anywhere) are always built there.
public struct DomainLayout: Sendable, Equatable {
    /// One declared node as built.
    public struct Placement: Sendable, Equatable {
        public var nodeID: String
        public var kind: NodeKind
        /// The model's guest path, e.g. `04.0/00.0/01.0/00.0`.
        public var path: String
        /// QEMU id of the node: `pci.N` for a libvirt controller, `isolab-<id>` otherwise.
        public var qemuID: String
        /// The bus it sits on (`pcie.0`, `pci.N`, or a command-line bridge's id).
        public var bus: String
        public var slot: Int
        public var function: Int
        /// Function 0 of a slot that holds more than one function.
        public var multifunction: Bool
        /// libvirt's controller index, when libvirt builds this node (bridges only).
        public var controllerIndex: Int?
        /// The QEMU id of the bus behind this node, for bridges.
        public var secondaryBus: String?
        /// `dma-mask` bits (edu).
        public var dmaMaskBits: Int?

        public var isLibvirtController: Bool { controllerIndex != nil }
    }

    public var placements: [Placement]
    /// pcie.0 slot of the vIOMMU's own PCI function (virtio-iommu-pci, AMDVI-PCI).
    public var viommuSlot: Int?

    /// Prefix of the QEMU ids isolab gives the nodes it builds on the command line.
    public static let idPrefix = "isolab-"

    public init(topology: Topology, fabric: Fabric) {
        var busName: [Int: String] = [0: "pcie.0"]
        // Fabric bus index -> kind of the bridge in front of it (nil: pcie.0), and whether
        // libvirt built that bridge.
        var busBridge: [Int: NodeKind] = [:]
        var busManaged: [Int: Bool] = [0: true]
        var nextIndex = 1
        var out: [Placement] = []
        // Fabric.functions is in the kernel's bus-list order: every bridge comes before
        // the functions behind it, which is the order QEMU must create them in.
        for f in fabric.bootFunctions {
            guard let id = f.nodeID, let kind = f.kind else { continue }
            let parentManaged = busManaged[f.bus] ?? false
            var p = Placement(nodeID: id, kind: kind, path: f.path, qemuID: Self.idPrefix + id,
                              bus: busName[f.bus] ?? "pcie.0", slot: f.slot, function: f.function,
                              multifunction: f.multifunction && f.function == 0, controllerIndex: nil,
                              secondaryBus: nil, dmaMaskBits: nil)
            if case .device(_, let bits) = kind { p.dmaMaskBits = bits }
            if let sub = f.subordinate {
                let managed = parentManaged && Self.libvirtAccepts(kind, slot: f.slot, under: busBridge[f.bus])
                if managed {
                    p.controllerIndex = nextIndex
                    p.qemuID = "pci.\(nextIndex)"
                    nextIndex += 1
                }
                busName[sub] = p.qemuID
                busBridge[sub] = kind
                busManaged[sub] = managed
                p.secondaryBus = p.qemuID
            }
            out.append(p)
        }
        placements = out
        viommuSlot = Fabric.viommuSlot(for: topology)
    }

    /// Whether libvirt 9.0 takes a controller of `kind` in `slot` of a bus behind `parent`
    /// (nil: pcie.0), following its PCI connect flags.
    static func libvirtAccepts(_ kind: NodeKind, slot: Int, under parent: NodeKind?) -> Bool {
        switch (kind, parent) {
        case (.rootPort, nil):
            return true
        case (.switchUpstream, .rootPort?), (.switchUpstream, .downstreamPort?),
             (.pciePCIBridge, .rootPort?), (.pciePCIBridge, .downstreamPort?):
            return slot == 0
        case (.downstreamPort, .switchUpstream?):
            return true
        case (.pciBridge, .pciePCIBridge?), (.pciBridge, .pciBridge?):
            return slot > 0
        default:
            return false
        }
    }

    /// The placement of a declared node.
    public func placement(of nodeID: String) -> Placement? {
        placements.first { $0.nodeID == nodeID }
    }

    /// libvirt controllers, in index order.
    public var controllers: [Placement] { placements.filter(\.isLibvirtController) }
    /// Bridges and devices built through `<qemu:commandline>`, parents first.
    public var commandLineNodes: [Placement] { placements.filter { !$0.isLibvirtController } }
}
