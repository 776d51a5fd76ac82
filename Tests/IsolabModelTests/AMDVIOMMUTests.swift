import IsolabModel
import IsolabTopology
import XCTest

/// The AMD vIOMMU: what the guest kernel makes of QEMU's IVRS, and what each emulator's
/// amd-iommu can show (``EmulatorFacts``).
final class AMDVIOMMUTests: XCTestCase {
    private let yaml = """
    name: t
    iommu: amd
    fabric:
      - device: F
        model: edu
        slot: 9
      - root-port: rp0
        slot: 4
        children:
          - device: A
            model: edu
    scenarios:
      - name: s
        steps:
          - vfio-bind: F
          - vfio-open: F
      - name: d
        steps:
          - vfio-bind: A
          - vfio-open: A
          - dma: {from: A, to: memory}
          - dma: {from: F, to: unmapped}
          - dma: {from: A, to: unmapped}

    """

    private func facts(_ version: String) -> EmulatorFacts {
        var f = EmulatorFacts.assumedHostQEMU72
        f.version = "QEMU emulator version \(version) (test)"
        return f
    }

    private func topology(on version: String) throws -> Topology {
        var t = try TopologyLoader.parse(yaml, file: "test.yaml")
        t.emulator = facts(version)
        return t
    }

    // check_ioapic_information() (drivers/iommu/amd/init.c): 5.10–6.12 find QEMU's southbridge
    // IOAPIC and enable interrupt remapping; 7.3 does not, so vfio_iommu_type1_attach_group()
    // refuses the container with -EPERM.
    func testInterruptRemappingFollowsTheKernelsReadingOfQEMUsIVRS() throws {
        for k in [KernelGeneration.v5_10, .v6_1, .v6_12] {
            XCTAssertEqual(try predict(yaml, kernel: k).results("s"), ["ok", "ok"], k.id)
        }
        let p = try predict(yaml, kernel: .v7_3)
        XCTAssertEqual(p.results("s"), ["ok", "EPERM"])
        let open = p.scenarios[0].steps[1]
        XCTAssertEqual(open.substeps.last?.name.rawValue, "set-iommu")
        XCTAssertTrue(open.rule.description.contains("check_ioapic_information()"), open.rule.description)
        // Booted: 6.16.12, 6.17.13, 6.18.15 and 7.2.12 enable it; 7.3.4 does not.
        for v in ["6.8.0", "6.16.12", "6.17.13", "6.18.15", "7.2.12"] {
            XCTAssertEqual(KernelGeneration.resolve(v)?.amdInterruptRemappingOnQEMU, true, v)
        }
        XCTAssertEqual(KernelGeneration.resolve("7.3.4")?.amdInterruptRemappingOnQEMU, false)
        // type1's overflow errno: EINVAL up to 6.17, EOVERFLOW from 6.18 (booted 6.17.13 / 6.18.15).
        XCTAssertEqual(KernelGeneration.resolve("6.17.13")?.type1OverflowIsEOVERFLOW, false)
        XCTAssertEqual(KernelGeneration.resolve("6.18.15")?.type1OverflowIsEOVERFLOW, true)
        XCTAssertEqual(KernelGeneration.resolve("7.2.12")?.type1OverflowIsEOVERFLOW, true)
    }

    // Intel's interrupt remapping does not depend on it.
    func testIntelKeepsInterruptRemappingOn73() throws {
        let intel = yaml.replacingOccurrences(of: "iommu: amd", with: "iommu: intel")
        XCTAssertEqual(try predict(intel, kernel: .v7_3).results("s"), ["ok", "ok"])
    }

    // 7.2: every DMA initiator is unrealizable (no fault interrupt); one below a bridge says so too.
    func testQEMU72MakesDMAProbesUnrealizableAndSaysWhy() throws {
        let problems = Realizability.check(try topology(on: "7.2.22"))
        XCTAssertEqual(problems.map(\.node), ["A", "F"])
        XCTAssertTrue(problems[0].reason.contains("below a bridge"), problems[0].reason)
        XCTAssertFalse(problems[1].reason.contains("below a bridge"), problems[1].reason)
        XCTAssertTrue(problems.allSatisfy { $0.reason.contains("no fault line") })
        XCTAssertEqual(problems[0].location.line, 21, "located at the fabric's first dma step")
    }

    // 10.0: the guest's IOAPIC interrupts are lost, so nothing of the fabric can be observed.
    func testQEMU100MakesTheWholeFabricUnrealizable() throws {
        let problems = Realizability.check(try topology(on: "10.0.2"))
        XCTAssertEqual(problems.map(\.node), ["iommu"])
        XCTAssertTrue(problems[0].reason.contains("IOAPIC"), problems[0].reason)
    }

    // A fabric without DMA probes is realizable on 7.2; nothing is refused from 10.1 (assumed fixed).
    func testOwnershipOnlyFabricsOn72AndEverythingFrom101AreRealizable() throws {
        var t = try topology(on: "7.2.22")
        t.scenarios.removeAll { $0.name == "d" }
        XCTAssertEqual(Realizability.check(t), [])
        XCTAssertEqual(Realizability.check(try topology(on: "10.1.0")), [])
        var intel = try topology(on: "10.0.2")
        intel.iommu = .intel
        XCTAssertEqual(Realizability.check(intel), [], "only the AMD vIOMMU is affected")
    }
}
