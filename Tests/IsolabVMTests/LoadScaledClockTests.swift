@testable import IsolabVM
import XCTest

/// Deadlines count load-scaled seconds: a busy host stretches them, never beyond the cap.
final class LoadScaledClockTests: XCTestCase {
    func testAnIdleHostCountsWallSecondsAndABusyOneFewer() {
        let t0 = Date(timeIntervalSince1970: 0)
        var c = LoadScaledClock(start: t0)
        c.tick(t0.addingTimeInterval(10), overcommit: 0.5)   // under one task per core: wall time
        XCTAssertEqual(c.elapsed, 10, accuracy: 1e-9)
        c.tick(t0.addingTimeInterval(30), overcommit: 2)     // 2 tasks per core: 20 s count 10
        XCTAssertEqual(c.elapsed, 20, accuracy: 1e-9)
        XCTAssertEqual(c.wall, 30, accuracy: 1e-9)
        XCTAssertEqual(c.describe(20), "20 s (load-scaled: 30 s wall, up to 2.0 runnable tasks per core)")
        c.reset(t0.addingTimeInterval(30))
        XCTAssertEqual(c.elapsed, 0)
        XCTAssertEqual(c.describe(5), "5 s")
    }

    func testAHangUnderLoadIsStillAHangAfterCapTimesItsDeadline() {
        let t0 = Date(timeIntervalSince1970: 0)
        var c = LoadScaledClock(start: t0, cap: 4)
        c.tick(t0.addingTimeInterval(400), overcommit: 50)
        XCTAssertEqual(c.elapsed, 100, accuracy: 1e-9, "50 tasks per core count as the cap, 4")
    }

    func testProcsRunningIsReadFromProcStat() {
        XCTAssertEqual(HostLoad.procsRunning("cpu  1 2 3\nctxt 99\nprocs_running 7\nprocs_blocked 0\n"), 7)
        XCTAssertNil(HostLoad.procsRunning("cpu 1 2 3\n"))
        XCTAssertGreaterThanOrEqual(HostLoad.shared.overcommit(), 0)
    }
}
