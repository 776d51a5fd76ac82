import Foundation
import IsolabModel
import IsolabTopology
import XCTest

/// `selftest:` steps: a kernel selftest by name or a developer's executable by path, with
/// devices, arguments, environment and a timeout; every wrong field one located error.
final class SelftestStepTests: XCTestCase {
    private func topology(_ step: String, file: String = "t.yaml") throws -> Topology {
        try TopologyLoader.parse("""
        name: t
        fabric:
          - root-port: rp0
            children:
              - device: A
                model: edu
        scenarios:
          - name: s
            steps:
              - vfio-bind: A
              - \(step)
        """, file: file)
    }

    func testAKernelSelftestWithEverything() throws {
        let t = try topology("selftest: {program: vfio_dma_mapping_test, devices: [A], args: [-v, vfio_type1v2_iommu_anonymous], env: {VFIO_SELFTESTS_BDF: x}, timeout: 600}")
        guard case .selftest(let run) = t.scenarios[0].steps[1].action else { return XCTFail("not a selftest step") }
        XCTAssertEqual(run.program, "vfio_dma_mapping_test")
        XCTAssertEqual(run.source, .kernelSelftest)
        XCTAssertEqual(run.devices, ["A"])
        XCTAssertEqual(run.args, ["-v", "vfio_type1v2_iommu_anonymous"])
        XCTAssertEqual(run.env, ["VFIO_SELFTESTS_BDF": "x"])
        XCTAssertEqual(run.timeout, 600)
        XCTAssertEqual(t.scenarios[0].steps[1].action.summary, "selftest vfio_dma_mapping_test -v vfio_type1v2_iommu_anonymous A")
    }

    func testADevelopersProgramByPathRelativeToTheFile() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("isolab-prog-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: dir.appendingPathComponent("bin"), withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let prog = dir.appendingPathComponent("bin/my_test").path
        FileManager.default.createFile(atPath: prog, contents: Data("#!/bin/sh\n".utf8), attributes: [.posixPermissions: 0o755])
        let t = try topology("selftest: {program: bin/my_test, devices: A}", file: dir.appendingPathComponent("t.yaml").path)
        guard case .selftest(let run) = t.scenarios[0].steps[1].action else { return XCTFail("not a selftest step") }
        XCTAssertEqual(run.program, "my_test")
        XCTAssertEqual(run.source, .file(prog))
        XCTAssertEqual(run.timeout, ProgramRun.defaultTimeout)
    }

    func testEachMistakeIsOneLocatedError() {
        let cases: [(String, String)] = [
            ("selftest: {program: vfio_nonsense_test, devices: [A]}", "vfio_dma_mapping_test"),
            ("selftest: {devices: [A]}", "missing required key 'program'"),
            ("selftest: {program: vfio_pci_device_test, devices: [B]}", "unknown device 'B'"),
            ("selftest: {program: vfio_pci_device_test, devices: [rp0]}", "'rp0' is not a device"),
            ("selftest: {program: vfio_pci_device_test, env: {1X: y}}", "'1X' is not a variable name"),
            ("selftest: {program: vfio_pci_device_test, timeout: 0}", "timeout"),
            ("selftest: {program: ./no/such/file}", "is not an executable file"),
            ("selftest: {program: vfio_pci_device_test, color: red}", "color"),
        ]
        for (step, expect) in cases {
            do {
                _ = try topology(step)
                XCTFail("accepted: \(step)")
            } catch let e as TopologyError {
                XCTAssertTrue(e.description.contains(expect), "\(step): expected '\(expect)' in \(e)")
                XCTAssertEqual(e.line, 11, step)
                XCTAssertFalse(e.description.contains("\n"))
            } catch {
                XCTFail("\(step): \(error)")
            }
        }
    }
}
