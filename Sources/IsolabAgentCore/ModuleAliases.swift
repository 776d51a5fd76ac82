/// A kernel's `modules.alias` (written by depmod): which device modaliases each module's id
/// table matches, so the agent can tell which functions a freshly loaded driver tried.
public struct ModuleAliases: Sendable {
    /// Module name (underscores) → its `pci:v…` patterns.
    public private(set) var patterns: [String: [String]] = [:]

    /// Parses `alias PATTERN MODULE` lines; other lines are ignored.
    public init(text: String) {
        for line in text.split(separator: "\n") {
            let f = line.split(separator: " ")
            guard f.count == 3, f[0] == "alias" else { continue }
            patterns[Self.moduleName(String(f[2])), default: []].append(String(f[1]))
        }
    }

    /// Module names as the kernel spells them: dashes as underscores.
    public static func moduleName(_ name: String) -> String { String(name.map { $0 == "-" ? "_" : $0 }) }

    /// Whether `module`'s id table matches a device's `modalias` (`pci:v00008086d000010D3…`),
    /// as `pci_match_device()` matches a static id entry.
    public func matches(module: String, modalias: String) -> Bool {
        (patterns[Self.moduleName(module)] ?? []).contains { Glob.matches($0, modalias) }
    }
}

/// fnmatch(3) without flags, as module-init-tools match aliases: `*`, `?` and `[…]` classes.
public enum Glob {
    public static func matches(_ pattern: String, _ text: String) -> Bool {
        match(Array(pattern.utf8), 0, Array(text.utf8), 0)
    }

    private static func match(_ p: [UInt8], _ pi: Int, _ t: [UInt8], _ ti: Int) -> Bool {
        var pi = pi, ti = ti
        // Iterative with one backtrack point for the latest `*`.
        var star: (p: Int, t: Int)?
        while ti < t.count {
            if pi < p.count, p[pi] == UInt8(ascii: "*") {
                star = (pi, ti)
                pi += 1
                continue
            }
            if pi < p.count, let next = single(p, pi, t[ti]) {
                pi = next
                ti += 1
                continue
            }
            guard let s = star else { return false }
            pi = s.p + 1
            ti = s.t + 1
            star = (s.p, s.t + 1)
        }
        while pi < p.count, p[pi] == UInt8(ascii: "*") { pi += 1 }
        return pi == p.count
    }

    /// The pattern index after one element that matches `c`, or nil.
    private static func single(_ p: [UInt8], _ pi: Int, _ c: UInt8) -> Int? {
        switch p[pi] {
        case UInt8(ascii: "?"):
            return pi + 1
        case UInt8(ascii: "["):
            var i = pi + 1
            let negate = i < p.count && (p[i] == UInt8(ascii: "!") || p[i] == UInt8(ascii: "^"))
            if negate { i += 1 }
            var hit = false
            var first = true
            while i < p.count, p[i] != UInt8(ascii: "]") || first {
                first = false
                if i + 2 < p.count, p[i + 1] == UInt8(ascii: "-"), p[i + 2] != UInt8(ascii: "]") {
                    if p[i] <= c && c <= p[i + 2] { hit = true }
                    i += 3
                } else {
                    if p[i] == c { hit = true }
                    i += 1
                }
            }
            guard i < p.count else { return p[pi] == c ? pi + 1 : nil }   // no closing ']': a literal '['
            return hit != negate ? i + 1 : nil
        default:
            return p[pi] == c ? pi + 1 : nil
        }
    }
}
