import Foundation
import IsolabLibvirt
import IsolabModel
import IsolabTopology
import XCTest

enum VMTestSupport {
    /// The repository root.
    static let repository: String = {
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { url.deleteLastPathComponent() }
        return url.path
    }()

    static let goldenDirectory = repository + "/Tests/IsolabVMTests/golden"

    /// Every catalog topology, by name.
    static func catalog() throws -> [Topology] {
        let dir = repository + "/topologies"
        return try FileManager.default.contentsOfDirectory(atPath: dir).filter { $0.hasSuffix(".yaml") }.sorted()
            .map { try TopologyLoader.load(path: dir + "/" + $0) }
    }

    static func topology(_ name: String) throws -> Topology {
        try TopologyLoader.load(path: repository + "/topologies/\(name).yaml")
    }

    /// One embedded connection for the whole test process (a process can use only one
    /// embedded root; `EmbeddedRoot` picks it).
    static let connection: Result<LibvirtConnection, Error> = Result { try EmbeddedRoot.connect() }

    static func connect() throws -> LibvirtConnection { try connection.get() }

    static func temporaryDirectory(_ label: String) throws -> String {
        let dir = NSTemporaryDirectory() + "isolab-\(label)-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return dir
    }

    /// `pgrep -a qemu-system` lines (empty when no QEMU runs).
    static func runningQEMUs() -> [String] {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/pgrep")
        p.arguments = ["-a", "qemu-system"]
        let pipe = Pipe()
        p.standardOutput = pipe
        guard (try? p.run()) != nil else { return [] }
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return String(decoding: data, as: UTF8.self).split(separator: "\n").map(String.init)
    }
}
