@testable import IsolabImages
import XCTest

/// Catalog images carry the PVH `vmlinux` of their bzImage, and a developer's bare vmlinux
/// builds an image of its own.
final class PVHImageTests: XCTestCase {
    /// 6.1's bzImage has an xz payload, 6.12's a zstd one.
    func testCatalogImagesCarryTheirBzImagesPVHVmlinux() throws {
        let builder = try TestSupport.builder()
        for (id, compression) in [("6.1", PayloadCompression.xz), ("6.12", .zstd)] {
            let image = try builder.build(kernel: try builder.catalog.kernel(id: id))
            let vm = try XCTUnwrap(image.metadata.vmlinux, "\(id): \(image.metadata.pvhUnavailable ?? "")")
            let vmlinux = try XCTUnwrap(image.vmlinuxPath)
            let bzImage = try XCTUnwrap(image.bzImagePath)
            XCTAssertEqual(vm.compression, compression, id)
            XCTAssertEqual(try ELFKernel(path: vmlinux).pvhEntry, vm.pvhEntry, id)
            XCTAssertEqual(try Hashing.sha256(file: vmlinux), vm.sha256, id)
            let payload = try BzImagePayload(bytes: [UInt8](try Data(contentsOf: URL(fileURLWithPath: bzImage))))
            XCTAssertEqual(Int(ImageCache.size(vmlinux)), payload.uncompressedSize, id)
            XCTAssertEqual(vm.bytes, payload.uncompressedSize, id)
            XCTAssertEqual(image.bootKernel().path, vmlinux, id)
            XCTAssertEqual(image.bootKernel(.bzImage), BootKernel(path: bzImage, boot: .bzImage, requested: .bzImage, fallback: nil))
            XCTAssertEqual(image.kernelPath, bzImage, id)
            // The initramfs is an uncompressed newc cpio: nothing for the kernel to inflate.
            let magic = try FileHandle(forReadingFrom: URL(fileURLWithPath: image.initramfsPath)).read(upToCount: 6)
            XCTAssertEqual(magic.map { String(decoding: $0, as: UTF8.self) }, "070701", id)
        }
    }

    func testBareVmlinuxWithPVHNoteBuildsAPVHOnlyImageAndOneWithoutIsRefused() throws {
        let kernel = try ConcurrentBuildTests.unpackedKernel("6.1")
        let dir = try TestSupport.temporaryDirectory("local-vmlinux")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let vmlinux = dir + "/vmlinux"
        try BzImagePayload.extractVmlinux(bzImage: kernel.bzImage, to: vmlinux)
        let builder = try TestSupport.builder(cache: ImageCache(root: dir + "/cache"))
        let image = try builder.build(localKernel: LocalKernel(bzImage: vmlinux, modules: kernel.root))
        XCTAssertEqual(image.kernelRelease, kernel.kernelRelease)
        XCTAssertEqual(image.generation, "6.1")
        XCTAssertNil(image.bzImagePath)
        XCTAssertNil(image.metadata.vmlinux?.compression)
        XCTAssertEqual(image.metadata.kernelSha256, try Hashing.sha256(file: vmlinux))
        let fallback = image.bootKernel(.bzImage)
        XCTAssertEqual(fallback.boot, .pvh)
        XCTAssertEqual(fallback.path, image.vmlinuxPath)
        XCTAssertNotNil(fallback.fallback)

        // Strip the PVH note's type (18 → 0x7f) in the copy: an ELF that QEMU could not start.
        var data = try Data(contentsOf: URL(fileURLWithPath: vmlinux))
        let typeAndName = Data([18, 0, 0, 0] + Array("Xen\0".utf8))
        let found = try XCTUnwrap(data.range(of: typeAndName))
        XCTAssertEqual(data[found.lowerBound - 8], 4, "namesz of the note")
        data[found.lowerBound] = 0x7f
        XCTAssertNil(data.range(of: typeAndName))
        let plain = dir + "/vmlinux-nopvh"
        try data.write(to: URL(fileURLWithPath: plain))
        XCTAssertThrowsError(try builder.build(localKernel: LocalKernel(bzImage: plain, modules: kernel.root))) { e in
            guard case .notABzImage(_, let problem)? = e as? ImagesError else { return XCTFail("\(e)") }
            XCTAssertTrue(problem.contains("PVH") && problem.contains("bzImage"), problem)
        }
    }
}
