@testable import IsolabImages
import XCTest

/// A developer's own kernel (`--kernel-image` / `--modules`), played by an unpacked catalog kernel.
final class LocalKernelTests: XCTestCase {
    func testOwnKernelThroughTheCLIGetsItsGenerationFromTheBzImageAndBoots() throws {
        let kernel = try ConcurrentBuildTests.unpackedKernel("6.12")
        let dir = try TestSupport.temporaryDirectory("local")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // Lay it out as `make modules_install INSTALL_MOD_PATH=dir/mods` would.
        let mods = dir + "/mods/lib/modules"
        try FileManager.default.createDirectory(atPath: mods, withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(atPath: mods + "/" + kernel.kernelRelease, withDestinationPath: kernel.modulesDirectory)
        let isolab = try TestSupport.isolabExecutable()
        let base = [isolab, "images", "build", "--kernel-image", kernel.bzImage, "--modules", dir + "/mods",
                    "--cache-dir", dir + "/cache", "--vm-images", TestSupport.vmImages, "--format", "json"]
        let r = try Shell.run(base)
        XCTAssertEqual(r.status, 0, r.errorText)
        struct Row: Decodable { var directory: String; var metadata: ImageMetadata }
        let rows = try JSONCoding.decoder.decode([Row].self, from: r.stdout)
        XCTAssertEqual(rows.count, 1)
        let m = rows[0].metadata
        XCTAssertEqual(m.generation, "6.12")
        XCTAssertEqual(m.kernelRelease, kernel.kernelRelease)
        XCTAssertEqual(m.kernelID, "local-\(kernel.kernelRelease)")
        XCTAssertEqual(m.origin, .local)
        XCTAssertTrue(m.modules.contains("vfio_pci"))

        let (status2, output2) = try TestSupport.run(base + ["--generation", "6.12-dev"])
        XCTAssertEqual(status2, 0, output2)
        XCTAssertTrue(output2.contains("\"generation\" : \"6.12-dev\""), output2)

        let result = try GuestBoot(image: try GuestImage(directory: rows[0].directory)).run()
        XCTAssertEqual(result.reportedRelease, kernel.kernelRelease, result.tail())
    }

    func testModulesWithoutModulesDepAreAClearError() throws {
        let kernel = try ConcurrentBuildTests.unpackedKernel("6.1")
        let dir = try TestSupport.temporaryDirectory("nodep")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let builder = try TestSupport.builder(cache: ImageCache(root: dir + "/cache"))
        XCTAssertThrowsError(try builder.build(localKernel: LocalKernel(bzImage: kernel.bzImage, modules: dir))) { e in
            XCTAssertTrue("\(e)".contains("depmod -b"), "\(e)")
        }
        XCTAssertThrowsError(try builder.build(localKernel: LocalKernel(bzImage: "/bin/busybox", modules: dir))) { e in
            guard case .notABzImage? = e as? ImagesError else { return XCTFail("\(e)") }
        }
    }
}
