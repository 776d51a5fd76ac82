@testable import IsolabImages
import XCTest

final class ImageListAndPruneTests: XCTestCase {
    func testListShowsNewestFirstAndPruneKeepsTheNewestPerKernel() throws {
        let kernel = try ConcurrentBuildTests.unpackedKernel("6.1")
        let dir = try TestSupport.temporaryDirectory("prune")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let cache = ImageCache(root: dir + "/cache")
        let builder = try TestSupport.builder(cache: cache)
        let local = LocalKernel(bzImage: kernel.bzImage, modules: kernel.root)
        let a = try ImageCacheTests.compileAgent(message: "a", in: dir)
        let first = try builder.build(localKernel: local, agent: a)
        _ = try ImageCacheTests.compileAgent(message: "b", in: dir)
        let second = try builder.build(localKernel: local, agent: a)
        XCTAssertEqual(cache.list().map(\.key), [second.key, first.key])

        let isolab = try TestSupport.isolabExecutable()
        let (s1, out1) = try TestSupport.run([isolab, "images", "prune", "--cache-dir", cache.root, "--keep", "1"])
        XCTAssertEqual(s1, 0, out1)
        XCTAssertTrue(out1.contains("removed image local-\(kernel.kernelRelease) \(first.key.prefix(12))"), out1)
        XCTAssertEqual(cache.list().map(\.key), [second.key])

        let r = try Shell.run([isolab, "images", "list", "--cache-dir", cache.root, "--format", "json"])
        XCTAssertEqual(r.status, 0)
        XCTAssertTrue(r.text.contains(second.key))

        let (s2, out2) = try TestSupport.run([isolab, "images", "prune", "--cache-dir", cache.root, "--keep", "0",
                                              "--kernel", "local-\(kernel.kernelRelease)"])
        XCTAssertEqual(s2, 0, out2)
        XCTAssertEqual(cache.list().count, 0)
    }

    func testUnknownKernelOnTheCommandLineIsOneClearLine() throws {
        let isolab = try TestSupport.isolabExecutable()
        let (status, out) = try TestSupport.run([isolab, "images", "build", "--kernel", "4.19",
                                                 "--vm-images", TestSupport.vmImages, "--cache-dir", NSTemporaryDirectory() + "isolab-none"])
        XCTAssertEqual(status, 2)
        XCTAssertEqual(out.trimmingCharacters(in: .whitespacesAndNewlines),
                       "isolab: unknown kernel '4.19'; the catalog has: 5.10, 6.1, 6.12, 7.3, 6.12-bpo12, 6.16, 6.17, 6.18, 7.2, 6.12-iommufd, 7.3-iommufd")
    }
}
