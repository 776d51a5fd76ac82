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
}
