import IsolabProtocol
@testable import IsolabVM
import XCTest

/// How the scheduler groups requests into saved boots (no guest is booted).
final class SchedulerUnitTests: XCTestCase {
    func testRequestsOfOneFabricShareAUnitAndTheLargestStartsFirst() {
        let keys = ["a", "b", "b", "c", "b", "a"]
        XCTAssertEqual(Scheduler.units(keys, jobs: 2), [[1, 2, 4], [0, 5], [3]])
    }

    func testAFabricIsSplitOnlyWhileThereAreFewerUnitsThanJobs() {
        XCTAssertEqual(Scheduler.units(["a", "a", "a", "a"], jobs: 2), [[0, 1], [2, 3]])
        XCTAssertEqual(Scheduler.units(["a", "a", "a"], jobs: 1), [[0, 1, 2]])
        XCTAssertEqual(Scheduler.units(["a"], jobs: 4), [[0]])
        XCTAssertEqual(Scheduler.units([String](), jobs: 2), [])
    }

    /// An NVMe controller with SR-IOV resources cannot be saved: its fabric's scenarios are
    /// booted one by one without a save being tried; other fabrics keep their saved boot.
    func testAFabricQEMUCannotSaveIsBootedPerScenario() throws {
        XCTAssertFalse(Scheduler.canSave(try VMTestSupport.topology("sriov-nvme-rootport")))
        XCTAssertFalse(Scheduler.canSave(try VMTestSupport.topology("nvme-alone")))
        XCTAssertFalse(Scheduler.canSave(try VMTestSupport.topology("integrated-endpoints")))
        XCTAssertFalse(Scheduler.canSave(try VMTestSupport.topology("amd-viommu")))
        XCTAssertTrue(Scheduler.canSave(try VMTestSupport.topology("switch-no-acs")))
        XCTAssertTrue(Scheduler.canSave(try VMTestSupport.topology("sriov-igb-rootport-acs")))
        let plan = Scheduler.plan(["n", "n", "a", "a"], jobs: 1, snapshots: true, costs: nil, saveable: { $0 >= 2 })
        XCTAssertEqual(plan.map(\.requests), [[2, 3], [0], [1]])
    }
}

/// Planning by cost: which fabrics' boots are saved, in what order units start, and how the
/// cost book learns from finished guests.
final class CostPlanTests: XCTestCase {
    /// Issue 18's figures: a boot 3.8 s, a saved boot 8.5 s, a restore 0.5 s. Two scenarios:
    /// 8.5 + 1.0 > 7.6, booted; three: 8.5 + 1.5 < 11.4, saved.
    func testABootIsSavedOnlyWhereItsRestoresWinBackTheSave() {
        let c = GuestCosts.typical
        XCTAssertFalse(c.savesTime(scenarios: 1))
        XCTAssertFalse(c.savesTime(scenarios: 2))
        XCTAssertTrue(c.savesTime(scenarios: 3))
        let plan = Scheduler.plan(["a", "a", "b", "b", "b"], jobs: 1, snapshots: true, costs: { _ in c })
        XCTAssertEqual(plan.map(\.requests), [[2, 3, 4], [0], [1]])
        XCTAssertEqual(plan.map(\.saved), [true, false, false])
        // A cheap save (a small guest) pays for two scenarios.
        let cheap = GuestCosts(boot: 3.8, snapshot: 5.0, restore: 0.5, steps: 1)
        XCTAssertEqual(Scheduler.plan(["a", "a"], jobs: 1, snapshots: true, costs: { _ in cheap }).map(\.requests), [[0, 1]])
    }

    /// Without costs the rule stays: every fabric of two or more is saved, largest first.
    func testWithoutCostsEveryMultiScenarioFabricIsSaved() {
        XCTAssertEqual(Scheduler.plan(["a", "a", "b"], jobs: 1, snapshots: true, costs: nil).map(\.requests), [[0, 1], [2]])
        XCTAssertEqual(Scheduler.plan(["a", "a"], jobs: 1, snapshots: false, costs: nil).map(\.requests), [[0], [1]])
    }

    /// Longest expected unit first: a slow kernel's single boot starts before a fast one's.
    func testTheUnitsExpectedToEndLatestStartFirst() {
        let slow = GuestCosts(boot: 9, snapshot: 20, restore: 1, steps: 1)
        let plan = Scheduler.plan(["fast", "slow"], jobs: 1, snapshots: true, costs: { $0 == 1 ? slow : .typical })
        XCTAssertEqual(plan.map(\.requests), [[1], [0]])
        XCTAssertEqual(plan[0].expectedSeconds, 10, accuracy: 1e-9)
        XCTAssertEqual(plan[1].expectedSeconds, GuestCosts.typical.boot + GuestCosts.typical.steps, accuracy: 1e-9)
    }

    /// A unit's steps are its scenarios' own: one scenario whose step the kernel blocks for
    /// 20 s makes its fabric the unit expected to end latest, though the kernel's average is low.
    func testAUnitIsExpectedToTakeItsOwnScenariosStepTime() {
        let kernel = GuestCosts(boot: 4, snapshot: 5, restore: 0.2, steps: 1)
        var slow = kernel
        slow.steps = 20
        let plan = Scheduler.plan(["a", "a", "a", "b"], jobs: 1, snapshots: true, costs: { $0 == 3 ? slow : kernel }, keepBoots: true)
        XCTAssertEqual(plan.map(\.requests), [[3], [0, 1, 2]])
        XCTAssertEqual(plan[0].expectedSeconds, 5 + 0.2 + 20, accuracy: 1e-9)
        XCTAssertEqual(plan[1].expectedSeconds, 5 + 3 * 0.2 + 3, accuracy: 1e-9)
    }

    /// The book keeps each scenario's steps besides the kernel's average, and reads a book
    /// written before it kept them.
    func testTheBookKeepsEachScenariosStepsAndReadsAnOlderBook() throws {
        var book = CostBook()
        let key = CostBook.key(kernel: "5.10", emulator: nil, memoryMiB: 512, store: .inQEMU)
        func guest(_ scenario: String, steps: Double) -> VMObservation {
            var t = Timing()
            t.boot = 3; t.steps = steps
            return VMObservation(topology: "integrated-endpoints", kernel: "5.10", iommu: "intel", scenario: scenario,
                                 outcome: .completed, timing: t)
        }
        book.record(keyed: [(key, guest("blocked-unbind", steps: 20)), (key, guest("quick", steps: 1)),
                            (key, guest("blocked-unbind", steps: 22))])
        XCTAssertEqual(book.scenarioSteps, ["5.10|host|512|in-qemu|integrated-endpoints|blocked-unbind": 21,
                                            "5.10|host|512|in-qemu|integrated-endpoints|quick": 1])
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("costs-\(UUID().uuidString).json").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        book.save(path)
        XCTAssertEqual(CostBook.load(path), book)
        var older = book
        older.scenarioSteps = [:]
        let e = JSONEncoder()
        try e.encode(["entries": older.entries]).write(to: URL(fileURLWithPath: path))
        XCTAssertEqual(CostBook.load(path), older, "a book without scenario steps keeps its kernels' figures")
    }

    func testTheBookLearnsEachFigureFromTheGuestsThatMeasureIt() throws {
        var book = CostBook()
        XCTAssertTrue(book.entries.isEmpty)
        let key = CostBook.key(kernel: "6.1", emulator: "10.0", memoryMiB: 512, store: .inQEMU)
        XCTAssertEqual(key, "6.1|10.0|512|in-qemu")
        func guest(create: Double, boot: Double, snapshot: Double = 0, restore: Double = 0, restored: Bool, steps: Double,
                   outcome: VMObservation.Outcome = .completed) -> VMObservation {
            var t = Timing()
            t.create = create; t.boot = boot; t.snapshot = snapshot; t.restore = restore; t.steps = steps
            var o = VMObservation(topology: "t", kernel: "6.1", iommu: "intel", scenario: "s", outcome: outcome, timing: t)
            o.restoredFrom = restored ? "/runs/x/vmstate.qcow2" : nil
            return o
        }
        book.record(keyed: [
            (key, guest(create: 0.2, boot: 4.8, restored: false, steps: 2)),                    // a fresh boot: 5.0
            (key, guest(create: 0, boot: 0, snapshot: 10, restore: 0.7, restored: true, steps: 1)),  // the saved boot's first guest
            (key, guest(create: 0, boot: 0, restore: 0.3, restored: true, steps: 1)),           // a restore
            (key, guest(create: 9, boot: 99, restored: false, steps: 99, outcome: .hung)),    // says nothing
        ])
        var cachedGuest = guest(create: 0, boot: 0, snapshot: 0.8, restore: 0.2, restored: true, steps: 1)
        cachedGuest.bootCache = "0123abcd"
        var cachedBook = book
        cachedBook.record(keyed: [(key, cachedGuest)])
        XCTAssertEqual(cachedBook.entries[key]?.cachedStart, 0.8, "a start from the boot cache is its own figure")
        XCTAssertEqual(cachedBook.entries[key]?.snapshot, 10, "and no save")
        let c = try XCTUnwrap(book.entries[key])
        XCTAssertEqual(c.boot, 5.0, accuracy: 1e-9, "the first measurement replaces the typical figure")
        XCTAssertEqual(c.snapshot, 10, accuracy: 1e-9)
        XCTAssertEqual(c.restore, 0.7 * 0.75 + 0.3 * 0.25, accuracy: 1e-9, "later ones move it a quarter of the way")
        XCTAssertEqual(c.steps, (2 * 0.75 + 1 * 0.25) * 0.75 + 1 * 0.25, accuracy: 1e-9)
        XCTAssertEqual(c.samples, ["boot": 1, "snapshot": 1, "restore": 2, "steps": 3])
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("costs-\(UUID().uuidString).json").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        book.save(path)
        XCTAssertEqual(CostBook.load(path), book)
        XCTAssertEqual(CostBook.load(path + ".missing"), CostBook(), "a missing book is empty, never an error")
        try Data("not json".utf8).write(to: URL(fileURLWithPath: path))
        XCTAssertEqual(CostBook.load(path), CostBook(), "a bad book is empty, never an error")
    }
}
