import ArgumentParser
import IsolabModel

/// `isolab predict FILE… [--kernel ID|all] [--format text|json]`.
struct PredictCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "predict",
        abstract: "Predict IOMMU groups, hazards and every scenario step for each kernel, without booting.",
        discussion: "Text draws the fabric as a tree with each function's IOMMU group and marks hazards. JSON (docs/predict-json.md) holds, per topology and kernel, groups, hazards, unrealizable nodes and every step's predicted result with the rule behind it."
    )

    @Argument(help: "Topology files (YAML).")
    var files: [String]

    @OptionGroup var kernels: KernelOptions
    @OptionGroup var developer: DeveloperKernelOptions

    @Option(help: "Output format: text or json.")
    var format: OutputFormat = .text

    func run() throws {
        try reportingInputErrors {
            let topologies = try loadTopologies(files)
            let ks = try developer.resolve(requirements: false).map { [($0.label, $0.generation)] } ?? kernels.resolve()
            let predictions = topologies.flatMap { t in ks.map { (label: $0.label, p: Predictor.predict(t, kernel: $0.generation)) } }
            switch format {
            case .json:
                print(PredictionJSON.render(predictions))
            case .text:
                print(predictions.map { TextRenderer.render($0.p, label: $0.label) }.joined(separator: "\n"))
            }
        }
    }
}
