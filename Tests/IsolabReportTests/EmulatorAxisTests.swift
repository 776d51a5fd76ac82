import Foundation
import FoundationXML
import IsolabModel
import IsolabProtocol
import IsolabReport
import XCTest

/// The emulator as an axis of the results: named in every format, a key of diff and merge,
/// and a pairing of `report diff` ("what did QEMU 10 change?").
final class EmulatorAxisTests: XCTestCase {
    /// One fabric on 6.1 under two emulators; on `10.0` step 4 observed `newer`.
    private func twoEmulators(newer: String? = nil) throws -> ResultsDocument {
        let p = try predict(switchNoACS)
        var inputs: [ResultsDocument.Input] = []
        for e in ["7.2", "10.0"] {
            let results = e == "10.0" && newer != nil ? [4: newer!] : [:]
            var i = ResultsDocument.Input(prediction: p, kernelLabel: "6.1", observations: [observation(p, scenario: "p2p", results: results)],
                                          topologySHA256: String(repeating: "0", count: 64))
            i.emulator = e
            i.environment = Environment(isolab: "0.1-test", qemu: e == "7.2" ? "7.2.15" : "10.0.2", libvirt: "9.0.0")
            inputs.append(i)
        }
        var doc = ResultsDocument(isolab: "0.1-test", environment: environment, kernels: [kernelBuild("6.1")], inputs: inputs)
        doc.emulators = [EmulatorBuild(label: "7.2", version: "QEMU emulator version 7.2.15", libvirt: "9.0.0"),
                         EmulatorBuild(label: "10.0", version: "QEMU emulator version 10.0.2", binary: "/cache/qemu",
                                       binarySha256: String(repeating: "cd", count: 32),
                                       packages: [KernelPackage(name: "qemu-system-x86", version: "1:10.0.2", sha256: String(repeating: "ef", count: 32))],
                                       libvirt: "9.0.0")]
        return doc
    }

    func testEveryFormatNamesTheEmulator() throws {
        let doc = try twoEmulators()
        XCTAssertEqual(doc.runs.map(\.platform), ["6.1 · QEMU 7.2", "6.1 · QEMU 10.0"])
        XCTAssertEqual(doc.runs.map(\.environment.qemu), ["7.2.15", "10.0.2"])
        let xml = try XMLDocument(xmlString: JUnitRenderer.render(doc))
        XCTAssertEqual(try xml.nodes(forXPath: "//testsuite[@name='switch-no-acs on 6.1 · QEMU 10.0']").count, 1)
        XCTAssertEqual(try xml.nodes(forXPath: "//testcase[@classname='isolab.switch-no-acs.kernel-6_1.qemu-10_0']").count,
                       doc.runs[1].verdicts.count)
        XCTAssertEqual(try xml.nodes(forXPath: "//property[@name='emulator.package']").count, 1)
        XCTAssertTrue(TAPRenderer.render(doc).contains("switch-no-acs on 6.1 · QEMU 7.2: "))
        let md = MarkdownRenderer.render(doc)
        XCTAssertTrue(md.contains("| switch-no-acs | 6.1 · QEMU 10.0 |"), md)
        XCTAssertTrue(md.contains("Emulator **10.0**: QEMU emulator version 10.0.2"), md)
        let html = HTMLRenderer.render(doc)
        XCTAssertNoThrow(try XMLDocument(xmlString: html))
        XCTAssertTrue(html.contains("<th>6.1 · QEMU 7.2</th><th>6.1 · QEMU 10.0</th>"))
        XCTAssertTrue(html.contains("Across kernels and emulators: every item observed the same"))
        let back = try ResultsDocument.decode(Data(try doc.json().utf8))
        XCTAssertEqual(back, doc)
    }

    func testTheCrossTableMarksAnObservationThatChangedBetweenEmulators() throws {
        let html = HTMLRenderer.render(try twoEmulators(newer: "delivered"))
        XCTAssertTrue(html.contains("Across kernels and emulators: ◆ 1 of"), html)
    }

    func testDiffPairsOneEmulatorWithAnother() throws {
        let doc = try twoEmulators(newer: "delivered")
        // The same document both sides: equal labels compare each emulator with itself.
        XCTAssertEqual(ResultsDiff.diff(base: doc, new: doc), [])
        let (b, n) = ResultsDiff.paired(base: doc, new: doc, emulators: ("7.2", "10.0"))
        let changes = ResultsDiff.diff(base: b, new: n)
        XCTAssertEqual(changes.map(\.item), ["step:p2p:4"])
        XCTAssertEqual(changes.first?.kind, .regression)
        XCTAssertEqual(changes.first?.platform, "6.1 · QEMU 10.0")
        XCTAssertTrue(ResultsDiff.text(changes).contains("switch-no-acs on 6.1 · QEMU 10.0: p2p:"), ResultsDiff.text(changes))
    }

    func testMergeKeysRunsByEmulatorAndRefusesTwoBuildsUnderOneLabel() throws {
        let doc = try twoEmulators()
        var first = doc, second = doc
        first.runs = [doc.runs[0]]
        second.runs = [doc.runs[1]]
        let merged = try ResultsDocument.merge([first, second])
        XCTAssertEqual(merged.runs.map(\.platform), doc.runs.map(\.platform))
        XCTAssertEqual(merged.emulators, doc.emulators)
        var other = second
        other.emulators![1].binarySha256 = String(repeating: "00", count: 32)
        XCTAssertThrowsError(try ResultsDocument.merge([first, other])) {
            XCTAssertEqual($0 as? ReportError, .conflictingEmulator("10.0"))
        }
    }
}
