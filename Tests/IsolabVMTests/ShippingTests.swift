import Foundation
@testable import IsolabLibvirt
import IsolabModel
import IsolabProtocol
@testable import IsolabVM
import XCTest

/// What isolab does for a host that shares no files with it: pty serial ports in the domain,
/// the plan handed over on the channel, files shipped into the host's pool by content.
final class ShippingTests: XCTestCase {
    func testShippedDomainHasTwoPtySerialPortsAndNoHostPaths() throws {
        let topology = try VMTestSupport.topology("switch-no-acs")
        var p = DomainParameters(name: "isolab-shipped", kernelPath: "/var/tmp/pool/abc-vmlinux", initrdPath: "/var/tmp/pool/def-initramfs.cpio",
                                 kernelCommandLine: "console=ttyS0", consoleLogPath: "/local/console.log", recordsPath: "/local/records.jsonl")
        p.serialsOverLibvirt = true
        let xml = try DomainXML.render(topology, parameters: p)
        XCTAssertEqual(xml.components(separatedBy: "<serial type=\"pty\">").count - 1, 2, xml)
        XCTAssertFalse(xml.contains("/local/"), "isolab's own paths must not reach the host:\n\(xml)")
        XCTAssertTrue(xml.contains("<kernel>/var/tmp/pool/abc-vmlinux</kernel>"), xml)
    }

    func testEveryReadyIsAnsweredAndTheAgentsStreamStartsAtItsFirstOtherLine() {
        let ready = Data("{\"seq\":0,\"type\":\"ready\"}\n".utf8)
        let hello = Data("{\"seq\":0,\"type\":\"hello\"}\n".utf8)
        var h = PlanHandover(plan: Data("{}".utf8))
        // A `ready` in two pieces: answered once it is whole.
        XCTAssertEqual(h.feed(ready.prefix(10)).answers, 0)
        let first = h.feed(ready.suffix(from: 10))
        XCTAssertEqual(first.answers, 1)
        XCTAssertNil(first.rest)
        // The plan was lost: the agent asks again, and its stream follows.
        let second = h.feed(ready + hello + Data("{\"seq\":1".utf8))
        XCTAssertEqual(second.answers, 1)
        XCTAssertEqual(second.rest, hello + Data("{\"seq\":1".utf8))
    }

    func testDefaultPoolTargetFollowsTheDaemonKind() {
        XCTAssertEqual(ImageShipping.defaultTarget(for: "qemu+ssh://lab1/system"), "/var/lib/libvirt/images/isolab")
        XCTAssertEqual(ImageShipping.defaultTarget(for: "qemu+tcp://10.1.2.3/session"), "/var/tmp/isolab-pool-10.1.2.3")
        XCTAssertEqual(ImageShipping.defaultTarget(for: "qemu+ssh://me@lab1/session"), "/var/tmp/isolab-pool-lab1-me")
    }

    /// A real daemon: a file is uploaded once, found by its content from then on (also by a
    /// new process), uploaded again when its `.ok` marker is missing; a pool the daemon cannot
    /// start is an error that says what to configure.
    func testFilesAreUploadedOnceAndFoundByContent() throws {
        _ = try VMTestSupport.connect()
        let daemon = try PrivateLibvirtd.start()
        defer { daemon.stop() }
        let connection = try LibvirtConnection.open(daemon.uri)
        defer { connection.close() }
        let file = daemon.directory + "/guest/blob.bin"
        try Data((0..<3_000_000).map { UInt8(truncatingIfNeeded: $0 &* 31) }).write(to: URL(fileURLWithPath: file))

        let target = "/var/tmp/isolab-pool-test-\(getpid())"
        defer { try? FileManager.default.removeItem(atPath: target) }
        let pool = try connection.defineDirectoryPool(named: ImageShipping.poolName, target: target)
        try pool.build()
        let shipping = ImageShipping(connection: connection)
        let remote = try shipping.ship(file)
        XCTAssertTrue(remote.hasPrefix(target + "/") && remote.hasSuffix("-blob.bin"), remote)
        XCTAssertEqual(FileManager.default.contents(atPath: remote), FileManager.default.contents(atPath: file), "the volume holds the file")
        XCTAssertEqual(try shipping.ship(file), remote)
        XCTAssertEqual(shipping.uploads, 1)
        let again = ImageShipping(connection: connection)
        XCTAssertEqual(try again.ship(file), remote)
        XCTAssertEqual(again.uploads, 0, "found by its content")

        try pool.volume(named: (remote as NSString).lastPathComponent + ".ok")?.delete()
        let third = ImageShipping(connection: connection)
        XCTAssertEqual(try third.ship(file), remote)
        XCTAssertEqual(third.uploads, 1, "without its marker the volume is an unfinished upload")

        // A pool the daemon's user cannot start: the error names the commands to run.
        try? pool.volume(named: (remote as NSString).lastPathComponent)?.delete()
        try? pool.volume(named: (remote as NSString).lastPathComponent + ".ok")?.delete()
        try pool.destroyAndUndefine()
        _ = try connection.defineDirectoryPool(named: ImageShipping.poolName, target: "/root/isolab-forbidden-\(getpid())")
        XCTAssertThrowsError(try ImageShipping(connection: connection).ship(file)) { error in
            let text = "\(error)"
            XCTAssertTrue(text.contains("pool-define-as isolab dir --target"), text)
            XCTAssertTrue(text.contains(connection.uri), text)
        }
    }
}
