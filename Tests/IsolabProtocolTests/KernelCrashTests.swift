import XCTest
@testable import IsolabProtocol

/// The shared crash markers: the agent reads /dev/kmsg and the host the console with them.
final class KernelCrashTests: XCTestCase {
    func testCrashLineFoundPrefersTheBUGLine() {
        let log = ["e1000e 0000:01:00.0 eth0: MAC: 3", "invalid opcode: 0000 [#1] SMP PTI",
                   "kernel BUG at drivers/vfio/vfio.c:698!", "RIP: 0010:vfio_iommu_group_notifier+0x29a/0x360 [vfio]"]
        XCTAssertEqual(KernelCrash.find(in: log), "kernel BUG at drivers/vfio/vfio.c:698!")
        XCTAssertEqual(KernelCrash.find(in: ["general protection fault, probably for non-canonical address"]),
                       "general protection fault, probably for non-canonical address")
        XCTAssertNil(KernelCrash.find(in: ["vfio-pci 0000:01:00.1: enabling device (0000 -> 0002)"]))
    }

    func testConsoleCrashLinesOfNewerKernelsAreFound() {
        XCTAssertTrue(KernelCrash.isCrashLine("BUG: kernel NULL pointer dereference, address: 0000000000000008"))
        XCTAssertTrue(KernelCrash.isCrashLine("Oops: invalid opcode: 0000 [#1] PREEMPT SMP NOPTI"))
        XCTAssertTrue(KernelCrash.isCrashLine("Kernel panic - not syncing: Fatal exception"))
        XCTAssertFalse(KernelCrash.isCrashLine("Oopsie in a driver name"))
    }
}
