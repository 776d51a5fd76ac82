import IsolabModel
import Yams

/// Typed access to composed YAML nodes that turns every mismatch into a `TopologyError`.
struct YAMLReader {
    let file: String

    func location(_ node: Yams.Node?) -> SourceLocation {
        SourceLocation(file: file, line: node?.mark?.line ?? 1, column: node?.mark?.column ?? 1)
    }

    func error(_ node: Yams.Node?, _ field: String, _ message: String, accepted: String? = nil) -> TopologyError {
        let l = location(node)
        return TopologyError(file: file, line: l.line, column: l.column, field: field, message: message, accepted: accepted)
    }

    func describe(_ node: Yams.Node) -> String {
        switch node {
        case .scalar(let s): return s.string.isEmpty ? "an empty value" : "'\(s.string)'"
        case .mapping: return "a mapping"
        case .sequence: return "a list"
        case .alias: return "an alias"
        }
    }

    /// A mapping's entries in file order, with string keys, no duplicates, and only `allowed` keys.
    func mapping(_ node: Yams.Node, _ field: String, allowed: [String]) throws -> [(key: String, keyNode: Yams.Node, value: Yams.Node)] {
        guard case .mapping(let m) = node else {
            throw error(node, field, "expected a mapping, found \(describe(node))")
        }
        var seen: [String: Int] = [:]
        var out: [(key: String, keyNode: Yams.Node, value: Yams.Node)] = []
        for (k, v) in m {
            guard case .scalar(let ks) = k else {
                throw error(k, field, "keys must be plain words, found \(describe(k))")
            }
            let key = ks.string
            if let line = seen[key] {
                throw error(k, field + "." + key, "duplicate key (first at line \(line))")
            }
            guard allowed.contains(key) else {
                throw error(k, field, "unknown key '\(key)'", accepted: allowed.joined(separator: ", "))
            }
            seen[key] = k.mark?.line ?? 0
            out.append((key, k, v))
        }
        return out
    }

    func sequence(_ node: Yams.Node, _ field: String) throws -> [Yams.Node] {
        guard case .sequence(let s) = node else {
            throw error(node, field, "expected a list, found \(describe(node))")
        }
        return Array(s)
    }

    func scalar(_ node: Yams.Node, _ field: String, what: String) throws -> String {
        guard case .scalar(let s) = node, !s.string.isEmpty else {
            throw error(node, field, "expected \(what), found \(describe(node))")
        }
        return s.string
    }

    func int(_ node: Yams.Node, _ field: String, range: ClosedRange<Int>) throws -> Int {
        let what = "a whole number from \(range.lowerBound) to \(range.upperBound)"
        let text = try scalar(node, field, what: what)
        let parsed: Int?
        if text.hasPrefix("0x") || text.hasPrefix("0X") {
            parsed = Int(text.dropFirst(2), radix: 16)
        } else {
            parsed = Int(text)
        }
        guard let v = parsed, range.contains(v) else {
            throw error(node, field, "expected \(what), found '\(text)'")
        }
        return v
    }

    func bool(_ node: Yams.Node, _ field: String) throws -> Bool {
        let text = try scalar(node, field, what: "true or false")
        switch text {
        case "true", "yes", "on": return true
        case "false", "no", "off": return false
        default: throw error(node, field, "expected true or false, found '\(text)'")
        }
    }

    func oneOf(_ node: Yams.Node, _ field: String, _ choices: [String]) throws -> String {
        let text = try scalar(node, field, what: "one of \(choices.joined(separator: ", "))")
        guard choices.contains(text) else {
            throw error(node, field, "unknown value '\(text)'", accepted: choices.joined(separator: ", "))
        }
        return text
    }

    func identifier(_ node: Yams.Node, _ field: String) throws -> String {
        let text = try scalar(node, field, what: "an id")
        let ok = text.count <= 64 && text.unicodeScalars.allSatisfy {
            ("a"..."z").contains($0) || ("A"..."Z").contains($0) || ("0"..."9").contains($0) || $0 == "-" || $0 == "_"
        }
        guard ok else {
            throw error(node, field, "'\(text)' is not a valid id", accepted: "letters, digits, '-' and '_', at most 64 characters")
        }
        return text
    }
}
