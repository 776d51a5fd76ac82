import Foundation
import IsolabModel
import Yams

/// A matrix file (`ci/matrix.yaml`): which fabrics run on which kernels under which vIOMMUs.
///
/// ```yaml
/// fabrics: [topologies/*.yaml]        # globs, relative to the directory the command runs in
/// kernels: ["5.10", "6.1", "6.12", "7.3"]
/// iommus: [intel, virtio]             # added to every fabric that declares intel (the default);
///                                     # a fabric declaring another vIOMMU keeps only its own
/// emulators: ["7.2", "10.0"]          # optional: vm-images/emulators.yaml ids (default: the
///                                     # host's QEMU only)
/// jobs: 2                             # optional default for --jobs
/// ```
public struct MatrixFile: Sendable, Equatable {
    public var file: String
    public var fabrics: [String]
    public var kernels: [String]
    public var iommus: [IOMMUModel]
    public var jobs: Int?
    /// Emulator ids (`vm-images/emulators.yaml`); empty: the host's QEMU only.
    public var emulators: [String] = []

    /// Loads a matrix file; `emulators`, when given, are the ids its `emulators:` may name.
    public static func load(path: String, emulators: [String]? = nil, kernels: [String]? = nil) throws -> MatrixFile {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw TopologyError(file: path, line: 1, column: 1, field: "(file)", message: "cannot read the file", accepted: "a YAML matrix file")
        }
        return try parse(String(decoding: data, as: UTF8.self), file: path, emulators: emulators, kernels: kernels)
    }

    public static func parse(_ text: String, file: String, emulators: [String]? = nil, kernels: [String]? = nil) throws -> MatrixFile {
        let r = YAMLReader(file: file)
        let root: Yams.Node
        do {
            guard let n = try Yams.compose(yaml: text) else {
                throw TopologyError(file: file, line: 1, column: 1, field: "(document)", message: "the file is empty", accepted: "a mapping with fabrics and kernels")
            }
            root = n
        } catch let e as TopologyError {
            throw e
        } catch {
            throw TopologyError(file: file, line: 1, column: 1, field: "(document)", message: "not valid YAML: \(error)")
        }
        var m = MatrixFile(file: file, fabrics: [], kernels: [], iommus: [.intel], jobs: nil)
        var seen = Set<String>()
        for (key, _, value) in try r.mapping(root, "(document)", allowed: ["fabrics", "kernels", "iommus", "emulators", "jobs"]) {
            seen.insert(key)
            switch key {
            case "fabrics":
                m.fabrics = try r.sequence(value, "fabrics").map { try r.scalar($0, "fabrics[]", what: "a file or glob") }
                if m.fabrics.isEmpty { throw r.error(value, "fabrics", "the list is empty", accepted: "topology files or globs") }
            case "kernels":
                // The model's catalog ids, and the image catalog's other kernels (`6.12-iommufd`).
                let ids = KernelGeneration.catalog.map(\.id) + (kernels ?? []).filter { k in !KernelGeneration.catalog.contains { $0.id == k } }
                m.kernels = try r.sequence(value, "kernels").map { try r.oneOf($0, "kernels[]", ids) }
                if m.kernels.isEmpty { throw r.error(value, "kernels", "the list is empty", accepted: ids.joined(separator: ", ")) }
            case "iommus":
                m.iommus = try r.sequence(value, "iommus").map {
                    IOMMUModel(rawValue: try r.oneOf($0, "iommus[]", IOMMUModel.allCases.map(\.rawValue)))!
                }
            case "emulators":
                m.emulators = try r.sequence(value, "emulators").map {
                    if let ids = emulators { return try r.oneOf($0, "emulators[]", ids) }
                    return try r.scalar($0, "emulators[]", what: "an emulators.yaml id")
                }
                if m.emulators.isEmpty { throw r.error(value, "emulators", "the list is empty", accepted: emulators?.joined(separator: ", ") ?? "emulators.yaml ids") }
                if Set(m.emulators).count != m.emulators.count { throw r.error(value, "emulators", "an id is listed twice", accepted: "each id once") }
            case "jobs":
                m.jobs = try r.int(value, "jobs", range: 1...64)
            default: break
            }
        }
        for required in ["fabrics", "kernels"] where !seen.contains(required) {
            throw r.error(root, required, "missing", accepted: required == "fabrics" ? "a list of topology files or globs" : KernelGeneration.catalog.map(\.id).joined(separator: ", "))
        }
        return m
    }

    /// The fabric files the globs name, sorted, each once.
    public func expandFabrics(relativeTo directory: String = FileManager.default.currentDirectoryPath) throws -> [String] {
        var out: [String] = []
        for pattern in fabrics {
            let full = pattern.hasPrefix("/") ? pattern : directory + "/" + pattern
            var g = glob_t()
            defer { globfree(&g) }
            guard glob(full, 0, nil, &g) == 0 else {
                throw TopologyError(file: file, line: 1, column: 1, field: "fabrics", message: "'\(pattern)' matches no file")
            }
            for i in 0..<Int(g.gl_pathc) {
                if let p = g.gl_pathv[i] {
                    var path = String(cString: p)
                    if path.hasPrefix(directory + "/") { path.removeFirst(directory.count + 1) }
                    out.append(path)
                }
            }
        }
        var seen = Set<String>()
        return out.sorted().filter { seen.insert($0).inserted }
    }
}
