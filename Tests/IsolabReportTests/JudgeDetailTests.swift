import IsolabModel
import IsolabProtocol
import IsolabReport
import IsolabTopology
import XCTest

/// The judge compares everything the model predicts, not only a step's final token: each kind
/// of deliberately wrong prediction (or observation) below must be a mismatch.
final class JudgeDetailTests: XCTestCase {
    let userOwned = multifunction + """

          - name: modprobe-into-user-owned
            steps:
              - vfio-bind: C
              - vfio-open: C
              - load-driver: e1000e
        """

    func testObservationAsPredictedWithEveryDetailStillMatches() throws {
        for kernel in KernelGeneration.catalog {
            let p = try predict(userOwned, kernel: kernel)
            for s in p.scenarios {
                let v = Judge.verdicts(p, observations: [observation(p, scenario: s.name)])
                XCTAssertEqual(v.filter { $0.standing == .fail }.map(\.item), [], "\(kernel.id) \(s.name)")
            }
        }
    }

    func testASubstepErrnoOtherThanPredictedIsAMismatchNamingIt() throws {
        let p = try predict(switchNoACS)
        var o = observation(p, scenario: "p2p")
        // vfio-open A fails at set-iommu (no interrupt remapping) instead of succeeding there:
        // same final token as a set-container EPERM would give, so only the sub-step tells.
        let open = try XCTUnwrap(o.steps.firstIndex { $0.op == .vfioOpen })
        let i = try XCTUnwrap(o.steps[open].substeps.firstIndex { $0.name == .setIOMMU })
        o.steps[open].substeps[i] = SubstepRecord(name: .setIOMMU, result: "EPERM", errno: 1)
        let v = try XCTUnwrap(Judge.verdicts(p, observations: [o]).item("step:p2p:\(open)"))
        XCTAssertEqual(v.kind, .mismatch)
        XCTAssertTrue(v.detail?.hasPrefix("set-iommu: observed EPERM (errno 1), model ok") == true, v.detail ?? "")
    }

    func testSetContainerEPERMAndSetIOMMUEPERMAreTellApart() throws {
        // 6.1: a DMA-API driver bound in the group makes SET_CONTAINER fail with EPERM.
        let yaml = multifunction.replacingOccurrences(of: "      - vfio-bind: C\n      - vfio-open: C\n      - bind: nic0",
                                                      with: "      - bind: nic0\n      - vfio-bind: C\n      - vfio-open: C")
        let p = try predict(yaml)
        let step = try XCTUnwrap(p.scenarios[0].steps.first { $0.step.action.op == .vfioOpen })
        XCTAssertEqual(step.result.token, "EPERM")
        XCTAssertEqual(step.substeps.last?.name, .setContainer)
        var o = observation(p, scenario: "bind-into-user-owned")
        o.steps[step.index].substeps = step.substeps.dropLast().map { SubstepRecord(name: $0.name, result: $0.result.token, detail: $0.detail) }
            + [SubstepRecord(name: .setContainer, result: "ok"), SubstepRecord(name: .setIOMMU, result: "EPERM", errno: 1)]
        let v = try XCTUnwrap(Judge.verdicts(p, observations: [o]).item("step:bind-into-user-owned:\(step.index)"))
        XCTAssertEqual(v.kind, .mismatch)
        XCTAssertTrue(v.detail?.hasPrefix("set-container: observed ok, model EPERM") == true, v.detail ?? "")
    }

    func testGetStatusFlagsAreTheViabilityTheKernelReports() throws {
        let p = try predict(switchNoACS, kernel: .v5_10)
        var o = observation(p, scenario: "p2p")
        let open = try XCTUnwrap(o.steps.firstIndex { $0.op == .vfioOpen })
        let i = try XCTUnwrap(o.steps[open].substeps.firstIndex { $0.name == .getStatus })
        o.steps[open].substeps[i].detail = "0"
        let v = try XCTUnwrap(Judge.verdicts(p, observations: [o]).item("step:p2p:\(open)"))
        XCTAssertEqual(v.kind, .mismatch)
        XCTAssertTrue(v.detail?.hasPrefix("get-status: observed flags 0, model VIABLE") == true, v.detail ?? "")
    }

    func testE1000eBoundIntoAUserOwnedGroupIsAMismatchThoughModprobeSucceeded() throws {
        let p = try predict(userOwned)
        let step = try XCTUnwrap(p.scenarios[1].steps.last)
        XCTAssertEqual(step.result, .ok)
        XCTAssertEqual(step.refused, ["nic0"], "≥5.19: the probe gets -EBUSY (iommu_device_use_default_domain())")
        var o = observation(p, scenario: "modprobe-into-user-owned")
        o.steps[2].bound = ["nic0"]
        o.steps[2].refused = []
        let v = try XCTUnwrap(Judge.verdicts(p, observations: [o]).item("step:modprobe-into-user-owned:2"))
        XCTAssertEqual(v.kind, .mismatch)
        XCTAssertTrue(v.detail?.hasPrefix("bound: observed {nic0}, model {}") == true, v.detail ?? "")
    }

    func testARefusedSetEditedToBeEmptyFailsTheScenario() throws {
        var p = try predict(userOwned)
        let o = observation(p, scenario: "modprobe-into-user-owned")
        XCTAssertEqual(o.steps[2].refused, ["nic0"])
        p.scenarios[1].steps[2].refused = []
        let v = try XCTUnwrap(Judge.verdicts(p, observations: [o]).item("step:modprobe-into-user-owned:2"))
        XCTAssertEqual(v.kind, .mismatch)
        XCTAssertTrue(v.detail?.contains("refused (probe failed, not reported): observed {nic0}, model {}") == true, v.detail ?? "")
    }

    func testAFaultWhoseRequesterNobodyCouldReadIsAMismatchNotASkip() throws {
        let p = try predict(switchNoACS, kernel: .v7_3)
        var o = observation(p, scenario: "p2p")
        let probe = try XCTUnwrap(o.steps.firstIndex { $0.result == "faulted" })
        o.steps[probe].dma?.faultRequester = nil
        o.steps[probe].dma?.faultLines = ["virtio_iommu virtio0: some future format"]
        let v = try XCTUnwrap(Judge.verdicts(p, observations: [o]).item("step:p2p:\(probe)"))
        XCTAssertEqual(v.kind, .mismatch)
        XCTAssertTrue(v.detail?.hasPrefix("fault requester: the fault lines name none") == true, v.detail ?? "")
    }

    func testARootPortRealizedWithoutACSIsUnrealizableWithTheEvidence() throws {
        let p = try predict(switchNoACS)
        var o = observation(p, scenario: "p2p")
        let rp = try XCTUnwrap(o.inventory?.functions.firstIndex { $0.path == "04.0" })
        o.inventory?.functions[rp].acs = nil
        let v = Judge.verdicts(p, observations: [o])
        XCTAssertEqual(v.map(\.kind), [.unrealizable])
        XCTAssertEqual(v.first?.item, "node:rp0")
        XCTAssertEqual(v.first?.expected, "root-port with ACS")
        XCTAssertEqual(v.first?.observed, "root-port without ACS")
        XCTAssertEqual(v.first?.line, 4)
        XCTAssertTrue(v.first?.detail?.contains("not judged") == true)
    }

    /// The VF placement the model predicts rests on the PF's SR-IOV capability: an emulator whose
    /// capability differs (here a VF stride of 4) realized another fabric.
    func testAPFWhoseSRIOVCapabilityDiffersIsUnrealizable() throws {
        var t = try TopologyLoader.parse("""
        name: t
        fabric:
          - root-port: rp0
            slot: 4
            children:
              - device: A
                model: igb
                vfs: 2
        scenarios:
          - name: s
            steps:
              - load-driver: igb

        """, file: "test.yaml")
        t.emulator = EmulatorFacts(version: "QEMU emulator version 10.0.2", devices: EmulatorFacts.assumedHostQEMU72.devices + ["igb"],
                                   properties: EmulatorFacts.assumedHostQEMU72.properties)
        let p = Predictor.predict(t, kernel: .v6_1)
        XCTAssertEqual(Judge.verdicts(p, observations: [observation(p, scenario: "s")]).filter { $0.kind == .unrealizable }, [])
        var o = observation(p, scenario: "s")
        let pf = try XCTUnwrap(o.inventory?.functions.firstIndex { $0.path == "04.0/00.0" })
        o.inventory?.functions[pf].sriov?.vfStride = 4
        let v = Judge.verdicts(p, observations: [o])
        XCTAssertEqual(v.map(\.item), ["node:A"])
        XCTAssertTrue(v.first?.detail?.contains("stride 4, VF 8086:10ca, where the model places VFs by TotalVFs 8, offset 0x80, stride 2") == true, v.first?.detail ?? "")
    }

    func testADeviceRealizedAsAnotherPCIeTypeIsUnrealizable() throws {
        let p = try predict(multifunction)
        var o = observation(p, scenario: "bind-into-user-owned")
        let nic = try XCTUnwrap(o.inventory?.functions.firstIndex { $0.path == "03.0/00.0" })
        o.inventory?.functions[nic].pcieType = "legacy-endpoint"
        let v = Judge.verdicts(p, observations: [o])
        XCTAssertEqual(v.map(\.item), ["node:nic0"])
        XCTAssertEqual(v.first?.observed, "legacy-endpoint without ACS")
    }
}

/// `--repeat`: repetitions judged alike keep their verdict; judged differently, `flaky`.
final class FlakyVerdictTests: XCTestCase {
    func testItemsJudgedDifferentlyAcrossRepetitionsAreFlakyWithEveryObservation() throws {
        let p = try predict(switchNoACS)
        let same = Judge.verdicts(p, observations: [observation(p, scenario: "p2p")])
        XCTAssertEqual(Judge.combining([same, same]), same)
        let other = Judge.verdicts(p, observations: [observation(p, scenario: "p2p", results: [4: "delivered"])])
        let combined = Judge.combining([same, other, same])
        let v = try XCTUnwrap(combined.first { $0.item == "step:p2p:4" })
        XCTAssertEqual(v.kind, .flaky)
        XCTAssertEqual(v.standing, .fail)
        XCTAssertEqual(v.observed, "faulted | delivered | faulted")
        XCTAssertTrue(v.detail?.contains("repetition 2: mismatch, observed delivered") == true, v.detail ?? "")
        XCTAssertEqual(combined.filter { $0.kind == .flaky }.count, 1, "only the item that differed")
        XCTAssertEqual(ExitStatus.of(combined), 1)
        let doc = document([(p, [observation(p, scenario: "p2p")])])
        var flakyDoc = doc
        flakyDoc.runs[0].verdicts = combined
        XCTAssertTrue(MarkdownRenderer.summaryTable(flakyDoc).contains("flaky"))
        XCTAssertTrue(TAPRenderer.render(flakyDoc).contains("not ok"))
    }
}
