import Foundation
import IsolabModel
import Yams

/// Reads topology files (TOPOLOGY.md) into validated `Topology` values.
public enum TopologyLoader {
    static let topKeys = ["name", "description", "iommu", "memory", "fabric", "scenarios"]

    /// Reads and validates a topology file.
    public static func load(path: String) throws -> Topology {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw TopologyError(file: path, line: 0, column: 0, field: "(file)", message: "cannot read the file: it does not exist or is not readable")
        }
        guard let text = String(data: data, encoding: .utf8), !text.contains("\u{0}") else {
            throw TopologyError(file: path, line: 1, column: 1, field: "(file)", message: "not UTF-8 text", accepted: "a YAML topology file")
        }
        return try parse(text, file: path)
    }

    /// Parses and validates topology text; `file` names it in errors.
    public static func parse(_ text: String, file: String) throws -> Topology {
        let r = YAMLReader(file: file)
        let root: Yams.Node
        do {
            guard let n = try Yams.compose(yaml: text) else {
                throw TopologyError(file: file, line: 1, column: 1, field: "(document)", message: "the file is empty", accepted: "a mapping with name and fabric")
            }
            root = n
        } catch let e as TopologyError {
            throw e
        } catch let e as YamlError {
            throw yamlError(e, file: file, text: text)
        } catch {
            throw TopologyError(file: file, line: 1, column: 1, field: "(document)", message: "not valid YAML: \(error)")
        }
        let entries = try r.mapping(root, "(document)", allowed: topKeys)
        var name: String?
        var description: String?
        var iommu = IOMMUModel.intel
        var memory = 512
        var fabricNode: Yams.Node?
        var scenariosNode: Yams.Node?
        for (key, _, value) in entries {
            switch key {
            case "name":
                let n = try r.scalar(value, "name", what: "a name")
                let valid = n.count <= 64 && n.first.map { $0.isLowercase || $0.isNumber } == true
                    && n.unicodeScalars.allSatisfy { ("a"..."z").contains($0) || ("0"..."9").contains($0) || $0 == "-" }
                guard valid else {
                    throw r.error(value, "name", "'\(n)' is not a valid name", accepted: "[a-z0-9][a-z0-9-]*, at most 64 characters")
                }
                name = n
            case "description":
                description = try r.scalar(value, "description", what: "text")
            case "iommu":
                iommu = IOMMUModel(rawValue: try r.oneOf(value, "iommu", IOMMUModel.allCases.map(\.rawValue)))!
            case "memory":
                memory = try r.int(value, "memory", range: 128...65536)
            case "fabric":
                fabricNode = value
            case "scenarios":
                scenariosNode = value
            default:
                break
            }
        }
        guard let name else {
            throw r.error(root, "name", "missing required key 'name'", accepted: "[a-z0-9][a-z0-9-]*")
        }
        guard let fabricNode else {
            throw r.error(root, "fabric", "missing required key 'fabric'", accepted: "a list of nodes")
        }
        var builder = FabricBuilder(reader: r)
        let fabric = try builder.nodes(fabricNode, "fabric", placement: .rootComplex)
        guard !fabric.isEmpty else {
            throw r.error(fabricNode, "fabric", "the fabric is empty", accepted: "a list of at least one node")
        }
        let scenarios = try scenariosNode.map {
            try ScenarioReader(reader: r, nodes: builder.declared).scenarios($0)
        } ?? []
        return Topology(name: name, description: description, iommu: iommu, memoryMiB: memory,
                        fabric: fabric, scenarios: scenarios, file: file)
    }

    static func yamlError(_ e: YamlError, file: String, text: String) -> TopologyError {
        switch e {
        case .scanner(_, let problem, let mark, _), .parser(_, let problem, let mark, _), .composer(_, let problem, let mark, _):
            if problem.contains("duplicated key"), let dup = firstDuplicateKey(in: text) {
                return TopologyError(file: file, line: dup.line, column: dup.column, field: dup.key, message: "duplicate key '\(dup.key)' (first at line \(dup.first))")
            }
            return TopologyError(file: file, line: mark.line, column: mark.column, field: "(syntax)", message: "not valid YAML: \(problem)")
        case .duplicatedKeysInMapping(let duplicates, _):
            if let dup = firstDuplicateKey(in: text) {
                return TopologyError(file: file, line: dup.line, column: dup.column, field: dup.key, message: "duplicate key '\(dup.key)' (first at line \(dup.first))")
            }
            return TopologyError(file: file, line: 1, column: 1, field: "(syntax)", message: "duplicate keys: \(duplicates.joined(separator: ", "))")
        case .reader(let problem, let offset, _, _):
            var line = 1, column = 1
            if let offset {
                for ch in text.unicodeScalars.prefix(offset) {
                    if ch == "\n" { line += 1; column = 1 } else { column += 1 }
                }
            }
            return TopologyError(file: file, line: line, column: column, field: "(syntax)", message: "not readable as YAML: \(problem)")
        default:
            return TopologyError(file: file, line: 1, column: 1, field: "(syntax)", message: "not valid YAML: \(e)")
        }
    }

    /// Yams reports duplicate keys without a position; find the first key repeated at the same
    /// indentation within one block.
    static func firstDuplicateKey(in text: String) -> (key: String, line: Int, column: Int, first: Int)? {
        var open: [Int: [String: Int]] = [:]  // indentation -> key -> line
        for (i, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = raw.drop { $0 == " " }
            let indent = raw.count - line.count
            guard !line.isEmpty, !line.hasPrefix("#") else { continue }
            var body = Substring(line)
            var col = indent
            if body.hasPrefix("- ") {
                open = open.filter { $0.key < indent + 2 }
                body = body.dropFirst(2)
                col += 2
            }
            open = open.filter { $0.key <= col }
            guard let colon = body.firstIndex(of: ":"), !body[..<colon].contains(" ") else { continue }
            let key = String(body[..<colon])
            if let first = open[col]?[key] { return (key, i + 1, col + 1, first) }
            open[col, default: [:]][key] = i + 1
        }
        return nil
    }
}
