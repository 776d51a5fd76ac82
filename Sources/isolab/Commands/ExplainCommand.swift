import ArgumentParser
import IsolabEngine
import IsolabModel

/// `isolab explain FILE --kernel ID [--device ID]`.
struct ExplainCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "explain",
        abstract: "Explain, rule by rule, why each function lands in its IOMMU group and why each step has its outcome.",
        discussion: "Every line names the kernel function the rule mirrors, e.g. pci_acs_path_enabled() or iommu_device_use_default_domain()."
    )

    @Argument(help: "A topology file (YAML).")
    var file: String

    @OptionGroup var kernels: KernelOptions
    @OptionGroup var mirrorOptions: MirrorOptions
    @OptionGroup var developer: DeveloperKernelOptions
    /// The emulator whose facts decide what is realizable and how it is built (default: the
    /// host's QEMU as the model assumes it, nothing probed).
    @OptionGroup var emulatorOptions: EmulatorOptions

    @Option(help: "Explain only this node and the steps that name it.")
    var device: String?

    func run() throws {
        try reportingInputErrors {
            var t = try loadTopologies([file])[0]
            if let facts = try emulatorOptions.facts() { t.emulator = facts }
            let dev = try developer.resolve(requirements: false)
            let resolved = try dev.map { [($0.label, $0.generation)] } ?? (kernels.given ? kernels.resolve() : [])
            guard resolved.count == 1, dev == nil || !kernels.given, let (label, gen) = resolved.first else {
                throw InputError("--kernel: explain takes one kernel (accepted: \(KernelGeneration.catalog.map(\.id).joined(separator: ", ")), a version, or --kernel-tree DIR alone)")
            }
            if let d = device, !t.allNodes.contains(where: { $0.id == d }) {
                throw InputError("--device: unknown node '\(d)' in \(file) (accepted: \(t.allNodes.map(\.id).joined(separator: ", ")))")
            }
            print(TextRenderer.explain(Predictor.predict(t, kernel: gen), label: label, device: device))
        }
    }
}
