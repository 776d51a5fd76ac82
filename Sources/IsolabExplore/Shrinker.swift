/// Delta debugging over a fabric's nodes and attributes: the smallest fabric (by declared
/// nodes) on which `fails` still holds, each candidate tried in turn. The result is 1-minimal
/// for the reductions tried: removing any one subtree, lifting a bridge's subtree into its
/// place, dropping an `acs:` or turning a model into edu no longer fails.
public struct Shrinker {
    /// Whether the candidate still shows the failure (booted and judged, in `isolab explore`).
    /// A candidate the loader or the emulator refuses must answer false.
    public var fails: (ExploreFabric) throws -> Bool
    /// Called with each accepted (smaller) fabric.
    public var progress: (ExploreFabric) -> Void = { _ in }
    /// How many candidates were tried.
    public private(set) var tried = 0

    public init(fails: @escaping (ExploreFabric) throws -> Bool) { self.fails = fails }

    /// Shrinks `fabric`, which must fail.
    public mutating func shrink(_ fabric: ExploreFabric) throws -> ExploreFabric {
        var current = fabric
        var changed = true
        while changed {
            changed = false
            for candidate in Self.candidates(current) {
                tried += 1
                if try fails(candidate) {
                    current = candidate
                    progress(current)
                    changed = true
                    break
                }
            }
        }
        return current
    }

    /// Smaller fabrics first (biggest cut first), then simpler attributes.
    static func candidates(_ f: ExploreFabric) -> [ExploreFabric] {
        var cuts: [(removed: Int, fabric: ExploreFabric)] = []
        var simpler: [ExploreFabric] = []
        func visit(_ path: [Int], _ node: ExploreNode) {
            // Remove the subtree.
            cuts.append((node.count, ExploreFabric(nodes: replacing(f.nodes, at: path, with: []))))
            // Lift one child's subtree into a bridge's (or switch's, or port's) place: a switch's
            // port hands up what is below it. The lifted nodes take the place's slot.
            for c in node.children {
                var moved = node.kind == .switchUpstream && c.kind == .port ? c.children : [c]
                for j in moved.indices { moved[j].slot = path.count == 1 ? node.slot : nil }
                if moved.count == 1 { moved[0].function = path.count == 1 ? node.function : nil }
                cuts.append((node.count - moved.reduce(0) { $0 + $1.count }, ExploreFabric(nodes: replacing(f.nodes, at: path, with: moved))))
            }
            // Simpler attributes.
            if node.acs != nil { var n = node; n.acs = nil; simpler.append(ExploreFabric(nodes: replacing(f.nodes, at: path, with: [n]))) }
            if let m = node.model, m != "edu" { var n = node; n.model = "edu"; simpler.append(ExploreFabric(nodes: replacing(f.nodes, at: path, with: [n]))) }
            for (i, c) in node.children.enumerated() { visit(path + [i], c) }
        }
        for (i, n) in f.nodes.enumerated() { visit([i], n) }
        return cuts.filter { $0.removed > 0 }.sorted { $0.removed > $1.removed }.map(\.fabric) + simpler
    }

    /// `nodes` with the node at `path` replaced by `with` (nothing: removed).
    static func replacing(_ nodes: [ExploreNode], at path: [Int], with replacement: [ExploreNode]) -> [ExploreNode] {
        guard let first = path.first else { return nodes }
        var out = nodes
        if path.count == 1 {
            out.replaceSubrange(first...first, with: replacement)
        } else {
            out[first].children = replacing(out[first].children, at: Array(path.dropFirst()), with: replacement)
        }
        return out
    }
}
