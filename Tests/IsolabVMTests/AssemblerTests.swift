import IsolabModel
import IsolabProtocol
import IsolabTopology
@testable import IsolabVM
import XCTest

/// The host's reading of a run: which outcome, which step crashed, what is not-run.
final class AssemblerTests: XCTestCase {
    let plan = GuestPlan(runID: "t", nodes: [], steps: [
        PlanStep(index: 0, op: .vfioBind, device: "C"),
        PlanStep(index: 1, op: .vfioOpen, device: "C"),
        PlanStep(index: 2, op: .bind, device: "nic0", driver: "e1000e"),
    ])

    func stream(_ records: [Record]) throws -> RecordStreamParser {
        var p = RecordStreamParser()
        for r in records { p.feed(try RecordEncoder().line(r)) }
        p.finish()
        return p
    }

    var assembler: ObservationAssembler {
        ObservationAssembler(topology: "t", kernel: "5.10", iommu: "intel", scenario: "s", plan: plan)
    }

    func testPanicMidStepMarksThatStepCrashedAndTheRestNotRun() throws {
        let s = try stream([
            Record(seq: 0, type: .hello, hello: Hello(runID: "t", agent: "a")),
            Record(seq: 1, type: .stepStart, index: 0),
            Record(seq: 2, type: .step, step: StepRecord(index: 0, op: .vfioBind, result: "ok")),
            Record(seq: 3, type: .stepStart, index: 1),
        ])
        let console = "boot\n[   3.1] kernel BUG at drivers/vfio/vfio.c:698!\n[   3.1] invalid opcode: 0000 [#1] SMP\nKernel panic - not syncing: Fatal exception\n"
        let obs = assembler.assemble(stream: s, console: console, end: .stopped("the guest powered off"), timing: Timing())
        XCTAssertEqual(obs.outcome, .crashed)
        XCTAssertEqual(obs.steps.map(\.result), ["ok", "crash", "not-run"])
        XCTAssertEqual(obs.crashLines.first, "[   3.1] kernel BUG at drivers/vfio/vfio.c:698!")
        XCTAssertFalse(obs.consoleTail.isEmpty)
    }

    func testDeadlineIsAHangWithTheStepInFlightTimedOut() throws {
        let s = try stream([
            Record(seq: 0, type: .hello, hello: Hello(runID: "t", agent: "a")),
            Record(seq: 1, type: .stepStart, index: 0),
        ])
        let obs = assembler.assemble(stream: s, console: "quiet\n", end: .deadline("no record for 60 s"), timing: Timing())
        XCTAssertEqual(obs.outcome, .hung)
        XCTAssertEqual(obs.steps.map(\.result), ["timed-out", "not-run", "not-run"])
    }

    func testGuestGoneWithoutCrashIsInfrastructure() throws {
        let s = try stream([Record(seq: 0, type: .hello, hello: Hello(runID: "t", agent: "a"))])
        let obs = assembler.assemble(stream: s, console: "fine\n", end: .stopped("QEMU was killed"), timing: Timing())
        XCTAssertEqual(obs.outcome, .infrastructure)
        XCTAssertTrue(obs.problem?.contains("QEMU was killed") == true)
    }

    func testGarbageStreamIsInfrastructureKeepingEarlierRecords() throws {
        var p = try stream([Record(seq: 0, type: .hello, hello: Hello(runID: "t", agent: "a"))])
        p.feed(Array("\u{1}\u{2}garbage\n".utf8))
        let obs = assembler.assemble(stream: p, console: "", end: .stopped("powered off"), timing: Timing())
        XCTAssertEqual(obs.outcome, .infrastructure)
        XCTAssertTrue(obs.problem?.contains("not a record") == true)
    }

    /// vfio-pci is loaded before the scenario where a scenario binds it and none loads a VFIO
    /// module itself (iommu-none's noiommu scenario loads vfio with its option) or runs a program.
    func testVFIOPCIIsPreloadedWhereNoScenarioLoadsAVFIOModuleItself() throws {
        XCTAssertEqual(PlanBuilder.preload(for: try VMTestSupport.topology("switch-no-acs")), ["vfio_pci"])
        XCTAssertEqual(PlanBuilder.preload(for: try VMTestSupport.topology("virtio-iommu")), ["virtio_iommu", "vfio_pci"])
        XCTAssertEqual(PlanBuilder.preload(for: try VMTestSupport.topology("iommu-none")), [])
        XCTAssertEqual(PlanBuilder.preload(for: try VMTestSupport.topology("selftests-edu")), [])
    }

    func testPlanResolvesDefaultDriversAndPaths() throws {
        let t = try TopologyLoader.parse("""
            name: t
            fabric:
              - root-port: rp0
                slot: 4
                children:
                  - device: nic0
                    model: e1000e
                  - device: C
                    model: edu
                    function: 1
            scenarios:
              - name: s
                steps:
                  - bind: nic0
                  - bind: C
                  - dma: {from: C, to: nic0, map: peer}
            """, file: "t.yaml")
        let plan = PlanBuilder.plan(topology: t, fabric: Fabric(t), scenario: t.scenarios[0], runID: "r", stepTimeout: 5)
        XCTAssertEqual(plan.steps.map(\.driver), ["e1000e", "pci-stub", nil])
        XCTAssertEqual(plan.steps[2].target, "nic0")
        XCTAssertEqual(plan.steps[2].map, "peer")
        XCTAssertEqual(plan.nodes.first(where: { $0.id == "C" })?.path, "04.0/00.1")
    }
}
