import Foundation
import XCTest

/// `isolab matrix` with several `--connect` URIs: the fabrics are spread over the connections
/// (whole fabrics, so each one's scenarios can share a saved boot), and every observation says
/// which connection ran it. The second host is a real libvirt daemon of its own.
final class MultiHostMatrixTests: XCTestCase {
    func testMatrixSpreadsFabricsOverTheEmbeddedDriverAndADaemon() throws {
        // The daemon runs its QEMU as isolab-test; so does isolab here, so that both read the
        // images and run folders in that user's own cache and state folders.
        let daemon = try PrivateLibvirtd.start()
        defer { daemon.stop() }
        let run = try DaemonUserRun(label: "multihost", topologies: ["nvme-alone", "switch-no-acs"])
        defer { run.remove() }
        try run.write("fabrics: [topologies/*.yaml]\nkernels: [\"6.1\"]\niommus: [intel]\n", to: "matrix.yaml")
        let result = try run.isolab(["matrix", "matrix.yaml", "--connect", run.embeddedURI, "--connect", daemon.uri,
                                     "--jobs", "1", "--output", run.folder + "/out"])
        XCTAssertEqual(result.status, 0, result.error)
        let shared = run.folder, home = run.home

        let doc = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: shared + "/out/results.json"))) as? [String: Any]
        let runs = (doc?["runs"] as? [[String: Any]]) ?? []
        var connectionOf: [String: Set<String>] = [:]
        for run in runs {
            for o in (run["observations"] as? [[String: Any]]) ?? [] {
                XCTAssertEqual(o["outcome"] as? String, "completed", "\(run["topology"] ?? "")")
                connectionOf[run["topology"] as? String ?? "", default: []].insert(o["connection"] as? String ?? "none")
            }
            let kinds = ((run["verdicts"] as? [[String: Any]]) ?? []).compactMap { $0["kind"] as? String }
            XCTAssertFalse(kinds.contains("mismatch") || kinds.contains("infrastructure"), "\(run["topology"] ?? ""): \(kinds)")
        }
        XCTAssertEqual(Set(connectionOf.keys), ["nvme-alone", "switch-no-acs"])
        let used = connectionOf.values.reduce(into: Set<String>()) { $0.formUnion($1) }
        XCTAssertEqual(used.count, 2, "both connections ran a fabric: \(connectionOf)")
        XCTAssertTrue(used.contains { $0.hasPrefix("qemu:///embed?root=") }, "\(used)")
        XCTAssertTrue(used.contains { $0.hasSuffix("session?socket=" + daemon.directory + "/run/libvirt/libvirt-sock") }, "\(used)")
        XCTAssertTrue(connectionOf.values.allSatisfy { $0.count == 1 }, "a fabric stays on one connection: \(connectionOf)")
        XCTAssertEqual(VMTestSupport.runningQEMUs().filter { $0.contains(home) }, [])
    }
}
