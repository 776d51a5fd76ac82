import IsolabModel
import IsolabTopology

/// A fabric as `isolab explore` generates and shrinks it: the topology file's own tree, so a
/// candidate is written out (``yaml(name:iommu:)``) and read back by the same loader a user's
/// file goes through, with the same validation.
public struct ExploreNode: Equatable, Codable, Sendable {
    /// The topology keyword.
    public enum Kind: String, Codable, Sendable {
        case rootPort = "root-port"
        case switchUpstream = "switch"
        case port
        case pciePCIBridge = "pcie-pci-bridge"
        case pciBridge = "pci-bridge"
        case device
    }

    public var kind: Kind
    public var id: String
    public var slot: Int?
    public var function: Int?
    /// `acs:` of a root port or downstream port (nil: the default).
    public var acs: Bool?
    /// A device's model (`edu`, `e1000e`, `nvme`).
    public var model: String?
    /// Children on the secondary bus; a switch's downstream ports.
    public var children: [ExploreNode]

    public init(_ kind: Kind, _ id: String, slot: Int? = nil, function: Int? = nil, acs: Bool? = nil,
                model: String? = nil, children: [ExploreNode] = []) {
        self.kind = kind; self.id = id; self.slot = slot; self.function = function
        self.acs = acs; self.model = model; self.children = children
    }

    /// This node and every node below it.
    public var count: Int { 1 + children.reduce(0) { $0 + $1.count } }
}

/// A generated fabric: nodes on pcie.0.
public struct ExploreFabric: Equatable, Codable, Sendable {
    public var nodes: [ExploreNode]

    public init(nodes: [ExploreNode]) { self.nodes = nodes }

    /// Declared nodes (ports, switches, bridges and devices).
    public var nodeCount: Int { nodes.reduce(0) { $0 + $1.count } }

    /// The topology file of this fabric (no scenarios: an inventory boot judges groups, paths,
    /// PCIe types, ACS capabilities and hazards).
    public func yaml(name: String, iommu: IOMMUModel, description: String? = nil) -> String {
        var out = "name: \(name)\n"
        if let description { out += "description: >\n" + description.split(separator: "\n").map { "  \($0)\n" }.joined() }
        out += "iommu: \(iommu.rawValue)\nfabric:\n"
        func emit(_ n: ExploreNode, _ indent: String) {
            out += "\(indent)- \(n.kind.rawValue): \(n.id)\n"
            let inner = indent + "  "
            if let m = n.model { out += "\(inner)model: \(m)\n" }
            if let s = n.slot { out += "\(inner)slot: \(s)\n" }
            if let f = n.function { out += "\(inner)function: \(f)\n" }
            if let a = n.acs { out += "\(inner)acs: \(a)\n" }
            guard !n.children.isEmpty else { return }
            out += "\(inner)\(n.kind == .switchUpstream ? "downstream" : "children"):\n"
            for c in n.children { emit(c, inner + "  ") }
        }
        for n in nodes { emit(n, "  ") }
        return out
    }

    /// The topology, through the loader (nil when the loader refuses it: a shrinking step that
    /// broke a rule, e.g. a function 1 left without its function 0).
    public func topology(name: String, iommu: IOMMUModel) -> Topology? {
        try? TopologyLoader.parse(yaml(name: name, iommu: iommu), file: "\(name).yaml")
    }
}
