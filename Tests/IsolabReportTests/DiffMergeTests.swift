import Foundation
import FoundationXML
import IsolabModel
import IsolabProtocol
import IsolabReport
import XCTest

final class DiffMergeTests: XCTestCase {
    func testDiffFindsARegressionAFixAndAChange() throws {
        let p = try predict(switchNoACS)
        let base = document([(p, [observation(p, scenario: "p2p", results: [1: "EBUSY"])])])
        let new = document([(p, [observation(p, scenario: "p2p", results: [4: "delivered", 3: "EPERM"])])])
        let changes = ResultsDiff.diff(base: base, new: new)
        XCTAssertEqual(changes.filter { $0.kind == .regression }.map(\.item), ["step:p2p:3", "step:p2p:4"])
        XCTAssertEqual(changes.filter { $0.kind == .fix }.map(\.item), ["step:p2p:1"])
        let r = try XCTUnwrap(changes.first { $0.item == "step:p2p:4" })
        XCTAssertEqual(r.topology, "switch-no-acs")
        XCTAssertEqual(r.kernel, "6.1")
        XCTAssertEqual(r.scenario, "p2p")
        XCTAssertEqual(r.before?.kind, .match)
        XCTAssertEqual(r.after?.observed, "delivered")
        XCTAssertTrue(ResultsDiff.hasRegression(changes))
        XCTAssertTrue(ResultsDiff.text(changes).contains("regressions (2):"))
        XCTAssertTrue(ResultsDiff.markdown(changes).contains("| **regression** | switch-no-acs |"))
        XCTAssertNoThrow(try XMLDocument(xmlString: ResultsDiff.html(changes)))

        // Observed result changed, verdict kind still mismatch: a change.
        let other = document([(p, [observation(p, scenario: "p2p", results: [1: "ENODEV"])])])
        XCTAssertEqual(ResultsDiff.diff(base: base, new: other).map(\.kind), [.change])
        XCTAssertEqual(ResultsDiff.diff(base: base, new: base), [])
    }

    func testMergeJoinsShardsAndRoundTripsThroughJSON() throws {
        let a = try predict(switchNoACS), b = try predict(multifunction)
        let shard1 = document([(a, [observation(a, scenario: "p2p")])])
        let shard2 = document([(b, [observation(b, scenario: "bind-into-user-owned")])])
        let merged = try ResultsDocument.merge([shard1, shard2])
        XCTAssertEqual(merged.runs.map(\.topology), ["switch-no-acs", "multifunction"])
        XCTAssertEqual(merged.topologies.map(\.name), ["switch-no-acs", "multifunction"])
        XCTAssertEqual(merged.kernels.count, 1)
        XCTAssertEqual(merged.schema, "isolab-results/1")
        let back = try ResultsDocument.decode(Data(try merged.json().utf8))
        XCTAssertEqual(back, merged)
        XCTAssertThrowsError(try ResultsDocument.merge([shard1, shard1])) {
            XCTAssertEqual($0 as? ReportError, .duplicateRun(topology: "switch-no-acs", kernel: "6.1"))
        }
    }

    func testMergeAndDecodeRejectAnotherSchemaVersion() throws {
        let a = try predict(switchNoACS)
        let shard = document([(a, [observation(a, scenario: "p2p")])])
        var future = shard
        future.schema = "isolab-results/2"
        XCTAssertThrowsError(try ResultsDocument.merge([shard, future])) { error in
            XCTAssertEqual(error as? ReportError, .schemaMismatch(expected: "isolab-results/1", found: "isolab-results/2", shard: 1))
            XCTAssertTrue("\(error)".contains("shard 2 has schema 'isolab-results/2'"))
        }
        XCTAssertThrowsError(try ResultsDocument.decode(Data(#"{"schema": "isolab-results/2"}"#.utf8), source: "r.json")) {
            XCTAssertEqual($0 as? ReportError, .unsupportedSchema(found: "isolab-results/2", source: "r.json"))
        }
        XCTAssertThrowsError(try ResultsDocument.decode(Data("not json".utf8), source: "r.json")) {
            guard case .malformed(let source, _)? = $0 as? ReportError else { return XCTFail("\($0)") }
            XCTAssertEqual(source, "r.json")
        }
    }
}
