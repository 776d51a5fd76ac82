import Foundation
import XCTest

/// What the CLI tests share: the built `isolab` binary and a count of isolab's QEMU processes.
enum CLISupport {
    /// The `isolab` executable beside the test bundle.
    static func binary(file: StaticString = #filePath, line: UInt = #line) throws -> URL {
        let b = Bundle(for: CLITests.self).bundleURL
        guard let bin = [b, b.deletingLastPathComponent()].map({ $0.appendingPathComponent("isolab") })
            .first(where: { FileManager.default.isExecutableFile(atPath: $0.path) }) else {
            XCTFail("isolab binary not built: run swift build first", file: file, line: line)
            throw CocoaError(.fileNoSuchFile)
        }
        return bin
    }

    /// QEMU processes running an isolab guest (`guest=isolab-…` on their command line).
    /// A temporary folder laid out like the package for `isolab` run in it: `vm-images/` and
    /// the built agent linked in, and the named catalog topologies copied to `topologies/`.
    static func workspace(_ label: String, fabrics: [String]) throws -> String {
        let fm = FileManager.default
        let dir = fm.temporaryDirectory.appendingPathComponent("isolab-\(label)-\(UUID().uuidString.prefix(8))").path
        try fm.createDirectory(atPath: dir + "/topologies", withIntermediateDirectories: true)
        for link in ["vm-images", ".build-agent"] {
            try fm.createSymbolicLink(atPath: dir + "/" + link, withDestinationPath: CLITests.root.appendingPathComponent(link).path)
        }
        for name in fabrics {
            try fm.copyItem(atPath: CLITests.root.appendingPathComponent("topologies/\(name).yaml").path, toPath: dir + "/topologies/\(name).yaml")
        }
        return dir
    }

    static func qemuCount() -> Int {
        let fm = FileManager.default
        return ((try? fm.contentsOfDirectory(atPath: "/proc")) ?? []).filter { pid in
            guard Int(pid) != nil, let raw = fm.contents(atPath: "/proc/\(pid)/cmdline") else { return false }
            let cmd = String(decoding: raw, as: UTF8.self)
            return cmd.contains("qemu-system") && cmd.contains("guest=isolab-")
        }.count
    }

    /// Runs KCIDB's own validator (kcidb-io, installed on first use by ci/kcidb-validate) on
    /// `files`: exit 0 and one "valid KCIDB v5.3" line per file, or the schema error.
    static func kcidbValidate(_ files: [String]) throws -> (status: Int32, out: String, err: String) {
        try run(files, cwd: CLITests.root, executable: CLITests.root.appendingPathComponent("ci/kcidb-validate"))
    }

    /// Runs `isolab ARGS` (or `executable`) in `cwd` and collects its exit status and output.
    static func run(_ args: [String], cwd: URL, executable: URL? = nil) throws -> (status: Int32, out: String, err: String) {
        let p = Process()
        p.executableURL = try executable ?? binary()
        p.arguments = args
        p.currentDirectoryURL = cwd
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        try p.run()
        // Drain stderr on its own thread so a chatty run cannot fill the pipe and stall.
        final class Box: @unchecked Sendable { var data = Data() }
        let e = Box()
        let drained = DispatchSemaphore(value: 0)
        Thread.detachNewThread { e.data = err.fileHandleForReading.readDataToEndOfFile(); drained.signal() }
        let o = out.fileHandleForReading.readDataToEndOfFile()
        drained.wait()
        p.waitUntilExit()
        return (p.terminationStatus, String(decoding: o, as: UTF8.self), String(decoding: e.data, as: UTF8.self))
    }
}
