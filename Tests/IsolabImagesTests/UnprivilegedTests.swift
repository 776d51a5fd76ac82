@testable import IsolabImages
import XCTest

/// `isolab images build` as an ordinary user: apt runs with private dirs and every file
/// written lands in that user's cache.
final class UnprivilegedBuildTests: XCTestCase {
    static let user = "isolab-test"

    func testColdBuildAsAnOrdinaryUserWritesOnlyUnderItsCache() throws {
        guard getuid() == 0 else {
            // Already unprivileged: the other image tests run as this user. Switching users needs root.
            return XCTFail("run the test suite as root (ci/test does) so it can switch to \(Self.user)")
        }
        let (found, passwd) = try TestSupport.run(["getent", "passwd", Self.user])
        guard found == 0 else { return XCTFail("user \(Self.user) missing: run ci/bootstrap.sh as root") }
        let home = String(passwd.trimmingCharacters(in: .whitespacesAndNewlines).split(separator: ":", omittingEmptySubsequences: false)[5])
        let cacheDir = home + "/.cache/isolab"
        try TestSupport.run(["rm", "-rf", cacheDir])  // cold: apt update, download, unpack
        XCTAssertFalse(FileManager.default.fileExists(atPath: cacheDir))

        // A copy of the binary and recipe any user can read (the checkout may sit under /root).
        let shared = try TestSupport.temporaryDirectory("unprivileged")
        defer { try? FileManager.default.removeItem(atPath: shared) }
        try FileManager.default.copyItem(atPath: try TestSupport.isolabExecutable(), toPath: shared + "/isolab")
        try FileManager.default.copyItem(atPath: TestSupport.vmImages, toPath: shared + "/vm-images")
        try TestSupport.run(["chmod", "-R", "a+rX", shared])

        let marker = shared + "/marker"
        FileManager.default.createFile(atPath: marker, contents: nil)
        sleep(1)
        let (status, output) = try TestSupport.run([
            "runuser", "-u", Self.user, "--", "env", "-i", "HOME=\(home)", "USER=\(Self.user)", "LOGNAME=\(Self.user)",
            "PATH=/usr/local/bin:/usr/bin:/bin", shared + "/isolab", "images", "build", "--kernel", "6.1",
            "--vm-images", shared + "/vm-images", "--format", "json",
        ])
        XCTAssertEqual(status, 0, output)
        // It was a cold build: private apt indexes, the resolution and the .debs are in its cache.
        let aptLists = cacheDir + "/apt/bookworm+bookworm-security/state/lists"
        XCTAssertTrue((try? FileManager.default.contentsOfDirectory(atPath: aptLists))?.contains { $0.contains("InRelease") } ?? false,
                      "apt indexes in \(aptLists)")
        XCTAssertTrue(FileManager.default.fileExists(atPath: cacheDir + "/resolved/6.1.json"))
        let image = try XCTUnwrap(ImageCache(root: cacheDir).list(kernel: "6.1").first, output)
        XCTAssertEqual(image.metadata.packages.first?.name, "linux-image-amd64")

        // Everything the user created or changed since the marker (ctime cannot be back-dated
        // by dpkg-deb), outside the cache and the cache's own parent directories.
        let allowed = Set([home, home + "/.cache"])
        let (_, changed) = try TestSupport.run([
            "find", "/", "/tmp", "/var/tmp", "/dev/shm", "/run", "-xdev", "(", "-path", "/proc", "-o", "-path", "/sys", ")",
            "-prune", "-o", "-user", Self.user, "-cnewer", marker, "-print",
        ])
        let outside = changed.split(separator: "\n").map(String.init).filter {
            $0.hasPrefix("/") && !$0.hasPrefix(cacheDir) && !allowed.contains($0)
        }
        XCTAssertEqual(outside, [], "files written outside \(cacheDir)")
        let (_, owners) = try TestSupport.run(["find", cacheDir, "!", "-user", Self.user, "-print"])
        XCTAssertEqual(owners.trimmingCharacters(in: .whitespacesAndNewlines), "", "every cache file belongs to \(Self.user)")
    }
}
