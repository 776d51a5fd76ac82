import ArgumentParser
import IsolabModel

/// `isolab check FILE…`: validate topology files.
struct CheckCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check",
        abstract: "Validate topology files.",
        discussion: "Prints one line per valid file. The first invalid file is reported as FILE:LINE:COLUMN: FIELD: problem (accepted: …) and isolab exits with status 2."
    )

    @Argument(help: "Topology files (YAML).")
    var files: [String]

    func run() throws {
        try reportingInputErrors {
            for t in try loadTopologies(files) {
                let unrealizable = Realizability.check(t)
                print("ok: \(t.file): \(t.name), \(t.allNodes.count) nodes, \(t.scenarios.count) scenarios, iommu \(t.iommu.rawValue)"
                      + (unrealizable.isEmpty ? "" : ", \(unrealizable.count) unrealizable in QEMU"))
            }
        }
    }
}
