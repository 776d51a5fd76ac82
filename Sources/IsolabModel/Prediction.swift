/// Everything the model predicts for one topology on one kernel generation.
public struct KernelPrediction: Sendable {
    public var topology: Topology
    public var kernel: KernelGeneration
    public var fabric: Fabric
    /// Whether an IOMMU is registered in the guest, so that IOMMU groups exist: the kernel drives
    /// the vIOMMU, and (virtio-iommu on 7.3) its registration did not fail.
    public var iommuActive: Bool
    /// Why there is no IOMMU, when there is none.
    public var iommuNote: String?
    /// nil when no IOMMU is active: no function has a group.
    public var grouping: IOMMUGrouping?
    /// The routing the reaches were computed with, for their reasons; nil without an active IOMMU.
    public var reachability: PCIeReachability?
    /// Where endpoints reach each other past the IOMMU, by what connects them (linear in the
    /// fabric); empty without an active IOMMU.
    public var reaches: [PeerReach] = []

    /// Every ordered pair of endpoints PCIe routing connects past the IOMMU (the hazards are
    /// those the groups separate); empty without an active IOMMU. The judge checks these
    /// against the observed groups. Quadratic in a switch's fan-out: computed on request.
    public var bypasses: [PCIeRoute] { reachability?.bypasses() ?? [] }

    /// The bypassing pairs the kernel's groups separate, pair by pair (on request; the count
    /// is ``hazardCount``).
    public var hazards: [Hazard] {
        guard let grouping, let reachability else { return [] }
        return reachability.hazards(grouping: grouping)
    }

    /// How many ordered pairs are hazards, counted from the reaches without listing them.
    public var hazardCount: Int {
        guard let grouping else { return 0 }
        return reaches.reduce(0) { $0 + $1.hazardCount(grouping) }
    }
    public var unrealizable: [Unrealizable]
    public var scenarios: [ScenarioPrediction]
    /// Hazards that involve an SR-IOV VF once every declared VF is enabled (`pci_device_group()`
    /// gives each its group as it is created, after everything else): predicted only, since the
    /// VFs do not exist when the guest's boot groups are judged.
    public var virtualFunctionHazards: [Hazard] = []

    /// Groups as lists of functions, in allocation order.
    public var groups: [[PCIFunction]] {
        grouping?.groups.map { $0.members.map { fabric.functions[$0] } } ?? []
    }

    /// The groups as the freshly booted guest shows them, before any step. The same as `groups`:
    /// with virtio-iommu on 6.12 `grouping` holds only what is grouped at boot, and the
    /// ownership model adds functions as scenario steps probe drivers on them.
    public var groupsAtBoot: [[PCIFunction]] { groups }

    /// What the guest's virtio-iommu does with this fabric, when it is the vIOMMU and the kernel drives it.
    public var virtio: VirtioIOMMUProbe?
}

/// Runs the model: topology → fabric → ACS → groups → reachability → ownership.
public enum Predictor {
    public static func predict(_ topology: Topology, kernel: KernelGeneration) -> KernelPrediction {
        let fabric = Fabric(topology)
        let drives = kernel.drives(topology.iommu)
        let virtio = drives && topology.iommu == .virtio ? VirtioIOMMUProbe(fabric: fabric, kernel: kernel) : nil
        let active = drives && virtio?.registrationFailed != true
        var note: String?
        if !drives {
            note = topology.iommu == .none
                ? "iommu: none: no IOMMU, no groups; every device reaches all of guest memory"
                : "kernel \(kernel.id) does not drive \(topology.iommu.rawValue)-iommu (not built): no groups, and QEMU lets DMA bypass translation"
        } else if let v = virtio, let first = v.unknownEndpoints.first.map({ fabric.functions[$0] }),
                  let why = v.whyUngroupedAtBoot(first, in: fabric, kernel: kernel) {
            note = v.registrationFailed
                ? why.text + "; every later driver probe defers (iommu_fwspec_init() finds no IOMMU: bind gets EAGAIN) and DMA bypasses translation (QEMU boot-bypass)"
                : "virtio-iommu on \(kernel.id) groups a function when a driver probes it (acpi_dma_configure()); " + why.text
        } else if virtio?.path == .atDriverProbe {
            note = "virtio-iommu on \(kernel.id) groups a function when a driver probes it (acpi_dma_configure()): at boot only what built-in drivers probe"
        }
        // pci_request_acs() comes from the IOMMU driver's detection (intel detect_intel_iommu(),
        // AMD init, acpi_viot_early_init()); without it pci_enable_acs() writes no control bits.
        // VIOT requests ACS even when virtio-iommu then fails to register.
        let acs = ACSEvaluator(fabric: fabric, acsEnabledByKernel: drives)
        var grouping: IOMMUGrouping?
        if active {
            if let v = virtio, v.path == .atDriverProbe {
                var ungrouped: [Int: Reason] = [:]
                for f in fabric.bootFunctions { ungrouped[f.index] = v.whyUngroupedAtBoot(f, in: fabric, kernel: kernel) }
                let probed = v.bootProbed.filter { v.canGroup(fabric.functions[$0]) }
                grouping = IOMMUGrouping(fabric: fabric, acs: acs, probed: probed, ungrouped: ungrouped)
            } else {
                grouping = IOMMUGrouping(fabric: fabric, acs: acs)
            }
        }
        let reachability = grouping.map { _ in PCIeReachability(fabric: fabric, acs: acs) }
        let scenarios = topology.scenarios.map {
            OwnershipModel.predict($0, fabric: fabric, grouping: grouping, kernel: kernel, iommu: topology.iommu,
                                   virtio: virtio, acs: acs)
        }
        var prediction = KernelPrediction(topology: topology, kernel: kernel, fabric: fabric, iommuActive: active,
                                          iommuNote: note, grouping: grouping,
                                          reachability: reachability, reaches: reachability?.peerReaches() ?? [],
                                          unrealizable: Realizability.check(topology), scenarios: scenarios, virtio: virtio)
        if active, fabric.functions.count > fabric.bootFunctionCount {
            let all = fabric.withVirtualFunctionsEnabled()
            let acsAll = ACSEvaluator(fabric: all, acsEnabledByKernel: drives)
            let groupedAll = IOMMUGrouping(fabric: all, acs: acsAll)
            prediction.virtualFunctionHazards = PCIeReachability(fabric: all, acs: acsAll).hazards(grouping: groupedAll).filter {
                all.function(of: $0.from)?.isVirtualFunction == true || all.function(of: $0.to)?.isVirtualFunction == true
            }
        }
        return prediction
    }
}
