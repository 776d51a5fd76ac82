import Foundation
import IsolabModel
import IsolabProtocol
@testable import IsolabReport
import XCTest

/// history.json/.md/.html: per item, the first kernel (and emulator) where the observation changed.
final class HistoryReportTests: XCTestCase {
    /// The 5.10 → 6.1 ownership change (v5.19): a driver bind into a group userspace owns is a
    /// kernel BUG on 5.10 and EBUSY on 6.1; the history names 6.1, predicted by the model.
    func testTheOwnershipChangeIsNamedAtTheFirstKernelWithIt() throws {
        let old = try predict(multifunction, kernel: .v5_10)
        let new = try predict(multifunction, kernel: .v6_1)
        var doc = ResultsDocument(isolab: "0.1-test", environment: environment,
                                  kernels: [kernelBuild("6.1"), kernelBuild("5.10")],   // out of order on purpose
                                  inputs: [new, old].map { p in
                                      .init(prediction: p, kernelLabel: p.kernel.id,
                                            observations: [observation(p, scenario: "bind-into-user-owned")],
                                            topologySHA256: String(repeating: "0", count: 64))
                                  })
        doc.kernels[0].release = "6.1.0-57-amd64"
        doc.kernels[1].release = "5.10.0-46-amd64"
        let h = HistoryReport(doc)
        XCTAssertEqual(h.kernels, ["5.10", "6.1"], "ordered by the release's version")
        let bind = try XCTUnwrap(h.entries.first { $0.title.contains("bind nic0") }, "\(h.entries)")
        XCTAssertEqual(bind.axis, "kernel")
        XCTAssertEqual(bind.from, "5.10")
        XCTAssertEqual(bind.to, "6.1")
        XCTAssertEqual(bind.before, "crash")
        XCTAssertEqual(bind.after, "EBUSY")
        XCTAssertTrue(bind.predicted)
        XCTAssertNotNil(bind.rule, "the model's reason on the new side")
        XCTAssertTrue(h.markdown().contains("changed in kernel **6.1**: crash on 5.10 → EBUSY"), h.markdown())
        XCTAssertTrue(h.html().contains("<td>kernel 6.1</td>"), h.html())
        let json = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(try h.json().utf8)) as? [String: Any])
        XCTAssertEqual((json["entries"] as? [[String: Any]])?.isEmpty, false)
    }

    func testNoChangeSaysSoAndVersionsSortNumerically() throws {
        let p = try predict(switchNoACS)
        let doc = document([(p, [observation(p, scenario: "p2p")])])
        XCTAssertTrue(HistoryReport(doc).markdown().contains("No observation changed"))
        XCTAssertEqual(HistoryReport.versionKey("6.12.118+deb13-amd64"), [6, 12, 118])
        XCTAssertEqual(HistoryReport.versionKey("5.10.0-46-amd64"), [5, 10, 0])
        XCTAssertTrue(HistoryReport.versionKey("6.9").lexicographicallyPrecedes(HistoryReport.versionKey("6.12")))
    }
}
