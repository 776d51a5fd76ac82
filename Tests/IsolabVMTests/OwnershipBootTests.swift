import Foundation
import IsolabModel
import IsolabProtocol
import IsolabTopology
import IsolabVM
import XCTest

/// Runs every scenario of the catalog on every catalog kernel in real guests and holds the model
/// to what the kernels really did, step by step.
final class OwnershipBootTests: XCTestCase {
    /// Every realizable catalog scenario on `kernel`; returns the observations and the mismatches.
    func runCatalog(kernel: String, generation: KernelGeneration) throws -> [String] {
        var requests: [RunRequest] = []
        var predictions: [String: KernelPrediction] = [:]
        for t in try BootSupport.catalogTopologies where Realizability.check(t).isEmpty {
            predictions[t.name] = Predictor.predict(t, kernel: generation)
            for s in t.scenarios { requests.append(try BootSupport.request(t, kernel: kernel, scenario: s)) }
        }
        let observations = try BootSupport.run(requests)
        var mismatches: [String] = []
        for (req, obs) in zip(requests, observations) {
            let where_ = "\(kernel) \(req.topology.name)/\(req.scenario!.name)"
            guard obs.outcome == .completed || obs.outcome == .crashed else {
                mismatches.append("\(where_): \(obs.outcome.rawValue): \(obs.problem ?? "")\n  " + obs.consoleTail.suffix(15).joined(separator: "\n  "))
                continue
            }
            let predicted = predictions[req.topology.name]!.scenarios.first { $0.name == req.scenario!.name }!
            // A selftest's status follows from the expectations of the tests it reported.
            let expected = { (p: StepPrediction, o: StepRecord) -> String in
                guard let s = p.selftest, let program = o.program else { return p.result.token }
                return s.result(for: program.tap.tests.map(\.name)).token
            }
            for (p, o) in zip(predicted.steps, obs.steps) where expected(p, o) != o.result {
                mismatches.append("\(where_) step \(p.index) \(p.step.action.summary): model \(expected(p, o)), kernel \(o.result)"
                                  + (o.detail.map { " (\($0))" } ?? "") + (o.kernelLog.isEmpty ? "" : "\n  log: " + o.kernelLog.suffix(4).joined(separator: "\n  log: ")))
            }
        }
        XCTAssertEqual(BootSupport.leftoverQEMU(), [])
        return mismatches
    }

    func testModelPredictsEveryStepOn5_10() throws {
        let m = try runCatalog(kernel: "5.10", generation: .v5_10)
        XCTAssertTrue(m.isEmpty, m.joined(separator: "\n"))
    }

    func testModelPredictsEveryStepOn6_1() throws {
        let m = try runCatalog(kernel: "6.1", generation: .v6_1)
        XCTAssertTrue(m.isEmpty, m.joined(separator: "\n"))
    }

    func testModelPredictsEveryStepOn6_12() throws {
        let m = try runCatalog(kernel: "6.12", generation: .v6_12)
        XCTAssertTrue(m.isEmpty, m.joined(separator: "\n"))
    }

    func testModelPredictsEveryStepOn7_3() throws {
        let m = try runCatalog(kernel: "7.3", generation: .v7_3)
        XCTAssertTrue(m.isEmpty, m.joined(separator: "\n"))
    }

    /// The source-built 7.3 with IOMMUFD, VFIO_DEVICE_CDEV and VFIO_NOIOMMU (and IOMMUFD_TEST): the whole catalog,
    /// cdev and no-IOMMU scenarios included, judged against the model of what its config builds.
    func testModelPredictsEveryStepOnTheIOMMUFDBuild() throws {
        let generation = try XCTUnwrap(KernelGeneration.of(try BootSupport.image("7.3-iommufd")))
        XCTAssertTrue(generation.hasIOMMUFD && generation.hasVFIONoIOMMU, "the image records its config")
        let m = try runCatalog(kernel: "7.3-iommufd", generation: generation)
        XCTAssertTrue(m.isEmpty, m.joined(separator: "\n"))
    }

    /// An unbind of a device VFIO holds open blocks in its writer child until the device is
    /// closed (vfio_pci_core's release waits for the last user); the child, which holds none of
    /// the agent's descriptors, then finishes, the next step says so, and the device binds
    /// again. The model predicts `blocked` and the later steps.
    func testUnbindOfAnOpenDeviceBlocksUntilItIsClosed() throws {
        let t = try TopologyLoader.parse("""
            name: unbind-open-device
            description: an unbind of an open vfio-pci device blocks until the device is closed
            fabric:
              - root-port: rp0
                children:
                  - device: A
                    model: edu
            scenarios:
              - name: unbind-while-open
                description: blocked, finished at close, then bound again
                steps:
                  - vfio-bind: A
                  - vfio-open: A
                  - unbind: A
                  - vfio-close: A
                  - vfio-bind: A
                  - vfio-open: A
            """, file: "unbind-open-device.yaml")
        let kernels: [(String, KernelGeneration)] = [("5.10", .v5_10), ("6.1", .v6_1)]
        let requests = try kernels.map { k, _ -> RunRequest in
            var r = try BootSupport.request(t, kernel: k, scenario: t.scenarios[0])
            r.stepTimeout = 2
            return r
        }
        for ((kernel, generation), obs) in zip(kernels, try BootSupport.run(requests)) {
            XCTAssertEqual(obs.outcome, .completed, "\(kernel): \(obs.problem ?? "")")
            let predicted = Predictor.predict(t, kernel: generation).scenarios[0].steps.map(\.result.token)
            XCTAssertEqual(obs.steps.map(\.result), predicted, kernel)
            XCTAssertEqual(obs.steps.map(\.result), ["ok", "ok", "blocked", "ok", "ok", "ok"], kernel)
            XCTAssertTrue(obs.steps[3].detail?.contains("earlier blocked write") == true
                          && obs.steps[3].detail?.hasSuffix("finished: ok") == true, "\(kernel): \(obs.steps[3].detail ?? "")")
        }
        XCTAssertEqual(BootSupport.leftoverQEMU(), [])
    }
}
