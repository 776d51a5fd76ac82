import Foundation
import Yams

/// One emulator of the catalog (`vm-images/emulators.yaml`): the host's binary, or Debian
/// packages unpacked into isolab's cache.
public struct CatalogEmulator: Equatable, Sendable, Codable {
    /// Short id used on the command line (`--emulator 10.0`).
    public var id: String
    /// The host's binary (`qemu-system-x86_64`), used as it is.
    public var host: String?
    /// Debian suite of `packages` (searched alone, as backports are).
    public var suite: String?
    /// Packages fetched at `version`, the binary's package first.
    public var packages: [String]
    public var version: String?

    public init(id: String, host: String? = nil, suite: String? = nil, packages: [String] = [], version: String? = nil) {
        self.id = id; self.host = host; self.suite = suite; self.packages = packages; self.version = version
    }
}

/// The emulator catalog: which QEMUs isolab can run guests on.
public struct EmulatorCatalog: Equatable, Sendable {
    public var emulators: [CatalogEmulator]

    /// The emulator with this id, or an error listing the ids the catalog has.
    public func emulator(id: String) throws -> CatalogEmulator {
        guard let e = emulators.first(where: { $0.id == id }) else {
            throw ImagesError.unknownEmulator(id: id, known: emulators.map(\.id))
        }
        return e
    }

    /// The host's entry (libvirt's default emulator).
    public var host: CatalogEmulator? { emulators.first { $0.host != nil } }

    static let fields = ["id", "host", "suite", "packages", "version"]

    public static func load(from path: String) throws -> EmulatorCatalog {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ImagesError.io(path: path, problem: "cannot read the emulator catalog")
        }
        return try parse(String(decoding: data, as: UTF8.self), file: path)
    }

    /// Parses catalog text; errors name the file, line, field and what is accepted.
    public static func parse(_ text: String, file: String = "emulators.yaml") throws -> EmulatorCatalog {
        func fail(_ node: Node?, _ field: String?, _ problem: String, _ accepted: String? = nil) -> ImagesError {
            .invalidFile(file: file, line: node?.mark?.line, field: field, problem: problem, accepted: accepted)
        }
        let root: Node?
        do { root = try Yams.compose(yaml: text) } catch {
            throw ImagesError.invalidFile(file: file, line: nil, field: nil, problem: "not valid YAML: \(error)", accepted: nil)
        }
        guard let root, let top = root.mapping, let list = top["emulators"]?.sequence else {
            throw fail(root, "emulators", "expected a mapping with an 'emulators' list", "emulators: [ {id, host} or {id, suite, packages, version} ]")
        }
        for (key, _) in top where key.string != "emulators" { throw fail(key, key.string ?? "?", "unknown top-level field", "emulators") }
        var out: [CatalogEmulator] = []
        for item in list {
            guard let map = item.mapping else { throw fail(item, "emulators", "each emulator must be a mapping", fields.joined(separator: ", ")) }
            var e = CatalogEmulator(id: "")
            for (key, value) in map {
                let name = key.string ?? "?"
                switch name {
                case "packages":
                    guard let seq = value.sequence, !seq.isEmpty else { throw fail(value, name, "expected a non-empty list of package names") }
                    e.packages = try seq.map {
                        guard let s = $0.scalar?.string, !s.isEmpty else { throw fail($0, "packages[]", "expected a package name") }
                        return s
                    }
                case "id", "host", "suite", "version":
                    guard let s = value.scalar?.string, !s.isEmpty else { throw fail(value, name, "expected a non-empty string") }
                    switch name {
                    case "id": e.id = s
                    case "host": e.host = s
                    case "suite": e.suite = s
                    default: e.version = s
                    }
                default:
                    throw fail(key, name, "unknown field", fields.joined(separator: ", "))
                }
            }
            guard !e.id.isEmpty else { throw fail(item, "id", "missing required field", "id") }
            guard !out.contains(where: { $0.id == e.id }) else { throw fail(map["id"], "id", "duplicate emulator id '\(e.id)'") }
            switch (e.host, e.suite) {
            case (_?, nil):
                guard e.packages.isEmpty, e.version == nil else { throw fail(item, "host", "a host emulator takes no packages or version") }
            case (nil, _?):
                guard !e.packages.isEmpty else { throw fail(item, "packages", "missing required field", "the packages to fetch, the binary's first") }
                guard e.version != nil else { throw fail(item, "version", "missing required field", "the pinned version of every package") }
            default:
                throw fail(item, "host", "give either host (the host's binary) or suite, packages and version", "host | suite + packages + version")
            }
            out.append(e)
        }
        guard !out.isEmpty else { throw fail(root, "emulators", "the list is empty") }
        return EmulatorCatalog(emulators: out)
    }
}
