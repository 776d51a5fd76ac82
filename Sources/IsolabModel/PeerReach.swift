/// Where PCIe routing lets endpoints reach each other without the IOMMU, described by what
/// connects them rather than pair by pair, so it grows with the fabric, not with its square.
///
/// A request from one endpoint to another turns at the deepest bus both paths share (PCIe
/// Base Spec §6.12): a switch's internal bus, a port's secondary bus with a multifunction
/// device on it, a conventional bus, or a multifunction slot of the root bus. Each path
/// enters that bus through one function, its *side*. A request from below a side turns
/// there, past the IOMMU, when the bus is conventional, when the side does not redirect it
/// upstream (`pci_acs_enabled()` fails), or when a port above does not forward it to the root
/// complex (`pci_acs_path_enabled()` breaks) — exactly `PCIeReachability.route`. Sides of
/// different slots on the root bus meet only in the root complex, which routes through the
/// IOMMU, so the root bus contributes one reach per multifunction slot.
public struct PeerReach: Sendable {
    /// One function on the meeting bus and the endpoints at or below it.
    public struct Side: Sendable {
        /// The function on the meeting bus (a port, a bridge, or the endpoint itself).
        public var function: Int
        /// Declared endpoints at or below it.
        public var endpoints: [Int]
        /// Whether requests from below this side turn on the meeting bus (reach the other sides'
        /// endpoints without the IOMMU).
        public var turns: Bool
        /// Why, in the kernel's and the spec's terms.
        public var reason: String
    }

    /// The meeting bus.
    public var bus: Int
    /// The slot, for a multifunction slot of the root bus.
    public var slot: Int?
    /// What connects the sides, e.g. "the internal bus of switch sw0".
    public var connector: String
    public var sides: [Side]

    /// Whether any endpoint here reaches another past the IOMMU.
    public var bypasses: Bool { sides.contains { $0.turns } && sides.count > 1 }
}

extension PCIeReachability {
    /// Every place where endpoints meet, with what each side does: linear in the fabric.
    /// `routes()` gives the same answers pair by pair.
    public func peerReaches() -> [PeerReach] {
        let fs = fabric.functions
        // Endpoints below each function (itself when it is one), children before parents.
        var below: [Int: [Int]] = [:]
        for e in fabric.endpoints {
            for f in fabric.ancestry(of: e) { below[f.index, default: []].append(e.index) }
        }
        var out: [PeerReach] = []
        for bus in fabric.buses {
            let sides = bus.functions.filter { below[$0] != nil }
            if bus.isRoot {
                var bySlot: [Int: [Int]] = [:]
                for f in sides { bySlot[fs[f].slot, default: []].append(f) }
                for slot in bySlot.keys.sorted() where bySlot[slot]!.count > 1 {
                    out.append(reach(bus.index, slot: slot, sides: bySlot[slot]!, below: below))
                }
            } else if sides.count > 1 {
                out.append(reach(bus.index, slot: nil, sides: sides, below: below))
            }
        }
        return out
    }

    private func reach(_ busIndex: Int, slot: Int?, sides: [Int], below: [Int: [Int]]) -> PeerReach {
        let fs = fabric.functions
        let bus = fabric.buses[busIndex]
        let bridge = bus.bridge.map { fs[$0] }
        let connector: String
        if let slot, bus.isRoot {
            connector = "the functions of slot \(slotText(slot)) on pcie.0"
        } else if !bus.isExpress {
            connector = "the conventional bus behind \(bridge?.displayName ?? "the root")"
        } else if case .switchUpstream? = bridge?.kind {
            connector = "the internal bus of switch \(bridge!.displayName)"
        } else {
            connector = "the bus behind \(bridge?.displayName ?? "the root")"
        }
        // A port above that does not forward upstream leaks whatever its side redirects.
        let broken = bus.isExpress ? bridge.flatMap { acs.pathBreak(from: $0) } : nil
        let out = sides.map { s -> PeerReach.Side in
            let f = fs[s]
            let (turns, why): (Bool, String)
            if !bus.isExpress {
                (turns, why) = (true, "a conventional PCI bus: every device on it can reach every other")
            } else if !acs.enabled(f) {
                (turns, why) = (true, acs.explainEnabled(f) + ", so nothing redirects its requests upstream")
            } else if let broken {
                (turns, why) = (true, "\(f.displayName) redirects upstream, but \(acs.explainEnabled(broken)) and does not forward to the root complex")
            } else {
                (turns, why) = (false, "\(f.displayName) redirects its requests upstream to the IOMMU")
            }
            return PeerReach.Side(function: s, endpoints: below[s] ?? [], turns: turns, reason: why)
        }
        return PeerReach(bus: busIndex, slot: slot, connector: connector, sides: out)
    }
}

extension PeerReach {
    /// The ordered pairs this reach lets past the IOMMU: an endpoint below a turning side to
    /// every endpoint below another side. Quadratic by nature: on request only.
    public func pairs() -> [(from: Int, to: Int)] {
        var out: [(Int, Int)] = []
        for a in sides where a.turns {
            for b in sides where b.function != a.function {
                for x in a.endpoints { for y in b.endpoints { out.append((x, y)) } }
            }
        }
        return out
    }

    /// How many hazard pairs `endpoint` is in (as initiator or target), counted per side.
    public func hazardCount(of endpoint: Int, _ grouping: IOMMUGrouping) -> Int {
        guard let mine = sides.firstIndex(where: { $0.endpoints.contains(endpoint) }) else { return 0 }
        let g = grouping.groupOf[endpoint]
        var n = 0
        for (i, s) in sides.enumerated() where i != mine {
            let apart = s.endpoints.filter { g == nil || grouping.groupOf[$0] != g }.count
            if sides[mine].turns { n += apart }
            if s.turns { n += apart }
        }
        return n
    }

    /// How many of `pairs()` the grouping separates (hazards), counted without listing them.
    public func hazardCount(_ grouping: IOMMUGrouping) -> Int {
        var total: [Int: Int] = [:]
        var bySide: [[Int: Int]] = []
        for s in sides {
            var counts: [Int: Int] = [:]
            for e in s.endpoints {
                let g = grouping.groupOf[e] ?? -1 - e   // ungrouped: never "the same group"
                counts[g, default: 0] += 1
                total[g, default: 0] += 1
            }
            bySide.append(counts)
        }
        var n = 0
        for (i, s) in sides.enumerated() where s.turns {
            let othersTotal = total.values.reduce(0, +) - s.endpoints.count
            for (g, here) in bySide[i] {
                let sameGroupElsewhere = (total[g] ?? 0) - here
                n += here * (othersTotal - sameGroupElsewhere)
            }
        }
        return n
    }
}
