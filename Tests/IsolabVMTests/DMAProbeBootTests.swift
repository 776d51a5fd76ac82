import Foundation
import IsolabModel
import IsolabProtocol
import IsolabVM
import XCTest

/// The four DMA probes on 6.1 and 5.10, each with its evidence: data that arrived (or did not)
/// and the DMAR fault line attributed to the requester, by guest path.
final class DMAProbeBootTests: XCTestCase {
    func testProbesCarryTheirEvidenceOn61And510() throws {
        let t = try BootSupport.topology("switch-no-acs")
        let alias = try BootSupport.topology("pcie-pci-bridge-aliases")
        let aliasScenario = alias.scenarios.first { $0.name == "alias-partners-share-a-container" }!
        var requests: [RunRequest] = []
        for k in ["6.1", "5.10"] {
            requests.append(try BootSupport.request(t, kernel: k, scenario: t.scenarios[0]))
            requests.append(try BootSupport.request(alias, kernel: k, scenario: aliasScenario))
        }
        let obs = try BootSupport.run(requests)
        let aPath = Fabric(t).function(of: "A")!.path
        let bridgeAlias = Fabric(alias).function(of: "br0")!.path + "/00.0"   // (secondary bus, 00.0)
        for (req, o) in zip(requests, obs) {
            let label = "\(req.kernelLabel) \(req.topology.name)"
            XCTAssertEqual(o.outcome, .completed, "\(label): \(o.problem ?? "")")
            func probe(_ i: Int) -> StepRecord? { o.steps.first { $0.index == i } }
            if req.topology.name == "switch-no-acs" {
                // 4: A -> B's BAR, unmapped: faults in A's context, B's register keeps its value.
                let peer = try XCTUnwrap(probe(4)?.dma, label)
                XCTAssertEqual(probe(4)?.result, "faulted", label)
                XCTAssertNotEqual(peer.observed, peer.expected, label)
                XCTAssertEqual(peer.faultRequester, aPath, "\(label): \(peer.faultLines)")
                XCTAssertTrue(peer.faultLines.contains { $0.contains("DMA Write") }, "\(label): \(peer.faultLines)")
                // Each probe counts its edu transfers (100 ms of edu's timer each): load the
                // pattern and read it back, then send it (B's BAR has a CPU view: no read-back).
                XCTAssertEqual(peer.eduTransfers, 3, label)
                // 5: memory round trip delivered, byte for byte.
                let mem = try XCTUnwrap(probe(5)?.dma, label)
                XCTAssertEqual(probe(5)?.result, "delivered", label)
                XCTAssertEqual(mem.observed, mem.expected, label)
                XCTAssertEqual(mem.faultLines, [], label)
                XCTAssertEqual(mem.eduTransfers, 2, label)
                // 6: unmapped IOVA faults (a read: RAM -> device).
                let unmapped = try XCTUnwrap(probe(6)?.dma, label)
                XCTAssertEqual(probe(6)?.result, "faulted", label)
                XCTAssertEqual(unmapped.faultRequester, aPath, label)
                XCTAssertTrue(unmapped.faultLines.contains { $0.contains("DMA Read") }, "\(label): \(unmapped.faultLines)")
                XCTAssertEqual(unmapped.eduTransfers, 3, label)
                // 7: B's BAR mapped into A's container: the canary lands in B.
                let mapped = try XCTUnwrap(probe(7)?.dma, label)
                XCTAssertEqual(probe(7)?.result, "delivered", label)
                XCTAssertEqual(mapped.observed, mapped.expected, label)
                XCTAssertEqual(mapped.eduTransfers, 3, label)
            } else {
                // Behind the pcie-pci-bridge both edus share one context: E's fault names the alias.
                XCTAssertEqual(probe(4)?.result, "delivered", label)
                let e = try XCTUnwrap(probe(5)?.dma, label)
                XCTAssertEqual(probe(5)?.result, "faulted", label)
                XCTAssertEqual(e.faultRequester, bridgeAlias, "\(label): \(e.faultLines)")
            }
        }
        XCTAssertEqual(BootSupport.leftoverQEMU(), [])
    }
}
