import Foundation
@testable import IsolabLibvirt
import XCTest

enum LibvirtTestSupport {
    /// One embedded connection for the test process (a process can use one embedded root).
    static let connection: Result<LibvirtConnection, Error> = Result { try EmbeddedRoot.connect() }
    static func connect() throws -> LibvirtConnection { try connection.get() }

    nonisolated(unsafe) static var counter = 0
    static let lock = NSLock()

    static func uniqueName(_ label: String) -> String {
        lock.lock(); defer { lock.unlock() }
        counter += 1
        return "isolab-test-\(label)-\(getpid())-\(counter)"
    }

    /// Pids of QEMU processes started for domain `name` (`-name guest=<name>,…`).
    static func qemuProcesses(named name: String) -> [Int32] {
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        return entries.compactMap { e -> Int32? in
            guard let pid = Int32(e), let data = FileManager.default.contents(atPath: "/proc/\(e)/cmdline") else { return nil }
            let args = String(decoding: data, as: UTF8.self).split(separator: "\u{0}")
            guard args.first?.contains("qemu-system") == true, args.contains(where: { $0.hasPrefix("guest=\(name),") }) else { return nil }
            return pid
        }
    }

    /// A minimal q35 domain with no kernel and no devices: enough to start QEMU paused.
    static func tinyDomain(_ name: String) -> String {
        """
        <domain type='qemu'>
          <name>\(name)</name>
          <memory unit='MiB'>64</memory>
          <os><type arch='x86_64' machine='q35'>hvm</type></os>
          <devices>
            <controller type='usb' model='none'/>
            <memballoon model='none'/>
          </devices>
        </domain>
        """
    }
}

/// Lifecycle events of one domain, waited on with deadlines.
final class EventLog: @unchecked Sendable {
    private let condition = NSCondition()
    private var events: [LifecycleEvent] = []

    func append(_ e: LifecycleEvent) {
        condition.lock(); events.append(e); condition.broadcast(); condition.unlock()
    }

    var all: [LifecycleEvent] { condition.lock(); defer { condition.unlock() }; return events }

    /// Waits until an event matching `match` has arrived, or `seconds` pass.
    func wait(seconds: Double, for match: (LifecycleEvent) -> Bool) -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        condition.lock(); defer { condition.unlock() }
        while !events.contains(where: match) {
            if !condition.wait(until: deadline) { return events.contains(where: match) }
        }
        return true
    }
}

final class LibvirtConnectionTests: XCTestCase {
    func watch(_ connection: LibvirtConnection, _ name: String) throws -> (EventLog, Int32) {
        let log = EventLog()
        let token = try connection.addLifecycleHandler { domain, event in
            if domain == name { log.append(event) }
        }
        return (log, token)
    }

    func testEmbeddedConnectionReportsLibvirt9_0AndQEMU7_2() throws {
        let c = try LibvirtTestSupport.connect()
        XCTAssertTrue(c.uri.hasPrefix("qemu:///embed?root="), c.uri)
        XCTAssertTrue(c.isEmbedded)
        XCTAssertTrue(c.libvirtVersion().hasPrefix("9.0."), c.libvirtVersion())
        XCTAssertTrue(c.hypervisorVersion().hasPrefix("7.2."), c.hypervisorVersion())
        XCTAssertEqual(LibvirtConnection.versionText(9_000_000), "9.0.0")
        XCTAssertEqual(LibvirtConnection.versionText(7_002_022), "7.2.22")
    }

    func testPausedDomainRunsQEMUUntilDestroyedAndReportsLifecycleEvents() throws {
        let c = try LibvirtTestSupport.connect()
        let name = LibvirtTestSupport.uniqueName("paused")
        let (log, token) = try watch(c, name)
        defer { c.removeLifecycleHandler(token) }
        let domain = try c.createDomain(xml: LibvirtTestSupport.tinyDomain(name), paused: true)
        defer { try? domain.destroy() }
        XCTAssertEqual(domain.name, name)
        XCTAssertTrue(domain.isActive())
        XCTAssertTrue(log.wait(seconds: 10) { $0 == .started }, "\(log.all)")
        XCTAssertTrue(log.wait(seconds: 10) { $0 == .suspended }, "\(log.all)")
        let pid = try XCTUnwrap(domain.qemuPID(), "no QEMU pid for a running embedded domain")
        XCTAssertEqual(kill(pid, 0), 0)
        XCTAssertEqual(try c.domain(named: name)?.name, name)
        XCTAssertTrue(try c.activeDomains().map(\.name).contains(name))

        try domain.resume()
        XCTAssertTrue(log.wait(seconds: 10) { $0 == .resumed }, "\(log.all)")
        try domain.destroy()
        XCTAssertTrue(log.wait(seconds: 10) { $0 == .stopped(.destroyed) }, "\(log.all)")
        XCTAssertFalse(domain.isActive())
        XCTAssertNoThrow(try domain.destroy(), "destroying a domain that is gone is not an error")
        XCTAssertNil(try c.domain(named: name))
        XCTAssertNil(domain.qemuPID())
        // Reaped at once (this process is the subreaper): no zombie, no process.
        XCTAssertNotEqual(kill(pid, 0), 0)
    }

    func testRemovedHandlerIsNoLongerCalled() throws {
        let c = try LibvirtTestSupport.connect()
        let name = LibvirtTestSupport.uniqueName("handler")
        let (kept, keptToken) = try watch(c, name)
        defer { c.removeLifecycleHandler(keptToken) }
        let (removed, removedToken) = try watch(c, name)
        c.removeLifecycleHandler(removedToken)
        let domain = try c.createDomain(xml: LibvirtTestSupport.tinyDomain(name), paused: true)
        try domain.destroy()
        XCTAssertTrue(kept.wait(seconds: 10) { $0.isStopped }, "\(kept.all)")
        XCTAssertEqual(removed.all, [])
    }

    func testClosingAConnectionDestroysItsAutodestroyDomains() throws {
        let main = try LibvirtTestSupport.connect()
        let second = try LibvirtConnection.open(main.uri)
        let kept = LibvirtTestSupport.uniqueName("kept")
        let doomed = LibvirtTestSupport.uniqueName("autodestroy")
        let k = try second.createDomain(xml: LibvirtTestSupport.tinyDomain(kept), paused: true, autodestroy: false)
        _ = try second.createDomain(xml: LibvirtTestSupport.tinyDomain(doomed), paused: true)
        second.close()
        second.close()  // idempotent
        XCTAssertNil(try main.domain(named: doomed), "an autodestroy domain outlived its connection")
        let survivor = try XCTUnwrap(try main.domain(named: kept))
        XCTAssertTrue(survivor.isActive())
        try survivor.destroy()
        XCTAssertThrowsError(try second.activeDomains()) { XCTAssertTrue("\($0)".contains("closed"), "\($0)") }
        _ = k
    }

    func testSaveWritesTheGuestStateAndStopsTheDomain() throws {
        let c = try LibvirtTestSupport.connect()
        let name = LibvirtTestSupport.uniqueName("save")
        let (log, token) = try watch(c, name)
        defer { c.removeLifecycleHandler(token) }
        let domain = try c.createDomain(xml: LibvirtTestSupport.tinyDomain(name), paused: true)
        defer { try? domain.destroy() }
        let path = NSTemporaryDirectory() + "\(name).state"
        defer { try? FileManager.default.removeItem(atPath: path) }
        try domain.save(to: path)
        XCTAssertTrue(log.wait(seconds: 20) { $0 == .stopped(.saved) }, "\(log.all)")
        let size = (try FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? 0
        XCTAssertGreaterThan(size, 100_000)
    }

    func testErrorsCarryLibvirtsMessage() throws {
        let c = try LibvirtTestSupport.connect()
        XCTAssertThrowsError(try c.createDomain(xml: "<domain type='qemu'><name>x</name>")) { error in
            let e = try? XCTUnwrap(error as? LibvirtError)
            XCTAssertNotEqual(e?.code, 0)
            XCTAssertTrue(e?.message.contains("Premature end of data in tag domain") ?? false, "\(error)")
        }
        XCTAssertThrowsError(try c.domainXMLToNative(LibvirtTestSupport.tinyDomain("x").replacingOccurrences(of: "q35", with: "no-such-machine"))) { error in
            XCTAssertTrue("\(error)".contains("no-such-machine"), "\(error)")
        }
        XCTAssertThrowsError(try LibvirtConnection.open("nosuchdriver:///x")) { error in
            XCTAssertFalse("\(error)".isEmpty)
        }
        XCTAssertNil(try c.domain(named: "isolab-no-such-domain"))
    }

    func testDomainXMLToNativeGivesTheQEMUCommandLine() throws {
        let c = try LibvirtTestSupport.connect()
        let argv = try c.domainXMLToNative(LibvirtTestSupport.tinyDomain("argv"))
        XCTAssertTrue(argv.contains("qemu-system-x86_64"), argv)
        XCTAssertTrue(argv.contains("-machine pc-q35-7.2"), argv)
        XCTAssertTrue(argv.contains("-accel tcg"), argv)
    }
}
