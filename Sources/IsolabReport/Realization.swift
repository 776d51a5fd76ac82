import IsolabModel
import IsolabProtocol

extension Judge {
    /// The agent's reading of config space is the proof of what QEMU realized: every function
    /// of the fabric the guest enumerated must carry the PCIe device/port type and the ACS
    /// capability the model derived from the declaration (KERNEL-NOTES §5.1), and a PF the SR-IOV
    /// capability the model places its VFs by. Each function
    /// realized otherwise is an `unrealizable` verdict with the evidence; the groups, hazards
    /// and steps of such a fabric are not judged. Functions the guest did not enumerate are
    /// left to the group verdicts.
    static func realizationVerdicts(_ p: KernelPrediction, inventory: Inventory) -> [Verdict] {
        var observed: [String: FunctionRecord] = [:]
        for f in inventory.functions { observed[f.path] = f }
        var out: [Verdict] = []
        for f in p.fabric.functions {
            guard let o = observed[f.path] else { continue }
            let wantType = f.pcieType.expressTypeCode.map { PCIExpressType.name(code: $0) }
            var differences: [String] = []
            if o.pcieType != wantType {
                differences.append("PCIe type \(o.pcieType ?? "conventional PCI"), declared \(wantType ?? "conventional PCI")")
            }
            if (o.acs != nil) != f.hasACSCapability {
                differences.append(o.acs.map { "an ACS capability at 0x\(String($0.offset, radix: 16)) (capability 0x\(String($0.capability, radix: 16)))" }
                                   ?? "no ACS capability")
                differences[differences.count - 1] += f.hasACSCapability ? ", declared with ACS" : ", declared without ACS"
            }
            if let d = sriovDifference(p.fabric.sriov(of: f), o.sriov, pfVendor: f.vendor) { differences.append(d) }
            guard !differences.isEmpty else { continue }
            let id = f.nodeID ?? f.path
            var v = Verdict(kind: .unrealizable, subject: .node, item: "node:\(id)", title: "node \(f.displayName)",
                            expected: describe(type: wantType, acs: f.hasACSCapability),
                            observed: describe(type: o.pcieType, acs: o.acs != nil),
                            detail: "the emulator realized \(f.displayName) (\(o.vendorDevice) at \(o.bdf), guest path \(f.path)) with "
                                + differences.joined(separator: " and ")
                                + "; the fabric is not the one declared, so its groups, hazards and steps were not judged")
            if case .declared = f.origin { v.line = p.topology.allNodes.first { $0.id == id }?.location.line }
            out.append(v)
        }
        return out
    }

    static func describe(type: String?, acs: Bool) -> String {
        (type ?? "conventional PCI") + (acs ? " with ACS" : " without ACS")
    }

    /// The SR-IOV capability the model places VFs by, against the one the guest read: present
    /// or not, TotalVFs, First VF Offset, VF Stride and the VF's ID.
    static func sriovDifference(_ model: SRIOVCapability?, _ observed: SRIOVRecord?, pfVendor: String) -> String? {
        switch (model, observed) {
        case (nil, nil): return nil
        case (nil, let o?): return "an SR-IOV capability (TotalVFs \(o.totalVFs)) the model does not expect"
        case (let m?, nil): return "no SR-IOV capability, where the model expects TotalVFs \(m.totalVFs)"
        case (let m?, let o?):
            let want = "TotalVFs \(m.totalVFs), offset 0x\(String(m.firstVFOffset, radix: 16)), stride \(m.vfStride), VF \(m.vfVendorDevice)"
            let got = "TotalVFs \(o.totalVFs), offset 0x\(String(o.firstVFOffset, radix: 16)), stride \(o.vfStride), VF \(pfVendor):\(o.vfDevice)"
            return want == got ? nil : "an SR-IOV capability with \(got), where the model places VFs by \(want)"
        }
    }
}
