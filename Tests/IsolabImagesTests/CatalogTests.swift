@testable import IsolabImages
import XCTest

final class KernelCatalogTests: XCTestCase {
    func testRepositoryCatalogHasTheFourKernelsWithTheirGenerations() throws {
        let catalog = try KernelCatalog.load(from: URL(fileURLWithPath: TestSupport.vmImages + "/kernels.yaml"))
        XCTAssertEqual(catalog.kernels.map(\.id), ["5.10", "6.1", "6.12", "7.3"])
        XCTAssertEqual(catalog.kernels.map(\.generation), ["5.10", "6.1", "6.12", "7.3"])
        XCTAssertEqual(catalog.kernels.map(\.suite), ["bullseye", "bookworm", "trixie", "trixie-backports"])
        XCTAssertEqual(try catalog.kernel(id: "6.12").suites, ["trixie", "trixie-security"])
        XCTAssertEqual(try catalog.kernel(id: "7.3").suites, ["trixie-backports"])
    }

    func testUnquotedIdKeepsItsTextAndPinIsRead() throws {
        let c = try KernelCatalog.parse("""
        kernels:
          - id: 5.10
            suite: bullseye
            package: linux-image-amd64
            generation: 5.10
            version: 5.10.223-1
        """)
        XCTAssertEqual(c.kernels, [CatalogKernel(id: "5.10", suite: "bullseye", package: "linux-image-amd64",
                                                 generation: "5.10", version: "5.10.223-1")])
    }

    private func error(_ text: String) -> ImagesError? {
        do { _ = try KernelCatalog.parse(text, file: "k.yaml"); return nil } catch { return error as? ImagesError }
    }

    func testUnknownFieldNamesFileLineFieldAndAcceptedFields() {
        let e = error("""
        kernels:
          - id: "6.1"
            suite: bookworm
            package: linux-image-amd64
            generation: "6.1"
            flavour: cloud
        """)
        XCTAssertEqual(e, .invalidFile(file: "k.yaml", line: 6, field: "flavour", problem: "unknown field",
                                       accepted: "id, suite, package, generation, version"))
        XCTAssertEqual(e?.description,
                       "k.yaml:6: flavour: unknown field (accepted: id, suite, package, generation, version)")
    }

    func testMissingRequiredFieldIsReportedAtItsKernel() {
        let e = error("""
        kernels:
          - id: "6.1"
            suite: bookworm
            package: linux-image-amd64
          - id: "6.12"
        """)
        XCTAssertEqual(e, .invalidFile(file: "k.yaml", line: 2, field: "generation", problem: "missing required field",
                                       accepted: "id, suite, package, generation"))
    }

    func testDuplicateIdAndBadSuiteAndNonScalar() {
        let dup = error("""
        kernels:
          - {id: a, suite: bookworm, package: p, generation: g}
          - {id: a, suite: trixie, package: p, generation: g}
        """)
        guard case let .invalidFile(_, line, field, problem, _)? = dup else { return XCTFail("\(String(describing: dup))") }
        XCTAssertEqual(line, 3); XCTAssertEqual(field, "id"); XCTAssertTrue(problem.contains("duplicate"))

        let suite = error("kernels:\n  - {id: a, suite: 'bookworm/updates', package: p, generation: g}\n")
        guard case let .invalidFile(_, _, field2, _, accepted2)? = suite else { return XCTFail() }
        XCTAssertEqual(field2, "suite"); XCTAssertNotNil(accepted2)

        let list = error("kernels:\n  - {id: [a], suite: s, package: p, generation: g}\n")
        guard case let .invalidFile(_, _, field3, problem3, _)? = list else { return XCTFail() }
        XCTAssertEqual(field3, "id"); XCTAssertEqual(problem3, "expected a non-empty string")
    }

    func testSyntaxErrorAndWrongTopLevel() {
        guard case let .invalidFile(file, line, _, problem, _)? = error("kernels:\n  - id: [\n") else { return XCTFail() }
        XCTAssertEqual(file, "k.yaml"); XCTAssertNotNil(line); XCTAssertTrue(problem.hasPrefix("not valid YAML"))
        guard case let .invalidFile(_, line2, field2, _, accepted2)? = error("kernel: []\n") else { return XCTFail() }
        XCTAssertEqual(line2, 1); XCTAssertEqual(field2, "kernel"); XCTAssertEqual(accepted2, "kernels")
        guard case let .invalidFile(_, _, field3, problem3, _)? = error("kernels: []\n") else { return XCTFail() }
        XCTAssertEqual(field3, "kernels"); XCTAssertEqual(problem3, "the list is empty")
    }

    func testUnknownKernelListsKnownIds() {
        let c = KernelCatalog(kernels: [CatalogKernel(id: "6.1", suite: "bookworm", package: "p", generation: "6.1")])
        XCTAssertThrowsError(try c.kernel(id: "4.19")) { e in
            XCTAssertEqual(e as? ImagesError, .unknownKernel(id: "4.19", known: ["6.1"]))
        }
    }
}
