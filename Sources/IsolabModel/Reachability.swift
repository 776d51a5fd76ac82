/// Where a peer-to-peer request from one endpoint to another turns, and whether the IOMMU sees it.
public struct PCIeRoute: Sendable {
    public enum Turn: Sendable, Equatable {
        /// Both sit on (or below) one conventional bus, behind the given bridge.
        case sharedConventionalBus(bridge: Int?)
        /// The paths meet only in the root complex, which routes through the IOMMU.
        case rootComplex
        /// The request turns at `aSide`/`bSide` (switch ports or functions of one slot) because
        /// `aSide` lacks ACS redirection.
        case turnsAround(aSide: Int, bSide: Int)
        /// `aSide` redirects upstream but `broken` above does not forward to the root complex.
        case notForwarded(aSide: Int, broken: Int)
        /// Redirected and forwarded all the way up to the IOMMU.
        case redirectedToIOMMU(aSide: Int)
    }

    public var from: Int
    public var to: Int
    public var turn: Turn
    public var bypassesIOMMU: Bool {
        switch turn {
        case .sharedConventionalBus, .turnsAround, .notForwarded: return true
        case .rootComplex, .redirectedToIOMMU: return false
        }
    }
}

/// PCIe peer-to-peer routing from the declared ACS settings (PCIe Base Spec §6.12, ACS):
/// the request travels up from the initiator and turns toward the target at the lowest point
/// their paths share. It reaches the root complex's IOMMU only if that turning point redirects
/// it upstream (ACS P2P Request Redirect on the initiator's side) and every port above forwards
/// it on (ACS Upstream Forwarding), which is exactly `pci_acs_path_enabled()` from the
/// initiator-side port; a shared conventional bus never isolates; the root complex itself
/// sends requests between its root ports and integrated devices through the IOMMU, as the
/// kernel assumes.
public struct PCIeReachability: Sendable {
    public let fabric: Fabric
    public let acs: ACSEvaluator

    public init(fabric: Fabric, acs: ACSEvaluator) {
        self.fabric = fabric
        self.acs = acs
    }

    public func route(from a: PCIFunction, to b: PCIFunction) -> PCIeRoute {
        route(a.index, fabric.ancestry(of: a).map(\.index), b.index, fabric.ancestry(of: b).map(\.index))
    }

    /// The route between two functions given their ancestries (function indices, nearest first).
    func route(_ a: Int, _ upA: [Int], _ b: Int, _ upB: [Int]) -> PCIeRoute {
        let fs = fabric.functions
        // The deepest bus on both paths, and the functions on it through which each path passes.
        var aSide = upA.last!, bSide = upB.last!
        search: for x in upA {
            for y in upB where fs[y].bus == fs[x].bus {
                aSide = x
                bSide = y
                break search
            }
        }
        let meeting = fabric.buses[fs[aSide].bus]
        if !meeting.isExpress { return PCIeRoute(from: a, to: b, turn: .sharedConventionalBus(bridge: meeting.bridge)) }
        let sameSlot = fs[aSide].slot == fs[bSide].slot
        if meeting.isRoot && !sameSlot { return PCIeRoute(from: a, to: b, turn: .rootComplex) }
        if !acs.enabled(fs[aSide]) { return PCIeRoute(from: a, to: b, turn: .turnsAround(aSide: aSide, bSide: bSide)) }
        if let above = meeting.bridge, let broken = acs.pathBreak(from: fs[above]) {
            return PCIeRoute(from: a, to: b, turn: .notForwarded(aSide: aSide, broken: broken.index))
        }
        return PCIeRoute(from: a, to: b, turn: .redirectedToIOMMU(aSide: aSide))
    }

    /// Why the route goes where it goes, in the spec's and the kernel's terms.
    public func reason(_ r: PCIeRoute) -> String {
        let fs = fabric.functions
        let a = fs[r.from].displayName, b = fs[r.to].displayName
        switch r.turn {
        case .sharedConventionalBus(let bridge):
            return "\(a) and \(b) share a conventional PCI bus behind \(bridge.map { fs[$0].displayName } ?? "the root"): every device on it can reach every other"
        case .rootComplex:
            return "\(a)'s path meets \(b)'s only in the root complex, which routes through the IOMMU"
        case .turnsAround(let x, let y):
            let at = fs[x].slot == fs[y].slot
                ? "functions \(fs[x].displayName) and \(fs[y].displayName) of one slot"
                : "downstream ports \(fs[x].displayName) and \(fs[y].displayName) of one switch"
            return "the request turns at \(at): \(acs.explainEnabled(fs[x])), so nothing redirects it upstream"
        case .notForwarded(let x, let broken):
            return "\(fs[x].displayName) redirects the request upstream, but \(acs.explainEnabled(fs[broken])) and does not forward it to the root complex"
        case .redirectedToIOMMU(let x):
            return "\(fs[x].displayName) redirects the request upstream and every port above forwards it to the IOMMU"
        }
    }
}

/// A pair the kernel puts in different IOMMU groups although PCIe routing lets one reach the
/// other without the IOMMU: the kernel's claim of isolation is wrong.
public struct Hazard: Sendable {
    public var from: String
    public var to: String
    public var fromGroup: Int
    public var toGroup: Int
    public var route: PCIeRoute
    let reachability: PCIeReachability

    /// Why PCIe carries the request past the IOMMU (rendered on demand).
    public var reason: String { reachability.reason(route) + "; yet the kernel gives them different groups" }
}

extension PCIeReachability {
    /// Every ordered pair of declared endpoints the fabric connects past the IOMMU, whatever
    /// their groups. Paths that meet only in the root complex go through the IOMMU, so only
    /// endpoints under the same root-bus slot are paired: the work grows with each subtree.
    public func bypasses() -> [PCIeRoute] {
        var out: [PCIeRoute] = []
        var bySlot: [Int: [(Int, [Int])]] = [:]
        for e in fabric.endpoints {
            let up = fabric.ancestry(of: e).map(\.index)
            bySlot[fabric.functions[up.last!].slot, default: []].append((e.index, up))
        }
        for slot in bySlot.keys.sorted() {
            let eps = bySlot[slot]!
            for (a, upA) in eps {
                for (b, upB) in eps where a != b {
                    let r = route(a, upA, b, upB)
                    if r.bypassesIOMMU { out.append(r) }
                }
            }
        }
        return out
    }

    /// The bypassing pairs the grouping puts in different groups: the kernel's claim of
    /// isolation is wrong for each.
    public func hazards(grouping: IOMMUGrouping) -> [Hazard] {
        bypasses().compactMap { r in
            guard let ga = grouping.groupOf[r.from], let gb = grouping.groupOf[r.to], ga != gb else { return nil }
            return Hazard(from: fabric.functions[r.from].displayName, to: fabric.functions[r.to].displayName,
                          fromGroup: ga, toGroup: gb, route: r, reachability: self)
        }
    }
}

/// What QEMU 7.2 can actually do with a DMA from one device (hw/pci/pci.c
/// `pci_device_iommu_address_space()`, KERNEL-NOTES §5.2–5.3): no peer-to-peer routing inside
/// the fabric; every request is translated in the requester's (possibly aliased) vIOMMU address
/// space, or goes straight to guest-physical memory, BARs included, when there is none.
public struct EmulatedRoute: Sendable, Equatable {
    public var from: String
    /// The requester QEMU presents to the vIOMMU, as a guest path; nil without translation.
    public var requester: String?
    /// Devices whose DMA is translated in the same address space.
    public var sharesAddressSpaceWith: [String]
    public var reachesPeersDirectly: Bool
}

extension Fabric {
    public func emulatedRoute(from f: PCIFunction, translated: Bool) -> EmulatedRoute {
        guard translated else {
            return EmulatedRoute(from: f.displayName, requester: nil, sharesAddressSpaceWith: [],
                                 reachesPeersDirectly: true)
        }
        let mine = DMAAlias.requesterPath(of: f, in: self)
        let sharing = endpoints.filter { $0.index != f.index && DMAAlias.requesterPath(of: $0, in: self) == mine }
        return EmulatedRoute(from: f.displayName, requester: mine, sharesAddressSpaceWith: sharing.map(\.displayName),
                             reachesPeersDirectly: false)
    }
}
