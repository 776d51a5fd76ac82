@testable import IsolabImages
import XCTest

/// Two builders of one key at once (threads or processes) leave one intact image.
final class ConcurrentBuildTests: XCTestCase {
    /// A catalog kernel unpacked in the shared cache, used as a developer's kernel (no apt).
    static func unpackedKernel(_ id: String) throws -> UnpackedKernel {
        let builder = try TestSupport.builder()
        let resolved = try builder.resolver.resolve(try builder.catalog.kernel(id: id))
        return try builder.resolver.unpack(resolved)
    }

    private func assertOneIntactImage(in cache: ImageCache, file: StaticString = #filePath, line: UInt = #line) throws {
        let images = try FileManager.default.contentsOfDirectory(atPath: cache.path("images"))
        XCTAssertEqual(images.count, 1, "\(images)", file: file, line: line)
        let leftovers = (try? FileManager.default.contentsOfDirectory(atPath: cache.path("tmp"))) ?? []
        XCTAssertEqual(leftovers, [], "temporary build directories left behind", file: file, line: line)
        let image = try GuestImage(directory: cache.path("images", images[0]))
        XCTAssertEqual(Int(ImageCache.size(image.initramfsPath)), image.metadata.initramfsBytes, file: file, line: line)
        let (status, listing) = try TestSupport.run(["sh", "-c", "cpio -it < '\(image.initramfsPath)'"])
        XCTAssertEqual(status, 0, listing, file: file, line: line)
        XCTAssertTrue(listing.split(separator: "\n").contains("init"), file: file, line: line)
        XCTAssertEqual(try Hashing.sha256(file: image.kernelPath), image.metadata.kernelSha256, file: file, line: line)
    }

    func testTwoThreadsBuildingOneKeyGiveOneIntactImage() throws {
        let kernel = try Self.unpackedKernel("6.1")
        let dir = try TestSupport.temporaryDirectory("threads")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let cache = ImageCache(root: dir)
        let local = LocalKernel(bzImage: kernel.bzImage, modules: kernel.root)
        let built = LockedCounter()
        var keys = [String?](repeating: nil, count: 2)
        let lock = NSLock()
        DispatchQueue.concurrentPerform(iterations: 2) { i in
            do {
                let b = try ImageBuilder(cache: cache, recipe: Recipe(directory: TestSupport.vmImages))
                b.log = { if $0.hasPrefix("building") { built.increment() } }
                let key = try b.build(localKernel: local).key
                lock.lock(); keys[i] = key; lock.unlock()
            } catch { XCTFail("\(error)") }
        }
        XCTAssertNotNil(keys[0]); XCTAssertEqual(keys[0], keys[1])
        XCTAssertEqual(built.value, 1, "the second builder waited for the first and reused its image")
        try assertOneIntactImage(in: cache)
    }

    func testTwoProcessesBuildingOneKeyGiveOneIntactImage() throws {
        let kernel = try Self.unpackedKernel("6.1")
        let isolab = try TestSupport.isolabExecutable()
        let dir = try TestSupport.temporaryDirectory("processes")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let args = [isolab, "images", "build", "--kernel-image", kernel.bzImage, "--modules", kernel.root,
                    "--cache-dir", dir + "/cache", "--vm-images", TestSupport.vmImages, "--format", "json"]
        var processes: [(Process, Pipe)] = []
        for _ in 0..<2 {
            let p = Process(), pipe = Pipe()
            p.executableURL = URL(fileURLWithPath: isolab)
            p.arguments = Array(args.dropFirst())
            p.standardOutput = pipe; p.standardError = pipe
            try p.run()
            processes.append((p, pipe))
        }
        var outputs: [String] = []
        for (p, pipe) in processes {
            let data = pipe.fileHandleForReading.readDataToEndOfFile()
            p.waitUntilExit()
            let text = String(decoding: data, as: UTF8.self)
            XCTAssertEqual(p.terminationStatus, 0, text)
            outputs.append(text)
        }
        XCTAssertEqual(outputs.joined().components(separatedBy: "building initramfs").count - 1, 1, outputs.joined())
        try assertOneIntactImage(in: ImageCache(root: dir + "/cache"))
    }
}

final class LockedCounter: @unchecked Sendable {
    private let lock = NSLock()
    private var n = 0
    func increment() { lock.lock(); n += 1; lock.unlock() }
    var value: Int { lock.lock(); defer { lock.unlock() }; return n }
}
