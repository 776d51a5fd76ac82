import FoundationXML
import IsolabModel
import IsolabProtocol
import IsolabReport
import IsolabTopology
import XCTest

final class RenderTests: XCTestCase {
    /// One passing and one failing fabric, plus an unrealizable one.
    func sample() throws -> ResultsDocument {
        let ok = try predict(switchNoACS)
        let bad = try predict(multifunction)
        let unrealizable = try predict(switchNoACS.replacingOccurrences(of: "name: switch-no-acs", with: "name: switch-acs")
            .replacingOccurrences(of: "- port: dp0", with: "- port: dp0\n            acs: true"))
        return document([
            (ok, [observation(ok, scenario: "p2p")]),
            (bad, [observation(bad, scenario: "bind-into-user-owned", results: [2: "ok"])]),
            (unrealizable, []),
        ])
    }

    func testJUnitIsWellFormedWithOneTestcasePerVerdictAndNoSkipped() throws {
        let doc = try sample()
        let xml = try XMLDocument(xmlString: JUnitRenderer.render(doc))
        let verdicts = doc.runs.flatMap(\.verdicts)
        XCTAssertEqual(try xml.nodes(forXPath: "//testcase").count, verdicts.count)
        XCTAssertEqual(try xml.nodes(forXPath: "//testsuite").count, 3)
        XCTAssertEqual(try xml.nodes(forXPath: "//failure").count, 1)
        XCTAssertEqual(try xml.nodes(forXPath: "//skipped").count, 0)
        let root = try XCTUnwrap(xml.rootElement())
        XCTAssertEqual(root.attribute(forName: "tests")?.stringValue, String(verdicts.count))
        XCTAssertEqual(root.attribute(forName: "failures")?.stringValue, "1")
        let failure = try XCTUnwrap(xml.nodes(forXPath: "//failure").first as? XMLElement)
        XCTAssertEqual(failure.attribute(forName: "message")?.stringValue, "mismatch, expected EBUSY, observed ok")
        XCTAssertTrue(failure.stringValue?.contains("model: ") == true)
        let unrealizable = try xml.nodes(forXPath: "//testcase[properties/property[@name='isolab.verdict' and @value='unrealizable']]")
        XCTAssertEqual(unrealizable.count, 1)
        XCTAssertEqual(try xml.nodes(forXPath: "//testsuite[@name='switch-acs on 6.1']/testcase/system-out").count, 1)
    }

    func testTAPPlanCountsEveryCheckedItem() throws {
        let doc = try sample()
        let lines = TAPRenderer.render(doc).split(separator: "\n").map(String.init)
        XCTAssertEqual(lines[0], "TAP version 13")
        let n = doc.runs.flatMap(\.verdicts).count
        XCTAssertEqual(lines[1], "1..\(n)")
        let results = lines.filter { $0.hasPrefix("ok ") || $0.hasPrefix("not ok ") }
        XCTAssertEqual(results.count, n)
        XCTAssertEqual(lines.filter { $0.hasPrefix("not ok ") }.count, 1)
        XCTAssertTrue(results.enumerated().allSatisfy { i, l in l.hasPrefix("ok \(i + 1) ") || l.hasPrefix("not ok \(i + 1) ") })
        XCTAssertFalse(lines.contains { $0.hasPrefix("not ok") && $0.contains("# SKIP") })
        XCTAssertEqual(lines.filter { $0.contains("# SKIP") }.count, 1, "only the unrealizable node")
        XCTAssertTrue(lines.contains("# Totals: pass:\(n - 2) fail:1 xfail:0 xpass:0 skip:1 error:0"))
    }

    func hostileDocument() throws -> ResultsDocument {
        var t = try TopologyLoader.parse(switchNoACS.replacingOccurrences(
            of: "      - dma: {from: A, to: B}",
            with: "      - dma: {from: A, to: B}\n        expect: delivered\n        because: \"<img src=x onerror=alert(2)> & 'q'\""), file: "t.yaml")
        t.name = "<script>alert(1)</script>"
        t.description = "\"&'"
        t.scenarios[0].name = "<b>p2p</b>"
        let p = Predictor.predict(t, kernel: .v6_1)
        return document([(p, [observation(p, scenario: "<b>p2p</b>")])])
    }

    func testHTMLEscapesHostileTopologyTextAndIsWellFormed() throws {
        let html = HTMLRenderer.render(try hostileDocument())
        XCTAssertFalse(html.contains("<script"))
        XCTAssertFalse(html.contains("<img"))
        XCTAssertFalse(html.contains("<b>p2p"))
        XCTAssertTrue(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"))
        XCTAssertTrue(html.contains("<p>&quot;&amp;&#39;</p>"))
        let xml = try XMLDocument(xmlString: html)
        XCTAssertEqual(try xml.nodes(forXPath: "//*[local-name()='script']").count, 0)
        XCTAssertEqual(try xml.nodes(forXPath: "//*[local-name()='svg']").count, 1)
        // One box per function the guest enumerates, and one hazard arc for the A/B pair.
        XCTAssertEqual(try xml.nodes(forXPath: "//*[local-name()='g'][@class='node' or @class='node flagged']").count,
                       try hostileDocument().topologies[0].functions.count)
        XCTAssertEqual(try xml.nodes(forXPath: "//*[local-name()='path'][@class='hazard']").count, 1)
        XCTAssertEqual(try xml.nodes(forXPath: "//h1").first?.stringValue, "isolab results")
    }

    func testMarkdownAndJUnitAndTAPEscapeHostileText() throws {
        let doc = try hostileDocument()
        let md = MarkdownRenderer.render(doc)
        XCTAssertFalse(md.contains("<script"))
        XCTAssertTrue(md.contains("&lt;script&gt;alert(1)&lt;/script&gt;"))
        XCTAssertNoThrow(try XMLDocument(xmlString: JUnitRenderer.render(doc)))
        let tap = TAPRenderer.render(doc)
        XCTAssertFalse(tap.split(separator: "\n").contains { $0.hasPrefix("ok") && $0.contains(" # ") })
    }

    func testMarkdownSummaryHasARowPerRunAndListsTheMismatchWithTheRule() throws {
        let md = MarkdownRenderer.render(try sample())
        XCTAssertTrue(md.contains("| switch-no-acs | 6.1 | pass | 12 |  | 2 |"), md)
        XCTAssertTrue(md.contains("| multifunction | 6.1 | **FAIL** | 7 |"), md)
        XCTAssertTrue(md.contains("### Mismatches and failures (1)"))
        XCTAssertTrue(md.contains("  - model: "))
        XCTAssertTrue(md.contains("### Not booted: unrealizable (1)"))
    }

    func testCrossKernelTableMarksItemsWhoseResultChangedBetweenKernels() throws {
        let p61 = try predict(multifunction)
        let p510 = try predict(multifunction, kernel: .v5_10)
        let doc = document([(p510, [observation(p510, scenario: "bind-into-user-owned", outcome: .crashed)]),
                            (p61, [observation(p61, scenario: "bind-into-user-owned")])])
        let xml = try XMLDocument(xmlString: HTMLRenderer.render(doc))
        let changed = try xml.nodes(forXPath: "//table[@class='cross']/tr[@class='changed']/td[1]").compactMap(\.stringValue)
        XCTAssertEqual(changed, ["bind-into-user-owned: step 3 bind nic0", "bind-into-user-owned: step 4 dma C -> memory"])
    }
}

extension RenderTests {
    func testCrossKernelTableMarksAnItemJudgedOnSomeKernelsOnlyAndTheCellWhereItChanged() throws {
        let p61 = try predict(multifunction)
        let p612 = try predict(multifunction, kernel: .v6_12)
        let nic = p612.fabric.function(of: "nic0")!.path, c = p612.fabric.function(of: "C")!.path
        let split = p612.groupsAtBoot.map { $0.map(\.path) }.filter { !$0.contains(nic) } + [[nic], [c]]
        let doc = document([(p61, [observation(p61, scenario: "bind-into-user-owned")]),
                            (p612, [observation(p612, scenario: "bind-into-user-owned", groups: split)])])
        let xml = try XMLDocument(xmlString: HTMLRenderer.render(doc))
        let changed = try xml.nodes(forXPath: "//table[@class='cross']/tr[@class='changed']/td[1]").compactMap(\.stringValue)
        XCTAssertEqual(changed, ["group {nic0, C}", "hazard nic0 → C", "hazard C → nic0"])
        XCTAssertEqual(try xml.nodes(forXPath: "//table[@class='cross']/tr[@class='changed']/td[3][contains(@class, 'step')]").count, 3)
        XCTAssertEqual(try xml.nodes(forXPath: "//table[@class='cross']/tr[not(@class)]/td[contains(@class, 'step')]").count, 0)
        XCTAssertEqual(try xml.nodes(forXPath: "//table[@class='cross']/caption").first?.stringValue,
                       "Across kernels: ◆ 3 of 10 items changed between kernels (a thick left edge where the kernel before differs)")
    }
}
