import ArgumentParser
import Foundation
import IsolabReport

/// `isolab report`: render, merge and compare results documents.
struct ReportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "report",
        abstract: "Render, merge and compare results (results.json from isolab matrix).",
        subcommands: [Render.self, Merge.self, Diff.self])

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
            try ReportFiles.write(doc, to: outputOptions.output)
            print(MarkdownRenderer.summaryTable(doc), terminator: "")
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
            try ReportFiles.write(doc, to: outputOptions.output)
            print(MarkdownRenderer.summaryTable(doc), terminator: "")
            let status = ExitStatus.of(doc)
            if status != 0 { throw ExitCode(status) }
        }
    }

    struct Diff: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "List regressions, fixes and changes between a baseline and new results; exit 1 on a regression.")
        @Argument(help: "Baseline results.json.") var base: String
        @Argument(help: "New results.json.") var new: String
        @OptionGroup var formatOptions: FormatOptions

        func run() throws {
            var changes: [Change] = []
            var format = OutputFormat.text
            try reportingInputErrors {
                format = try formatOptions.accepted([.text, .markdown, .html])
                changes = ResultsDiff.diff(base: try ReportCommand.load(base), new: try ReportCommand.load(new))
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
