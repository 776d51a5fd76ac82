import IsolabModel
import IsolabProtocol
import IsolabReport
import IsolabTopology
import XCTest

/// A selftest step's TAP results judged one by one against the model's expectations, the
/// step's status following from them, and the HTML report grouping them under the step.
final class SubtestJudgeTests: XCTestCase {
    let fabric = """
    name: st
    fabric:
      - root-port: rp0
        slot: 4
        children:
          - device: A
            model: edu
    scenarios:
      - name: mapping
        steps:
          - vfio-bind: A
          - selftest: {program: vfio_dma_mapping_test, devices: [A], args: [-f, vfio_dma_map_limit_test]}
    """

    private func judged(_ output: String, status: Int, kernel: KernelGeneration = .v7_3) throws -> [Verdict] {
        let p = try predict(fabric, kernel: kernel)
        var o = observation(p, scenario: "mapping")
        o.steps[1].result = status == 0 ? "ok" : "failed"
        o.steps[1].program = ProgramRecord(argv: ["/isolab/programs/vfio_dma_mapping_test"], exitStatus: status, output: output)
        return Judge.verdicts(p, observations: [o])
    }

    static let stockRun = """
    TAP version 13
    1..2
    ok 1 vfio_dma_map_limit_test.vfio_type1v2_iommu.overflow
    # iommu.c:433: Assertion Failure
    #   open(/dev/iommu) failed
    not ok 2 vfio_dma_map_limit_test.iommufd.overflow
    # Totals: pass:1 fail:1 xfail:0 xpass:0 skip:0 error:0
    """

    func testEachTAPResultIsAVerdictAndTheStatusFollowsFromThem() throws {
        let v = try judged(Self.stockRun, status: 1)
        let subtests = v.filter { $0.subject == .subtest }
        XCTAssertEqual(subtests.map(\.title), ["vfio_dma_mapping_test vfio_dma_map_limit_test.vfio_type1v2_iommu.overflow",
                                               "vfio_dma_mapping_test vfio_dma_map_limit_test.iommufd.overflow"])
        XCTAssertEqual(subtests.map(\.kind), [.match, .match])
        XCTAssertEqual(subtests[1].rule?.kernelFunction, "iommu_init()")
        XCTAssertTrue(subtests[1].detail?.contains("open(/dev/iommu) failed") == true)
        XCTAssertEqual(v.item("step:mapping:1")?.expected, "failed")
        XCTAssertEqual(v.item("step:mapping:1")?.kind, .match)
    }

    func testAnUnpredictedFailureIsAMismatchWithTheTestsLines() throws {
        // 6.12's type1 answers the overflow EINVAL: the model knows; on 7.3 a failure there is news.
        let out = Self.stockRun.replacingOccurrences(of: "ok 1 vfio_dma_map_limit_test.vfio_type1v2_iommu.overflow",
                                                     with: "# vfio_dma_mapping_test.c:297:overflow:Expected rc (-22) == -EOVERFLOW (-75)\nnot ok 1 vfio_dma_map_limit_test.vfio_type1v2_iommu.overflow")
        let v = try judged(out, status: 1)
        let first = try XCTUnwrap(v.first { $0.subject == .subtest })
        XCTAssertEqual(first.kind, .mismatch)
        XCTAssertTrue(first.detail?.contains("-EOVERFLOW") == true)
        XCTAssertEqual(try judged(out, status: 1, kernel: .v6_12).filter { $0.subject == .subtest }.map(\.kind), [.match, .match])
    }

    func testAHarnessThatDiedMidwayIsAMismatchOfTheStep() throws {
        let v = try judged("TAP version 13\n1..30\nok 1 vfio_dma_map_limit_test.vfio_type1_iommu.unmap_range\n", status: 0)
        let step = try XCTUnwrap(v.item("step:mapping:1"))
        XCTAssertEqual(step.kind, .mismatch)
        XCTAssertTrue(step.detail?.contains("announced 30 tests") == true, step.detail ?? "")
    }

    func testTheHTMLReportGroupsSubtestsUnderTheirStep() throws {
        let p = try predict(fabric, kernel: .v7_3)
        var o = observation(p, scenario: "mapping")
        o.steps[1].result = "failed"
        o.steps[1].program = ProgramRecord(argv: ["x"], exitStatus: 1, output: Self.stockRun)
        let html = HTMLRenderer.render(document([(p, [o])], kernels: ["7.3"]))
        XCTAssertTrue(html.contains("<details class=\"subtests\""))
        XCTAssertTrue(html.contains("mapping: vfio_dma_mapping_test: 2 subtests (1 fail, 1 pass)"))
    }
}
