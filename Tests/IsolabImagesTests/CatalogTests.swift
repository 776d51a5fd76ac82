@testable import IsolabImages
import XCTest

final class KernelCatalogTests: XCTestCase {
    func testRepositoryCatalogHasTheFourKernelsWithTheirGenerations() throws {
        let catalog = try KernelCatalog.load(from: URL(fileURLWithPath: TestSupport.vmImages + "/kernels.yaml"))
        let four = catalog.kernels.filter { ["5.10", "6.1", "6.12", "7.3", "6.12-iommufd", "7.3-iommufd"].contains($0.id) }
        XCTAssertEqual(four.map(\.id), ["5.10", "6.1", "6.12", "7.3", "6.12-iommufd", "7.3-iommufd"])
        XCTAssertEqual(four.map(\.generation), ["5.10", "6.1", "6.12", "7.3", "6.12", "7.3"])
        XCTAssertEqual(four.map(\.suite), ["bullseye", "bookworm", "trixie", "trixie-backports", "trixie", "trixie-backports"])
        // Every series the archive serves, one pinned build each; the rest say why not.
        XCTAssertEqual(catalog.available.filter { $0.build == nil }.map(\.id),
                       ["5.10", "6.1", "6.12", "7.3", "6.12-bpo12", "6.16", "6.17", "6.18", "7.2"])
        XCTAssertEqual(catalog.kernels.filter { $0.unavailable != nil }.map(\.id), ["6.1-bpo11", "6.19", "7.0", "7.1"])
        XCTAssertThrowsError(try catalog.kernel(id: "7.0")) { e in
            XCTAssertTrue("\(e)".contains("linux-modules-7.0.13+deb13-amd64"), "\(e)")
        }
        // The kernel's selftests are built from 7.3-iommufd's source package.
        XCTAssertEqual(catalog.selftestSource, "7.3-iommufd")
        XCTAssertEqual(try catalog.kernel(id: "7.3-iommufd").package, "linux-source-7.3")
        let built = try catalog.kernel(id: "6.12-iommufd")
        XCTAssertEqual(built.package, "linux-source-6.12")
        XCTAssertEqual(built.build, "kernel-configs/iommufd.config")
        XCTAssertNil(try catalog.kernel(id: "6.12").build)
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
                                       accepted: "id, suite, package, generation, version, build, unavailable"))
        XCTAssertEqual(e?.description,
                       "k.yaml:6: flavour: unknown field (accepted: id, suite, package, generation, version, build, unavailable)")
    }

    func testBuildNeedsAFragmentInsideVMImagesAndASourcePackage() {
        let outside = error("""
        kernels:
          - id: "x"
            suite: trixie
            package: linux-source-6.12
            generation: "6.12"
            build: ../../etc/passwd.config
        """)
        XCTAssertEqual(outside, .invalidFile(file: "k.yaml", line: 6, field: "build", problem: "'../../etc/passwd.config' must be a .config fragment inside vm-images/",
                                             accepted: "e.g. kernel-configs/iommufd.config"))
        let binary = error("""
        kernels:
          - id: "x"
            suite: trixie
            package: linux-image-amd64
            generation: "6.12"
            build: kernel-configs/iommufd.config
        """)
        XCTAssertEqual(binary, .invalidFile(file: "k.yaml", line: 4, field: "package", problem: "a kernel with 'build' compiles a kernel source package",
                                            accepted: "linux-source-X.Y"))
    }

    // The fragment is what the build is checked against after `make olddefconfig`.
    func testConfigFragmentAndKernelConfig() throws {
        let f = try ConfigFragment(text: "# a comment\nCONFIG_VFIO=m\n\n# CONFIG_IOMMUFD_VFIO_CONTAINER is not set\nCONFIG_NR_CPUS=8\n", file: "f.config")
        XCTAssertEqual(f.wanted.map(\.symbol), ["CONFIG_VFIO", "CONFIG_IOMMUFD_VFIO_CONTAINER", "CONFIG_NR_CPUS"])
        let config = KernelConfig(text: "CONFIG_VFIO=y\nCONFIG_NR_CPUS=8\n")
        XCTAssertEqual(f.mismatches(in: config).map { "\($0.symbol)=\($0.got)/\($0.wanted)" }, ["CONFIG_VFIO=y/m"])
        XCTAssertEqual(config["CONFIG_IOMMUFD"], "n", "absent symbols read as n")
        XCTAssertThrowsError(try ConfigFragment(text: "CONFIG_A=y\nVFIO=m\n", file: "f.config")) { e in
            XCTAssertEqual((e as? ImagesError)?.description, "f.config:2: 'VFIO=m' is not a config line (accepted: CONFIG_X=y|m|value, # CONFIG_X is not set, or # comments)")
        }
        let repo = try ConfigFragment(text: String(contentsOfFile: TestSupport.vmImages + "/kernel-configs/iommufd.config", encoding: .utf8), file: "iommufd.config")
        let wanted = Dictionary(uniqueKeysWithValues: repo.wanted.map { ($0.symbol, $0.value) })
        XCTAssertEqual(wanted["CONFIG_VFIO_DEVICE_CDEV"], "y")
        XCTAssertEqual(wanted["CONFIG_VFIO_NOIOMMU"], "y")
        XCTAssertEqual(wanted["CONFIG_IOMMUFD_VFIO_CONTAINER"], "n", "the legacy container stays VFIO's own")
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
        XCTAssertEqual(line2, 1); XCTAssertEqual(field2, "kernel"); XCTAssertEqual(accepted2, "kernels, selftests")
        guard case let .invalidFile(_, _, field3, problem3, _)? = error("kernels: []\n") else { return XCTFail() }
        XCTAssertEqual(field3, "kernels"); XCTAssertEqual(problem3, "the list is empty")
        // selftests: must name a kernel of the catalog built from source.
        guard case let .invalidFile(_, _, field4, problem4, accepted4)? = error("selftests: \"6.1\"\nkernels:\n  - {id: \"6.1\", suite: bookworm, package: linux-image-amd64, generation: \"6.1\"}\n") else { return XCTFail() }
        XCTAssertEqual(field4, "selftests"); XCTAssertTrue(problem4.contains("built from source")); XCTAssertEqual(accepted4, "the id of a kernel with build:")
    }

    func testUnknownKernelListsKnownIds() {
        let c = KernelCatalog(kernels: [CatalogKernel(id: "6.1", suite: "bookworm", package: "p", generation: "6.1")])
        XCTAssertThrowsError(try c.kernel(id: "4.19")) { e in
            XCTAssertEqual(e as? ImagesError, .unknownKernel(id: "4.19", known: ["6.1"]))
        }
    }
}
