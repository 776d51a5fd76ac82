import IsolabModel
import IsolabProtocol

/// Turns a scenario of a topology into the plan the guest agent runs.
public enum PlanBuilder {
    /// The plan for `scenario` (nil: inventory only) on `fabric`.
    public static func plan(topology: Topology, fabric: Fabric, scenario: Scenario?, runID: String,
                            stepTimeout: Double) -> GuestPlan {
        let nodes = fabric.functions.compactMap { f -> PlanNode? in
            guard let id = f.nodeID else { return nil }
            var bits: Int?
            if case .device(.edu, let declared)? = f.kind { bits = declared ?? 64 }   // DomainXML's default: all 64 bits
            return PlanNode(id: id, path: f.path, model: f.deviceModel?.rawValue, dmaMaskBits: bits)
        }
        let steps = (scenario?.steps ?? []).enumerated().map { i, step in
            planStep(index: i, step.action, fabric: fabric)
        }
        return GuestPlan(runID: runID, nodes: nodes, steps: steps, stepTimeoutSeconds: stepTimeout,
                         preload: preload(for: topology))
    }

    /// Modules the guest loads before its inventory, for every scenario of `topology` alike:
    /// the vIOMMU driver when it is a module, and vfio-pci when a scenario binds it
    /// (``preloadsVFIOPCI(_:)``).
    public static func preload(for topology: Topology) -> [String] {
        (topology.iommu == .virtio ? ["virtio_iommu"] : []) + (preloadsVFIOPCI(topology) ? ["vfio_pci"] : [])
    }

    /// Whether the guest loads vfio-pci before the scenario rather than at its first bind. A bind
    /// loads a missing driver with autoprobe off (the agent's `ensureDriver`), and vfio-pci has
    /// no ID table, so a loaded vfio-pci binds nothing until a step binds it: the scenario's
    /// devices and groups are the same either way. Loaded beforehand, a restored scenario skips
    /// the `modprobe` (about 0.2 s under TCG; a third of its steps' time). Not when a scenario
    /// loads a VFIO module itself (its options, e.g. `enable_unsafe_noiommu_mode`, apply only
    /// to a module it loads) or runs a program (which may load or check modules itself).
    public static func preloadsVFIOPCI(_ topology: Topology) -> Bool {
        let actions = topology.scenarios.flatMap { $0.steps.map(\.action) }
        var binds = false
        for action in actions {
            switch action {
            case .vfioBind: binds = true
            case .bind(_, let driver?) where driver == "vfio-pci": binds = true
            case .loadDriver(let module, _) where module.hasPrefix("vfio"): return false
            case .selftest: return false
            default: break
            }
        }
        return binds
    }

    static func planStep(index: Int, _ action: StepAction, fabric: Fabric) -> PlanStep {
        switch action {
        case .loadDriver(let module, let options):
            var step = PlanStep(index: index, op: .loadDriver, module: module)
            step.options = options.isEmpty ? nil : options
            return step
        case .bind(let device, let driver):
            let resolved = driver ?? fabric.function(of: device)?.defaultDriver
            return PlanStep(index: index, op: .bind, device: device, driver: resolved)
        case .unbind(let d):
            return PlanStep(index: index, op: .unbind, device: d)
        case .vfioBind(let d):
            return PlanStep(index: index, op: .vfioBind, device: d, driver: "vfio-pci")
        case .vfioOpen(let d, let via, let token):
            var step = PlanStep(index: index, op: .vfioOpen, device: d)
            step.via = via == .group ? nil : via.rawValue
            step.vfToken = token
            return step
        case .vfioClose(let d):
            return PlanStep(index: index, op: .vfioClose, device: d)
        case .dma(let from, let to, let map):
            switch to {
            case .memory:
                return PlanStep(index: index, op: .dma, device: from, to: .memory, map: map.rawValue)
            case .unmapped:
                return PlanStep(index: index, op: .dma, device: from, to: .unmapped, map: map.rawValue)
            case .device(let target):
                return PlanStep(index: index, op: .dma, device: from, to: .device, target: target, map: map.rawValue)
            }
        case .vfToken(let d, let token):
            var step = PlanStep(index: index, op: .vfToken, device: d)
            step.vfToken = token
            return step
        case .sriov(let d, let vfs, let online):
            var step = PlanStep(index: index, op: .sriov, device: d)
            step.vfs = vfs
            step.online = online ? true : nil
            return step
        case .selftest(let run):
            var step = PlanStep(index: index, op: .selftest)
            step.program = run.program
            step.devices = run.devices
            step.args = run.args.isEmpty ? nil : run.args
            step.env = run.env.isEmpty ? nil : run.env
            step.timeoutSeconds = run.timeout
            step.hugepages = run.hugepages > 0 ? run.hugepages : nil
            return step
        }
    }
}
