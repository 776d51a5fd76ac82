import IsolabTopology
import XCTest

/// `ci/matrix.yaml`'s emulator axis: ids, checked against the catalog when it is given.
final class MatrixFileTests: XCTestCase {
    private let base = "fabrics: [topologies/*.yaml]\nkernels: [\"6.1\"]\n"

    func testEmulatorsAreReadAndDefaultToNone() throws {
        XCTAssertEqual(try MatrixFile.parse(base, file: "m.yaml").emulators, [])
        let m = try MatrixFile.parse(base + "emulators: [\"7.2\", \"10.0\"]\n", file: "m.yaml", emulators: ["7.2", "10.0"])
        XCTAssertEqual(m.emulators, ["7.2", "10.0"])
    }

    func testAnUnknownRepeatedOrEmptyEmulatorIsOneLocatedError() throws {
        XCTAssertThrowsError(try MatrixFile.parse(base + "emulators: [\"7.2\", \"9.9\"]\n", file: "m.yaml", emulators: ["7.2", "10.0"])) { e in
            let text = "\(e)"
            XCTAssertTrue(text.contains("m.yaml:3"), text)
            XCTAssertTrue(text.contains("emulators[]") && text.contains("7.2, 10.0"), text)
        }
        XCTAssertThrowsError(try MatrixFile.parse(base + "emulators: [\"7.2\", \"7.2\"]\n", file: "m.yaml")) { e in
            XCTAssertTrue("\(e)".contains("listed twice"), "\(e)")
        }
        XCTAssertThrowsError(try MatrixFile.parse(base + "emulators: []\n", file: "m.yaml")) { e in
            XCTAssertTrue("\(e)".contains("the list is empty"), "\(e)")
        }
    }
}
