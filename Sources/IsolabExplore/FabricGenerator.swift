import IsolabModel

/// SplitMix64: a small, fast generator whose sequence is fixed by its seed on every platform,
/// so `isolab explore --seed S` explores the same fabrics everywhere.
public struct SplitMix64: RandomNumberGenerator, Sendable {
    private var state: UInt64
    public init(seed: UInt64) { state = seed }
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// Random fabrics inside what QEMU builds: root ports with and without ACS, switches (nested
/// too), PCIe-to-PCI and PCI bridges, multifunction slots, integrated endpoints and
/// multifunction integrated slots, with edu, e1000e and nvme endpoints. What an emulator
/// cannot build is still generated; the caller checks ``Realizability``.
public struct FabricGenerator: Sendable {
    public var rng: SplitMix64
    /// At most this many endpoints per fabric.
    public var maxEndpoints = 8
    /// Bridges nest at most this deep below a root-bus node.
    public var maxDepth = 3
    public var models: [DeviceModel] = [.edu, .e1000e, .nvme]

    private var endpoints = 0
    private var counters: [String: Int] = [:]

    public init(seed: UInt64) { rng = SplitMix64(seed: seed) }

    /// The next fabric: 1–3 nodes on pcie.0 (root ports most often), each with what may sit
    /// below it.
    public mutating func next() -> ExploreFabric {
        endpoints = 0
        counters = [:]
        var slots = Array(2...30)
        slots.shuffle(using: &rng)
        var nodes: [ExploreNode] = []
        for slot in slots.prefix(Int.random(in: 1...3, using: &rng)) {
            switch Int.random(in: 0..<10, using: &rng) {
            case 0..<6:
                var rp = ExploreNode(.rootPort, id("rp"), slot: slot, acs: Bool.random(using: &rng) ? nil : false)
                rp.children = portChildren(depth: 1)
                nodes.append(rp)
            case 6..<8:
                nodes += endpointsInSlot(slot, maxFunctions: 3, conventional: false)
            default:
                nodes.append(ExploreNode(.pciePCIBridge, id("br"), slot: slot, children: conventionalChildren(depth: 1)))
            }
        }
        return ExploreFabric(nodes: nodes)
    }

    private mutating func id(_ prefix: String) -> String {
        let n = counters[prefix, default: 0]
        counters[prefix] = n + 1
        return "\(prefix)\(n)"
    }

    private mutating func model(conventional: Bool) -> String {
        // A conventional bus takes edu (a conventional PCI device); PCIe buses any model.
        (conventional ? DeviceModel.edu : models.randomElement(using: &rng)!).rawValue
    }

    /// One slot of endpoints: a single function, or a multifunction slot (functions 0…).
    private mutating func endpointsInSlot(_ slot: Int?, maxFunctions: Int, conventional: Bool) -> [ExploreNode] {
        let room = maxEndpoints - endpoints
        guard room > 0 else { return [] }
        let functions = min(room, Bool.random(using: &rng) ? 1 : Int.random(in: 2...maxFunctions, using: &rng))
        endpoints += functions
        return (0..<functions).map { f in
            ExploreNode(.device, id("D"), slot: slot, function: functions > 1 ? f : nil,
                        model: model(conventional: conventional))
        }
    }

    /// Below a root port or downstream port (a PCIe link: device 0 only).
    private mutating func portChildren(depth: Int) -> [ExploreNode] {
        let choice = Int.random(in: 0..<10, using: &rng)
        if depth < maxDepth, choice < 3 {
            let ports = Int.random(in: 1...3, using: &rng)
            let sw = ExploreNode(.switchUpstream, id("sw"), children: (0..<ports).map { _ in
                var p = ExploreNode(.port, id("dp"))
                p.children = portChildren(depth: depth + 1)
                return p
            })
            return [sw]
        }
        if depth < maxDepth, choice == 3 {
            return [ExploreNode(.pciePCIBridge, id("br"), children: conventionalChildren(depth: depth + 1))]
        }
        if choice == 4 { return [] }
        return endpointsInSlot(nil, maxFunctions: 3, conventional: false)
    }

    /// A conventional bus: 1–3 slots of edu functions, sometimes a nested pci-bridge.
    private mutating func conventionalChildren(depth: Int) -> [ExploreNode] {
        var out: [ExploreNode] = []
        for _ in 0..<Int.random(in: 1...3, using: &rng) {
            if depth < maxDepth, Int.random(in: 0..<4, using: &rng) == 0 {
                out.append(ExploreNode(.pciBridge, id("br"), children: conventionalChildren(depth: depth + 1)))
            } else {
                out += endpointsInSlot(nil, maxFunctions: 2, conventional: true)
            }
        }
        return out
    }
}
