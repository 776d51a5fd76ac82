import ArgumentParser
import Foundation
import IsolabEngine
import IsolabReport

/// `isolab report`: render, merge and compare results documents.
struct ReportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "report",
        abstract: "Render, merge and compare results (results.json from isolab matrix).",
        subcommands: [Render.self, Merge.self, Diff.self, History.self])

    /// The terminal's summary: the headline (the answer first), then the count table.
    static func printSummary(_ doc: ResultsDocument) {
        print(Headline(doc).lines.joined(separator: "\n") + "\n")
        print(MarkdownRenderer.summaryTable(doc), terminator: "")
    }

    static func load(_ path: String) throws -> ResultsDocument {
        guard let data = FileManager.default.contents(atPath: path) else { throw InputError("\(path): cannot read the file") }
        do { return try ResultsDocument.decode(data, source: path) } catch { throw InputError(error.description) }
    }

    struct Render: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Write JUnit, TAP, Markdown and HTML from a results.json.")
        @Argument(help: "A results.json.") var results: String
        @OptionGroup var outputOptions: OutputOptions

        func run() throws {
            var doc: ResultsDocument!
            try reportingInputErrors { doc = try ReportCommand.load(results) }
            try ReportFiles.write(doc, to: outputOptions.output, kcidbOrigin: outputOptions.kcidbOrigin)
            ReportCommand.printSummary(doc)
            let status = ExitStatus.of(doc)
            if status != 0 { throw ExitCode(status) }
        }
    }

    struct Merge: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Join shard results into one results.json and its reports.")
        @Argument(help: "Shard results.json files.") var shards: [String]
        @OptionGroup var outputOptions: OutputOptions

        func run() throws {
            var doc: ResultsDocument!
            try reportingInputErrors {
                guard !shards.isEmpty else { throw InputError("report merge: give the shards' results.json files") }
                do { doc = try ResultsDocument.merge(try shards.map(ReportCommand.load)) } catch let e as ReportError {
                    throw InputError(e.description)
                }
            }
            try ReportFiles.write(doc, to: outputOptions.output, kcidbOrigin: outputOptions.kcidbOrigin)
            ReportCommand.printSummary(doc)
            let status = ExitStatus.of(doc)
            if status != 0 { throw ExitCode(status) }
        }
    }

    struct History: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "In which release did each observation change? Per item, the first kernel (and emulator) where it changed.",
            discussion: "Kernels are ordered by the version in their release; a change the model predicted is marked so. isolab matrix writes the same as history.json, .md and .html when it runs several kernels or emulators.")
        @Argument(help: "A results.json with several kernels (or emulators), e.g. from ci/matrix-history.yaml.") var results: String
        @OptionGroup var formatOptions: FormatOptions

        func run() throws {
            var doc: ResultsDocument!
            var format = OutputFormat.text
            try reportingInputErrors {
                format = try formatOptions.accepted([.text, .markdown, .html, .json])
                doc = try ReportCommand.load(results)
            }
            let history = HistoryReport(doc)
            switch format {
            case .json: print(try history.json())
            case .html: print(history.html(), terminator: "")
            default: print(history.markdown(), terminator: "")
            }
        }
    }

    struct Diff: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "List regressions, fixes and changes between a baseline and new results; exit 1 on a regression.")
        @Argument(help: "Baseline results.json.") var base: String
        @Argument(help: "New results.json.") var new: String
        @OptionGroup var formatOptions: FormatOptions
        @Option(help: "Compare this kernel's runs of the baseline (with --new-kernel) instead of equal labels, e.g. 6.12.")
        var baseKernel: String?
        @Option(help: "The kernel of the new results compared with --base-kernel, e.g. a --kernel-tree's label.")
        var newKernel: String?
        @Option(help: "Compare this emulator's runs of the baseline (with --new-emulator), e.g. 7.2: what did another QEMU change?")
        var baseEmulator: String?
        @Option(help: "The emulator of the new results compared with --base-emulator, e.g. 10.0.")
        var newEmulator: String?

        func run() throws {
            var changes: [Change] = []
            var format = OutputFormat.text
            try reportingInputErrors {
                format = try formatOptions.accepted([.text, .markdown, .html])
                var (b, n) = (try ReportCommand.load(base), try ReportCommand.load(new))
                switch (baseEmulator, newEmulator) {
                case (nil, nil): break
                case let (be?, ne?):
                    let have = { (d: ResultsDocument) in Set(d.runs.compactMap(\.emulator)).sorted() }
                    guard have(b).contains(be) else { throw InputError("--base-emulator: \(base) has no runs on emulator '\(be)' (accepted: \(have(b).joined(separator: ", ")))") }
                    guard have(n).contains(ne) else { throw InputError("--new-emulator: \(new) has no runs on emulator '\(ne)' (accepted: \(have(n).joined(separator: ", ")))") }
                    (b, n) = ResultsDiff.paired(base: b, new: n, emulators: (be, ne))
                default: throw InputError("--base-emulator and --new-emulator go together")
                }
                switch (baseKernel, newKernel) {
                case (nil, nil): changes = ResultsDiff.diff(base: b, new: n)
                case let (bk?, nk?):
                    guard b.kernels.contains(where: { $0.label == bk }) else { throw InputError("--base-kernel: \(base) has no kernel '\(bk)' (accepted: \(b.kernels.map(\.label).joined(separator: ", ")))") }
                    guard n.kernels.contains(where: { $0.label == nk }) else { throw InputError("--new-kernel: \(new) has no kernel '\(nk)' (accepted: \(n.kernels.map(\.label).joined(separator: ", ")))") }
                    let r = RegressionReport(base: b, baseKernel: bk, new: n, newKernel: nk)
                    if format == .markdown {
                        print(r.markdown(), terminator: "")
                        if !r.regressions.isEmpty { throw ExitCode(1) }
                        return
                    }
                    changes = r.entries.map(\.change)
                default: throw InputError("--base-kernel and --new-kernel go together")
                }
            }
            switch format {
            case .markdown: print(ResultsDiff.markdown(changes), terminator: "")
            case .html: print(ResultsDiff.html(changes), terminator: "")
            default: print(ResultsDiff.text(changes), terminator: "")
            }
            if ResultsDiff.hasRegression(changes) { throw ExitCode(1) }
        }
    }
}
