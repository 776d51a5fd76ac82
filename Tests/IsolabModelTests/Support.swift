import IsolabModel
import IsolabTopology
import XCTest

/// Builds a prediction from inline YAML (no files).
func predict(_ yaml: String, kernel: KernelGeneration = .v6_1) throws -> KernelPrediction {
    let t = try TopologyLoader.parse(yaml, file: "test.yaml")
    return Predictor.predict(t, kernel: kernel)
}

extension KernelPrediction {
    /// The names of everything in `id`'s group (chipset functions by what they are).
    func group(_ id: String) -> Set<String> {
        guard let f = fabric.function(of: id), let g = grouping?.group(of: f) else { return [] }
        return Set(g.members.map { fabric.functions[$0].displayName })
    }

    func results(_ scenario: String) -> [String] {
        scenarios.first { $0.name == scenario }!.steps.map(\.result.token)
    }

    func hazardPairs() -> Set<String> { Set(hazards.map { "\($0.from)->\($0.to)" }) }
}

/// nic0 (e1000e) and C (edu) as functions 0 and 1 behind one root port: one group, no ACS.
let multifunctionNICAndEdu = """
name: t
fabric:
  - root-port: rp1
    children:
      - device: nic0
        model: e1000e
        function: 0
      - device: C
        model: edu
        function: 1

"""
