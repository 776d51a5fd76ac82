import IsolabModel
import IsolabProtocol
import IsolabReport
import XCTest

final class VerdictTests: XCTestCase {
    func testObservationAsPredictedOnSwitchWithoutACSIsAllMatchesAndHazardsAsExpected() throws {
        let p = try predict(switchNoACS)
        let v = Judge.verdicts(p, observations: [observation(p, scenario: "p2p")])
        XCTAssertEqual(Set(v.kinds(.group)), [.match])
        XCTAssertEqual(v.kinds(.group).count, p.groupsAtBoot.count)
        XCTAssertEqual(Set(v.kinds(.step)), [.match])
        XCTAssertEqual(v.kinds(.probe), [.match, .match])
        XCTAssertEqual(v.item("hazard:A->B")?.kind, .hazardAsExpected)
        XCTAssertEqual(v.item("hazard:B->A")?.kind, .hazardAsExpected)
        XCTAssertEqual(ExitStatus.of(v), 0)
    }

    func testProbeResultOtherThanModelIsMismatchWithTheModelsRule() throws {
        let p = try predict(switchNoACS)
        let v = Judge.verdicts(p, observations: [observation(p, scenario: "p2p", results: [4: "delivered"])])
        let probe = try XCTUnwrap(v.item("step:p2p:4"))
        XCTAssertEqual(probe.kind, .mismatch)
        XCTAssertEqual(probe.subject, .probe)
        XCTAssertEqual(probe.expected, "faulted")
        XCTAssertEqual(probe.observed, "delivered")
        XCTAssertFalse(try XCTUnwrap(probe.rule).kernelFunction.isEmpty)
        XCTAssertEqual(probe.detail, "observed delivered")
        XCTAssertEqual(ExitStatus.of(v), 1)
    }

    func testFaultAttributedToAnotherRequesterIsMismatch() throws {
        let p = try predict(switchNoACS)
        var o = observation(p, scenario: "p2p")
        o.steps[4].dma?.faultRequester = "04.0/00.0/01.0/00.0"
        let probe = try XCTUnwrap(Judge.verdicts(p, observations: [o]).item("step:p2p:4"))
        XCTAssertEqual(probe.kind, .mismatch)
        XCTAssertTrue(probe.detail?.contains("fault attributed to 04.0/00.0/01.0/00.0") == true)
    }

    func testGroupsAreComparedAsMembershipSetsNotIds() throws {
        let p = try predict(switchNoACS)
        var gs = p.groupsAtBoot.map { $0.map(\.path) }
        gs.reverse()
        gs = gs.map { $0.reversed() }
        XCTAssertEqual(Set(Judge.verdicts(p, observations: [observation(p, scenario: "p2p", groups: gs)]).kinds(.group)), [.match])

        // The guest merges A's and B's groups: both predicted groups mismatch, and the predicted
        // hazard between them is not confirmed.
        let a = p.fabric.function(of: "A")!.path, b = p.fabric.function(of: "B")!.path
        let merged = p.groupsAtBoot.map { $0.map(\.path) }.filter { !$0.contains(a) && !$0.contains(b) }
            + [["04.0/00.0/00.0", a, "04.0/00.0/01.0", b]]
        let v = Judge.verdicts(p, observations: [observation(p, scenario: "p2p", groups: merged)])
        let bad = v.filter { $0.subject == .group && $0.kind == .mismatch }
        XCTAssertEqual(bad.count, 2)
        XCTAssertEqual(bad.first?.expected, "{dp0, A}")
        XCTAssertEqual(bad.first?.observed, "{dp0, A, dp1, B}")
        XCTAssertEqual(v.item("hazard:A->B")?.kind, .mismatch)
    }

    func testGuestSeparatingFunctionsThatPCIeConnectsIsAnUnpredictedHazard() throws {
        let p = try predict(multifunction)
        XCTAssertTrue(p.hazards.isEmpty)
        let nic = p.fabric.function(of: "nic0")!.path, c = p.fabric.function(of: "C")!.path
        let split = p.groupsAtBoot.map { $0.map(\.path) }.filter { !$0.contains(nic) } + [[nic], [c]]
        let v = Judge.verdicts(p, observations: [observation(p, scenario: "bind-into-user-owned", groups: split)])
        let h = try XCTUnwrap(v.item("hazard:nic0->C"))
        XCTAssertEqual(h.kind, .hazard)
        XCTAssertTrue(h.rule?.text.contains("functions nic0 and C of one slot") == true, h.rule?.text ?? "")
        XCTAssertEqual(ExitStatus.of(v), 1)
    }

    func testHazardBetweenFunctionsUngroupedAtBootOnVirtio612IsNotJudged() throws {
        let p = try predict(switchNoACS.replacingOccurrences(of: "iommu: intel", with: "iommu: virtio"), kernel: .v6_12)
        XCTAssertTrue(p.hazards.isEmpty, "6.12 groups no edu at boot (acpi_dma_configure() at driver probe), so no pair is separated yet")
        XCTAssertFalse(try predict(switchNoACS.replacingOccurrences(of: "iommu: intel", with: "iommu: virtio"), kernel: .v7_3).hazards.isEmpty)
        let v = Judge.verdicts(p, observations: [observation(p, scenario: "p2p")])
        XCTAssertEqual(v.filter { $0.subject == .hazard }, [], "edu functions have no group until a driver probes them")
        XCTAssertEqual(Set(v.kinds(.group)), [.match])
    }

    func testUnrealizableFabricIsNotBootedAndDoesNotFail() throws {
        let yaml = switchNoACS.replacingOccurrences(of: "- port: dp0", with: "- port: dp0\n            acs: true")
        let p = try predict(yaml)
        let v = Judge.verdicts(p, observations: [])
        XCTAssertEqual(v.map(\.kind), [.unrealizable])
        XCTAssertEqual(v.first?.item, "node:dp0")
        XCTAssertTrue(v.first?.detail?.contains("ACS") == true)
        XCTAssertEqual(ExitStatus.of(v), 0)
        XCTAssertFalse(FabricRun(prediction: p, kernelLabel: "6.1", environment: environment, observations: []).booted)
    }

    func testPinThatHeldIsPinnedWithItsReasonAndOneThatFailedIsMismatch() throws {
        let yaml = switchNoACS.replacingOccurrences(
            of: "      - dma: {from: A, to: B}",
            with: "      - dma: {from: A, to: B}\n        expect: delivered\n        because: QEMU bug 1234")
        let p = try predict(yaml)
        let held = try XCTUnwrap(Judge.verdicts(p, observations: [observation(p, scenario: "p2p", results: [4: "delivered"])]).item("step:p2p:4"))
        XCTAssertEqual(held.kind, .pinned)
        XCTAssertEqual(held.because, "QEMU bug 1234")
        XCTAssertEqual(held.expected, "delivered")
        let failed = try XCTUnwrap(Judge.verdicts(p, observations: [observation(p, scenario: "p2p")]).item("step:p2p:4"))
        XCTAssertEqual(failed.kind, .mismatch)
        XCTAssertEqual(failed.because, "QEMU bug 1234")
        XCTAssertEqual(failed.observed, "faulted")
    }

    func testCrashPredictedOn510IsExpectedAndSameCrashOn61IsAFailure() throws {
        let old = try predict(multifunction, kernel: .v5_10)
        XCTAssertEqual(old.scenarios[0].steps[2].result.token, "crash")
        let v510 = Judge.verdicts(old, observations: [observation(old, scenario: "bind-into-user-owned", outcome: .crashed)])
        let c = try XCTUnwrap(v510.item("step:bind-into-user-owned:2"))
        XCTAssertEqual(c.kind, .crash)
        XCTAssertEqual(c.crashExpected, true)
        XCTAssertEqual(c.kernelLog, ["kernel BUG at drivers/vfio/vfio.c:698!"])
        XCTAssertEqual(c.consoleTail, ["[  9.1] last console line"])
        XCTAssertEqual(v510.item("step:bind-into-user-owned:3")?.kind, .match, "not-run after the crash, as predicted")
        XCTAssertEqual(ExitStatus.of(v510), 0)

        let new = try predict(multifunction)
        let v61 = Judge.verdicts(new, observations: [observation(new, scenario: "bind-into-user-owned",
                                                                  results: [2: "crash", 3: "not-run"], outcome: .crashed)])
        XCTAssertEqual(v61.item("step:bind-into-user-owned:2")?.crashExpected, false)
        let after = try XCTUnwrap(v61.item("step:bind-into-user-owned:3"))
        XCTAssertEqual(after.kind, .mismatch)
        XCTAssertTrue(after.detail?.contains("crashed at step 2") == true)
        XCTAssertEqual(ExitStatus.of(v61), 1)
    }

    func testHangWhereNoStepBlocksIsInfrastructureWithTheConsoleTail() throws {
        let p = try predict(switchNoACS)
        let o = observation(p, scenario: "p2p", results: [3: "timed-out", 4: "not-run", 5: "not-run"], outcome: .hung)
        let v = Judge.verdicts(p, observations: [o])
        let hung = try XCTUnwrap(v.item("step:p2p:3"))
        XCTAssertEqual(hung.kind, .infrastructure)
        XCTAssertEqual(hung.consoleTail, ["[  9.1] last console line"])
        XCTAssertNil(v.item("step:p2p:4"), "steps after a hang are not judged")
        XCTAssertEqual(v.item("step:p2p:2")?.kind, .match)
        XCTAssertEqual(ExitStatus.of(v), 3)
    }

    func testInfrastructureOutcomeIsOneVerdictAndAMismatchElsewhereOutranksIt() throws {
        let p = try predict(switchNoACS)
        var o = observation(p, scenario: "p2p", outcome: .infrastructure)
        o.inventory = nil
        let v = Judge.verdicts(p, observations: [o])
        XCTAssertEqual(v.item("run:p2p")?.kind, .infrastructure)
        XCTAssertEqual(v.item("run:p2p")?.consoleTail, ["[  9.1] last console line"])
        XCTAssertEqual(v.item("run:inventory")?.kind, .infrastructure, "no inventory: groups not judged")
        XCTAssertEqual(ExitStatus.of(v), 3)
        let mismatch = Verdict(kind: .mismatch, subject: .step, item: "x", title: "x")
        XCTAssertEqual(ExitStatus.of(v + [mismatch]), 1)
    }
}
