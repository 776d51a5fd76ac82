import Foundation
import IsolabModel
import IsolabProtocol
import IsolabReport
import IsolabTopology
import XCTest

/// report.html as a browser sees it: headless Chromium loads the page, and the test reads the
/// DOM it built, its console log and a screenshot (kept in the test output folder:
/// `$ISOLAB_TEST_OUTPUT`, else `.build/test-output/` under the package). Chromium missing is a
/// failure, not a skip.
final class BrowserTests: XCTestCase {
    static let kernels = ["5.10", "6.1", "6.12", "7.3"]

    static var outputDirectory: URL {
        if let d = ProcessInfo.processInfo.environment["ISOLAB_TEST_OUTPUT"], !d.isEmpty { return URL(fileURLWithPath: d) }
        return URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent(".build/test-output")
    }

    /// Four kernels of a switch fabric whose author wrote markup into the description and a pin
    /// (one kernel with a probe mismatch), a multifunction slot that crashes as expected on 5.10,
    /// crashes unexpectedly on 6.1 and shows an unpredicted hazard on 6.12, and an unrealizable
    /// fabric.
    func browserDocument() throws -> ResultsDocument {
        var sw = try TopologyLoader.parse(switchNoACS.replacingOccurrences(
            of: "      - dma: {from: A, to: B}",
            with: "      - dma: {from: A, to: B}\n        expect: faulted\n        because: \"<img src=x onerror=alert(2)> & 'q'\""), file: "topologies/switch-no-acs.yaml")
        sw.description = "Two edu functions behind a switch without ACS. <script>document.title='pwned'</script>"
        var inputs: [(KernelPrediction, [VMObservation])] = []
        for k in KernelGeneration.catalog {
            let p = Predictor.predict(sw, kernel: k)
            inputs.append((p, [observation(p, scenario: "p2p", results: k == .v6_1 ? [5: "faulted"] : [:])]))
        }
        let mf = try TopologyLoader.parse(multifunction, file: "topologies/multifunction.yaml")
        let m510 = Predictor.predict(mf, kernel: .v5_10), m61 = Predictor.predict(mf, kernel: .v6_1)
        let m612 = Predictor.predict(mf, kernel: .v6_12)
        let nic = m612.fabric.function(of: "nic0")!.path, c = m612.fabric.function(of: "C")!.path
        let split = m612.groupsAtBoot.map { $0.map(\.path) }.filter { !$0.contains(nic) } + [[nic], [c]]
        inputs += [
            (m510, [observation(m510, scenario: "bind-into-user-owned", outcome: .crashed)]),
            (m61, [observation(m61, scenario: "bind-into-user-owned", results: [2: "crash"], outcome: .crashed)]),
            (m612, [observation(m612, scenario: "bind-into-user-owned", groups: split)]),
        ]
        let unrealizable = try predict(switchNoACS.replacingOccurrences(of: "name: switch-no-acs", with: "name: switch-acs")
            .replacingOccurrences(of: "- port: dp0", with: "- port: dp0\n            acs: true"))
        inputs.append((unrealizable, []))
        return document(inputs, kernels: Self.kernels)
    }

    func testReportRendersInHeadlessChromiumWithoutErrorsOrInjectedScript() throws {
        let chromium = try Chromium.locate()
        let doc = try browserDocument()
        let labels = Set(doc.runs.flatMap(\.verdicts).map(\.label))
        for wanted in ["mismatch", "hazard", "unexpected crash", "expected crash", "unrealizable", "pinned"] {
            XCTAssertTrue(labels.contains(wanted), "the sample should hold a \(wanted) verdict; it has \(labels.sorted())")
        }
        let dir = Self.outputDirectory
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let page = dir.appendingPathComponent("report.html")
        try HTMLRenderer.render(doc).write(to: page, atomically: true, encoding: .utf8)

        // (a) The DOM Chromium built: every table and drawing is there, author text stayed text.
        let dom = try chromium.run(["--dump-dom"], url: page)
        XCTAssertEqual(dom.status, 0, dom.stderr)
        XCTAssertTrue(dom.stdout.contains("<h1>isolab results</h1>"), String(dom.stdout.prefix(2000)))
        XCTAssertEqual(count("<svg", in: dom.stdout), doc.runs.count, "one fabric drawing per fabric × kernel")
        XCTAssertEqual(count("<table class=\"summary\"", in: dom.stdout), 1)
        XCTAssertEqual(count("<table class=\"cross\"", in: dom.stdout), 2, "a cross-kernel table per fabric run on several kernels")
        XCTAssertGreaterThan(count("<tr class=\"changed\"", in: dom.stdout), 0, "rows whose result changed between kernels are marked")
        XCTAssertGreaterThan(count(" step\"", in: dom.stdout), 0, "and the cells where they changed")
        XCTAssertEqual(count("<table class=\"verdicts\"", in: dom.stdout), doc.runs.count)
        XCTAssertEqual(count("<script", in: dom.stdout), 0, "no script element, least of all from author text")
        XCTAssertEqual(count("<img", in: dom.stdout), 0)
        XCTAssertTrue(dom.stdout.contains("&lt;script&gt;document.title='pwned'&lt;/script&gt;"))
        XCTAssertTrue(dom.stdout.contains("<title>isolab results</title>"), "the author's script did not run")
        XCTAssertGreaterThan(count("class=\"hazard\"", in: dom.stdout), 0)

        // (b) No page error in the console log, and the check does catch one.
        XCTAssertEqual(Chromium.pageErrors(dom.stderr), [], dom.stderr)
        let control = dir.appendingPathComponent("control.html")
        try """
            <!DOCTYPE html><html><body><svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect width="-5" height="x"/></svg>
            <script>undefinedFunction()</script></body></html>
            """.write(to: control, atomically: true, encoding: .utf8)
        let broken = try chromium.run(["--dump-dom"], url: control)
        XCTAssertGreaterThanOrEqual(Chromium.pageErrors(broken.stderr).count, 2,
                                    "the console check must see an uncaught error and an SVG attribute error:\n\(broken.stderr)")

        // (c) A screenshot that shows something.
        let png = dir.appendingPathComponent("report.png")
        try? FileManager.default.removeItem(at: png)
        let shot = try chromium.run(["--screenshot=\(png.path)", "--window-size=1280,2000"], url: page)
        XCTAssertEqual(shot.status, 0, shot.stderr)
        XCTAssertEqual(Chromium.pageErrors(shot.stderr), [], shot.stderr)
        let image = try PNGImage(data: try Data(contentsOf: png))
        XCTAssertEqual(image.width, 1280)
        XCTAssertEqual(image.height, 2000)
        XCTAssertGreaterThan(image.distinctColours, 40, "the screenshot at \(png.path) looks blank")
        XCTAssertGreaterThan(image.nonBackgroundShare, 0.05, "the screenshot at \(png.path) is nearly all background")
    }

    func count(_ needle: String, in haystack: String) -> Int {
        haystack.components(separatedBy: needle).count - 1
    }
}
