import IsolabEngine
import IsolabModel
import IsolabTopology
import XCTest

/// The matrix's cells: fabric × vIOMMU × kernel × emulator, sharded deterministically.
final class PlannerTests: XCTestCase {
    private func topology(_ name: String, iommu: IOMMUModel = .intel) throws -> Topology {
        var t = try TopologyLoader.parse("""
            name: \(name)
            fabric:
              - root-port: rp0
                slot: 4
                children:
                  - device: ep0
                    model: edu
            """, file: "\(name).yaml")
        t.iommu = iommu
        return t
    }

    private let kernels = [MatrixKernel(label: "6.1", generation: KernelGeneration.resolve("6.1")!),
                           MatrixKernel(label: "7.3", generation: KernelGeneration.resolve("7.3")!)]

    func testEveryAxisMultipliesAndAnAddedVIOMMURunsOnlyWhereTheKernelDrivesIt() throws {
        let cells = MatrixPlanner.cells(topologies: [(try topology("a"), "sha-a"), (try topology("b", iommu: .none), "sha-b")],
                                        kernels: kernels, iommus: [.intel, .virtio],
                                        emulators: [MatrixEmulator(label: "7.2", facts: nil), MatrixEmulator(label: "10.0", facts: nil)])
        // a: intel on both kernels, a.virtio on 7.3 only (6.1 does not build virtio-iommu);
        // b declares no vIOMMU and gets no variant; each on both emulators.
        let names = cells.map { "\($0.topology.name)@\($0.kernel)/\($0.emulator)" }
        XCTAssertEqual(names, ["a@6.1/7.2", "a@6.1/10.0", "a@7.3/7.2", "a@7.3/10.0",
                               "a.virtio@7.3/7.2", "a.virtio@7.3/10.0",
                               "b@6.1/7.2", "b@6.1/10.0", "b@7.3/7.2", "b@7.3/10.0"])
        XCTAssertEqual(Set(cells.filter { $0.topology.name.hasPrefix("a") }.map(\.sha256)), ["sha-a"])
    }

    func testRealizabilityIsAskedOfEachEmulatorsFacts() throws {
        var facts = EmulatorFacts.assumedHostQEMU72
        facts.devices.removeAll { $0 == "edu" }
        let cells = MatrixPlanner.cells(topologies: [(try topology("a"), "x")], kernels: [kernels[0]], iommus: [.intel],
                                        emulators: [MatrixEmulator(label: "old", facts: facts), MatrixEmulator(label: "new", facts: nil)])
        XCTAssertEqual(cells.map { $0.unrealizable.isEmpty }, [false, true])
        XCTAssertEqual(cells[0].unrealizable.first?.node, "ep0")
        XCTAssertTrue(cells[0].unrealizable.first?.reason.contains("has no edu device model") ?? false)
        XCTAssertEqual(cells[0].topology.emulator, facts, "a cell's topology carries its emulator's facts")
    }

    func testShardsPartitionTheCellsDeterministically() throws {
        let cells = MatrixPlanner.cells(topologies: try ["a", "b", "c"].map { (try topology($0), $0) }, kernels: kernels,
                                        iommus: [.intel], emulators: [MatrixEmulator(label: "7.2", facts: nil)])
        let shards = (1...4).map { MatrixPlanner.shard(cells, index: $0, of: 4) }
        XCTAssertEqual(shards.map(\.count).reduce(0, +), cells.count)
        let keys = shards.flatMap { $0.map { "\($0.topology.name)@\($0.kernel)" } }
        XCTAssertEqual(Set(keys).count, cells.count)
        XCTAssertEqual(MatrixPlanner.shard(cells, index: 2, of: 4).map(\.topology.name),
                       MatrixPlanner.shard(cells, index: 2, of: 4).map(\.topology.name))
        XCTAssertNil(MatrixPlanner.parseShard("0/2"))
        XCTAssertNil(MatrixPlanner.parseShard("3/2"))
        XCTAssertNil(MatrixPlanner.parseShard("x"))
        XCTAssertEqual(MatrixPlanner.parseShard("2/3")?.index, 2)
    }

    func testRequestCountFollowsScenariosAndRepetitions() throws {
        var t = try topology("a")
        let cell = Cell(topology: t, kernel: "6.1", emulator: "7.2", generation: kernels[0].generation, sha256: "", unrealizable: [])
        var run = MatrixRun(cells: [cell], kernels: ["6.1": .catalog("6.1")], emulators: [:])
        XCTAssertEqual(run.requestCount, 1)   // no scenarios: one inventory boot
        run.repetitions = 3
        XCTAssertEqual(run.requestCount, 3)
        t.name = "b"
        let unrealizable = Cell(topology: t, kernel: "6.1", emulator: "7.2", generation: kernels[0].generation, sha256: "",
                                unrealizable: [Unrealizable(node: "x", reason: "y", location: t.fabric[0].location)])
        run.cells.append(unrealizable)
        XCTAssertEqual(run.requestCount, 3)
    }

    func testUnknownKernelAndBadMatrixFileAreInput() throws {
        XCTAssertThrowsError(try MatrixKernel.catalog("not-a-kernel")) { e in
            guard case EngineError.input(let s)? = e as? EngineError else { return XCTFail("\(e)") }
            XCTAssertTrue(s.contains("--kernel: unknown kernel"), s)
        }
        XCTAssertThrowsError(try MatrixPlanner.load("/nonexistent/matrix.yaml")) { e in
            guard case EngineError.input? = e as? EngineError else { return XCTFail("\(e)") }
        }
    }
}
