import XCTest
@testable import IsolabAgentCore

final class KernelLogTests: XCTestCase {
    func testKmsgPrefixIsStrippedAndContinuationLinesDropped() {
        let r = KmsgRecord.parse("6,1234,5678901,-;e1000e 0000:01:00.0 eth0: removed PHC\n SUBSYSTEM=pci\n DEVICE=+pci:0000:01:00.0\n")
        XCTAssertEqual(r, KmsgRecord(priority: 6, sequence: 1234, microseconds: 5678901, text: "e1000e 0000:01:00.0 eth0: removed PHC"))
        XCTAssertEqual(r?.level, 6)
    }

    func testKmsgWithExtraFlagFieldsAndSemicolonsInText() {
        let r = KmsgRecord.parse("4,77,100,c,caller=T1;a;b;c")
        XCTAssertEqual(r?.text, "a;b;c")
        XCTAssertEqual(r?.sequence, 77)
    }

    func testMalformedKmsgRecordsAreNil() {
        for bad in ["", "no prefix", "x,1,2,-;t", "1,2;t", "1,-2,3,-;t", ";"] {
            XCTAssertNil(KmsgRecord.parse(bad), bad)
        }
    }
}

final class DMAFaultTests: XCTestCase {
    func test510FaultLineHasDecimalReasonAndBareAddress() {
        let line = "DMAR: [DMA Read] Request device [01:00.1] PASID ffffffff fault addr 2000000 [fault reason 06] PTE Read access is not set"
        let f = DMAFault.parse(line)
        XCTAssertEqual(f?.requester, PCIAddress(bus: 1, slot: 0, function: 1))
        XCTAssertEqual(f?.address, 0x200_0000)
        XCTAssertEqual(f?.reason, 6)
        XCTAssertEqual(f?.isRead, true)
    }

    func test61And612FaultLineHasHexReasonAndNoPASID() {
        let line = "DMAR: [DMA Write NO_PASID] Request device [02:00.0] fault addr 0xfe000080 [fault reason 0x05] PTE Write access is not set"
        let f = DMAFault.parse(line)
        XCTAssertEqual(f?.requester.description, "0000:02:00.0")
        XCTAssertEqual(f?.address, 0xfe00_0080)
        XCTAssertEqual(f?.reason, 5)
        XCTAssertEqual(f?.isRead, false)
        let blocked = "DMAR: [DMA Read NO_PASID] Request device [03:00.0] fault addr 0x1000000 [fault reason 0x02] Present bit in context entry is clear"
        XCTAssertEqual(DMAFault.parse(blocked)?.reason, 2)
    }

    func test73FaultLineNamesTheSegment() {
        let line = "DMAR: [DMA Read NO_PASID] Request device [0000:05:00.0] fault addr 0x2000000 [fault reason 0x06] PTE Read access is not set"
        XCTAssertEqual(DMAFault.parse(line)?.requester, PCIAddress(domain: 0, bus: 5, slot: 0, function: 0))
        XCTAssertEqual(DMAFault.parse(line)?.address, 0x200_0000)
    }

    func testNonFaultAndTruncatedLinesAreNotFaults() {
        XCTAssertNil(DMAFault.parse("DMAR: DRHD: handling fault status reg 2"))
        XCTAssertNil(DMAFault.parse("DMAR: [DMA Read NO_PASID] Request device [01:00.1] fault addr"))
        XCTAssertNil(DMAFault.parse("DMAR: [DMA Read] Request device [zz:00.1] fault addr 1 [fault reason 06] x"))
        XCTAssertNil(DMAFault.parse("DMAR: [DMA Read] Request device [01:00.1] fault addr 12 [fault reason x] y"))
        XCTAssertTrue(DMAFault.isFaultLine("DMAR: DRHD: handling fault status reg 2"))
        XCTAssertFalse(DMAFault.isFaultLine("DMAR: IOMMU enabled"))
    }

    func testAliasRequesterMapsThroughTheBridgesSecondaryBus() {
        // Behind a pcie-pci-bridge at 02.0/00.0 (secondary bus 2), QEMU reports the alias 02:00.0.
        let buses = [0: "", 1: "02.0", 2: "02.0/00.0"]
        XCTAssertEqual(GuestPath.forRequester(PCIAddress(bus: 2, slot: 0, function: 0), busPaths: buses), "02.0/00.0/00.0")
        XCTAssertEqual(GuestPath.forRequester(PCIAddress(bus: 0, slot: 0x1f, function: 2), busPaths: buses), "1f.2")
        XCTAssertNil(GuestPath.forRequester(PCIAddress(bus: 9, slot: 0, function: 0), busPaths: buses))
    }
}

final class ErrnoNameTests: XCTestCase {
    func testNamesOfTheErrnosTheModelPredicts() {
        XCTAssertEqual(ErrnoName.name(1), "EPERM")
        XCTAssertEqual(ErrnoName.name(16), "EBUSY")
        XCTAssertEqual(ErrnoName.name(19), "ENODEV")
        XCTAssertEqual(ErrnoName.name(22), "EINVAL")
        XCTAssertEqual(ErrnoName.name(77), "EBADFD")
        XCTAssertEqual(ErrnoName.name(-11), "EAGAIN")
        XCTAssertEqual(ErrnoName.name(517), "EPROBE_DEFER")
        XCTAssertEqual(ErrnoName.name(41), "E41")
        XCTAssertEqual(ErrnoName.name(Int32.min), "E\(Int32.min)")
    }

    func testTableIsCompleteAndNamesAreUnique() {
        let numbers = Set(ErrnoName.table.keys)
        for n in Int32(1)...133 where n != 41 && n != 58 { XCTAssertTrue(numbers.contains(n), "errno \(n)") }
        XCTAssertEqual(Set(ErrnoName.table.values).count, ErrnoName.table.count)
        for (n, name) in ErrnoName.table { XCTAssertEqual(ErrnoName.number(name), n) }
        XCTAssertEqual(ErrnoName.number("EWOULDBLOCK"), 11)
        XCTAssertEqual(ErrnoName.number("EDEADLOCK"), 35)
    }

    func testHelperExitCodesRoundTripErrnos() {
        for e in Array(Int32(0)...133) + Array(Int32(512)...531) {
            XCTAssertEqual(HelperExit.errno(forCode: HelperExit.code(forErrno: e)), e)
            XCTAssertTrue((0...255).contains(HelperExit.code(forErrno: e)))
        }
        XCTAssertEqual(HelperExit.errno(forCode: HelperExit.code(forErrno: 9999)), 5)
    }
}

/// Fault requesters of the other vIOMMUs, so the judge compares them as it does Intel's.
final class OtherIOMMUFaultTests: XCTestCase {
    func testVirtioIOMMUEndpointIsTheRequesterID() {
        let f = DMAFault.parse("virtio_iommu virtio0: page fault from EP 264 at 0x1000000 [R]")
        XCTAssertEqual(f?.requester, PCIAddress(bus: 1, slot: 1, function: 0))
        XCTAssertEqual(f?.address, 0x100_0000)
        XCTAssertEqual(f?.isRead, true)
        XCTAssertEqual(DMAFault.parse("virtio_iommu virtio1: domain fault from EP 512 at 0x2000 []")?.requester,
                       PCIAddress(bus: 2, slot: 0, function: 0))
    }

    func testAMDViFaultWithAndWithoutTheDevicePrefix() {
        let known = DMAFault.parse("vfio-pci 0000:01:00.0: AMD-Vi: Event logged [IO_PAGE_FAULT domain=0x0002 address=0x1000000 flags=0x0020]")
        XCTAssertEqual(known?.requester, PCIAddress(bus: 1, slot: 0, function: 0))
        XCTAssertEqual(known?.isRead, false)
        XCTAssertEqual(DMAFault.parse("AMD-Vi: Event logged [IO_PAGE_FAULT device=0000:02:00.1 domain=0x0000 address=0x0 flags=0x0000]")?.requester,
                       PCIAddress(bus: 2, slot: 0, function: 1))
        XCTAssertEqual(DMAFault.parse("AMD-Vi: Event logged [IO_PAGE_FAULT device=03:00.0 domain=0x0000 address=0x10 flags=0x0000]")?.requester,
                       PCIAddress(bus: 3, slot: 0, function: 0))
        XCTAssertNil(DMAFault.parse("AMD-Vi: Event logged [IO_PAGE_FAULT domain=0x0000 address=0x10 flags=0x0000]"))
    }
}

final class VFIOReleaseTests: XCTestCase {
    func testTheRequestWithoutAChannelDeclaresTheRemovingTaskBlocked() {
        // 5.10, 6.1, 6.12 and 7.3 log the same line (sriov-nvme-rootport's `sriov_numvfs` write).
        XCTAssertTrue(VFIORelease.declaresBlocked("vfio-pci 0000:01:00.2: No device request channel registered, blocked until released by user"))
        XCTAssertFalse(VFIORelease.declaresBlocked("vfio-pci 0000:01:00.2: Relaying device request to user (#10)"))
        XCTAssertFalse(VFIORelease.declaresBlocked("pci 0000:01:00.1: Removing from iommu group 4"))
    }
}
