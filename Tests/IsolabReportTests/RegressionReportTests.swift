@testable import IsolabReport
import IsolabModel
import XCTest

/// A developer's kernel against a baseline kernel: runs are paired by fabric and item, not label.
final class RegressionReportTests: XCTestCase {
    func testChangedItemsBetweenTwoKernelsAreRegressionsWithTheModelsReasoning() throws {
        let p = try predict(switchNoACS)
        let base = document([(p, [observation(p, scenario: "p2p")])])
        var dev = document([(p, [observation(p, scenario: "p2p", results: [3: "EPERM"])])])
        dev.runs = dev.runs.map { var r = $0; r.kernel = "6.1-dev"; return r }
        // One document holding both kernels pairs the same way.
        var both = base
        both.runs += dev.runs
        for report in [RegressionReport(base: base, baseKernel: "6.1", new: dev, newKernel: "6.1-dev"),
                       RegressionReport(base: both, baseKernel: "6.1", new: both, newKernel: "6.1-dev")] {
            XCTAssertEqual(report.entries.map(\.change.item), ["step:p2p:3"])
            XCTAssertEqual(report.regressions.count, 1)
            XCTAssertEqual(report.entries.first?.holds, .doesNotHold)
            XCTAssertEqual(report.entries.first?.change.kernel, "6.1-dev")
            let md = report.markdown()
            XCTAssertTrue(md.contains("## isolab: 6.1-dev against 6.1"), md)
            XCTAssertTrue(md.contains("does not hold"), md)
        }
        XCTAssertEqual(RegressionReport(base: base, baseKernel: "6.1", new: base, newKernel: "6.1").entries, [])
    }
}
