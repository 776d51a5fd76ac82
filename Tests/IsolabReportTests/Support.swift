import Foundation
import IsolabModel
import IsolabProtocol
import IsolabReport
import IsolabTopology
import XCTest

let switchNoACS = """
name: switch-no-acs
iommu: intel
fabric:
  - root-port: rp0
    slot: 4
    children:
      - switch: sw0
        downstream:
          - port: dp0
            children:
              - device: A
                model: edu
          - port: dp1
            children:
              - device: B
                model: edu
scenarios:
  - name: p2p
    steps:
      - vfio-bind: A
      - vfio-bind: B
      - vfio-open: A
      - vfio-open: B
      - dma: {from: A, to: B}
      - dma: {from: A, to: memory}
"""

let multifunction = """
name: multifunction
fabric:
  - root-port: rp1
    slot: 3
    children:
      - device: nic0
        model: e1000e
        function: 0
      - device: C
        model: edu
        function: 1
scenarios:
  - name: bind-into-user-owned
    steps:
      - vfio-bind: C
      - vfio-open: C
      - bind: nic0
      - dma: {from: C, to: memory}
"""

func predict(_ yaml: String, kernel: KernelGeneration = .v6_1) throws -> KernelPrediction {
    Predictor.predict(try TopologyLoader.parse(yaml, file: "test.yaml"), kernel: kernel)
}

/// The inventory a guest that grouped exactly as `groups` (guest paths) would report; ids are
/// deliberately not the model's.
func inventory(_ p: KernelPrediction, groups: [[String]]? = nil) -> Inventory {
    let gs = groups ?? p.groupsAtBoot.map { $0.map(\.path) }
    let records = gs.enumerated().map { GroupRecord(id: 100 + gs.count - $0.offset, members: $0.element) }
    return Inventory(kernelRelease: "6.1.0-test", cmdline: "", iommu: "intel", functions: realized(p), groups: records)
}

/// Every function of the fabric as config space shows it when QEMU built it as declared.
func realized(_ p: KernelPrediction) -> [FunctionRecord] {
    p.fabric.bootFunctions.map { f in
        FunctionRecord(path: f.path, bdf: "0000:\(String(format: "%02x", f.bus)):\(String(format: "%02x", f.slot)).\(f.function)",
                       vendorDevice: f.vendorDevice, classCode: "0x000000", headerType: f.isBridge ? 1 : 0,
                       multifunction: f.multifunction, driver: nil, group: nil,
                       pcieType: f.pcieType.expressTypeCode.map { PCIExpressType.name(code: $0) },
                       acs: f.hasACSCapability ? ACSRecord(offset: 0x148, capability: 0x5f, control: 0x1d) : nil,
                       sriov: p.fabric.sriov(of: f).map {
                           SRIOVRecord(offset: 0x160, totalVFs: $0.totalVFs, firstVFOffset: $0.firstVFOffset, vfStride: $0.vfStride,
                                       vfDevice: String($0.vfVendorDevice.suffix(4)))
                       })
    }
}

/// An observation of `scenario` in which every step did what the model predicts, unless
/// `results` overrides tokens by step index.
func observation(_ p: KernelPrediction, scenario: String, results: [Int: String] = [:],
                 outcome: VMObservation.Outcome = .completed, groups: [[String]]? = nil) -> VMObservation {
    let s = p.scenarios.first { $0.name == scenario }!
    let steps = s.steps.map { st -> StepRecord in
        let token = results[st.index] ?? st.result.token
        var dma: DMAEvidence?
        if case .faulted(let r) = st.result, token == "faulted" {
            dma = DMAEvidence(path: "vfio", busAddress: "0x0", expected: "", observed: "", faultRequester: r)
        }
        let asPredicted = token == st.result.token
        return StepRecord(index: st.index, op: st.step.action.op, result: token, detail: "observed \(token)",
                          substeps: asPredicted ? st.substeps.map { SubstepRecord(name: $0.name, result: $0.result.token, detail: $0.detail) } : [],
                          bound: asPredicted ? st.bound : [],
                          refused: st.step.action.op == .loadDriver ? (asPredicted ? st.refused : []) : nil,
                          kernelLog: token == "crash" ? ["kernel BUG at drivers/vfio/vfio.c:698!"] : [],
                          dma: dma)
    }
    return VMObservation(topology: p.topology.name, kernel: p.kernel.id, iommu: p.topology.iommu.rawValue,
                         scenario: scenario, outcome: outcome,
                         problem: outcome == .completed ? nil : "the guest \(outcome.rawValue)",
                         consoleTail: outcome == .completed ? [] : ["[  9.1] last console line"],
                         inventory: inventory(p, groups: groups), steps: steps, streamComplete: outcome == .completed)
}

let environment = Environment(isolab: "0.1-test", qemu: "7.2.15", libvirt: "9.0.0")

/// A kernel build record for `label`, with made-up release and package.
func kernelBuild(_ label: String) -> KernelBuild {
    KernelBuild(label: label, release: "\(label).0-test",
                packages: [KernelPackage(name: "linux-image-\(label)", version: "\(label).1", sha256: String(repeating: "ab", count: 32))])
}

/// A results document of one or more judged predictions.
func document(_ inputs: [(KernelPrediction, [VMObservation])], kernels: [String] = ["6.1"]) -> ResultsDocument {
    ResultsDocument(isolab: "0.1-test", environment: environment,
                    kernels: kernels.map(kernelBuild),
                    inputs: inputs.map { .init(prediction: $0.0, kernelLabel: $0.0.kernel.id, observations: $0.1,
                                               topologySHA256: String(repeating: "0", count: 64)) })
}

extension Array where Element == Verdict {
    func kinds(_ subject: Verdict.Subject) -> [Verdict.Kind] { filter { $0.subject == subject }.map(\.kind) }
    func item(_ item: String) -> Verdict? { first { $0.item == item } }
}
