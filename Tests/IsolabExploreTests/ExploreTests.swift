import IsolabExplore
import IsolabModel
import IsolabTopology
import XCTest

final class FabricGeneratorTests: XCTestCase {
    func testTheSameSeedGivesTheSameFabrics() {
        var a = FabricGenerator(seed: 42), b = FabricGenerator(seed: 42), c = FabricGenerator(seed: 43)
        let x = (0..<20).map { _ in a.next() }
        XCTAssertEqual(x, (0..<20).map { _ in b.next() })
        XCTAssertNotEqual(x, (0..<20).map { _ in c.next() })
    }

    /// Generated fabrics are topology files the loader accepts, mostly ones QEMU builds, and
    /// they cover every kind of node the issue names.
    func testGeneratedFabricsLoadAndCoverEveryKindOfNode() throws {
        var g = FabricGenerator(seed: 1)
        var kinds = Set<String>(), models = Set<String>()
        var loaded = 0, realizable = 0, multifunction = 0, integrated = 0, nestedSwitch = 0
        for i in 0..<200 {
            let f = g.next()
            guard let t = f.topology(name: "gen-\(i)", iommu: .intel) else {
                XCTFail("the loader refused:\n\(f.yaml(name: "gen-\(i)", iommu: .intel))")
                continue
            }
            loaded += 1
            if Realizability.check(t).isEmpty { realizable += 1 }
            for n in t.allNodes {
                kinds.insert(n.kind.keyword)
                if let m = n.deviceModel { models.insert(m.rawValue) }
                if n.function > 0 { multifunction += 1 }
            }
            integrated += t.fabric.filter { $0.deviceModel != nil }.count
            func switches(_ n: FabricNode, _ depth: Int) -> Int {
                (n.kind == .switchUpstream ? depth : 0) + n.children.reduce(0) { max($0, switches($1, depth + (n.kind == .switchUpstream ? 1 : 0))) }
            }
            if t.fabric.contains(where: { switches($0, 1) >= 2 }) { nestedSwitch += 1 }
        }
        XCTAssertEqual(loaded, 200)
        XCTAssertGreaterThan(realizable, 150, "most generated fabrics are realizable")
        XCTAssertEqual(kinds, ["root-port", "switch", "port", "pcie-pci-bridge", "pci-bridge", "device"])
        XCTAssertEqual(models, ["edu", "e1000e", "nvme"])
        XCTAssertGreaterThan(multifunction, 0)
        XCTAssertGreaterThan(integrated, 0)
        XCTAssertGreaterThan(nestedSwitch, 0)
    }
}

final class ShrinkerTests: XCTestCase {
    /// A deliberately wrong model: the real one with one grouping rule flipped, switch
    /// downstream ports taken to redirect peer requests (`pci_acs_enabled()` true for them).
    func wrongGroups(_ t: Topology) -> Set<Set<String>> {
        func flip(_ n: FabricNode) -> FabricNode {
            var n = n
            if case .downstreamPort = n.kind { n.kind = .downstreamPort(acs: true) }
            n.children = n.children.map(flip)
            return n
        }
        var w = t
        w.fabric = t.fabric.map(flip)
        return groups(w)
    }

    func groups(_ t: Topology) -> Set<Set<String>> {
        Set(Predictor.predict(t, kernel: .v6_1).groupsAtBoot.map { Set($0.map(\.path)) })
    }

    /// Where the wrong model and the real one (the "booted kernel" here) disagree on groups.
    func fails(_ f: ExploreFabric) -> Bool {
        guard let t = f.topology(name: "candidate", iommu: .intel) else { return false }
        return groups(t) != wrongGroups(t)
    }

    func testA30NodeCounterexampleShrinksToAtMostFourNodes() throws {
        var g = FabricGenerator(seed: 7)
        g.maxEndpoints = 20
        g.maxDepth = 4
        var big: ExploreFabric?
        for _ in 0..<5000 {
            let f = g.next()
            if f.nodeCount >= 30, fails(f) { big = f; break }
        }
        let start = try XCTUnwrap(big, "no 30-node counterexample among 5000 generated fabrics")
        var shrinker = Shrinker(fails: fails)
        let small = try shrinker.shrink(start)
        XCTAssertTrue(fails(small))
        XCTAssertLessThanOrEqual(small.nodeCount, 4, small.yaml(name: "minimal", iommu: .intel))
        print("shrunk \(start.nodeCount) → \(small.nodeCount) nodes in \(shrinker.tried) candidates:\n" + small.yaml(name: "minimal", iommu: .intel))
    }

    func testAFabricThatDoesNotFailIsLeftAsItIs() throws {
        let f = ExploreFabric(nodes: [ExploreNode(.rootPort, "rp0", slot: 4, children: [ExploreNode(.device, "A", model: "edu")])])
        XCTAssertFalse(fails(f))
        var s = Shrinker(fails: { _ in false })
        XCTAssertEqual(try s.shrink(f), f)
    }
}
