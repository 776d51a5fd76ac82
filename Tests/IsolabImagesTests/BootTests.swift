@testable import IsolabImages
import XCTest

/// Builds each catalog kernel's image (downloading it on a cold cache) and boots it under
/// TCG QEMU to the init's ready marker, loading the guest's modules with `modprobe`.
final class CatalogKernelBootTests: XCTestCase {
    /// Builds and boots one catalog kernel; asserts the marker, the release and modprobe.
    func bootCatalogKernel(_ id: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let builder = try TestSupport.builder()
        let kernel = try builder.catalog.kernel(id: id)
        let image = try builder.build(kernel: kernel)
        let m = image.metadata
        XCTAssertEqual(m.generation, id, file: file, line: line)
        XCTAssertFalse(m.packages.isEmpty, file: file, line: line)
        for p in m.packages { XCTAssertEqual(p.sha256.count, 64, file: file, line: line) }
        // The header's version string names the same release as the modules directory.
        XCTAssertEqual(try BzImage(path: image.kernelPath).kernelRelease, image.kernelRelease, file: file, line: line)
        XCTAssertEqual(m.initramfsBytes, Int(ImageCache.size(image.initramfsPath)), file: file, line: line)

        let wanted = ["vfio_pci", "vfio_iommu_type1", "pci_stub", "e1000e", "nvme", "virtio_net", "virtio_iommu"]
            .filter { m.modules.contains($0) }
        var boot = GuestBoot(image: image)
        boot.extraKernelArguments = ["isolab.modprobe=" + wanted.joined(separator: ",")]
        let result = try boot.run()
        guard let seconds = result.secondsToMarker else {
            return XCTFail("\(id): no '\(GuestBoot.readyMarker)' within \(boot.deadline) s "
                           + "(timed out: \(result.timedOut)); console tail:\n\(result.tail())", file: file, line: line)
        }
        print("boot \(id) (\(image.kernelRelease)): marker after \(String(format: "%.1f", seconds)) s")
        XCTAssertEqual(result.reportedRelease, image.kernelRelease, file: file, line: line)
        for module in wanted {
            XCTAssertTrue(result.console.contains("ISOLAB-INIT: modprobe \(module) ok"),
                          "\(id): modprobe \(module) in the guest; console tail:\n\(result.tail())", file: file, line: line)
        }
        XCTAssertFalse(result.timedOut, "guest did not power off; tail:\n\(result.tail())", file: file, line: line)
    }

    func testKernel5_10BootsToReadyMarkerAndLoadsVFIO() throws { try bootCatalogKernel("5.10") }
    func testKernel6_1BootsToReadyMarkerAndLoadsVFIO() throws { try bootCatalogKernel("6.1") }
    func testKernel6_12BootsToReadyMarkerAndLoadsVFIO() throws { try bootCatalogKernel("6.12") }
    func testKernel7_3BootsToReadyMarkerAndLoadsVFIO() throws { try bootCatalogKernel("7.3") }

    /// The four catalog kernels and the source-built one the tests boot, 7.3-iommufd (the rest of
    /// the catalog is the history matrix's, fetched by it, and 6.12-iommufd is compiled on first
    /// use only): a warm build is a cache hit, no apt, nothing logged. ci/test runs it with the
    /// tests of the compiled kernel, after that kernel is built.
    func testWarmBuildOfTheTestKernelsRunsNoAptAndLogsNothing() throws {
        let builder = try TestSupport.builder()
        let kernels = try builder.catalog.kernels.filter { ["5.10", "6.1", "6.12", "7.3", "7.3-iommufd"].contains($0.id) }
        XCTAssertEqual(kernels.count, 5)
        XCTAssertNotNil(kernels.last?.build, "7.3-iommufd is compiled from source")
        for k in kernels { _ = try builder.build(kernel: k) }  // make sure they are cached
        let start = Date()
        let fresh = try TestSupport.builder()   // a new builder, as a new isolab process would have
        fresh.log = { XCTFail("warm build should log nothing, got: \($0)") }
        for k in kernels { _ = try fresh.build(kernel: k) }
        let elapsed = Date().timeIntervalSince(start)
        print("warm build of \(kernels.count) images: \(String(format: "%.3f", elapsed)) s")   // a figure, not a bar: see isolab-bench images
    }
}
