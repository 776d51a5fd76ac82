@testable import IsolabImages
import XCTest

/// Content addressing, locking and the agent: what is rebuilt when, and what is shared.
final class ImageCacheTests: XCTestCase {
    /// Compiles a small dynamically linked agent that prints `message` and powers off.
    static func compileAgent(message: String, in dir: String) throws -> String {
        let src = dir + "/agent.c", out = dir + "/isolab-agent"
        try """
        #include <stdio.h>
        #include <unistd.h>
        #include <sys/reboot.h>
        int main(void) {
            printf("ISOLAB-AGENT: \(message) pid %d\\n", (int)getpid());
            fflush(stdout); sync(); reboot(RB_POWER_OFF); return 1;
        }
        """.write(toFile: src, atomically: true, encoding: .utf8)
        let (status, output) = try TestSupport.run(["cc", "-O1", "-o", out, src])
        guard status == 0 else { throw ImagesError.commandFailed(command: "cc", status: status, output: output) }
        return out
    }

    private let packages = [DebPackage(name: "linux-image-amd64", version: "1", sha256: String(repeating: "a", count: 64),
                                       size: 1, filename: "p")]
    private let kernel = CatalogKernel(id: "6.1", suite: "bookworm", package: "linux-image-amd64", generation: "6.1")

    func testImageKeyChangesWhenTheAgentChangesAndOnlyThen() throws {
        let dir = try TestSupport.temporaryDirectory("agents")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let a = try Self.compileAgent(message: "a", in: dir)
        let aCopy = dir + "/copy-of-a"
        try FileManager.default.copyItem(atPath: a, toPath: aCopy)
        let cache = ImageCache(root: dir + "/cache")
        let k1 = try TestSupport.builder(cache: cache).imageKey(kernel: kernel, packages: packages, agent: a)
        let k2 = try TestSupport.builder(cache: cache).imageKey(kernel: kernel, packages: packages, agent: aCopy)
        XCTAssertEqual(k1, k2, "same agent bytes at another path: same key")
        XCTAssertEqual(k1, try TestSupport.builder(cache: ImageCache(root: dir + "/other"))
            .imageKey(kernel: kernel, packages: packages, agent: a), "the key does not depend on the cache")
        let none = try TestSupport.builder(cache: cache).imageKey(kernel: kernel, packages: packages, agent: nil)
        XCTAssertNotEqual(k1, none)
        try FileManager.default.createDirectory(atPath: dir + "/b", withIntermediateDirectories: true)
        let b = try Self.compileAgent(message: "b", in: dir + "/b")
        XCTAssertNotEqual(try TestSupport.builder(cache: cache).imageKey(kernel: kernel, packages: packages, agent: b), k1)
        // Other inputs move the key too.
        var other = packages; other[0].sha256 = String(repeating: "b", count: 64)
        XCTAssertNotEqual(try TestSupport.builder(cache: cache).imageKey(kernel: kernel, packages: other, agent: a), k1)
    }

    func testRebuiltAgentYieldsANewImageAndNothingElseIsRebuilt() throws {
        let dir = try TestSupport.temporaryDirectory("agent-rebuild")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let builder = try TestSupport.builder()
        let kernel = try builder.catalog.kernel(id: "6.1")
        _ = try builder.build(kernel: kernel)  // kernel resolved, downloaded and unpacked
        let kernelsBefore = try FileManager.default.contentsOfDirectory(atPath: TestSupport.sharedCache.path("kernels")).sorted()
        let a = try Self.compileAgent(message: "first \(UUID().uuidString)", in: dir)
        var lines: [String] = []
        builder.log = { lines.append($0) }
        let imageA = try builder.build(kernel: kernel, agent: a)
        XCTAssertEqual(lines.filter { !$0.hasPrefix("building initramfs") }, [], "only the initramfs is built")
        XCTAssertEqual(lines.count, 1)
        _ = try Self.compileAgent(message: "second \(UUID().uuidString)", in: dir)  // rebuilt in place
        lines = []
        let imageB = try builder.build(kernel: kernel, agent: a)
        XCTAssertNotEqual(imageA.key, imageB.key)
        XCTAssertEqual(lines.count, 1)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: TestSupport.sharedCache.path("kernels")).sorted(), kernelsBefore)
        XCTAssertEqual(imageB.metadata.packages, imageA.metadata.packages)
        XCTAssertEqual(imageB.metadata.agentSha256, try Hashing.sha256(file: a))
        // Building again with the same agent reuses the image.
        lines = []
        XCTAssertEqual(try builder.build(kernel: kernel, agent: a).key, imageB.key)
        XCTAssertEqual(lines, [])
        try? FileManager.default.removeItem(atPath: imageA.directory)
        try? FileManager.default.removeItem(atPath: imageB.directory)
    }

    func testDynamicAgentBootsWithTheLibrariesLddLists() throws {
        let dir = try TestSupport.temporaryDirectory("agent-boot")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let agent = try Self.compileAgent(message: "hello", in: dir)
        XCTAssertTrue(try AgentBinary(path: agent).isDynamic())
        XCTAssertFalse(try AgentBinary(path: "/bin/busybox").isDynamic())
        let libs = try AgentBinary(path: agent).sharedLibraries()
        let builder = try TestSupport.builder()
        let image = try builder.build(kernel: try builder.catalog.kernel(id: "6.1"), agent: agent)
        defer { try? FileManager.default.removeItem(atPath: image.directory) }
        let (_, listing) = try TestSupport.run(["sh", "-c", "cpio -it < '\(image.initramfsPath)'"])
        XCTAssertTrue(listing.contains("isolab-agent"))
        for lib in libs { XCTAssertTrue(listing.contains(String(lib.dropFirst())), "\(lib) in the initramfs") }
        // The agent ships stripped (every initramfs byte is saved twice with a saved guest); it was built with symbols.
        XCTAssertEqual(try TestSupport.run(["sh", "-c", "nm '\(agent)' | grep -c main"]).0, 0, "the test's agent has symbols")
        let (_, nm) = try TestSupport.run(["sh", "-c", "cd '\(dir)' && cpio -i --quiet --to-stdout isolab-agent < '\(image.initramfsPath)' > shipped && nm shipped 2>&1"])
        XCTAssertTrue(nm.contains("shipped: no symbols"), "symbols left in the shipped agent: \(nm.prefix(200))")
        let result = try GuestBoot(image: image).run()
        XCTAssertNotNil(result.secondsToMarker, result.tail())
        // init runs the agent as its child (a kernel BUG that kills a task must never kill init).
        XCTAssertTrue(result.console.contains("ISOLAB-AGENT: hello pid "), "the agent ran:\n\(result.tail())")
        XCTAssertFalse(result.console.contains("ISOLAB-AGENT: hello pid 1\n"), "the agent must not be pid 1:\n\(result.tail())")
    }

    func testPinnedVersionTheArchiveLacksNamesTheVersionsItHas() throws {
        let resolver = KernelResolver(cache: TestSupport.sharedCache)
        let pinned = CatalogKernel(id: "pin-test", suite: "bookworm", package: "linux-image-amd64", generation: "6.1",
                                   version: "6.1.1-1")
        XCTAssertThrowsError(try resolver.resolve(pinned)) { e in
            guard case let .versionNotAvailable(package, _, wanted, available)? = e as? ImagesError else { return XCTFail("\(e)") }
            XCTAssertEqual(package, "linux-image-amd64"); XCTAssertEqual(wanted, "6.1.1-1")
            XCTAssertGreaterThanOrEqual(available.count, 2, "bookworm and bookworm-security versions: \(available)")
            XCTAssertTrue("\(e)".contains(available.last!))
        }
        XCTAssertNil(resolver.remembered(pinned))
    }
}
