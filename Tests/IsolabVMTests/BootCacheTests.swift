import Foundation
import IsolabImages
import IsolabLibvirt
import IsolabModel
import IsolabProtocol
@testable import IsolabVM
import XCTest

/// The boot cache's key and store (no guest is started).
final class BootCacheTests: XCTestCase {
    var directory = ""

    override func setUpWithError() throws {
        directory = NSTemporaryDirectory() + "isolab-boot-cache-\(UUID().uuidString)"
    }

    override func tearDown() {
        try? FileManager.default.removeItem(atPath: directory)
    }

    func key(_ req: RunRequest, _ change: (inout DomainParameters, inout GuestPlan) -> Void = { _, _ in }) throws -> String {
        let files = RunFiles(directory: req.directory + "/snapshot")
        var plan = PlanBuilder.plan(topology: req.topology, fabric: req.fabric, scenario: nil,
                                    runID: (req.directory as NSString).lastPathComponent, stepTimeout: req.stepTimeout)
        plan.serve = true
        var p = req.domainParameters(name: "isolab-\(UUID().uuidString)", files: files)
        p.channelSocketPath = "/tmp/\(UUID().uuidString).sock"
        p.vmstateDrivePath = files.vmstate
        change(&p, &plan)
        return try BootCache.key(req, plan: plan, parameters: p, libvirt: "9.0.0")
    }

    func testTheKeyIgnoresWhatEveryRunNamesAfresh() throws {
        let topology = try BootSupport.topology("switch-no-acs")
        let a = try BootSupport.request(topology, kernel: "6.1", scenario: topology.scenarios[0])
        let b = try BootSupport.request(topology, kernel: "6.1", scenario: topology.scenarios[1])
        XCTAssertNotEqual(a.directory, b.directory)
        // Other run directory, domain name, socket, console and run id: the same saved boot.
        XCTAssertEqual(try key(a), try key(b))
    }

    func testTheKeyChangesWithWhatDecidesTheSavedGuest() throws {
        let topology = try BootSupport.topology("switch-no-acs")
        let req = try BootSupport.request(topology, kernel: "6.1", scenario: topology.scenarios[0])
        let base = try key(req)
        XCTAssertNotEqual(base, try key(req) { p, _ in p.memoryMiB = 256 })
        XCTAssertNotEqual(base, try key(req) { p, _ in p.kernelCommandLine += " iommu.strict=1" })
        XCTAssertNotEqual(base, try key(req) { p, _ in p.clock = .icount })
        XCTAssertNotEqual(base, try key(req) { _, plan in plan.stepTimeoutSeconds += 1 })
        XCTAssertNotEqual(base, try key(req) { p, _ in p.emulator = "/usr/bin/qemu-system-x86_64" })
        var otherKernel = req
        otherKernel.image = try BootSupport.image("6.12")
        XCTAssertNotEqual(base, try key(otherKernel))
        var otherVersion = req
        otherVersion.emulatorVersion = "QEMU emulator version 7.2.23"
        XCTAssertNotEqual(base, try key(otherVersion))
        let other = try BootSupport.topology("rootport-no-acs")
        XCTAssertNotEqual(base, try key(try BootSupport.request(other, kernel: "6.1", scenario: other.scenarios[0])))
        XCTAssertNotEqual(base, try BootCache.key(req, plan: PlanBuilder.plan(topology: req.topology, fabric: req.fabric, scenario: nil,
                                                                            runID: "x", stepTimeout: req.stepTimeout),
                                                  parameters: req.domainParameters(name: "n", files: RunFiles(directory: "/d")),
                                                  libvirt: "11.3.0"))
    }

    func testAStoredBootIsFoundUntilEvictedAndTheLeastRecentlyUsedGoFirst() throws {
        let inventory = Inventory(kernelRelease: "6.1.0-test", cmdline: "console=ttyS0", iommu: "intel", functions: [], groups: [])
        let source = directory + "-src"
        defer { try? FileManager.default.removeItem(atPath: source) }
        try FileManager.default.createDirectory(atPath: source, withIntermediateDirectories: true)
        let vmstate = source + "/vmstate.qcow2"
        // Random bytes: the entry stores them compressed, and they stay about as large.
        try Data((0..<1000).map { _ in UInt8.random(in: 0...255) }).write(to: URL(fileURLWithPath: vmstate))

        let cache = BootCache(directory: directory, limitBytes: 2500)
        XCTAssertNil(cache.lookup("a"))
        cache.store("a", vmstate: vmstate, inventory: inventory)
        let a = try XCTUnwrap(cache.lookup("a"))
        XCTAssertEqual(a.inventory, inventory)
        let unpacked = source + "/unpacked.qcow2"
        try VMStateDrive.unpack(a.packedPath, to: unpacked)
        XCTAssertEqual(FileManager.default.contents(atPath: unpacked), FileManager.default.contents(atPath: vmstate))
        // A second store of the same key (another run at once) keeps the first.
        cache.store("a", vmstate: vmstate, inventory: inventory)
        cache.store("b", vmstate: vmstate, inventory: inventory)
        try FileManager.default.setAttributes([.modificationDate: Date(timeIntervalSinceNow: -60)], ofItemAtPath: directory + "/b")
        _ = cache.lookup("a")   // a is the more recently used
        cache.store("c", vmstate: vmstate, inventory: inventory)   // 3 × ≈ 1.1 kB > 2500 bytes: b goes
        XCTAssertNotNil(cache.lookup("a"))
        XCTAssertNil(cache.lookup("b"))
        XCTAssertNotNil(cache.lookup("c"))
        cache.evict("a")
        XCTAssertNil(cache.lookup("a"))
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: directory).sorted(), ["c"])
    }

    func testWithTheBootCacheEverySaveableFabricIsSavedEvenForOneScenario() {
        let plan = Scheduler.plan(["a", "b", "b", "n"], jobs: 1, snapshots: true, costs: nil, saveable: { $0 != 3 }, keepBoots: true)
        XCTAssertEqual(plan.map(\.requests), [[1, 2], [0], [3]])
        XCTAssertEqual(plan.map(\.saved), [true, true, false])
        // Costs that say a save does not pay this run do not split a fabric: later runs gain.
        let dear = GuestCosts(boot: 1, snapshot: 100, restore: 1, steps: 1)
        XCTAssertEqual(Scheduler.plan(["a", "a"], jobs: 1, snapshots: true, costs: { _ in dear }, keepBoots: true).map(\.requests), [[0, 1]])
        XCTAssertEqual(Scheduler.plan(["a", "a"], jobs: 1, snapshots: true, costs: { _ in dear }).map(\.requests), [[0], [1]])
        XCTAssertEqual(Scheduler.plan(["a"], jobs: 1, snapshots: true, costs: nil).map(\.saved), [false])
    }

    func testAFabricWhoseSavedBootIsCachedIsExpectedToCostACachedStartAndStartsLater() {
        let costs = GuestCosts(boot: 4, snapshot: 8, restore: 0.5, steps: 1)
        // b's saved boot is in the cache: 0.6 + 2 restores + 2 × 1 s of steps; a boots and saves.
        let plan = Scheduler.plan(["a", "a", "b", "b"], jobs: 1, snapshots: true, costs: { _ in costs }, keepBoots: true,
                                  cached: { $0 >= 2 })
        XCTAssertEqual(plan.map(\.requests), [[0, 1], [2, 3]], "the unit expected to end latest starts first")
        XCTAssertEqual(plan.map(\.expectedSeconds), [8 + 2 * 1.5, GuestCosts.defaultCachedStart + 2 * 0.5 + 2])
        // Without keepBoots (no cache in use) nothing counts as cached: here a save does not pay.
        XCTAssertEqual(Scheduler.plan(["b", "b"], jobs: 1, snapshots: true, costs: { _ in costs }, cached: { _ in true })
            .map(\.expectedSeconds), [5, 5])
        XCTAssertEqual(costs.expectedSeconds(scenarios: 1, saved: false, cached: true), 5, "a booted unit starts from no cache")
        var measured = costs
        measured.cachedStart = 0.7
        XCTAssertEqual(measured.expectedSeconds(scenarios: 2, saved: true, cached: true), 0.7 + 2 * 0.5 + 2, accuracy: 1e-9,
                       "a cached start the book measured replaces the default")
    }
}

/// A saved boot taken from the boot cache in a later run gives what booting gives.
final class BootCacheBootTests: XCTestCase {
    func testAFabricStartedFromTheBootCacheObservesWhatItsBootDidAndADamagedEntryIsBootedAgain() throws {
        let directory = NSTemporaryDirectory() + "isolab-boot-cache-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let topology = try BootSupport.topology("multifunction-e1000e-edu")
        func requests() throws -> [RunRequest] {
            try topology.scenarios.map { try BootSupport.request(topology, kernel: "6.1", scenario: $0) }
        }
        let runner = try BootSupport.runner()
        runner.bootCache = BootCache(directory: directory)
        defer { runner.bootCache = nil }
        func run(_ reqs: [RunRequest]) -> [VMObservation] {
            var out: [VMObservation] = []
            runner.runFromSnapshot(reqs, finished: { _, o in out.append(o) })
            return out
        }
        func entries() -> [String] { ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []).filter { !$0.hasPrefix(".") } }

        let firstRequests = try requests()
        XCTAssertFalse(runner.hasCachedBoot(firstRequests[0]))
        let booted = run(firstRequests)
        XCTAssertEqual(entries().count, 1, "the saved boot is kept")
        let key = try XCTUnwrap(entries().first)
        // The plan's look-up finds it under the key the boot stored it by, for every scenario.
        XCTAssertEqual(GuestRunner.bootCacheKey(firstRequests[1], libvirt: runner.connection.libvirtVersion()), key)
        XCTAssertTrue(try requests().allSatisfy(runner.hasCachedBoot))
        let secondRequests = try requests()
        let cached = run(secondRequests)
        for (b, c) in zip(booted, cached) {
            let what = "\(c.scenario ?? "")"
            XCTAssertEqual(b.outcome, .completed, "\(what): \(b.problem ?? "")")
            XCTAssertEqual(c.outcome, .completed, "\(what): \(c.problem ?? "")\n\(c.consoleTail.suffix(20).joined(separator: "\n"))")
            XCTAssertNil(b.bootCache, what)
            XCTAssertEqual(c.bootCache, key, "\(what) did not start from the boot cache")
            XCTAssertFalse(c.steps.isEmpty, what)
            XCTAssertEqual(BootPathBootTests.Facts(c), BootPathBootTests.Facts(b), "\(what): the cached boot observed something else")
        }
        XCTAssertGreaterThan(booted[0].timing.snapshot, 0)
        XCTAssertGreaterThan(cached[0].timing.snapshot, 0, "the cached start is accounted where the boot was")

        // A damaged entry: QEMU cannot start from it, so the fabric boots and the entry is replaced.
        let vmstate = directory + "/" + key + "/vmstate.qcow2.zst"
        let size = try XCTUnwrap(FileManager.default.attributesOfItem(atPath: vmstate)[.size] as? UInt64)
        truncate(vmstate, 4096)
        let thirdRequests = try requests()
        let again = run(thirdRequests)
        for (b, a) in zip(booted, again) {
            XCTAssertEqual(a.outcome, .completed, "\(a.scenario ?? ""): \(a.problem ?? "")")
            XCTAssertNil(a.bootCache, "a damaged entry was used")
            XCTAssertEqual(BootPathBootTests.Facts(a), BootPathBootTests.Facts(b))
        }
        XCTAssertEqual(entries(), [key])
        let stored = try XCTUnwrap(FileManager.default.attributesOfItem(atPath: vmstate)[.size] as? UInt64)
        XCTAssertGreaterThan(stored, 1 << 20, "the entry was saved again (it was \(size) bytes)")
        XCTAssertEqual(BootSupport.leftoverQEMU(of: firstRequests + secondRequests + thirdRequests), [])
        XCTAssertEqual(ChildReaper.livingQEMUChildren(), [], "an adopted QEMU still runs")
        for r in firstRequests + secondRequests + thirdRequests {
            XCTAssertFalse(FileManager.default.fileExists(atPath: r.directory + "/snapshot/vmstate.qcow2"), r.directory)
        }
    }
}
