@testable import IsolabImages
import XCTest

/// Ctrl-C during `isolab images build` ends the build with what it runs and leaves nothing
/// half-built in the cache.
final class CancellationTests: XCTestCase {
    func testCtrlCDuringAnImageBuildExits130AndPublishesNothing() throws {
        let kernel = try ConcurrentBuildTests.unpackedKernel("6.1")
        let dir = try TestSupport.temporaryDirectory("cancel")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let mods = dir + "/mods/lib/modules"
        try FileManager.default.createDirectory(atPath: mods, withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(atPath: mods + "/" + kernel.kernelRelease, withDestinationPath: kernel.modulesDirectory)
        let p = Process()
        p.executableURL = URL(fileURLWithPath: try TestSupport.isolabExecutable())
        p.arguments = ["images", "build", "--kernel-image", kernel.bzImage, "--modules", dir + "/mods",
                       "--cache-dir", dir + "/cache", "--vm-images", TestSupport.vmImages]
        let err = Pipe()
        p.standardError = err
        p.standardOutput = FileHandle.nullDevice
        try p.run()
        // Interrupt as soon as the build says it started, as a user's Ctrl-C would.
        var seen = ""
        while !seen.contains("building initramfs") {
            let chunk = err.fileHandleForReading.availableData
            if chunk.isEmpty { break }
            seen += String(decoding: chunk, as: UTF8.self)
        }
        p.interrupt()
        seen += String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        XCTAssertEqual(p.terminationStatus, 130, seen)
        XCTAssertTrue(seen.contains("isolab: interrupted: cancelled"), seen)
        XCTAssertEqual(ImageCache(root: dir + "/cache").list().count, 0, "no image was published")
        let tmp = (try? FileManager.default.contentsOfDirectory(atPath: dir + "/cache/tmp")) ?? []
        XCTAssertEqual(tmp, [], "the half-built entry was removed")
    }
}
