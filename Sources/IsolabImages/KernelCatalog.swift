import Foundation
import Yams

/// One kernel of the catalog (`vm-images/kernels.yaml`): a Debian suite and package.
public struct CatalogKernel: Equatable, Sendable, Codable {
    /// Short id used on the command line (`--kernel 6.1`).
    public var id: String
    /// Debian suite, e.g. `bookworm` or `trixie-backports`.
    public var suite: String
    /// Package to resolve, usually the `linux-image-amd64` meta-package; its exact-version
    /// `linux-*` dependencies (image, binary, modules) are fetched with it.
    public var package: String
    /// Model generation the IOMMU model uses for this kernel.
    public var generation: String
    /// Pinned version of `package`; nil resolves the newest one the suite serves.
    public var version: String?
    /// A config fragment (relative to `vm-images/`): `package` is then a Debian kernel source
    /// package (`linux-source-6.12`) that isolab compiles as `make tinyconfig` plus the fragment.
    public var build: String?
    /// Why the archive cannot serve this kernel any more (`unavailable:`), e.g. its modules
    /// package is gone; such an entry is listed, never fetched.
    public var unavailable: String?

    public init(id: String, suite: String, package: String, generation: String, version: String? = nil,
                build: String? = nil, unavailable: String? = nil) {
        self.id = id; self.suite = suite; self.package = package
        self.generation = generation; self.version = version; self.build = build; self.unavailable = unavailable
    }

    /// Suites searched for the package: the suite itself plus its security suite
    /// (`bookworm` → `bookworm`, `bookworm-security`); a suite with a dash (backports) alone.
    public var suites: [String] { suite.contains("-") ? [suite] : [suite, "\(suite)-security"] }
}

/// The kernel catalog: which Debian kernels isolab can boot.
public struct KernelCatalog: Equatable, Sendable {
    public var kernels: [CatalogKernel]
    /// `selftests:`: the kernel whose source package (`linux-source-X.Y`, a `build:` entry) the
    /// kernel's own VFIO and iommufd selftests are built from.
    public var selftestSource: String?

    public init(kernels: [CatalogKernel], selftestSource: String? = nil) {
        self.kernels = kernels
        self.selftestSource = selftestSource
    }

    /// The kernel with this id, or an error listing the ids the catalog has (or saying why
    /// the archive cannot serve it).
    public func kernel(id: String) throws -> CatalogKernel {
        guard let k = kernels.first(where: { $0.id == id }) else {
            throw ImagesError.unknownKernel(id: id, known: available.map(\.id))
        }
        if let reason = k.unavailable { throw ImagesError.kernelUnavailable(id: id, reason: reason) }
        return k
    }

    /// The kernels the archive can serve (every entry without `unavailable:`).
    public var available: [CatalogKernel] { kernels.filter { $0.unavailable == nil } }

    static let fields = ["id", "suite", "package", "generation", "version", "build", "unavailable"]
    static let required = ["id", "suite", "package", "generation"]

    /// Loads and validates a catalog file; errors name the file, line and field.
    public static func load(from url: URL) throws -> KernelCatalog {
        guard let data = FileManager.default.contents(atPath: url.path) else {
            throw ImagesError.io(path: url.path, problem: "cannot read the kernel catalog")
        }
        return try parse(String(decoding: data, as: UTF8.self), file: url.path)
    }

    /// Parses catalog text; `file` is only used in error messages.
    public static func parse(_ text: String, file: String = "kernels.yaml") throws -> KernelCatalog {
        func fail(_ node: Node?, _ field: String?, _ problem: String, _ accepted: String? = nil) -> ImagesError {
            .invalidFile(file: file, line: node?.mark?.line, field: field, problem: problem, accepted: accepted)
        }
        let root: Node?
        do { root = try Yams.compose(yaml: text) } catch let error as YamlError {
            throw ImagesError.invalidFile(file: file, line: yamlLine(error), field: nil,
                                          problem: "not valid YAML: \(yamlProblem(error))", accepted: nil)
        }
        guard let root, let top = root.mapping else {
            throw fail(root, nil, "expected a mapping with a 'kernels' list", "kernels: [ {id, suite, package, generation} ]")
        }
        for (key, _) in top where key.string != "kernels" && key.string != "selftests" {
            throw fail(key, key.string ?? "?", "unknown top-level field", "kernels, selftests")
        }
        guard let listNode = top["kernels"] else { throw fail(root, "kernels", "missing") }
        guard let list = listNode.sequence else { throw fail(listNode, "kernels", "expected a list of kernels") }
        var kernels: [CatalogKernel] = []
        for item in list {
            guard let map = item.mapping else {
                throw fail(item, "kernels", "each kernel must be a mapping", fields.joined(separator: ", "))
            }
            var values: [String: String] = [:]
            for (key, value) in map {
                let name = key.string ?? "?"
                guard fields.contains(name) else {
                    throw fail(key, name, "unknown field", fields.joined(separator: ", "))
                }
                guard let scalar = value.scalar, !scalar.string.isEmpty else {
                    throw fail(value, name, "expected a non-empty string")
                }
                values[name] = scalar.string
            }
            for name in required where values[name] == nil {
                throw fail(item, name, "missing required field", required.joined(separator: ", "))
            }
            let id = values["id"]!
            guard id.allSatisfy({ $0.isLetter || $0.isNumber || "._-".contains($0) }) else {
                throw fail(map["id"], "id", "'\(id)' has characters other than letters, digits, '.', '_', '-'")
            }
            guard !kernels.contains(where: { $0.id == id }) else {
                throw fail(map["id"], "id", "duplicate kernel id '\(id)'")
            }
            let suite = values["suite"]!
            guard suite.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "-" }) else {
                throw fail(map["suite"], "suite", "'\(suite)' is not a Debian suite name", "e.g. bookworm, trixie-backports")
            }
            if let build = values["build"] {
                guard !build.hasPrefix("/"), !build.split(separator: "/").contains(".."), build.hasSuffix(".config") else {
                    throw fail(map["build"], "build", "'\(build)' must be a .config fragment inside vm-images/", "e.g. kernel-configs/iommufd.config")
                }
                guard values["package"]!.hasPrefix("linux-source-") else {
                    throw fail(map["package"], "package", "a kernel with 'build' compiles a kernel source package", "linux-source-X.Y")
                }
            }
            kernels.append(CatalogKernel(id: id, suite: suite, package: values["package"]!,
                                         generation: values["generation"]!, version: values["version"],
                                         build: values["build"], unavailable: values["unavailable"]))
        }
        guard !kernels.isEmpty else { throw fail(listNode, "kernels", "the list is empty") }
        var selftests: String?
        if let node = top["selftests"] {
            guard let id = node.string, let k = kernels.first(where: { $0.id == id }), k.build != nil else {
                throw fail(node, "selftests", "'\(node.string ?? "?")' is not a kernel of this catalog built from source",
                           "the id of a kernel with build:" + (kernels.contains { $0.build != nil }
                               ? " (" + kernels.filter { $0.build != nil }.map(\.id).joined(separator: ", ") + ")" : ""))
            }
            selftests = id
        }
        return KernelCatalog(kernels: kernels, selftestSource: selftests)
    }

    private static func yamlLine(_ error: YamlError) -> Int? {
        switch error {
        case let .scanner(_, _, mark, _), let .parser(_, _, mark, _), let .composer(_, _, mark, _):
            return mark.line
        default: return nil
        }
    }

    private static func yamlProblem(_ error: YamlError) -> String {
        switch error {
        case let .scanner(_, problem, _, _), let .parser(_, problem, _, _), let .composer(_, problem, _, _):
            return problem
        default: return "\(error)"
        }
    }
}
