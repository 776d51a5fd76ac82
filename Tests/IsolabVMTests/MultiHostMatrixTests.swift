import Foundation
import XCTest

/// `isolab matrix` with several `--connect` URIs: the fabrics are spread over the connections
/// (whole fabrics, so each one's scenarios can share a saved boot), and every observation says
/// which connection ran it. The second host is a real libvirt daemon of its own.
final class MultiHostMatrixTests: XCTestCase {
    func testMatrixSpreadsFabricsOverTheEmbeddedDriverAndADaemon() throws {
        let user = "isolab-test"
        guard getuid() == 0 else { return XCTFail("run the tests as root (ci/test does) so they can switch to \(user)") }
        guard let pw = getpwnam(user) else { return XCTFail("user \(user) missing: run ci/bootstrap.sh") }
        let home = String(cString: pw.pointee.pw_dir)
        // The daemon runs its QEMU as isolab-test; so does isolab here, so that both read the
        // images and run folders in that user's own cache and state folders.
        let daemon = try PrivateLibvirtd.start()
        defer { daemon.stop() }
        let fm = FileManager.default
        let shared = fm.temporaryDirectory.appendingPathComponent("isolab-multihost-\(getpid())").path
        defer { try? fm.removeItem(atPath: shared) }
        try fm.createDirectory(atPath: shared + "/topologies", withIntermediateDirectories: true)
        let root = URL(fileURLWithPath: BootSupport.repository)
        let b = Bundle(for: MultiHostMatrixTests.self).bundleURL
        let binary = try XCTUnwrap([b, b.deletingLastPathComponent()].map { $0.appendingPathComponent("isolab") }
            .first { fm.isExecutableFile(atPath: $0.path) }, "isolab binary not built: run swift build first")
        try fm.copyItem(atPath: binary.path, toPath: shared + "/isolab")
        try fm.copyItem(atPath: root.appendingPathComponent("vm-images").path, toPath: shared + "/vm-images")
        for name in ["nvme-alone", "switch-no-acs"] {
            try fm.copyItem(atPath: root.appendingPathComponent("topologies/\(name).yaml").path, toPath: shared + "/topologies/\(name).yaml")
        }
        try fm.copyItem(atPath: root.appendingPathComponent(".build-agent/release/isolab-agent").path, toPath: shared + "/isolab-agent")
        try "fabrics: [topologies/*.yaml]\nkernels: [\"6.1\"]\niommus: [intel]\n".write(toFile: shared + "/matrix.yaml", atomically: true, encoding: .utf8)
        try run("/bin/chmod", ["-R", "a+rwX", shared])

        let embedded = "qemu:///embed?root=\(home)/.local/state/isolab/libvirt"
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/sbin/runuser")
        p.arguments = ["-u", user, "--", "env", "-i", "HOME=\(home)", "USER=\(user)", "LOGNAME=\(user)",
                       "PATH=/usr/local/bin:/usr/bin:/bin", "ISOLAB_AGENT=\(shared)/isolab-agent",
                       shared + "/isolab", "matrix", "matrix.yaml", "--connect", embedded, "--connect", daemon.uri,
                       "--jobs", "1", "--output", shared + "/out"]
        p.currentDirectoryURL = URL(fileURLWithPath: shared)
        let err = Pipe()
        p.standardError = err
        p.standardOutput = FileHandle.nullDevice
        try p.run()
        let e = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        XCTAssertEqual(p.terminationStatus, 0, e)

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

    private func run(_ tool: String, _ args: [String]) throws {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: tool)
        p.arguments = args
        try p.run()
        p.waitUntilExit()
    }
}
