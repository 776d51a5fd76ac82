import XCTest
@testable import IsolabProtocol

/// kselftest's TAP read back: results, directives, the plan, each test's own lines.
final class TAPTests: XCTestCase {
    func testHarnessOutput() {
        let out = """
        TAP version 13
        1..4
        # Starting 4 tests from 2 test cases.
        #  RUN           vfio_pci_device_test.config_space_read_write ...
        #            OK  vfio_pci_device_test.config_space_read_write
        ok 1 vfio_pci_device_test.config_space_read_write
        #  RUN           vfio_pci_irq_test.msix.enable_trigger_disable ...
        #      SKIP      MSI-x: not supported
        ok 2 vfio_pci_irq_test.msix.enable_trigger_disable # SKIP MSI-x: not supported
        #  RUN           vfio_cdev.bind ...
        # vfio_iommufd_setup_test.c:70:bind:Expected 0 (0) <= (self->cdev_fd = open(cdev_path, O_RDWR, 0)) (-1)
        # bind: Test terminated by assertion
        #          FAIL  vfio_cdev.bind
        not ok 3 vfio_cdev.bind
        ok 4 global.known_bug # XFAIL not fixed yet
        # FAILED: 3 / 4 tests passed.
        # Totals: pass:1 fail:1 xfail:1 xpass:0 skip:1 error:0
        """
        let tap = TAPResults(parsing: out)
        XCTAssertEqual(tap.planned, 4)
        XCTAssertEqual(tap.tests.map(\.name), ["vfio_pci_device_test.config_space_read_write", "vfio_pci_irq_test.msix.enable_trigger_disable",
                                               "vfio_cdev.bind", "global.known_bug"])
        XCTAssertEqual(tap.tests.map(\.status), [.pass, .skip, .fail, .xfail])
        XCTAssertEqual(tap.tests[1].reason, "MSI-x: not supported")
        XCTAssertEqual(tap.tests[3].reason, "not fixed yet")
        XCTAssertTrue(tap.tests[2].log.contains("# bind: Test terminated by assertion"))
        XCTAssertEqual(tap.tests.map(\.number), [1, 2, 3, 4])
    }

    func testAProgramThatSkipsBeforeItsHarness() {
        let tap = TAPResults(parsing: "TAP version 13\n1..0 # SKIP SR-IOV may not be supported by the PF: 0000:01:00.0\n")
        XCTAssertEqual(tap.planned, 0)
        XCTAssertTrue(tap.tests.isEmpty)
    }

    func testCarriageReturnsAndDashes() {
        let tap = TAPResults(parsing: "1..1\r\nok 1 - a test with # inside the name\r\n")
        XCTAssertEqual(tap.tests.first?.name, "a test with # inside the name")
        XCTAssertEqual(tap.tests.first?.status, .pass)
    }
}
