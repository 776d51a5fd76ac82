/// Something in a topology that QEMU 7.2 (or the guest's enumeration) cannot build as declared.
public struct Unrealizable: Sendable, Equatable {
    public var node: String
    public var reason: String
    public var location: SourceLocation

    public init(node: String, reason: String, location: SourceLocation) {
        self.node = node; self.reason = reason; self.location = location
    }
}

/// Checks a topology against what the emulator and Linux's enumeration can realize
/// (KERNEL-NOTES §0.3, §0.11, §5.1).
public enum Realizability {
    public static func check(_ topology: Topology) -> [Unrealizable] {
        var out: [Unrealizable] = []
        func walk(_ nodes: [FabricNode], under parent: FabricNode?) {
            for n in nodes {
                if case .downstreamPort(let acs) = n.kind, acs == true {
                    out.append(Unrealizable(node: n.id, reason: "QEMU 7.2's switch downstream port (xio3130-downstream) has no ACS capability; acs: true cannot be built", location: n.location))
                }
                if let p = parent, n.slot != 0 {
                    switch p.kind {
                    case .rootPort, .downstreamPort:
                        out.append(Unrealizable(node: n.id, reason: "slot \(n.slot) behind \(p.kind.keyword) \(p.id): Linux scans only device 0 below a PCIe port (only_one_child()), so the guest never sees it", location: n.location))
                    default: break
                    }
                }
                if parent == nil, topology.iommu == .amd, n.slot == Fabric.amdVIOMMUSlot {
                    out.append(Unrealizable(node: n.id, reason: "slot \(n.slot) of pcie.0 is where QEMU 7.2 puts the AMD vIOMMU's own function (AMDVI-PCI), created before any other device", location: n.location))
                }
                if parent == nil, n.slot == 0 {
                    out.append(Unrealizable(node: n.id, reason: "slot 0 of pcie.0 is the q35 host bridge, a single-function device: QEMU refuses other functions in that slot", location: n.location))
                }
                walk(n.children, under: n)
            }
        }
        walk(topology.fabric, under: nil)
        return out
    }
}
