import ArgumentParser
import IsolabEngine
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
    @OptionGroup var mirrorOptions: MirrorOptions
    @OptionGroup var developer: DeveloperKernelOptions
    /// The emulator whose facts decide what is realizable and how it is built (default: the
    /// host's QEMU as the model assumes it, nothing probed).
    @OptionGroup var emulatorOptions: EmulatorOptions

    @OptionGroup var formatOptions: FormatOptions

    /// How hazards are listed.
    enum HazardListing: String, ExpressibleByArgument, CaseIterable {
        /// By what connects the endpoints (a switch's internal bus, a conventional bus, a
        /// multifunction slot), with a count of the pairs: linear in the fabric.
        case compact
        /// Also every ordered pair, with its reason: grows with the square of a fan-out.
        case pairs
    }

    @Option(help: "Hazards by what connects the endpoints (compact), or also every ordered pair (pairs).")
    var hazards: HazardListing = .compact

    func run() throws {
        try reportingInputErrors {
            let format = try formatOptions.accepted([.text, .json])
            let facts = try emulatorOptions.facts()
            let topologies = try loadTopologies(files).map { t in var t = t; t.emulator = facts ?? t.emulator; return t }
            let ks = try developer.resolve(requirements: false).map { [($0.label, $0.generation)] } ?? kernels.resolve()
            let predictions = topologies.flatMap { t in ks.map { (label: $0.label, p: Predictor.predict(t, kernel: $0.generation)) } }
            switch format {
            case .json:
                print(PredictionJSON.render(predictions, pairs: hazards == .pairs))
            default:
                print(predictions.map { TextRenderer.render($0.p, label: $0.label, pairs: hazards == .pairs) }.joined(separator: "\n"))
            }
        }
    }
}
