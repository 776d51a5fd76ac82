@testable import IsolabImages
import XCTest

/// A built selftest suite in the cache is found wherever the cache now is.
final class SelftestSuiteCacheTests: XCTestCase {
    /// The manifest names the folder it was built in; a cache copied under another home (the
    /// daemon user's, a CI cache restored elsewhere) still loads, with its programs where they
    /// are now. It used to load nothing, and the rebuild then failed with "no readable manifest".
    func testASuiteCopiedElsewhereLoadsFromItsNewFolder() throws {
        let dir = try TestSupport.temporaryDirectory("suite-moved")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try FileManager.default.createDirectory(atPath: dir + "/bin", withIntermediateDirectories: true)
        try "#!/bin/sh\n".write(toFile: dir + "/bin/vfio_dma_mapping_test", atomically: true, encoding: .utf8)
        try chmod755(dir + "/bin/vfio_dma_mapping_test")
        let written = SelftestSuite(source: "linux-source-7.3 7.3.4-1", directory: "/root/.cache/isolab/selftests/k/bin",
                                    programs: ["vfio_dma_mapping_test"])
        try JSONCoding.encoder.encode(written).write(to: URL(fileURLWithPath: dir + "/" + SelftestSuite.manifest))

        let loaded = try XCTUnwrap(SelftestBuilder.load(dir))
        XCTAssertEqual(loaded.directory, dir + "/bin")
        XCTAssertEqual(loaded.path(of: "vfio_dma_mapping_test"), dir + "/bin/vfio_dma_mapping_test")
        XCTAssertEqual(loaded.source, written.source)

        // A program missing from the folder still means no usable suite.
        try FileManager.default.removeItem(atPath: dir + "/bin/vfio_dma_mapping_test")
        XCTAssertNil(SelftestBuilder.load(dir))
    }
}
