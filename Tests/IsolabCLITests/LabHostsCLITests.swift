import Foundation
import XCTest

/// `isolab matrix --connect A --connect B` over two libvirt hosts that share no files with
/// isolab: `ci/lab-hosts` makes them, each a libvirt daemon in its own network namespace, run
/// by its own user with private directories (neither can read isolab's cache), reached over
/// `qemu+tcp`. isolab ships the kernel and initramfs into each host's storage pool and reads the
/// guests' serial ports through libvirt.
final class LabHostsCLITests: XCTestCase {
    static let fabrics = ["nvme-alone", "switch-no-acs", "multifunction-e1000e-edu", "rootport-no-acs"]
    let fm = FileManager.default

    func testMatrixOverTwoHostsShipsImagesAndJudgesAsTheEmbeddedDriver() throws {
        let lab = try LabHosts.up()
        defer { lab.down() }
        let dir = try Self.workspace("lab")
        defer { try? fm.removeItem(atPath: dir) }

        // The hosts cannot read isolab's cache: what they boot must have been shipped.
        for user in LabHosts.users {
            XCTAssertNotEqual(try LabHosts.tool("/usr/sbin/runuser", ["-u", user, "--", "test", "-r", LabHosts.isolabCache + "/images"]), 0,
                              "\(user) can read isolab's cache")
        }
        let embedded = try LabHosts.isolab(["matrix", "matrix.yaml", "--jobs", "2", "--output", "embedded"], in: dir)
        XCTAssertEqual(embedded.status, 0, embedded.err)

        let first = try LabHosts.isolab(["matrix", "matrix.yaml", "--connect", lab.uris[0], "--connect", lab.uris[1],
                                         "--jobs", "1", "--output", "lab"], in: dir)
        XCTAssertEqual(first.status, 0, first.err)
        for uri in lab.uris { XCTAssertTrue(first.err.contains("into pool 'isolab' on \(uri)"), "nothing uploaded to \(uri):\n\(first.err)") }
        print("lab: " + first.err.split(separator: "\n").filter { $0.contains("uploaded ") }.joined(separator: "\nlab: "))
        // The lab's guests stay up after `done` until isolab ends them (their ports are ptys read
        // through libvirt: a guest powering off itself could take its last records with it).
        let runs = dir + "/state/isolab/runs"
        let hostEnded = try fm.contentsOfDirectory(atPath: runs).filter { run in
            fm.contents(atPath: "\(runs)/\(run)/plan.json").map { String(decoding: $0, as: UTF8.self).contains("\"hostEndsGuest\":true") } ?? false
        }
        XCTAssertGreaterThanOrEqual(hostEnded.count, 4, "the shipped guests' plans do not say the host ends them")
        let connections = try Self.connections(dir + "/lab/results.json")
        XCTAssertEqual(Set(connections.values.flatMap { $0 }), Set(lab.uris), "both hosts ran fabrics: \(connections)")
        for uri in lab.uris {
            let volumes = try lab.volumes(uri)
            XCTAssertTrue(volumes.contains { $0.hasSuffix("-vmlinux.ok") } && volumes.contains { $0.hasSuffix("-initramfs.cpio.ok") }, "\(uri): \(volumes)")
        }
        let diff = try LabHosts.isolab(["report", "diff", "embedded/results.json", "lab/results.json"], in: dir)
        XCTAssertEqual(diff.status, 0, diff.out + diff.err)
        XCTAssertTrue(diff.out.lowercased().contains("no changes"), diff.out)

        // A second run finds every volume by its content: nothing is uploaded again.
        let second = try LabHosts.isolab(["matrix", "matrix.yaml", "--connect", lab.uris[0], "--connect", lab.uris[1],
                                          "--jobs", "1", "--output", "again"], in: dir)
        XCTAssertEqual(second.status, 0, second.err)
        XCTAssertFalse(second.err.contains("uploaded "), second.err)
        XCTAssertEqual(lab.qemus(), [], "QEMU left on a lab host")
        XCTAssertEqual(CLISupport.qemuCount(), 0)
    }

    /// Host A dies (its daemon and every process of its user SIGKILLed) while it runs a guest:
    /// what A finished is kept, what it had not finished runs again on B, the verdicts are the
    /// embedded driver's, and no QEMU is left on either host.
    func testAHostKilledMidMatrixHasItsUnfinishedCellsRerunOnTheOther() throws {
        let lab = try LabHosts.up()
        defer { lab.down() }
        let dir = try Self.workspace("lab-kill")
        defer { try? fm.removeItem(atPath: dir) }
        let embedded = try LabHosts.isolab(["matrix", "matrix.yaml", "--jobs", "2", "--output", "embedded"], in: dir)
        XCTAssertEqual(embedded.status, 0, embedded.err)

        try loseHostAMidMatrix(lab, dir: dir, label: "lab kill") { try lab.kill(0) }
        let diff = try LabHosts.isolab(["report", "diff", "embedded/results.json", "lab/results.json"], in: dir)
        XCTAssertTrue(diff.out.lowercased().contains("no changes"), diff.out)
        XCTAssertEqual(lab.qemus(), [], "QEMU left on a lab host")
        XCTAssertEqual(CLISupport.qemuCount(), 0)
    }

    /// Host A leaves the network while it runs a guest (its link cut: no RST, no FIN reaches
    /// isolab; A's daemon and guest keep running). isolab's keepalive declares A gone instead of
    /// waiting on it for ever, A's unfinished cell runs again on B, and the matrix passes. A's
    /// daemon ends A's guest itself (autodestroy) once its own keepalive finds isolab gone.
    func testAHostThatLeavesTheNetworkHasItsUnfinishedCellsRerunOnTheOther() throws {
        let lab = try LabHosts.up()
        defer { lab.down() }
        let dir = try Self.workspace("lab-cut")
        defer { try? fm.removeItem(atPath: dir) }

        let started = Date()
        try loseHostAMidMatrix(lab, dir: dir, label: "lab cut") { try lab.cut(0) }
        print("lab cut: the matrix ended \(Int(Date().timeIntervalSince(started))) s after it started")
        XCTAssertEqual(CLISupport.qemuCount(), 0)
        XCTAssertEqual(lab.qemus(user: LabHosts.users[1]), [], "QEMU left on host B")
        let deadline = Date().addingTimeInterval(90)
        while Date() < deadline, !lab.qemus(user: LabHosts.users[0]).isEmpty { usleep(500_000) }
        XCTAssertEqual(lab.qemus(user: LabHosts.users[0]), [], "host A's daemon did not end the guest of a client it lost")
    }

    /// Runs the lab's matrix over both hosts with one job each, calls `lose` once A has finished
    /// a guest and runs the next, and checks that the matrix passes with A's finished guests
    /// kept and its unfinished one run again on B.
    private func loseHostAMidMatrix(_ lab: LabHosts, dir: String, label: String, lose: () throws -> Void) throws {
        let matrix = try LabHosts.start(["matrix", "matrix.yaml", "--connect", lab.uris[0], "--connect", lab.uris[1],
                                         "--jobs", "1", "--output", "lab"], in: dir)
        // Wait until A has finished a guest and runs the next one, then lose it.
        let runs = dir + "/state/isolab/runs"
        let deadline = Date().addingTimeInterval(300)
        var finishedOnA = 0
        while Date() < deadline, matrix.process.isRunning {
            finishedOnA = Self.finishedRuns(in: runs, pool: lab.poolPaths[0])
            if finishedOnA >= 1, !lab.qemus(user: LabHosts.users[0]).isEmpty { break }
            usleep(100_000)
        }
        XCTAssertGreaterThanOrEqual(finishedOnA, 1, "host A finished no guest before it was lost")
        XCTAssertTrue(matrix.process.isRunning, "the matrix ended before host A could be lost")
        try lose()
        // Without keepalive a vanished host kept isolab in poll() for ever.
        let result = matrix.wait(seconds: 300)
        XCTAssertEqual(result.status, 0, result.err)

        let doc = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir + "/lab/results.json"))) as? [String: Any]
        var keptOnA = 0, rerun = 0
        for run in (doc?["runs"] as? [[String: Any]]) ?? [] {
            for o in (run["observations"] as? [[String: Any]]) ?? [] {
                XCTAssertEqual(o["outcome"] as? String, "completed", "\(o["topology"] ?? "") \(o["scenario"] ?? ""): \(o["problem"] ?? "")")
                if o["connection"] as? String == lab.uris[0] { keptOnA += 1 }
                if let lost = o["rerunAfterLosing"] as? String {
                    XCTAssertEqual(lost, lab.uris[0])
                    XCTAssertEqual(o["connection"] as? String, lab.uris[1])
                    rerun += 1
                }
            }
        }
        print("\(label): \(finishedOnA) guests finished on A before it was lost, \(keptOnA) kept from A, \(rerun) rerun on B")
        XCTAssertGreaterThanOrEqual(keptOnA, finishedOnA, "host A's finished guests are kept")
        XCTAssertGreaterThanOrEqual(rerun, 1, "the guest A was running ran again on B")
    }

    /// A killed host's processes are orphans; whoever becomes their parent (a container's pid 1
    /// may reap late) can leave them zombies for a while. A zombie of a lab user is dead:
    /// `ci/lab-hosts kill` must not wait for it (CI's first run of the kill test did, and failed).
    func testAZombieOfALabUserCountsAsDead() throws {
        let lab = try LabHosts.up()
        defer { lab.down() }
        // A child of the lab user whose root parent never reaps it: a zombie until the parent ends.
        let parent = Process()
        parent.executableURL = URL(fileURLWithPath: "/bin/sh")
        parent.arguments = ["-c", "setpriv --reuid \(LabHosts.users[0]) --regid \(LabHosts.users[0]) --init-groups -- true & exec sleep 30"]
        try parent.run()
        defer { parent.terminate(); parent.waitUntilExit() }
        let deadline = Date().addingTimeInterval(10)
        while Date() < deadline, !LabHosts.hasZombie(user: LabHosts.users[0]) { usleep(50_000) }
        XCTAssertTrue(LabHosts.hasZombie(user: LabHosts.users[0]), "no zombie was made")
        try lab.kill(0)
        XCTAssertEqual(lab.qemus(), [])
    }

    /// A workspace with the fabrics and a matrix.yaml of them on 6.1 under intel.
    static func workspace(_ label: String) throws -> String {
        let dir = try CLISupport.workspace(label, fabrics: fabrics)
        try "fabrics: [topologies/*.yaml]\nkernels: [\"6.1\"]\niommus: [intel]\n".write(toFile: dir + "/matrix.yaml", atomically: true, encoding: .utf8)
        return dir
    }

    /// Topology → connections of its observations, from results.json.
    static func connections(_ path: String) throws -> [String: Set<String>] {
        let doc = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path))) as? [String: Any]
        var out: [String: Set<String>] = [:]
        for run in (doc?["runs"] as? [[String: Any]]) ?? [] {
            for o in (run["observations"] as? [[String: Any]]) ?? [] {
                out[run["topology"] as? String ?? "", default: []].insert(o["connection"] as? String ?? "none")
            }
        }
        return out
    }

    /// Runs in `runs` whose domain booted from `pool` and whose agent sent `done`.
    static func finishedRuns(in runs: String, pool: String) -> Int {
        let fm = FileManager.default
        return ((try? fm.contentsOfDirectory(atPath: runs)) ?? []).filter { run in
            guard let xml = try? String(contentsOfFile: runs + "/" + run + "/domain.xml", encoding: .utf8), xml.contains(pool),
                  let records = try? String(contentsOfFile: runs + "/" + run + "/records.jsonl", encoding: .utf8) else { return false }
            return records.contains("\"type\":\"done\"")
        }.count
    }
}

/// The two hosts of `ci/lab-hosts`, up for one test.
struct LabHosts {
    static let users = ["isolab-lab-a", "isolab-lab-b"]
    static var isolabCache: String { (ProcessInfo.processInfo.environment["XDG_CACHE_HOME"] ?? NSHomeDirectory() + "/.cache") + "/isolab" }
    static var script: String { CLITests.root.appendingPathComponent("ci/lab-hosts").path }
    let directory: String
    let uris: [String]

    /// The pool directory isolab defines on each host (``ImageShipping/defaultTarget(for:)``).
    var poolPaths: [String] { uris.map { "/var/tmp/isolab-pool-" + (URLComponents(string: $0)?.host ?? "") } }

    static func up() throws -> LabHosts {
        let dir = "/tmp/isolab-lab-\(getpid())"
        let r = try CLISupport.run(["up", dir], cwd: CLITests.root, executable: URL(fileURLWithPath: script))
        guard r.status == 0 else {
            _ = try? CLISupport.run(["down", dir], cwd: CLITests.root, executable: URL(fileURLWithPath: script))
            throw NSError(domain: "LabHosts", code: Int(r.status), userInfo: [NSLocalizedDescriptionKey: "ci/lab-hosts up failed:\n\(r.out)\n\(r.err)"])
        }
        let uris = r.out.split(separator: "\n").map(String.init).filter { $0.hasPrefix("qemu+") }.suffix(2)
        guard uris.count == 2 else {
            throw NSError(domain: "LabHosts", code: 1, userInfo: [NSLocalizedDescriptionKey: "ci/lab-hosts up printed no two URIs:\n\(r.out)"])
        }
        return LabHosts(directory: dir, uris: Array(uris))
    }

    /// SIGKILLs host `index`'s daemon and every process of its user.
    func kill(_ index: Int) throws {
        let r = try CLISupport.run(["kill", index == 0 ? "a" : "b", directory], cwd: CLITests.root, executable: URL(fileURLWithPath: Self.script))
        guard r.status == 0 else { throw NSError(domain: "LabHosts", code: 2, userInfo: [NSLocalizedDescriptionKey: r.err]) }
    }

    /// Takes host `index` off the network (`ci/lab-hosts cut`): its daemon and guests run on.
    func cut(_ index: Int) throws {
        let r = try CLISupport.run(["cut", index == 0 ? "a" : "b", directory], cwd: CLITests.root, executable: URL(fileURLWithPath: Self.script))
        guard r.status == 0 else { throw NSError(domain: "LabHosts", code: 3, userInfo: [NSLocalizedDescriptionKey: r.err]) }
    }

    /// Stops both hosts, removes their namespaces, directories and isolab's pools on them.
    func down() {
        _ = try? CLISupport.run(["down", directory], cwd: CLITests.root, executable: URL(fileURLWithPath: Self.script))
        for p in poolPaths { try? FileManager.default.removeItem(atPath: p) }
    }

    /// The volumes of the `isolab` pool on `uri`.
    func volumes(_ uri: String) throws -> [String] {
        // virsh 9.0's vol-list has no --name: the first column of its table, below the rule.
        let r = try CLISupport.run(["-c", uri, "vol-list", "isolab"], cwd: CLITests.root, executable: URL(fileURLWithPath: "/usr/bin/virsh"))
        return r.out.split(separator: "\n").dropFirst(2).compactMap { $0.split(separator: " ").first.map(String.init) }
    }

    /// QEMU processes of the lab users (`user`: of one).
    func qemus(user: String? = nil) -> [String] {
        Self.processes(of: user.map { [$0] } ?? Self.users).filter { pid in
            FileManager.default.contents(atPath: "/proc/\(pid)/cmdline").map { String(decoding: $0, as: UTF8.self).contains("qemu-system") } ?? false
        }
    }

    /// The pids (in /proc) of processes owned by `users`.
    static func processes(of users: [String]) -> [String] {
        let fm = FileManager.default
        let uids = Set(users.compactMap { getpwnam($0)?.pointee.pw_uid })
        return ((try? fm.contentsOfDirectory(atPath: "/proc")) ?? []).filter { pid in
            guard Int(pid) != nil, let attrs = try? fm.attributesOfItem(atPath: "/proc/\(pid)"),
                  let uid = (attrs[.ownerAccountID] as? NSNumber)?.uint32Value else { return false }
            return uids.contains(uid)
        }
    }

    /// Whether `user` has a zombie process.
    static func hasZombie(user: String) -> Bool {
        processes(of: [user]).contains { pid in
            // /proc/PID/stat: "pid (comm) S …"; the state follows the last ')'.
            guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
                  let close = stat.lastIndex(of: ")") else { return false }
            return stat[stat.index(close, offsetBy: 2)...].hasPrefix("Z")
        }
    }

    static func tool(_ path: String, _ args: [String]) throws -> Int32 {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: path)
        p.arguments = args
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        try p.run()
        p.waitUntilExit()
        return p.terminationStatus
    }

    /// `isolab ARGS` in `dir`, with its runs kept in `dir/state`.
    static func isolab(_ args: [String], in dir: String) throws -> (status: Int32, out: String, err: String) {
        try start(args, in: dir).wait()
    }

    /// A running `isolab ARGS` in `dir`.
    static func start(_ args: [String], in dir: String) throws -> Running {
        let p = Process()
        p.executableURL = try CLISupport.binary()
        p.arguments = args
        p.currentDirectoryURL = URL(fileURLWithPath: dir)
        var env = ProcessInfo.processInfo.environment
        env["XDG_STATE_HOME"] = dir + "/state"
        p.environment = env
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        let running = Running(process: p, out: out, err: err)
        try p.run()
        running.drain()
        return running
    }

    final class Running: @unchecked Sendable {
        let process: Process
        let out: Pipe, err: Pipe
        private var outData = Data(), errData = Data()
        private let drained = DispatchGroup()

        init(process: Process, out: Pipe, err: Pipe) { self.process = process; self.out = out; self.err = err }

        func drain() {
            for (pipe, isOut) in [(out, true), (err, false)] {
                drained.enter()
                Thread.detachNewThread { [self] in
                    let d = pipe.fileHandleForReading.readDataToEndOfFile()
                    if isOut { outData = d } else { errData = d }
                    drained.leave()
                }
            }
        }

        /// Waits for the process to end; after `seconds`, SIGKILLs it first (a hung isolab
        /// fails the test instead of hanging it; its status is then 9 by signal).
        func wait(seconds: Double = 1800) -> (status: Int32, out: String, err: String) {
            if drained.wait(timeout: .now() + seconds) == .timedOut {
                Glibc.kill(process.processIdentifier, SIGKILL)
                drained.wait()
            }
            process.waitUntilExit()
            return (process.terminationStatus, String(decoding: outData, as: UTF8.self), String(decoding: errData, as: UTF8.self))
        }
    }
}
