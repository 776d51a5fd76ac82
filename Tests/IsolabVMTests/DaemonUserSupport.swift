import Foundation
import XCTest

/// isolab run as the `isolab-test` user from a folder every user can read: the setting in which
/// a libvirt daemon that runs its QEMU as that user (``PrivateLibvirtd``) can read the images,
/// the emulator and the run folders isolab keeps in that user's own cache and state folders.
struct DaemonUserRun {
    static let user = "isolab-test"
    /// The folder holding the isolab binary, the agent, `vm-images/` and the copied topologies.
    let folder: String
    let home: String

    /// Copies the built isolab, the agent, the catalogs and the named catalog fabrics.
    init(label: String, topologies: [String]) throws {
        guard getuid() == 0 else {
            throw NSError(domain: "DaemonUserRun", code: 0, userInfo: [NSLocalizedDescriptionKey: "run the tests as root (ci/test does) so they can switch to \(Self.user)"])
        }
        guard let pw = getpwnam(Self.user) else {
            throw NSError(domain: "DaemonUserRun", code: 1, userInfo: [NSLocalizedDescriptionKey: "user \(Self.user) missing: run ci/bootstrap.sh"])
        }
        home = String(cString: pw.pointee.pw_dir)
        let fm = FileManager.default
        folder = fm.temporaryDirectory.appendingPathComponent("isolab-\(label)-\(getpid())").path
        try? fm.removeItem(atPath: folder)
        try fm.createDirectory(atPath: folder + "/topologies", withIntermediateDirectories: true)
        let root = URL(fileURLWithPath: BootSupport.repository)
        let b = Bundle(for: MultiHostMatrixTests.self).bundleURL
        guard let binary = [b, b.deletingLastPathComponent()].map({ $0.appendingPathComponent("isolab") })
            .first(where: { fm.isExecutableFile(atPath: $0.path) }) else {
            throw NSError(domain: "DaemonUserRun", code: 2, userInfo: [NSLocalizedDescriptionKey: "isolab binary not built: run swift build first"])
        }
        try fm.copyItem(atPath: binary.path, toPath: folder + "/isolab")
        try fm.copyItem(atPath: root.appendingPathComponent("vm-images").path, toPath: folder + "/vm-images")
        for name in topologies {
            try fm.copyItem(atPath: root.appendingPathComponent("topologies/\(name).yaml").path, toPath: folder + "/topologies/\(name).yaml")
        }
        try fm.copyItem(atPath: root.appendingPathComponent(".build-agent/release/isolab-agent").path, toPath: folder + "/isolab-agent")
        try Self.tool("/bin/chmod", ["-R", "a+rwX", folder])
    }

    /// The embedded driver's URI in the user's own state folder.
    var embeddedURI: String { "qemu:///embed?root=\(home)/.local/state/isolab/libvirt" }

    /// Writes a file into the folder, readable by the user.
    func write(_ text: String, to name: String) throws {
        try text.write(toFile: folder + "/" + name, atomically: true, encoding: .utf8)
        chmod(folder + "/" + name, 0o666)
    }

    /// Runs `isolab ARGS` as the user in a clean environment; returns its exit status, standard
    /// output and standard error.
    func isolab(_ arguments: [String]) throws -> (status: Int32, output: String, error: String) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/sbin/runuser")
        p.arguments = ["-u", Self.user, "--", "env", "-i", "HOME=\(home)", "USER=\(Self.user)", "LOGNAME=\(Self.user)",
                       "PATH=/usr/local/bin:/usr/bin:/bin", "ISOLAB_AGENT=\(folder)/isolab-agent",
                       folder + "/isolab"] + arguments
        p.currentDirectoryURL = URL(fileURLWithPath: folder)
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        try p.run()
        // Drain both pipes concurrently so neither fills and stalls the child.
        var errData = Data()
        let group = DispatchGroup()
        group.enter()
        DispatchQueue.global().async { errData = err.fileHandleForReading.readDataToEndOfFile(); group.leave() }
        let outData = out.fileHandleForReading.readDataToEndOfFile()
        group.wait()
        p.waitUntilExit()
        return (p.terminationStatus, String(decoding: outData, as: UTF8.self), String(decoding: errData, as: UTF8.self))
    }

    func remove() { try? FileManager.default.removeItem(atPath: folder) }

    private static func tool(_ path: String, _ args: [String]) throws {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: path)
        p.arguments = args
        try p.run()
        p.waitUntilExit()
    }
}
