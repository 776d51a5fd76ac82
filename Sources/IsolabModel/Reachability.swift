/// Whether one endpoint's memory request to another's BAR can be carried by the PCIe fabric
/// itself, without passing the IOMMU in the root complex (what real hardware does).
public struct PCIeRoute: Sendable, Equatable {
    public var from: String
    public var to: String
    /// True: the fabric turns the request around below the root complex; the IOMMU never sees it.
    public var bypassesIOMMU: Bool
    public var reason: String
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
        // The deepest bus on both paths, and the functions on it through which each path passes.
        let upA = fabric.ancestry(of: a)
        let upB = fabric.ancestry(of: b)
        let busesB = Set(upB.map(\.bus))
        guard let aSide = upA.first(where: { busesB.contains($0.bus) }),
              let bSide = upB.first(where: { $0.bus == aSide.bus }) else {
            return PCIeRoute(from: a.displayName, to: b.displayName, bypassesIOMMU: false,
                             reason: "no shared bus")
        }
        let meeting = fabric.buses[aSide.bus]
        let name = { (f: PCIFunction) in f.displayName }
        if !meeting.isExpress {
            return PCIeRoute(from: name(a), to: name(b), bypassesIOMMU: true,
                             reason: "\(name(a)) and \(name(b)) share a conventional PCI bus behind \(meeting.bridge.map { name(fabric.functions[$0]) } ?? "the root"): every device on it can reach every other")
        }
        let sameSlot = aSide.slot == bSide.slot
        if meeting.isRoot && !sameSlot {
            return PCIeRoute(from: name(a), to: name(b), bypassesIOMMU: false,
                             reason: "\(name(a))'s path meets \(name(b))'s only in the root complex, which routes through the IOMMU")
        }
        // Turning point: a switch's internal bus (sibling downstream ports) or a multifunction slot.
        let where_ = sameSlot ? "functions \(name(aSide)) and \(name(bSide)) of one slot" : "downstream ports \(name(aSide)) and \(name(bSide)) of one switch"
        if !acs.enabled(aSide) {
            return PCIeRoute(from: name(a), to: name(b), bypassesIOMMU: true,
                             reason: "the request turns at \(where_): \(acs.explainEnabled(aSide)), so nothing redirects it upstream")
        }
        if let above = meeting.bridge.map({ fabric.functions[$0] }), let broken = acs.pathBreak(from: above) {
            return PCIeRoute(from: name(a), to: name(b), bypassesIOMMU: true,
                             reason: "\(name(aSide)) redirects the request upstream, but \(acs.explainEnabled(broken)) and does not forward it to the root complex")
        }
        return PCIeRoute(from: name(a), to: name(b), bypassesIOMMU: false,
                         reason: "\(name(aSide)) redirects the request upstream and every port above forwards it to the IOMMU")
    }
}

/// A pair the kernel puts in different IOMMU groups although PCIe routing lets one reach the
/// other without the IOMMU: the kernel's claim of isolation is wrong.
public struct Hazard: Sendable, Equatable {
    public var from: String
    public var to: String
    public var fromGroup: Int
    public var toGroup: Int
    public var reason: String
}

extension PCIeReachability {
    /// Every ordered pair of declared endpoints in different groups that the fabric connects.
    public func hazards(grouping: IOMMUGrouping) -> [Hazard] {
        var out: [Hazard] = []
        let eps = fabric.endpoints
        for a in eps {
            for b in eps where a.index != b.index {
                guard let ga = grouping.groupOf[a.index], let gb = grouping.groupOf[b.index], ga != gb else { continue }
                let r = route(from: a, to: b)
                if r.bypassesIOMMU {
                    out.append(Hazard(from: a.displayName, to: b.displayName, fromGroup: ga, toGroup: gb,
                                      reason: r.reason + "; yet the kernel gives them different groups"))
                }
            }
        }
        return out
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
