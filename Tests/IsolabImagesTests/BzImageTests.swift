@testable import IsolabImages
import XCTest

final class BzImageTests: XCTestCase {
    /// A minimal setup header: "HdrS" at 0x202, protocol 2.15, kernel_version pointer at 0x20E.
    static func fakeBzImage(version: String, pointer: Int = 0x3000) -> Data {
        var bytes = [UInt8](repeating: 0, count: pointer + 0x200 + version.utf8.count + 16)
        bytes.replaceSubrange(0x202..<0x206, with: Array("HdrS".utf8))
        bytes[0x206] = 0x0f; bytes[0x207] = 0x02
        bytes[0x20E] = UInt8(pointer & 0xff); bytes[0x20F] = UInt8(pointer >> 8)
        bytes.replaceSubrange((pointer + 0x200)..<(pointer + 0x200 + version.utf8.count), with: Array(version.utf8))
        return Data(bytes)
    }

    func testVersionStringIsReadThroughTheHeaderPointer() throws {
        let v = "6.12.118+deb13-amd64 (builder@example.invalid) #1 SMP PREEMPT_DYNAMIC Debian 6.12.118-1"
        let bz = try BzImage(data: Self.fakeBzImage(version: v))
        XCTAssertEqual(bz.versionString, v)
        XCTAssertEqual(bz.kernelRelease, "6.12.118+deb13-amd64")
        XCTAssertEqual(bz.generation, "6.12")
    }

    func testGenerationOfReleases() {
        XCTAssertEqual(BzImage.generation(ofRelease: "5.10.0-46-amd64"), "5.10")
        XCTAssertEqual(BzImage.generation(ofRelease: "7.3.4+deb13-amd64"), "7.3")
        XCTAssertEqual(BzImage.generation(ofRelease: "6.19.0-rc3-dirty"), "6.19")
        XCTAssertNil(BzImage.generation(ofRelease: "vmlinux"))
    }

    func testNotABzImage() {
        XCTAssertThrowsError(try BzImage(data: Data(repeating: 0, count: 0x400))) { e in
            XCTAssertTrue("\(e)".contains("HdrS"), "\(e)")
        }
        XCTAssertThrowsError(try BzImage(data: Data([1, 2, 3])))
        var bad = [UInt8](Self.fakeBzImage(version: "x"))
        bad[0x20E] = 0xff; bad[0x20F] = 0xff
        XCTAssertThrowsError(try BzImage(data: Data(bad))) { e in XCTAssertTrue("\(e)".contains("pointer"), "\(e)") }
    }
}
