import Foundation
import XCTest
@testable import IsolabProtocol

final class RoundTripTests: XCTestCase {
    func testRecordsSurviveTheWire() throws {
        let records = [
            Record(seq: 0, type: .hello, hello: Hello(runID: "r1", agent: "isolab-agent")),
            Record(seq: 1, type: .stepStart, index: 0),
            Record(seq: 2, type: .step, step: StepRecord(index: 0, op: .vfioOpen, result: "EPERM", errno: 1,
                substeps: [SubstepRecord(name: .setContainer, result: "EPERM", errno: 1)])),
            Record(seq: 3, type: .done, count: 3),
        ]
        var parser = RecordStreamParser()
        for r in records { parser.feed(try RecordEncoder().line(r) + [13]) }
        parser.finish()
        XCTAssertNil(parser.error)
        XCTAssertTrue(parser.complete)
        XCTAssertEqual(parser.records, records)
    }

    func testTruncatedStreamIsIncomplete() throws {
        var parser = RecordStreamParser()
        parser.feed(try RecordEncoder().line(Record(seq: 0, type: .hello, hello: Hello(runID: "r", agent: "a"))))
        parser.feed(Array("{\"seq\":1,\"ty".utf8))
        parser.finish()
        XCTAssertFalse(parser.complete)
        XCTAssertEqual(parser.records.count, 1)
        XCTAssertEqual(parser.error, .notJSON(line: 2, excerpt: "{\"seq\":1,\"ty"))
    }

    /// A probe's edu transfer count travels with its evidence; an older agent's record, which
    /// has none, still decodes (the count is nil).
    func testDMAEvidenceCarriesItsEduTransfers() throws {
        let evidence = DMAEvidence(path: "vfio", busAddress: "0x1000000", expected: "aa", observed: "aa", eduTransfers: 2)
        let step = StepRecord(index: 5, op: .dma, result: "delivered", dma: evidence)
        let line = try RecordEncoder().line(Record(seq: 0, type: .step, step: step))
        var parser = RecordStreamParser()
        parser.feed(line)
        parser.finish()
        XCTAssertNil(parser.error)
        XCTAssertEqual(parser.records.first?.step?.dma?.eduTransfers, 2)
        let old = #"{"path":"vfio","busAddress":"0x1","expected":"","observed":"","faultLines":[]}"#
        XCTAssertNil(try JSONDecoder().decode(DMAEvidence.self, from: Data(old.utf8)).eduTransfers)
    }
}
