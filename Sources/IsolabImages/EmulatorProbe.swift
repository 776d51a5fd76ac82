import Foundation
import IsolabModel

/// Asks an emulator binary what it realizes: `--version`, `-device help` and `-device X,help`
/// for every model isolab builds. Cached by the binary's sha256 (and its wrapper's), so each
/// build is asked once.
public enum EmulatorProbe {
    /// The facts of `binary` (a QEMU, or a wrapper that runs one), from the cache or probed.
    public static func facts(of binary: String, identity: String, cache: ImageCache) throws -> EmulatorFacts {
        let file = cache.path("emulator-facts", identity + ".json")
        if let data = FileManager.default.contents(atPath: file), let f = try? JSONDecoder().decode(EmulatorFacts.self, from: data) {
            return f
        }
        let facts = try probe(binary)
        try FileManager.default.createDirectory(atPath: cache.path("emulator-facts"), withIntermediateDirectories: true)
        try JSONEncoder().encode(facts).write(to: URL(fileURLWithPath: file + ".tmp"))
        _ = rename(file + ".tmp", file)
        return facts
    }

    /// Runs the binary and reads its answers (no guest starts: `-machine none`).
    public static func probe(_ binary: String) throws -> EmulatorFacts {
        func ask(_ args: [String]) throws -> String {
            let r = try Shell.run([binary] + args, deadline: 60)
            guard r.status == 0 else {
                throw ImagesError.commandFailed(command: ([binary] + args).joined(separator: " "), status: r.status,
                                                output: r.errorText + r.text)
            }
            return r.text
        }
        let none = ["-machine", "none", "-nodefaults", "-display", "none"]
        let version = try ask(["--version"]).split(separator: "\n").first.map(String.init) ?? "unknown"
        let devices = parseDeviceList(try ask(none + ["-device", "help"]))
        var properties: [String: [String]] = [:]
        for model in EmulatorFacts.probedModels where devices.contains(model) {
            properties[model] = parseProperties(try ask(none + ["-device", "\(model),help"]))
        }
        return EmulatorFacts(version: version, devices: devices, properties: properties)
    }

    /// The model names of `-device help` (`name "edu", bus PCI`).
    static func parseDeviceList(_ text: String) -> [String] {
        text.split(separator: "\n").compactMap { line in
            guard line.hasPrefix("name \"") else { return nil }
            let rest = line.dropFirst("name \"".count)
            return rest.firstIndex(of: "\"").map { String(rest[..<$0]) }
        }
    }

    /// The property names of `-device X,help` (`  disable-acs=<bool>     - on/off …`).
    static func parseProperties(_ text: String) -> [String] {
        text.split(separator: "\n").compactMap { line in
            let t = line.trimmingCharacters(in: .whitespaces)
            guard line.first == " ", let eq = t.firstIndex(of: "=") else { return nil }
            return String(t[..<eq])
        }.sorted()
    }
}
