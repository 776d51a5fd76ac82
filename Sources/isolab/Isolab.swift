import ArgumentParser

/// The `isolab` command line: predict, explain and boot PCIe fabrics.
@main
struct Isolab: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "isolab",
        abstract: "QEMU-backed test harness for PCIe DMA isolation and the kernel's IOMMU grouping.",
        version: "0.1.0",
        subcommands: [CheckCommand.self, PredictCommand.self, ExplainCommand.self, RunCommand.self, MatrixCommand.self, ReportCommand.self, ImagesCommand.self]
    )
}
