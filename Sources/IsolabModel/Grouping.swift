/// An IOMMU group as the kernel forms it; members are function indices into the fabric.
public struct IOMMUGroup: Sendable, Equatable {
    /// Allocation order, like the kernel's group number (compare membership, not ids).
    public var id: Int
    public var members: [Int]
}

/// One step of reasoning, naming the kernel function it mirrors.
public struct Reason: Sendable, Equatable, Codable, CustomStringConvertible {
    public var kernelFunction: String
    public var text: String
    public init(_ kernelFunction: String, _ text: String) {
        self.kernelFunction = kernelFunction
        self.text = text
    }
    public var description: String { "\(kernelFunction): \(text)" }
}

/// The IOMMU groups of a fabric, formed by `pci_device_group()` (drivers/iommu/iommu.c) for each
/// function in bus-list order, parents first: intel, amd and virtio-iommu all use it for PCI
/// devices, and it is unchanged from 5.10 to 7.3 (KERNEL-NOTES §1.1, §1.2).
public struct IOMMUGrouping: Sendable {
    public private(set) var groups: [IOMMUGroup] = []
    /// function index -> group id
    public private(set) var groupOf: [Int: Int] = [:]
    /// function index -> why it landed in its group
    public private(set) var reasons: [Int: [Reason]] = [:]

    /// Groups every function the IOMMU translates (all but the vIOMMU's own PCI function), in
    /// bus-list order: what `bus_iommu_probe()` does when the IOMMU registers.
    public init(fabric: Fabric, acs: ACSEvaluator) {
        for f in fabric.bootFunctions where VirtioIOMMUProbe.translated(f) {
            add(f, fabric: fabric, acs: acs)
        }
    }

    /// Groups only `probed`, in that order; every other function keeps `ungrouped[index]` as the
    /// reason it has no group yet (virtio-iommu on 6.12, `VIOTProbePath.atDriverProbe`).
    public init(fabric: Fabric, acs: ACSEvaluator, probed: [Int], ungrouped: [Int: Reason]) {
        for i in probed { add(fabric.functions[i], fabric: fabric, acs: acs) }
        for (i, why) in ungrouped where groupOf[i] == nil { reasons[i] = [why] }
    }

    /// Adds one function as `__iommu_probe_device()` does when it is probed later: its group
    /// depends on the groups that exist by then. Does nothing if it has a group already.
    public mutating func add(_ f: PCIFunction, fabric: Fabric, acs: ACSEvaluator, prefix: [Reason] = []) {
        guard groupOf[f.index] == nil else { return }
        var why = prefix
        let gid = pciDeviceGroup(f, fabric: fabric, acs: acs, why: &why)
        groupOf[f.index] = gid
        groups[gid].members.append(f.index)
        reasons[f.index] = why
    }

    /// Takes a removed function out of its group (`iommu_release_device()`); an emptied group
    /// is freed, and a function added later gets a new one.
    public mutating func remove(_ f: PCIFunction) {
        guard let g = groupOf.removeValue(forKey: f.index) else { return }
        groups[g].members.removeAll { $0 == f.index }
        reasons[f.index] = nil
    }

    /// The group of a function, if it has one.
    public func group(of f: PCIFunction) -> IOMMUGroup? {
        groupOf[f.index].map { groups[$0] }
    }

    /// `pci_device_group()`.
    private mutating func pciDeviceGroup(_ start: PCIFunction, fabric: Fabric, acs: ACSEvaluator,
                                         why: inout [Reason]) -> Int {
        // 1. pci_for_each_dma_alias() with get_pci_alias_or_group(): the first alias that
        //    already has a group decides; otherwise continue from the topmost alias.
        var pdev = start
        for alias in DMAAlias.chain(of: start, in: fabric).dropFirst() {
            pdev = alias
            if let g = groupOf[alias.index] {
                why.append(Reason("pci_for_each_dma_alias()",
                                  "\(start.displayName) is seen by the IOMMU as \(alias.displayName) (requester-ID alias behind a bridge to conventional PCI); it joins \(alias.displayName)'s group"))
                return g
            }
        }
        if pdev.index != start.index {
            why.append(Reason("pci_for_each_dma_alias()",
                              "\(start.displayName)'s topmost DMA alias is \(pdev.displayName); grouping continues from there"))
        }
        // 2. Upstream walk to the first bridge whose path to the root is ACS-isolated.
        var cur = pdev
        while let bridge = fabric.parentBridge(of: cur) {
            if let broken = acs.pathBreak(from: bridge) {
                why.append(Reason("pci_acs_path_enabled()",
                                  "the path above \(cur.displayName) is not isolated at \(bridge.displayName): \(acs.explainEnabled(broken))"))
                cur = bridge
                if let g = groupOf[bridge.index] {
                    why.append(Reason("pci_device_group()", "\(bridge.displayName) already has a group: \(start.displayName) joins it"))
                    return g
                }
            } else {
                why.append(Reason("pci_acs_path_enabled()",
                                  "upstream walk stops at \(bridge.displayName): it and every port above it have \(requiredACSFlags) enabled"))
                break
            }
        }
        // 3. get_pci_alias_group(): same-bus quirk aliases (dma_alias_mask); no QEMU device has one.
        // 4. get_pci_function_alias_group(): non-ACS functions of a multifunction slot share a group.
        if cur.multifunction && !acs.enabled(cur) {
            for sib in fabric.slotSiblings(of: cur) where !acs.enabled(sib) {
                if let g = groupOf[sib.index] {
                    why.append(Reason("get_pci_function_alias_group()",
                                      "\(acs.explainEnabled(cur)); \(sib.displayName) in the same slot lacks ACS too and has a group: \(cur.index == start.index ? "" : "\(cur.displayName) and so ")\(start.displayName) join\(cur.index == start.index ? "s" : "") it"))
                    return g
                }
            }
        }
        // 5. iommu_group_alloc()
        if cur.index == start.index {
            why.append(Reason("iommu_group_alloc()", "\(start.displayName) shares no group with anything grouped before it: a new group"))
        } else {
            why.append(Reason("iommu_group_alloc()", "\(cur.displayName) had no group yet: a new group"))
        }
        groups.append(IOMMUGroup(id: groups.count, members: []))
        return groups.count - 1
    }
}

/// DMA requester-ID aliasing.
public enum DMAAlias {
    /// `pci_for_each_dma_alias()` (drivers/pci/search.c): the function itself, then each bridge
    /// that rewrites the requester ID: a PCIe-to-PCI bridge (alias = its secondary bus, 00.0)
    /// and a conventional PCI-to-PCI bridge (alias = its own ID; 1b36:0001 has no
    /// PCI_DEV_FLAG_PCIE_BRIDGE_ALIAS). Root, upstream and downstream ports alias nothing.
    public static func chain(of f: PCIFunction, in fabric: Fabric) -> [PCIFunction] {
        var out = [f]
        for bridge in fabric.ancestry(of: f).dropFirst() {
            switch bridge.pcieType {
            case .rootPort, .upstream, .downstream: continue
            default: out.append(bridge)
            }
        }
        return out
    }

    /// The requester QEMU presents to the IOMMU for `f` (`pci_device_iommu_address_space()`):
    /// the topmost rewrite wins. As a guest path: `<bridge>/00.0` behind a PCIe-to-PCI bridge,
    /// the bridge itself behind a conventional bridge, else `f` itself.
    public static func requesterPath(of f: PCIFunction, in fabric: Fabric) -> String {
        var requester = f.path
        for bridge in fabric.ancestry(of: f).dropFirst() {
            switch bridge.pcieType {
            case .pciBridge: requester = bridge.path + "/00.0"
            case .conventional: requester = bridge.path
            default: continue
            }
        }
        return requester
    }
}
