import Foundation
import IsolabReport

/// `isolab matrix --baseline`: the kernel a developer's kernel is compared with, a catalog id
/// (booted in the same matrix) or one kernel of a saved results.json.
struct Baseline {
    /// The baseline's kernel label.
    var kernel: String
    /// The saved results it comes from; nil: this matrix runs it.
    var document: ResultsDocument?

    static func resolve(_ argument: String, developer: DeveloperKernel?) throws -> Baseline {
        guard let developer else {
            throw InputError("--baseline: compares a developer's kernel; give --kernel-tree DIR or --kernel-image PATH --modules DIR")
        }
        if KernelOptions.bootableIDs().contains(argument) { return Baseline(kernel: argument, document: nil) }
        guard FileManager.default.fileExists(atPath: argument) else {
            throw InputError("--baseline: '\(argument)' is neither a catalog kernel (accepted: \(KernelOptions.bootableIDs().joined(separator: ", "))) nor a results.json")
        }
        let doc = try ReportCommand.load(argument)
        let labels = doc.kernels.map(\.label)
        let chosen = labels.count == 1 ? labels[0] : labels.first { $0 == developer.generation.id }
        guard let chosen else {
            throw InputError("--baseline \(argument): it holds kernels \(labels.joined(separator: ", ")); keep one (or one labelled \(developer.generation.id))")
        }
        return Baseline(kernel: chosen, document: doc)
    }

    /// Writes `regression.md` and `regression.json` into `output`; returns the report.
    func write(results: ResultsDocument, developer: DeveloperKernel, to output: String) throws -> RegressionReport {
        let report = RegressionReport(base: document ?? results, baseKernel: kernel, new: results, newKernel: developer.label)
        try report.markdown().write(toFile: output + "/regression.md", atomically: true, encoding: .utf8)
        let e = JSONEncoder()
        e.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        try String(decoding: try e.encode(report), as: UTF8.self).write(toFile: output + "/regression.json", atomically: true, encoding: .utf8)
        return report
    }
}
