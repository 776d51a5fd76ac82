@testable import IsolabImages
import XCTest

final class DebianSourcesTests: XCTestCase {
    private func fakeRoot(sources: String?, list: String?, extra: [String: String] = [:]) throws -> String {
        let root = NSTemporaryDirectory() + "isolab-sources-\(UUID().uuidString)"
        let parts = root + "/etc/apt/sources.list.d"
        try FileManager.default.createDirectory(atPath: parts, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(atPath: root) }
        if let sources { try sources.write(toFile: parts + "/debian.sources", atomically: true, encoding: .utf8) }
        if let list { try list.write(toFile: root + "/etc/apt/sources.list", atomically: true, encoding: .utf8) }
        for (name, text) in extra { try text.write(toFile: parts + "/" + name, atomically: true, encoding: .utf8) }
        return root
    }

    func testDeb822EntriesGiveArchiveAndSecurityURIsAndSkipThirdParty() throws {
        let root = try fakeRoot(sources: """
        Types: deb
        URIs: http://mirror.example/debian/
        Suites: bookworm bookworm-updates
        Components: main
        Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

        Types: deb
        # a comment line
        URIs: http://mirror.example/debian-security
        Suites: bookworm-security
        Components: main
        Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
        """, list: "deb https://vendor.example/apt cloud-sdk main\n", extra: [
            "vendor.sources": "Types: deb\nURIs: https://vendor.example/node\nSuites: nodistro\nSigned-By: /usr/share/keyrings/vendor.gpg\n",
            "old.list.disabled": "deb http://wrong.example/debian bookworm main\n",
        ])
        let s = try DebianSources.fromSystem(root: root)
        XCTAssertEqual(s, DebianSources(archive: "http://mirror.example/debian", security: "http://mirror.example/debian-security"))
        XCTAssertEqual(s.sourcesList(suites: ["trixie", "trixie-security"]), """
        deb [arch=amd64 signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://mirror.example/debian trixie main
        deb [arch=amd64 signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://mirror.example/debian-security trixie-security main

        """)
        XCTAssertEqual(s.sourcesList(suites: ["trixie-backports"]),
                       "deb [arch=amd64 signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://mirror.example/debian trixie-backports main\n")
    }

    func testOneLineSourcesListWithOptions() throws {
        let root = try fakeRoot(sources: nil, list: """
        # deb http://commented.example/debian bookworm main
        deb [arch=amd64] http://m.example/debian bookworm main contrib
        deb-src http://m.example/debian bookworm main
        deb http://m.example/debian-security bookworm-security main
        """)
        let s = try DebianSources.fromSystem(root: root)
        XCTAssertEqual(s.archive, "http://m.example/debian")
        XCTAssertEqual(s.security, "http://m.example/debian-security")
        XCTAssertEqual(s.keyring, DebianSources.defaultKeyring)
    }

    func testDisabledEntryAndNoDebianEntryIsAClearError() throws {
        let root = try fakeRoot(sources: "Enabled: no\nTypes: deb\nURIs: http://m.example/debian\nSuites: bookworm\n", list: nil)
        XCTAssertThrowsError(try DebianSources.fromSystem(root: root)) { e in
            guard case .noDebianSources? = e as? ImagesError else { return XCTFail("\(e)") }
            XCTAssertTrue("\(e)".contains("sources.list.d"))
        }
    }

    func testThisMachineHasADebianArchiveConfigured() throws {
        let s = try DebianSources.fromSystem()
        XCTAssertTrue(s.archive.hasPrefix("http"))
        XCTAssertNotNil(s.security)
    }

    func testExactLinuxDependenciesOfAMetaPackage() {
        let deps = AptArchive.exactLinuxDependencies(
            "dracut | initramfs-tools (>= 0.120+deb8u2), linux-base-7.3.4+deb13-amd64 (= 7.3.4-1~bpo13+1), kmod, linux-base (>= 4.3~)")
        XCTAssertEqual(deps.map(\.0), ["linux-base-7.3.4+deb13-amd64"])
        XCTAssertEqual(deps.map(\.1), ["7.3.4-1~bpo13+1"])
    }
}
