import Foundation
import IsolabModel
import IsolabTopology
import XCTest

/// Compact hazards: what connects endpoints past the IOMMU, in size linear in the fabric, and
/// exactly the pairs the pairwise route walk finds.
final class PeerReachTests: XCTestCase {
    static var catalog: [Topology] {
        let dir = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("topologies")
        let files = (try? FileManager.default.contentsOfDirectory(atPath: dir.path)) ?? []
        return files.filter { $0.hasSuffix(".yaml") }.sorted().compactMap { try? TopologyLoader.load(path: dir.appendingPathComponent($0).path) }
    }

    func testReachesGiveExactlyThePairwiseBypassesAndHazardsOnEveryCatalogFabric() throws {
        let topologies = Self.catalog
        XCTAssertGreaterThan(topologies.count, 10)
        for t in topologies {
            for k in KernelGeneration.catalog {
                let p = Predictor.predict(t, kernel: k)
                let fromReaches = Set(p.reaches.flatMap { $0.pairs() }.map { "\($0.from)->\($0.to)" })
                let pairwise = Set(p.bypasses.map { "\($0.from)->\($0.to)" })
                XCTAssertEqual(fromReaches, pairwise, "\(t.name) on \(k.id)")
                XCTAssertEqual(p.hazardCount, p.hazards.count, "\(t.name) on \(k.id)")
            }
        }
    }

    func testSwitchWithoutACSIsOneReachOfItsDownstreamPorts() throws {
        let p = try predict("""
            name: t
            fabric:
              - root-port: rp0
                children:
                  - switch: sw0
                    downstream:
                      - port: dp0
                        children: [{device: A, model: edu}]
                      - port: dp1
                        children: [{device: B, model: edu}]
                      - port: dp2
                        children: [{device: C, model: edu}]
            """)
        XCTAssertEqual(p.reaches.count, 1)
        let r = try XCTUnwrap(p.reaches.first)
        XCTAssertEqual(r.connector, "the internal bus of switch sw0")
        XCTAssertEqual(r.sides.map { p.fabric.functions[$0.function].displayName }, ["dp0", "dp1", "dp2"])
        XCTAssertTrue(r.sides.allSatisfy(\.turns))
        XCTAssertTrue(r.sides[0].reason.contains("dp0 has no ACS capability"), r.sides[0].reason)
        XCTAssertEqual(p.hazardCount, 6, "three endpoints in three groups: every ordered pair")
    }

    func testReachesGrowLinearlyWhileHazardPairsGrowWithTheSquare() {
        // One switch of n downstream ports, one endpoint each: n·(n-1) hazard pairs, one reach of n sides.
        for n in [10, 100] {
            let dps = (0..<n).map { i in
                FabricNode(id: "dp\(i)", kind: .downstreamPort(acs: nil), slot: i,
                           children: [FabricNode(id: "e\(i)", kind: .device(.edu, dmaMaskBits: nil), slot: 0)])
            }
            let t = Topology(name: "fan-out", fabric: [FabricNode(id: "rp0", kind: .rootPort(acs: true), slot: 1, children: [
                FabricNode(id: "sw0", kind: .switchUpstream, slot: 0, children: dps)])])
            let p = Predictor.predict(t, kernel: .v6_1)
            XCTAssertEqual(p.reaches.count, 1)
            XCTAssertEqual(p.reaches[0].sides.count, n)
            XCTAssertEqual(p.hazardCount, n * (n - 1))
        }
    }
}
