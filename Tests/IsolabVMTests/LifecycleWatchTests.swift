@testable import IsolabVM
import IsolabLibvirt
import XCTest

/// Events are attributed to the start of a domain they belong to, not to its name: a name is
/// reused by every state-file restore and by an in-QEMU guest started again (issue 24).
final class LifecycleWatchTests: XCTestCase {
    private func watch() throws -> LifecycleWatch {
        try LifecycleWatch(connection: BootSupport.connection.get())
    }

    func testALateStopOfTheEarlierCopyIsNotTakenForTheNextOnes() throws {
        let w = try watch()
        defer { w.stop() }
        w.expect("g")          // copy 1 runs, is killed; its run ends before libvirt says so
        w.forget("g")
        XCTAssertFalse(w.waitFree("g", seconds: 0.05), "copy 1 has not reported its stop")
        w.expect("g")          // copy 2 starts anyway (the wait is bounded)
        w.record("g", .stopped(.failed))         // copy 1's late event
        XCTAssertNil(w.stopped("g"), "copy 1's stop was taken for copy 2's")
        XCTAssertEqual(w.count("g"), 1, "copy 1 left the line once its event was in")
        w.record("g", .stopped(.destroyed))
        XCTAssertEqual(w.stopped("g"), "the domain was destroyed")
        XCTAssertTrue(w.waitFree("g", seconds: 0))
    }

    func testACrashThenItsStopBelongToOneCopy() throws {
        let w = try watch()
        defer { w.stop() }
        w.expect("g")
        w.record("g", .crashed)
        XCTAssertEqual(w.stopped("g"), "QEMU reported a guest crash")
        XCTAssertFalse(w.waitFree("g", seconds: 0), "a crash event is not the stop")
        w.record("g", .stopped(.crashed))
        w.forget("g")
        w.expect("g")
        XCTAssertNil(w.stopped("g"), "the first copy's events reached the second")
        XCTAssertEqual(w.count("g"), 1)
    }

    func testACopyThatNeverStartedWaitsForNothing() throws {
        let w = try watch()
        defer { w.stop() }
        w.expect("g")
        w.record("g", .stopped(.saved))          // saved: the name is free
        XCTAssertTrue(w.waitFree("g", seconds: 0))
        w.expect("g")
        w.failedToStart("g")                     // libvirt refused the restore
        XCTAssertTrue(w.waitFree("g", seconds: 0))
        w.expect("g")
        XCTAssertNil(w.stopped("g"))
        w.record("g", .stopped(.destroyed))
        XCTAssertEqual(w.stopped("g"), "the domain was destroyed")
        XCTAssertTrue(w.waitStopped("g", seconds: 0))
    }
}
