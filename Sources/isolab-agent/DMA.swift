#if canImport(Glibc)
import Glibc
#endif
import CVFIO
import IsolabAgentCore
import IsolabProtocol

/// An edu's BAR0 mapped into the agent (KERNEL-NOTES §5.4): DMA registers 0x80 src, 0x88 dst,
/// 0x90 count, 0x98 command (bit 0 run, bit 1 device→RAM). Its buffer is 0x40000–0x40FFF.
final class Edu {
    static let buffer: UInt64 = 0x40000
    /// QEMU's default `dma_mask` for edu: the RAM-side address is ANDed with it.
    static let defaultMask: UInt64 = (1 << 28) - 1
    let bar: UnsafeMutableRawPointer
    /// Transfers started so far (``DMAEvidence/eduTransfers``).
    private(set) var transfers = 0

    init(bar: UnsafeMutableRawPointer) { self.bar = bar }

    /// 0x00 reads `0x010000ed` (major 1, minor 0) on QEMU's edu.
    var identification: UInt32 { cvfio_mmio_read32(bar, 0) }

    /// Runs one transfer and polls until RUN clears (100 ms of virtual time). False if it
    /// did not complete within `seconds`. edu completes even when the IOMMU refused the access:
    /// only the data says what happened.
    func transfer(from src: UInt64, to dst: UInt64, count: UInt64, deviceToRAM: Bool, seconds: Double = 3) -> Bool {
        cvfio_mmio_write64(bar, 0x80, src)
        cvfio_mmio_write64(bar, 0x88, dst)
        cvfio_mmio_write64(bar, 0x90, count)
        cvfio_mmio_write64(bar, 0x98, deviceToRAM ? 0x3 : 0x1)
        transfers += 1
        let deadline = ContinuousClock.now + .milliseconds(Int(seconds * 1000))
        while cvfio_mmio_read64(bar, 0x98) & 1 != 0 {
            if ContinuousClock.now >= deadline { return false }
            Posix.sleep(milliseconds: 2)
        }
        return true
    }
}

/// A page of RAM the initiator DMAs to and from, with its bus address.
struct DMABuffer {
    static let size = 4096
    let base: UnsafeMutableRawPointer
    let busAddress: UInt64

    func bytes(_ offset: Int, _ count: Int) -> [UInt8] {
        (0..<count).map { base.load(fromByteOffset: offset + $0, as: UInt8.self) }
    }

    func store(_ bytes: [UInt8], at offset: Int) {
        for (i, b) in bytes.enumerated() { base.storeBytes(of: b, toByteOffset: offset + i, as: UInt8.self) }
    }
}

/// Where a DMA probe writes in a peer's BAR0: a register that reads back what was written and
/// that its driver does not need (KERNEL-NOTES §5.4 for edu; QEMU e1000e RDBAL1, nvme ASQ).
struct Canary {
    let offset: Int
    let width: Int

    static func forModel(_ model: String?) -> Canary? {
        switch model {
        case "edu": return Canary(offset: 0x80, width: 8)       // DMA source address, 8-byte r/w
        case "e1000e": return Canary(offset: 0x2900, width: 4)  // RDBAL1 (queue 1 unused; low 4 bits read 0)
        case "nvme": return Canary(offset: 0x28, width: 8)      // ASQ (only read at controller enable)
        default: return nil
        }
    }

    func read(_ bar: UnsafeMutableRawPointer) -> [UInt8] {
        width == 8 ? le(cvfio_mmio_read64(bar, offset), 8) : le(UInt64(cvfio_mmio_read32(bar, offset)), 4)
    }

    func write(_ bar: UnsafeMutableRawPointer, _ bytes: [UInt8]) {
        let v = bytes.enumerated().reduce(UInt64(0)) { $0 | UInt64($1.element) << (8 * $1.offset) }
        if width == 8 { cvfio_mmio_write64(bar, offset, v) } else { cvfio_mmio_write32(bar, offset, UInt32(truncatingIfNeeded: v)) }
    }
}

func le(_ v: UInt64, _ n: Int) -> [UInt8] { (0..<n).map { UInt8(truncatingIfNeeded: v >> (8 * $0)) } }

/// Pieces a probe sets up and must undo.
final class ProbeResources {
    var unmaps: [() -> Void] = []
    deinit { for u in unmaps.reversed() { u() } }

    func mmap(fd: Int32, size: Int, offset: off_t) -> UnsafeMutableRawPointer? {
        guard let p = Glibc.mmap(nil, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, offset), p != MAP_FAILED else { return nil }
        unmaps.append { munmap(p, size) }
        return p
    }
}

extension Agent {
    static let ownIOVA: UInt64 = 0x100_0000
    static let unmappedIOVA: UInt64 = 0x200_0000
    static let peerIOVA: UInt64 = 0x400_0000

    /// A `dma` probe from edu `a` (KERNEL-NOTES §5.3–5.6). Under an IOMMU through A's open VFIO
    /// device and its container (`vfio`) or IOAS (`iommufd`); a no-IOMMU VFIO device at
    /// physical addresses (`noiommu`); with no IOMMU group through sysfs at guest-physical
    /// addresses (`physical`).
    func dma(_ step: PlanStep, from a: String, _ d: inout StepDraft) {
        let res = ProbeResources()
        let modelA = plan.nodes.first(where: { bdfOfNode[$0.id] == a })?.model
        guard modelA == nil || modelA == "edu" else { return d.fail("unsupported", "only an edu initiates DMA probes; \(a) is \(modelA!)") }
        let vfioPath = Sysfs.group(of: a) != nil
        let opened = vfio.device(a)
        var evidence = DMAEvidence(path: opened?.space.evidencePath ?? (vfioPath ? "vfio" : "physical"), busAddress: "", expected: "", observed: "")
        defer { d.record.dma = evidence }

        // A's registers and a RAM page it can reach.
        let edu: Edu
        let buffer: DMABuffer
        var space: DMASpace?
        if vfioPath {
            guard let (s, fd) = opened else { return d.fail("not-run", "\(a) has no open VFIO device: vfio-open it first") }
            guard let bar = mapVFIOBar(fd, res) else { return d.fail("unsupported", "cannot mmap \(a)'s BAR0 region: \(Posix.errorText(errno))") }
            enableBusMaster(vfioDevice: fd)
            edu = Edu(bar: bar)
            if case .noiommu = s {
                // Nothing translates: the buffer's bus address is its physical address.
                guard let (page, pa) = physicalPage(res, below: dmaLimit(a)) else { return d.fail("unsupported", "no buffer page within \(a)'s DMA reach with a known physical address (pagemap)") }
                buffer = DMABuffer(base: page, busAddress: pa)
            } else {
                space = s
                guard let page = anonymousPage(res) else { return d.fail("unsupported", "cannot allocate a buffer page") }
                let r = s.map(vaddr: UInt64(UInt(bitPattern: page)), iova: Self.ownIOVA, size: UInt64(DMABuffer.size))
                guard r == 0 else { return d.fail(ErrnoName.name(r), errno: -r, "\(s.mapCall) of the buffer at \(Hex.address(Self.ownIOVA)): \(Posix.errorText(-r))") }
                res.unmaps.append { s.unmap(iova: Self.ownIOVA, size: UInt64(DMABuffer.size)) }
                buffer = DMABuffer(base: page, busAddress: Self.ownIOVA)
            }
        } else {
            guard let bar = mapSysfsBar(a, res) else { return d.fail("unsupported", "cannot mmap \(a)'s resource0: \(Posix.errorText(errno))") }
            enableCommandBits(sysfs: a, 0x6)
            guard let (page, pa) = physicalPage(res, below: dmaLimit(a)) else { return d.fail("unsupported", "no buffer page within \(a)'s DMA reach with a known physical address (pagemap)") }
            edu = Edu(bar: bar)
            buffer = DMABuffer(base: page, busAddress: pa)
        }
        defer { evidence.eduTransfers = edu.transfers }
        guard edu.identification & 0xff == 0xed else {
            return d.fail("unsupported", "\(a)'s BAR0 does not read as an edu (0x00 = \(Hex.address(UInt64(edu.identification))))")
        }
        _ = collectFaults()

        switch step.to ?? .memory {
        case .memory:
            probeMemory(edu, buffer, index: step.index, &evidence, &d)
        case .unmapped:
            guard space != nil else { return d.fail("unsupported", "no IOMMU: there is no IOVA space to leave unmapped") }
            probeUnmapped(edu, buffer, index: step.index, &evidence, &d)
        case .device:
            guard let target = step.target, let b = bdfOfNode[target] else {
                return d.fail("not-run", "the probe's target \(step.target ?? "(none)") is not in the guest")
            }
            probePeer(edu, buffer, from: a, to: b, target: target, peerMap: step.map == "peer", space: space,
                      res, index: step.index, &evidence, &d)
        }
    }

    // MARK: probes

    func probeMemory(_ edu: Edu, _ buf: DMABuffer, index: Int, _ ev: inout DMAEvidence, _ d: inout StepDraft) {
        let pattern = (0..<64).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ index &* 13) ^ 0x5a }
        buf.store(pattern, at: 0)
        buf.store([UInt8](repeating: 0xa5, count: 64), at: 0x100)
        ev.busAddress = Hex.address(buf.busAddress)
        ev.expected = Hex.bytes(pattern)
        let done = edu.transfer(from: buf.busAddress, to: Edu.buffer, count: 64, deviceToRAM: false)
            && edu.transfer(from: Edu.buffer, to: buf.busAddress + 0x100, count: 64, deviceToRAM: true)
        let observed = buf.bytes(0x100, 64)
        ev.observed = Hex.bytes(observed)
        judge(done: done, arrived: observed == pattern, &ev, &d,
              what: "RAM → edu → RAM round trip through \(ev.busAddress)")
    }

    /// Reads 64 bytes from an IOVA nothing maps into edu's buffer, then copies the buffer back
    /// to the mapped page: under the IOMMU the read faults and the buffer holds zeros.
    func probeUnmapped(_ edu: Edu, _ buf: DMABuffer, index: Int, _ ev: inout DMAEvidence, _ d: inout StepDraft) {
        let marker = [UInt8](repeating: 0x3c, count: 64)
        buf.store(marker, at: 0)
        buf.store([UInt8](repeating: 0xa5, count: 64), at: 0x100)
        ev.busAddress = Hex.address(Self.unmappedIOVA)
        ev.expected = ""
        let done = edu.transfer(from: buf.busAddress, to: Edu.buffer, count: 64, deviceToRAM: false)
            && edu.transfer(from: Self.unmappedIOVA, to: Edu.buffer, count: 64, deviceToRAM: false)
            && edu.transfer(from: Edu.buffer, to: buf.busAddress + 0x100, count: 64, deviceToRAM: true)
        let observed = buf.bytes(0x100, 64)
        ev.observed = Hex.bytes(observed)
        // Data "arrived" if the buffer changed to something that is neither the marker nor zeros.
        let arrived = observed != marker && observed.contains(where: { $0 != 0 }) && observed != [UInt8](repeating: 0xa5, count: 64)
        judge(done: done, arrived: arrived, &ev, &d,
              what: "read of unmapped IOVA \(ev.busAddress) (edu buffer preloaded with 3c…, copied back after)")
    }

    func probePeer(_ edu: Edu, _ buf: DMABuffer, from a: String, to b: String, target: String, peerMap: Bool,
                   space: DMASpace?, _ res: ProbeResources, index: Int, _ ev: inout DMAEvidence, _ d: inout StepDraft) {
        let modelB = plan.nodes.first(where: { $0.id == target })?.model
        guard let canary = Canary.forModel(modelB) else {
            return d.fail("unsupported", "no canary register known for \(target) (\(modelB ?? "no model"))")
        }
        // The CPU's view of B's BAR0: through B's VFIO device if open, else sysfs resource0.
        var cpuView: UnsafeMutableRawPointer?
        var peerRegion: (base: UnsafeMutableRawPointer, size: UInt64)?
        if let (_, fdB) = vfio.device(b) {
            var region = cvfio_region()
            if cvfio_device_get_region_info(fdB, UInt32(CVFIO_PCI_BAR0_REGION_INDEX), &region) == 0,
               let p = res.mmap(fd: fdB, size: Int(clamping: region.size), offset: off_t(clamping: region.offset)) {
                cpuView = p
                peerRegion = (p, region.size)
            }
        } else {
            enableCommandBits(sysfs: b, 0x2)
            cpuView = mapSysfsBar(b, res)
        }
        let busAddress: UInt64
        if peerMap {
            guard let space else { return d.fail("unsupported", "map: peer needs an IOVA space (an IOMMU container or IOAS) to map \(target)'s BAR into") }
            guard let region = peerRegion else { return d.fail("not-run", "\(target) has no open VFIO device whose BAR could be mapped: vfio-open it first") }
            let r = space.map(vaddr: UInt64(UInt(bitPattern: region.base)), iova: Self.peerIOVA, size: region.size)
            guard r == 0 else { return d.fail(ErrnoName.name(r), errno: -r, "\(space.mapCall) of \(target)'s BAR0 mmap at \(Hex.address(Self.peerIOVA)): \(Posix.errorText(-r))") }
            res.unmaps.append { space.unmap(iova: Self.peerIOVA, size: region.size) }
            busAddress = Self.peerIOVA + UInt64(canary.offset)
        } else {
            guard let bar = Sysfs.barAddress(of: b) else { return d.fail("unsupported", "\(target) has no BAR0 address in its resource file") }
            busAddress = bar.start + UInt64(canary.offset)
        }
        var notes: [String] = []
        if busAddress + UInt64(canary.width) > Edu.defaultMask + 1 {
            if space == nil, eduClampsAddresses(edu, buf) {
                // Physical addresses are not translated: the clamped address is guest RAM.
                return d.fail("unsupported", "\(target)'s BAR0 at \(Hex.address(busAddress)) is beyond \(nodeOfBDF[a] ?? a)'s DMA mask (QEMU's edu default: 28 bits), which would redirect the write into guest RAM; give edu a wider dma_mask (e.g. dma_mask=0xffffffffff)")
            }
            if space != nil {
                notes.append("edu clamps \(Hex.address(busAddress)) to \(Hex.address(busAddress & Edu.defaultMask)) unless it has a wider dma_mask")
            }
        }
        let pattern = canary.width == 8 ? le(0x15a1_c0de_0000_0000 | UInt64(index & 0xff) << 12, 8)
                                        : le(0xc0de_0000 | UInt64(index & 0xff) << 8, 4)
        ev.busAddress = Hex.address(busAddress)
        ev.expected = Hex.bytes(pattern)
        var original: [UInt8]?
        if let view = cpuView {
            original = canary.read(view)
            if modelB == "edu" { canary.write(view, le(0x0bad_0bad_0000_0000, canary.width)) }
        }
        // Load the pattern into A's buffer and check it got there.
        buf.store(pattern, at: 0)
        buf.store([UInt8](repeating: 0xa5, count: 16), at: 0x300)
        guard edu.transfer(from: buf.busAddress, to: Edu.buffer, count: UInt64(canary.width), deviceToRAM: false),
              edu.transfer(from: Edu.buffer, to: buf.busAddress + 0x300, count: UInt64(canary.width), deviceToRAM: true),
              buf.bytes(0x300, canary.width) == pattern else {
            ev.observed = Hex.bytes(buf.bytes(0x300, canary.width))
            return d.fail("mismatch", "could not load the pattern into \(nodeOfBDF[a] ?? a)'s buffer through its own RAM page")
        }
        let sent = edu.transfer(from: Edu.buffer, to: busAddress, count: UInt64(canary.width), deviceToRAM: true)
        let observed: [UInt8]
        if let view = cpuView {
            observed = canary.read(view)
            notes.append("canary \(target)+\(Hex.address(UInt64(canary.offset))) read by the CPU")
        } else {
            // No CPU view (a kernel driver holds the BAR exclusively): read it back by DMA.
            buf.store([UInt8](repeating: 0xa5, count: 16), at: 0x200)
            _ = edu.transfer(from: busAddress, to: Edu.buffer + 0x800, count: UInt64(canary.width), deviceToRAM: false)
                && edu.transfer(from: Edu.buffer + 0x800, to: buf.busAddress + 0x200, count: UInt64(canary.width), deviceToRAM: true)
            observed = buf.bytes(0x200, canary.width)
            notes.append("canary \(target)+\(Hex.address(UInt64(canary.offset))) read back by \(nodeOfBDF[a] ?? a)'s DMA")
        }
        ev.observed = Hex.bytes(observed)
        if let view = cpuView, let original, modelB != "edu" { canary.write(view, original) }
        judge(done: sent, arrived: observed == pattern, &ev, &d,
              what: "\(nodeOfBDF[a] ?? a) writes \(target)'s BAR0 register at bus address \(ev.busAddress) (\(peerMap ? "mapped peer BAR" : "GPA, no mapping")); " + notes.joined(separator: "; "))
    }

    /// Whether edu masks bus addresses (its default 28-bit dma_mask): a read from the buffer
    /// page's address with bit 35 set returns the page's bytes if masked, nothing otherwise.
    /// Only meaningful without an IOMMU (the page's bus address is its physical address).
    func eduClampsAddresses(_ edu: Edu, _ buf: DMABuffer) -> Bool {
        let probe: [UInt8] = [0x6d, 0x61, 0x73, 0x6b, 0x3f, 0x21, 0x7e, 0x42]
        buf.store(probe, at: 0x400)
        buf.store([UInt8](repeating: 0, count: 8), at: 0x408)
        _ = edu.transfer(from: (buf.busAddress + 0x400) | (1 << 35), to: Edu.buffer + 0x900, count: 8, deviceToRAM: false)
            && edu.transfer(from: Edu.buffer + 0x900, to: buf.busAddress + 0x408, count: 8, deviceToRAM: true)
        return buf.bytes(0x408, 8) == probe
    }

    /// delivered / faulted / mismatch / timed-out, with the fault lines of the probe.
    func judge(done: Bool, arrived: Bool, _ ev: inout DMAEvidence, _ d: inout StepDraft, what: String) {
        var faults = collectFaults()
        if !arrived && faults.isEmpty {
            // The fault interrupt may trail the transfer: give the log a moment.
            for _ in 0..<15 where faults.isEmpty {
                Posix.sleep(milliseconds: 20)
                faults = collectFaults()
            }
        }
        ev.faultLines = faults
        if let f = faults.lazy.compactMap(DMAFault.parse).first {
            ev.faultRequester = pathOfBDF[f.requester.description]
                ?? GuestPath.forRequester(f.requester, busPaths: busPaths) ?? f.requester.description
        }
        if !done {
            d.fail("timed-out", "\(what): edu did not clear RUN")
        } else if arrived {
            d.record.result = "delivered"
            d.record.detail = what
        } else if !faults.isEmpty {
            d.record.result = "faulted"
            d.record.detail = what
        } else {
            d.fail("mismatch", "\(what): the data did not arrive and no fault was logged")
        }
    }

    /// New kernel log lines (kept for the step record); the fault lines among them.
    func collectFaults() -> [String] {
        let lines = kmsg.drain()
        pendingLog += lines
        return lines.filter(DMAFault.isFaultLine)
    }

    // MARK: mapping

    /// The end of an edu's DMA reach: its declared `dma_mask` (QEMU's default 28 bits).
    func dmaLimit(_ bdf: String) -> UInt64 {
        let bits = plan.nodes.first(where: { bdfOfNode[$0.id] == bdf })?.dmaMaskBits ?? 28
        return bits >= 64 ? UInt64.max : (UInt64(1) << UInt64(bits))
    }

    func mapVFIOBar(_ fd: Int32, _ res: ProbeResources) -> UnsafeMutableRawPointer? {
        var region = cvfio_region()
        guard cvfio_device_get_region_info(fd, UInt32(CVFIO_PCI_BAR0_REGION_INDEX), &region) == 0, region.size > 0 else { return nil }
        return res.mmap(fd: fd, size: Int(clamping: region.size), offset: off_t(clamping: region.offset))
    }

    func mapSysfsBar(_ bdf: String, _ res: ProbeResources) -> UnsafeMutableRawPointer? {
        guard let bar = Sysfs.barAddress(of: bdf) else { return nil }
        let fd = cvfio_open(Sysfs.device(bdf) + "/resource0", O_RDWR | O_SYNC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        return res.mmap(fd: fd, size: Int(clamping: bar.size), offset: 0)
    }

    /// Sets memory space and bus master (command register bits 1, 2) through the VFIO config region.
    func enableBusMaster(vfioDevice fd: Int32) {
        var region = cvfio_region()
        guard cvfio_device_get_region_info(fd, UInt32(CVFIO_PCI_CONFIG_REGION_INDEX), &region) == 0 else { return }
        setCommandBits(fd, off_t(clamping: region.offset) &+ 4, 0x6)
    }

    /// Sets command register bits through sysfs `config`: 0x6 (memory, bus master) for the
    /// initiator, 0x2 (memory) for a peer whose BAR the CPU reads.
    func enableCommandBits(sysfs bdf: String, _ bits: UInt16) {
        let fd = cvfio_open(Sysfs.device(bdf) + "/config", O_RDWR)
        guard fd >= 0 else { return }
        defer { close(fd) }
        setCommandBits(fd, 4, bits)
    }

    private func setCommandBits(_ fd: Int32, _ offset: off_t, _ bits: UInt16) {
        var cmd: UInt16 = 0
        guard pread(fd, &cmd, 2, offset) == 2, cmd & bits != bits else { return }
        cmd |= bits
        _ = pwrite(fd, &cmd, 2, offset)
    }

    func anonymousPage(_ res: ProbeResources) -> UnsafeMutableRawPointer? {
        guard let p = Glibc.mmap(nil, DMABuffer.size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0),
              p != MAP_FAILED else { return nil }
        res.unmaps.append { munmap(p, DMABuffer.size) }
        memset(p, 0, DMABuffer.size)
        return p
    }

    /// A locked page whose guest-physical address (from /proc/self/pagemap) lies below `limit`
    /// (edu's DMA mask: QEMU's default is 28 bits; isolab's domains give all 64 unless declared).
    func physicalPage(_ res: ProbeResources, below limit: UInt64) -> (UnsafeMutableRawPointer, UInt64)? {
        let pagemap = cvfio_open("/proc/self/pagemap", O_RDONLY)
        guard pagemap >= 0 else { return nil }
        defer { close(pagemap) }
        for _ in 0..<512 {
            guard let p = Glibc.mmap(nil, DMABuffer.size, PROT_READ | PROT_WRITE,
                                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE | MAP_LOCKED, -1, 0), p != MAP_FAILED else { return nil }
            res.unmaps.append { munmap(p, DMABuffer.size) }
            memset(p, 0x11, DMABuffer.size)
            var entry: UInt64 = 0
            let index = UInt64(UInt(bitPattern: p)) / UInt64(DMABuffer.size)
            guard pread(pagemap, &entry, 8, off_t(index * 8)) == 8, entry >> 63 == 1 else { continue }
            let pfn = entry & ((1 << 55) - 1)
            guard pfn != 0 else { return nil }  // not root: pagemap hides PFNs
            let pa = pfn * UInt64(DMABuffer.size)
            if limit == UInt64.max || pa + UInt64(DMABuffer.size) <= limit { return (p, pa) }
        }
        return nil
    }
}
