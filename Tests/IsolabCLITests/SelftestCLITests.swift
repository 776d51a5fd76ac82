import Foundation
import XCTest

/// The kernel's own VFIO selftests in real guests: built from Debian's linux-source-7.3
/// (cached), shipped in the boot's initramfs, run on the catalog's selftest fabrics on stock
/// 7.3 (no IOMMUFD) and on 7.3-iommufd, every TAP result judged against the model.
final class SelftestCLITests: XCTestCase {
    let fm = FileManager.default

    private func workspace(_ fabrics: [String]) throws -> String {
        let dir = fm.temporaryDirectory.appendingPathComponent("isolab-selftests-\(UUID().uuidString.prefix(8))").path
        try fm.createDirectory(atPath: dir + "/topologies", withIntermediateDirectories: true)
        for link in ["vm-images", ".build-agent"] {
            try fm.createSymbolicLink(atPath: dir + "/" + link, withDestinationPath: CLITests.root.appendingPathComponent(link).path)
        }
        for name in fabrics {
            try fm.copyItem(atPath: CLITests.root.appendingPathComponent("topologies/\(name).yaml").path, toPath: dir + "/topologies/\(name).yaml")
        }
        return dir
    }

    /// Runs the matrix and returns each run's verdicts and observations by "fabric kernel".
    private func matrix(_ dir: String, kernels: [String], emulator: String) throws -> [[String: Any]] {
        let list = kernels.map { "\"\($0)\"" }.joined(separator: ", ")
        try "fabrics: [topologies/*.yaml]\nkernels: [\(list)]\niommus: [intel]\nemulators: [\"\(emulator)\"]\n"
            .write(toFile: dir + "/matrix.yaml", atomically: true, encoding: .utf8)
        let r = try CLISupport.run(["matrix", "matrix.yaml", "--output", "out"], cwd: URL(fileURLWithPath: dir))
        XCTAssertEqual(r.status, 0, r.out + r.err)
        let doc = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir + "/out/results.json"))) as? [String: Any] ?? [:]
        return doc["runs"] as? [[String: Any]] ?? []
    }

    private func verdicts(_ run: [String: Any], subject: String) -> [[String: Any]] {
        ((run["verdicts"] as? [[String: Any]]) ?? []).filter { $0["subject"] as? String == subject }
    }

    func testVFIOSelftestsOnAnEduAreWhatTheModelPredicts() throws {
        let dir = try workspace(["selftests-edu"])
        defer { try? fm.removeItem(atPath: dir) }
        let runs = try matrix(dir, kernels: ["7.3", "7.3-iommufd"], emulator: "7.2")
        XCTAssertEqual(runs.count, 2)
        for run in runs {
            let kernel = run["kernel"] as? String ?? "?"
            let all = (run["verdicts"] as? [[String: Any]]) ?? []
            XCTAssertEqual(Set(all.compactMap { $0["kind"] as? String }), ["match"], kernel)
            let subtests = verdicts(run, subject: "subtest")
            let observed = { (status: String) in subtests.filter { $0["observed"] as? String == status }.compactMap { $0["title"] as? String } }
            // Every program of the suite ran: 7 steps with a TAP run or a prelude.
            XCTAssertGreaterThanOrEqual(subtests.count, 60, kernel)
            if kernel == "7.3" {
                // No IOMMUFD: the type1 container modes pass, every iommufd mode fails at open.
                XCTAssertTrue(observed("pass").allSatisfy { $0.contains("vfio_type1") }, "\(observed("pass"))")
                XCTAssertTrue(observed("fail").contains { $0.contains("iommufd_compat_type1v2") }, kernel)
                XCTAssertTrue(observed("pass").contains("vfio_dma_mapping_test vfio_dma_map_limit_test.vfio_type1v2_iommu.overflow"))
            } else {
                // Every mode runs; only the non-viable group's opens fail.
                XCTAssertTrue(observed("pass").contains("vfio_dma_mapping_test vfio_dma_mapping_test.iommufd_anonymous.dma_map_unmap"))
                XCTAssertTrue(observed("pass").contains("vfio_pci_device_test vfio_pci_irq_test.msi.enable_trigger_disable"))
                XCTAssertTrue(observed("skip").contains("vfio_pci_device_test vfio_pci_irq_test.msix.enable_trigger_disable"))
                XCTAssertEqual(Set(subtests.filter { $0["observed"] as? String == "fail" }.compactMap { $0["scenario"] as? String }), ["not-viable-group"])
            }
            // The hugetlb variants SKIP (no huge pages reserved), with the program's own reason.
            let huge = subtests.filter { ($0["title"] as? String ?? "").contains("hugetlb") }
            XCTAssertFalse(huge.isEmpty)
            if kernel != "7.3" {
                XCTAssertTrue(huge.allSatisfy { $0["observed"] as? String == "skip" && ($0["detail"] as? String ?? "").contains("mmap() failed") }, "\(huge)")
            }
            // The program's output comes back whole with its exit status.
            let steps = ((run["observations"] as? [[String: Any]]) ?? []).flatMap { ($0["steps"] as? [[String: Any]]) ?? [] }
            let programs = steps.compactMap { $0["program"] as? [String: Any] }
            XCTAssertEqual(programs.count, 8, kernel)
            XCTAssertTrue(programs.allSatisfy { ($0["argv"] as? [String] ?? []).first?.hasPrefix("/isolab/programs/") == true })
            XCTAssertTrue(programs.contains { ($0["output"] as? String ?? "").contains("# Totals:") })
        }
        XCTAssertEqual(CLISupport.qemuCount(), 0)
    }
}
