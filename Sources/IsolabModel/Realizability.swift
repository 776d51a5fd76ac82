/// Something in a topology that the emulator (or the guest's enumeration) cannot build as declared.
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
    /// What `topology.emulator` (its probed facts; the host's QEMU 7.2 as assumed when nil)
    /// and Linux's enumeration cannot build as declared.
    public static func check(_ topology: Topology) -> [Unrealizable] {
        var out: [Unrealizable] = []
        let facts = topology.emulator ?? .assumedHostQEMU72
        let qemu = "QEMU " + facts.shortVersion
        func lacks(_ model: String, _ n: FabricNode) {
            out.append(Unrealizable(node: n.id, reason: "\(qemu) has no \(model) device model (its -device help does not list it)", location: n.location))
        }
        if let model = viommuModel(topology.iommu), !facts.has(model) {
            let at = topology.fabric.first?.location ?? SourceLocation(file: topology.file, line: 1, column: 1)
            out.append(Unrealizable(node: "iommu", reason: "\(qemu) has no \(model) device model: iommu \(topology.iommu.rawValue) cannot be built", location: at))
        }
        func walk(_ nodes: [FabricNode], under parent: FabricNode?) {
            for n in nodes {
                switch n.kind {
                case .rootPort(let acs):
                    if !facts.has("pcie-root-port") && (acs || !facts.has("ioh3420")) { lacks("pcie-root-port", n) }
                    if !acs && !facts.rootPortCanDisableACS && !facts.has("ioh3420") {
                        out.append(Unrealizable(node: n.id, reason: "\(qemu)'s pcie-root-port has no disable-acs property and it has no ioh3420: a root port without ACS cannot be built", location: n.location))
                    }
                default:
                    let device = qemuDevice(n.kind)
                    if !facts.has(device) { lacks(device, n) }
                    if case .device(.nvme, _) = n.kind, n.virtualFunctions > 0, facts.has(device),
                       !facts.has(property: "sriov_max_vfs", of: "nvme") {
                        out.append(Unrealizable(node: n.id, reason: "\(qemu)'s nvme has no sriov_max_vfs property: its VFs cannot be built", location: n.location))
                    }
                    if case .downstreamPort(true) = n.kind {
                        // No QEMU gives xio3130-downstream an ACS capability (hw/pci-bridge/xio3130_downstream.c).
                        out.append(Unrealizable(node: n.id, reason: "\(qemu)'s switch downstream port (xio3130-downstream) has no ACS capability; acs: true cannot be built", location: n.location))
                    }
                }
                if let p = parent, n.slot != 0 {
                    switch p.kind {
                    case .rootPort, .downstreamPort:
                        out.append(Unrealizable(node: n.id, reason: "slot \(n.slot) behind \(p.kind.keyword) \(p.id): Linux scans only device 0 below a PCIe port (only_one_child()), so the guest never sees it", location: n.location))
                    default: break
                    }
                }
                if let p = parent, n.function > 0, aboveARIPort(p),
                   let first = nodes.first(where: { $0.slot == n.slot && $0.function == 0 }),
                   case .device(let m, _) = first.kind, let note = ariWithoutNextFunction(m, vfs: first.virtualFunctions, facts) {
                    out.append(Unrealizable(node: n.id, reason: "function \(n.function) beside \(first.id) behind \(p.kind.keyword) \(p.id): \(note), so the guest never sees it", location: n.location))
                }
                if parent == nil, topology.iommu == .amd, n.slot == Fabric.amdVIOMMUSlot {
                    out.append(Unrealizable(node: n.id, reason: "slot \(n.slot) of pcie.0 is where QEMU puts the AMD vIOMMU's own function (AMDVI-PCI), created before any other device", location: n.location))
                }
                if parent == nil, n.slot == 0 {
                    out.append(Unrealizable(node: n.id, reason: "slot 0 of pcie.0 is the q35 host bridge, a single-function device: QEMU refuses other functions in that slot", location: n.location))
                }
                walk(n.children, under: n)
            }
        }
        walk(topology.fabric, under: nil)
        if topology.iommu == .amd { out += amdVIOMMULimits(topology, facts: facts) }
        out += nvmeDriverOnVFs(topology)
        return out
    }

    /// QEMU's nvme VFs are controllers that stay offline until the PF's driver assigns them
    /// resources (NVMe virtualization management): the nvme driver's probe of an offline one
    /// waits for CSTS.RDY and fails, synchronously or not depending on the kernel. A scenario
    /// that lets the nvme driver probe an nvme VF (binding it, or enabling VFs while nvme is
    /// loaded, which auto-probes them) cannot be judged unless an `sriov … online: true` step
    /// brought the VFs online first (until a later `sriov` to 0 removes them).
    static func nvmeDriverOnVFs(_ topology: Topology) -> [Unrealizable] {
        let nvmePFs = Set(topology.allNodes.filter { n in
            if case .device(.nvme, _) = n.kind { return n.virtualFunctions > 0 } else { return false }
        }.map(\.id))
        guard !nvmePFs.isEmpty else { return [] }
        let vfIDs = Set(topology.allNodes.filter { nvmePFs.contains($0.id) }.flatMap { n in (0..<n.virtualFunctions).map(n.virtualFunctionID) })
        var out: [Unrealizable] = []
        for scenario in topology.scenarios {
            var nvmeLoaded = false
            var online = false
            for step in scenario.steps {
                var probesVF: String?
                switch step.action {
                case .loadDriver("nvme", _): nvmeLoaded = true
                case .bind(let d, let drv) where nvmePFs.contains(d) && (drv ?? "nvme") == "nvme": nvmeLoaded = true
                case .bind(let d, let drv) where vfIDs.contains(d) && (drv ?? "nvme") == "nvme" && !online: probesVF = d
                case .sriov(let d, let n, true) where nvmePFs.contains(d) && n > 0: online = true
                case .sriov(let d, 0, _) where nvmePFs.contains(d): online = false
                case .sriov(let d, let n, false) where nvmePFs.contains(d) && n > 0 && nvmeLoaded: probesVF = "the VFs of \(d)"
                default: break
                }
                if let what = probesVF {
                    out.append(Unrealizable(node: step.action.device ?? "?", reason: "scenario \(scenario.name) lets the nvme driver probe \(what): QEMU's nvme VF controllers stay offline until the PF's driver assigns them resources (NVMe virtualization management), so the probe waits until CAP.TO and fails, with timing isolab does not model; bring them online first (sriov: {device: PF, vfs: N, online: true}) or drive the PF with vfio-pci (enable_sriov) instead", location: step.location))
                }
            }
        }
        return out
    }

    /// A PCIe port whose secondary bus the kernel scans with ARI when function 0 has an ARI
    /// capability (`pci_configure_ari()`: QEMU's root and downstream ports forward ARI).
    static func aboveARIPort(_ p: FabricNode) -> Bool {
        switch p.kind {
        case .rootPort, .downstreamPort: return true
        default: return false
        }
    }

    /// Why a device model at function 0 hides its slot-mates below an ARI port: with ARI the
    /// kernel's `next_fn()` follows the ARI capability's Next Function Number, and QEMU's igb
    /// (since 8.2, unless the compat property `x-pcie-ari-nextfn-1` is set) says 0: the scan ends
    /// after function 0. nil for a model without an ARI capability.
    /// QEMU's nvme has the same ARI capability once it has SR-IOV (assumed from its
    /// `x-pcie-ari-nextfn-1` property; not booted).
    static func ariWithoutNextFunction(_ model: DeviceModel, vfs: Int, _ facts: EmulatorFacts) -> String? {
        guard model == .igb || (model == .nvme && vfs > 0) else { return nil }
        return "QEMU \(facts.shortVersion)'s \(model.rawValue)\(model == .nvme ? " with SR-IOV" : "") has an ARI capability whose Next Function Number is 0, and with ARI forwarding the kernel's next_fn() follows it, so the slot scan ends after function 0"
    }

    /// What the emulator's AMD vIOMMU cannot show the guest (``EmulatorFacts`` amdVIOMMU…):
    /// a guest whose interrupts are lost cannot report at all; without fault reports a DMA probe
    /// cannot tell a blocked transfer from a lost one, and a device below a bridge is translated
    /// with another device's DTE.
    static func amdVIOMMULimits(_ topology: Topology, facts: EmulatorFacts) -> [Unrealizable] {
        let qemu = "QEMU " + facts.shortVersion
        if facts.amdVIOMMULosesIOAPICInterrupts {
            let at = topology.fabric.first?.location ?? SourceLocation(file: topology.file, line: 1, column: 1)
            return [Unrealizable(node: "iommu", reason: "\(qemu)'s amd-iommu loses the guest's IOAPIC-routed interrupts (its serial lines stall, so the agent cannot report): iommu amd cannot be observed on it; QEMU 7.2 can", location: at)]
        }
        guard !facts.amdVIOMMUReportsFaults || !facts.amdVIOMMUTranslatesBelowBridges else { return [] }
        var out: [Unrealizable] = []
        var seen = Set<String>()
        for scenario in topology.scenarios {
            for step in scenario.steps {
                guard case .dma(let from, _, _) = step.action, !seen.contains(from) else { continue }
                seen.insert(from)
                var why: [String] = []
                if !facts.amdVIOMMUReportsFaults {
                    why.append("its event log raises no interrupt, so a blocked DMA leaves no fault line")
                }
                if !facts.amdVIOMMUTranslatesBelowBridges, !topology.fabric.contains(where: { $0.id == from }) {
                    why.append("\(from) is below a bridge, and it translates such a device's DMA with the DTE of the bus number it had before firmware numbered the bus")
                }
                out.append(Unrealizable(node: from, reason: "dma from \(from) (scenario \(scenario.name)) cannot be judged under \(qemu)'s amd-iommu: " + why.joined(separator: "; "), location: step.location))
            }
        }
        return out
    }

    /// The QEMU device model a node is built from (for DomainXML and the facts check alike); with
    /// `ioh3420` (``Topology/buildsRootPortWithoutACSAsIOH3420``) an ACS-less root port is one.
    public static func qemuDevice(_ kind: NodeKind, ioh3420: Bool = false) -> String {
        switch kind {
        case .rootPort(let acs): return !acs && ioh3420 ? "ioh3420" : "pcie-root-port"
        case .switchUpstream: return "x3130-upstream"
        case .downstreamPort: return "xio3130-downstream"
        case .pciePCIBridge: return "pcie-pci-bridge"
        case .pciBridge: return "pci-bridge"
        case .device(let model, _):
            switch model {
            case .edu: return "edu"
            case .e1000e: return "e1000e"
            case .nvme: return "nvme"
            case .virtioNet: return "virtio-net-pci"
            case .igb: return "igb"
            case .igbVF: return "igbvf"
            }
        }
    }

    /// The QEMU device model of a vIOMMU; nil for none.
    static func viommuModel(_ iommu: IOMMUModel) -> String? {
        switch iommu {
        case .intel: return "intel-iommu"
        case .virtio: return "virtio-iommu-pci"
        case .amd: return "amd-iommu"
        case .none: return nil
        }
    }
}
