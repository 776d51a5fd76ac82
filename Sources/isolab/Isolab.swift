import ArgumentParser
import Foundation
import IsolabEngine

/// The `isolab` command line: predict, explain and boot PCIe fabrics.
@main
struct Isolab: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "isolab",
        abstract: "QEMU-backed test harness for PCIe DMA isolation and the kernel's IOMMU grouping.",
        discussion: Verbosity.help,
        version: "0.1.0",
        subcommands: [CheckCommand.self, PredictCommand.self, ExplainCommand.self, RunCommand.self, MatrixCommand.self, ExploreCommand.self,
                      ReportCommand.self, ImagesCommand.self, DoctorCommand.self]
    )

    /// Parses and runs a command the way isolab promises bad input is reported: one
    /// `isolab: …` line on stderr and exit status 2, argument-parser's own errors included
    /// (its default is the whole usage and 64). Help and version exit 0 as usual.
    static func main() {
        let (arguments, level) = Verbosity.extract(Array(CommandLine.arguments.dropFirst()))
        Verbosity.bootstrap(level)
        MatrixRun.isolabVersion = configuration.version
        let command: ParsableCommand
        do {
            command = try parseAsRoot(arguments)
            try RepeatedOptions.check(command, arguments: arguments)
        } catch {
            if exitCode(for: error) == .validationFailure || error is RepeatedOptions.Repeated {
                badInput(error is RepeatedOptions.Repeated ? String(describing: error) : message(for: error))
            }
            exit(withError: error)
        }
        do {
            var command = command
            try command.run()
        } catch {
            if exitCode(for: error) == .validationFailure { badInput(message(for: error)) }
            exit(withError: error)
        }
    }

    /// Prints the first line of `message` as `isolab: …` and exits 2.
    static func badInput(_ message: String) -> Never {
        var line = message.split(separator: "\n").first.map(String.init) ?? "bad input"
        if line.hasPrefix("Error: ") { line.removeFirst("Error: ".count) }
        FileHandle.standardError.write(Data("isolab: \(line)\n".utf8))
        Foundation.exit(2)
    }
}

/// A single-valued option given more than once: argument-parser keeps the last value without
/// a word, so isolab refuses it. Options that take several values are arrays and accumulate.
enum RepeatedOptions {
    struct Repeated: Error, CustomStringConvertible {
        var option: String
        var description: String { "\(option) was given more than once; give it once" }
    }

    /// Walks the parsed command's `@Option` properties (and those of its `@OptionGroup`s) and
    /// counts each single-valued one among the arguments.
    static func check(_ command: Any, arguments: [String]) throws {
        for name in singleValuedOptions(of: command) {
            let flag = "--" + name
            let count = arguments.prefix { $0 != "--" }.filter { $0 == flag || $0.hasPrefix(flag + "=") }.count
            if count > 1 { throw Repeated(option: flag) }
        }
    }

    /// Long names of the single-valued options, as argument-parser derives them from the
    /// property names (`stepTimeout` → `step-timeout`).
    static func singleValuedOptions(of value: Any) -> [String] {
        var out: [String] = []
        for child in Mirror(reflecting: value).children {
            guard let label = child.label, label.hasPrefix("_") else { continue }
            let type = String(describing: type(of: child.value))
            if type.hasPrefix("OptionGroup<") {
                if let inner = Mirror(reflecting: child.value).children.first(where: { $0.label == "_parsedValue" || $0.label == "parsedValue" }) {
                    out += singleValuedOptions(of: unwrapParsed(inner.value))
                }
            } else if type.hasPrefix("Option<"), !type.hasPrefix("Option<Array<"), !type.hasPrefix("Option<Optional<Array<") {
                out.append(kebab(String(label.dropFirst())))
            }
        }
        return out
    }

    /// An option group's parsed value sits inside argument-parser's `Parsed` enum
    /// (`.value(T)`); reflection reaches it as the enum's one associated value.
    static func unwrapParsed(_ value: Any) -> Any {
        Mirror(reflecting: value).children.first?.value ?? value
    }

    static func kebab(_ name: String) -> String {
        var out = ""
        for ch in name {
            if ch.isUppercase { out += "-" + ch.lowercased() } else { out.append(ch) }
        }
        return out
    }
}
