import Foundation
import XCTest

/// `--debian-mirror`: kernels fetched from a mirror named on the command line, on a machine
/// whose own apt has no Debian sources (a non-Debian runner), Debian's keyring still checking.
final class MirrorCLITests: XCTestCase {
    let fm = FileManager.default

    /// The Debian archive this machine's apt names, read at run time (isolab's repository
    /// names no archive host): the first `URIs:` / `deb` URI ending in `/debian`.
    func machineMirror() throws -> String {
        var files = ((try? fm.contentsOfDirectory(atPath: "/etc/apt/sources.list.d")) ?? []).sorted().map { "/etc/apt/sources.list.d/" + $0 }
        files.append("/etc/apt/sources.list")
        for f in files {
            guard let text = try? String(contentsOfFile: f, encoding: .utf8) else { continue }
            for line in text.split(separator: "\n") {
                let words = line.split(whereSeparator: \.isWhitespace).map(String.init)
                let candidates = words.first == "URIs:" ? Array(words.dropFirst()) : (words.first == "deb" ? words.filter { $0.contains("://") } : [])
                if let uri = candidates.first(where: { $0.hasSuffix("/debian") || $0.hasSuffix("/debian/") }) { return uri }
            }
        }
        struct NoDebianArchive: Error, CustomStringConvertible {
            var description: String { "this machine's /etc/apt names no Debian archive (…/debian); the tests run on Debian 12" }
        }
        throw NoDebianArchive()
    }

    /// Runs isolab in a mount namespace where /etc/apt is an empty tmpfs: the machine's own
    /// Debian sources are hidden from isolab and from the apt it runs.
    func isolabWithoutMachineSources(_ args: [String], cwd: String) throws -> (status: Int32, out: String, err: String) {
        let binary = try CLISupport.binary().path
        return try CLISupport.run(["-m", "sh", "-c", "mount -t tmpfs tmpfs /etc/apt && exec \"$@\"", "sh", binary] + args,
                                  cwd: URL(fileURLWithPath: cwd), executable: URL(fileURLWithPath: "/usr/bin/unshare"))
    }

    func testAKernelIsFetchedFromTheMirrorWithTheMachinesSourcesHidden() throws {
        let mirror = try machineMirror()
        let dir = try CLISupport.workspace("mirror", fabrics: [])
        defer { try? fm.removeItem(atPath: dir) }
        let cache = dir + "/cache"

        // Without a mirror, nothing to fetch from: one error that names the option.
        let none = try isolabWithoutMachineSources(["images", "build", "--kernel", "5.10", "--cache-dir", cache], cwd: dir)
        XCTAssertNotEqual(none.status, 0)
        XCTAssertTrue(none.err.contains("no Debian archive URI found") && none.err.contains("--debian-mirror"), none.err)

        // A malformed mirror is bad input.
        let bad = try isolabWithoutMachineSources(["images", "build", "--kernel", "5.10", "--cache-dir", cache, "--debian-mirror", "ftp:/nowhere"], cwd: dir)
        XCTAssertEqual(bad.status, 2, bad.err)
        XCTAssertTrue(bad.err.contains("--debian-mirror") && bad.err.contains("accepted: http://"), bad.err)

        // The mirror: resolved, downloaded (sha256 from the signed index), unpacked, built.
        let ok = try isolabWithoutMachineSources(["images", "build", "--kernel", "5.10", "--cache-dir", cache, "--debian-mirror", mirror], cwd: dir)
        XCTAssertEqual(ok.status, 0, ok.err)
        XCTAssertTrue(ok.err.contains("resolved 5.10: linux-image-amd64"), ok.err)
        XCTAssertTrue(ok.err.contains("downloading"), "fetched, not found in a cache: \(ok.err)")
        XCTAssertTrue(ok.out.contains("gen 5.10"), ok.out)
        let sources = try String(contentsOfFile: try XCTUnwrap(findFile(named: "sources.list", under: cache)), encoding: .utf8)
        XCTAssertTrue(sources.contains(mirror.hasSuffix("/") ? String(mirror.dropLast()) : mirror), sources)
        XCTAssertTrue(sources.contains("signed-by=/usr/share/keyrings/debian-archive-keyring.gpg"), "the keyring check is kept: \(sources)")

        // The environment variable does the same as the option (--refresh: apt asks the mirror again).
        let env = try CLISupport.run(["-m", "sh", "-c", "mount -t tmpfs tmpfs /etc/apt && ISOLAB_DEBIAN_MIRROR=\"$0\" exec \"$@\"", mirror,
                                      try CLISupport.binary().path, "images", "build", "--kernel", "5.10", "--cache-dir", cache, "--refresh"],
                                     cwd: URL(fileURLWithPath: dir), executable: URL(fileURLWithPath: "/usr/bin/unshare"))
        XCTAssertEqual(env.status, 0, env.err)
        XCTAssertTrue(env.err.contains("resolved 5.10: linux-image-amd64"), env.err)
    }

    func findFile(named name: String, under root: String) -> String? {
        guard let e = fm.enumerator(atPath: root) else { return nil }
        for case let p as String in e where (p as NSString).lastPathComponent == name { return root + "/" + p }
        return nil
    }
}
