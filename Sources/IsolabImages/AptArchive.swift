import Foundation

/// One Debian binary package as the archive's signed index describes it.
public struct DebPackage: Codable, Equatable, Sendable {
    public var name: String
    public var version: String
    /// sha256 of the .deb, from the signed Packages index (checked after download).
    public var sha256: String
    public var size: Int
    /// Path in the archive pool.
    public var filename: String
}

/// A private apt configuration (sources, state, cache) under isolab's cache: nothing of
/// the host's apt state is read or written, and it works as an ordinary user.
struct AptArchive {
    let root: String
    let suites: [String]
    let sources: DebianSources

    init(root: String, suites: [String], sources: DebianSources) {
        self.root = root; self.suites = suites; self.sources = sources
    }

    private func path(_ p: String) -> String { (root as NSString).appendingPathComponent(p) }

    /// The `-o` options that confine apt to `root`.
    var options: [String] {
        let user = ProcessInfo.processInfo.environment["USER"].flatMap { $0.isEmpty ? nil : $0 }
            ?? NSUserName()
        return [
            "Dir::Etc::SourceList=\(path("sources.list"))",
            "Dir::Etc::SourceParts=\(path("sources.list.d"))",
            "Dir::Etc::Preferences=\(path("preferences"))",
            "Dir::Etc::PreferencesParts=\(path("preferences.d"))",
            "Dir::State=\(path("state"))",
            "Dir::State::status=\(path("status"))",
            "Dir::Cache=\(path("cache"))",
            "Dir::Log=\(path("log"))",
            "Debug::NoLocking=1",
            "APT::Sandbox::User=\(getuid() == 0 ? "root" : user)",
            "Acquire::Languages=none",
            "APT::Architecture=amd64",
            "APT::Architectures=amd64",
        ].flatMap { ["-o", $0] }
    }

    private var environment: [String: String] {
        ["TMPDIR": path("tmp"), "LC_ALL": "C", "DEBIAN_FRONTEND": "noninteractive"]
    }

    /// Writes the private sources list and runs `apt-get update`; signature problems are errors.
    func update() throws {
        let fm = FileManager.default
        for dir in ["sources.list.d", "preferences.d", "state/lists/partial", "cache/archives/partial", "log", "tmp"] {
            try fm.createDirectory(atPath: path(dir), withIntermediateDirectories: true)
        }
        if !fm.fileExists(atPath: path("status")) { _ = fm.createFile(atPath: path("status"), contents: Data()) }
        try Data(sources.sourcesList(suites: suites).utf8).write(to: URL(fileURLWithPath: path("sources.list")))
        let r = try Shell.check(["apt-get"] + options + ["update"], environment: environment)
        let problems = r.errorText.split(separator: "\n").filter {
            $0.hasPrefix("W:") && ($0.contains("GPG") || $0.contains("signature") || $0.contains("not signed")
                                   || $0.contains("NO_PUBKEY") || $0.contains("Failed to fetch"))
        }
        if !problems.isEmpty {
            throw ImagesError.commandFailed(
                command: "apt-get update (\(suites.joined(separator: ", ")))", status: 0,
                output: problems.joined(separator: "\n")
                    + "\nThe Release files must verify with \(sources.keyring); update debian-archive-keyring")
        }
    }

    /// True once `update()` has fetched indexes.
    var hasIndexes: Bool {
        let lists = (try? FileManager.default.contentsOfDirectory(atPath: path("state/lists"))) ?? []
        return lists.contains { $0.hasSuffix("_Packages") || $0.contains("_Packages.") }
    }

    /// All records of a package (every version the configured suites serve).
    func records(of package: String) throws -> [[String: String]] {
        let r = try Shell.run(["apt-cache"] + options + ["show", package], environment: environment)
        guard r.status == 0 else { return [] }
        return Self.parseRecords(r.text)
    }

    /// Resolves `package` (at `version`, or the newest) and, recursively, its exact-version
    /// (`= v`) dependencies named `linux-*`: the image, binary, modules and base packages. A
    /// `linux-base-R` the archive no longer has is left out and named in `skipped` (the image
    /// build then finds out whether what isolab needs is there).
    func resolve(package: String, version: String?, skipped: inout [String]) throws -> [DebPackage] {
        let all = try records(of: package)
        guard !all.isEmpty else { throw ImagesError.packageNotFound(package: package, suites: suites) }
        let versions = try sortVersions(Array(Set(all.compactMap { $0["Version"] })))
        let chosen: String
        if let version {
            guard versions.contains(version) else {
                throw ImagesError.versionNotAvailable(package: package, suite: suites.joined(separator: "+"),
                                                      wanted: version, available: versions)
            }
            chosen = version
        } else {
            chosen = versions.last!
        }
        var result: [DebPackage] = []
        var queue = [(package, chosen)]
        var seen = Set<String>()
        while let (name, ver) = queue.first {
            queue.removeFirst()
            guard seen.insert(name).inserted else { continue }
            let recs = try records(of: name)
            // 6.18's image carries its config, System.map and modules.builtin itself; the
            // linux-base-R it depends on holds only documentation, and the archive dropped it.
            if name != package, name.hasPrefix("linux-base-"), !recs.contains(where: { $0["Version"] == ver }) {
                skipped.append("\(name) \(ver)")
                continue
            }
            guard let rec = recs.first(where: { $0["Version"] == ver }),
                  let sha = rec["SHA256"], let file = rec["Filename"] else {
                throw ImagesError.versionNotAvailable(package: name, suite: suites.joined(separator: "+"),
                                                      wanted: ver, available: recs.compactMap { $0["Version"] })
            }
            result.append(DebPackage(name: name, version: ver, sha256: sha, size: Int(rec["Size"] ?? "") ?? 0,
                                     filename: file))
            queue += Self.exactLinuxDependencies(rec["Depends"] ?? "") + Self.exactLinuxDependencies(rec["Pre-Depends"] ?? "")
        }
        return result
    }

    /// Exactly these packages at `version` (an emulator's binary, data and module packages).
    func exact(_ names: [String], version: String) throws -> [DebPackage] {
        try names.map { name in
            let all = try records(of: name)
            guard !all.isEmpty else { throw ImagesError.packageNotFound(package: name, suites: suites) }
            guard let rec = all.first(where: { $0["Version"] == version }), let sha = rec["SHA256"], let file = rec["Filename"] else {
                throw ImagesError.versionNotAvailable(package: name, suite: suites.joined(separator: "+"), wanted: version,
                                                      available: all.compactMap { $0["Version"] })
            }
            return DebPackage(name: name, version: version, sha256: sha, size: Int(rec["Size"] ?? "") ?? 0, filename: file)
        }
    }

    /// Downloads exactly these package versions into `directory`; returns the file per package.
    func download(_ packages: [DebPackage], into directory: String) throws -> [String] {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        try Shell.check(["apt-get"] + options + ["download"] + packages.map { "\($0.name)=\($0.version)" },
                        environment: environment, currentDirectory: directory)
        let names = try FileManager.default.contentsOfDirectory(atPath: directory)
        return try packages.map { p in
            // apt names files name_version_arch.deb with ':' in the version escaped as %3a.
            let v = p.version.replacingOccurrences(of: ":", with: "%3a")
            guard let f = names.first(where: { $0.hasPrefix("\(p.name)_\(v)_") && $0.hasSuffix(".deb") }) else {
                throw ImagesError.io(path: directory, problem: "apt-get download left no .deb for \(p.name) \(p.version)")
            }
            return (directory as NSString).appendingPathComponent(f)
        }
    }

    /// `linux-foo (= 1.2-3)` entries of a Depends field (first alternative only).
    static func exactLinuxDependencies(_ depends: String) -> [(String, String)] {
        depends.split(separator: ",").compactMap { clause in
            let first = clause.split(separator: "|").first!.trimmingCharacters(in: .whitespaces)
            guard first.hasPrefix("linux-"), let open = first.firstIndex(of: "("),
                  let close = first.firstIndex(of: ")") else { return nil }
            let name = first[..<open].trimmingCharacters(in: .whitespaces)
            let rel = first[first.index(after: open)..<close].trimmingCharacters(in: .whitespaces)
            guard rel.hasPrefix("=") else { return nil }
            return (name, rel.dropFirst().trimmingCharacters(in: .whitespaces))
        }
    }

    /// Parses `apt-cache show` output (RFC 822 stanzas).
    static func parseRecords(_ text: String) -> [[String: String]] {
        var out: [[String: String]] = []
        var cur: [String: String] = [:]
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
            if line.isEmpty { if !cur.isEmpty { out.append(cur) }; cur = [:]; continue }
            if line.first == " " { continue }
            guard let colon = line.firstIndex(of: ":") else { continue }
            cur[String(line[..<colon])] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        if !cur.isEmpty { out.append(cur) }
        return out
    }

    /// Sorts Debian versions ascending with `dpkg --compare-versions`.
    func sortVersions(_ versions: [String]) throws -> [String] {
        try versions.sorted { a, b in
            try Shell.run(["dpkg", "--compare-versions", a, "lt", b]).status == 0
        }
    }
}

extension AptArchive {
    /// The .debs of `packages` in the cache's `debs/<sha256>.deb`, downloading those missing
    /// (under the archive's lock) and checking each against the signed index's sha256.
    func cachedDebs(_ packages: [DebPackage], cache: ImageCache, what: String, log: (String) -> Void) throws -> [String] {
        let fm = FileManager.default
        let missing = packages.filter { !fm.fileExists(atPath: cache.path("debs", $0.sha256 + ".deb")) }
        if !missing.isEmpty {
            try FileLock.withLock(cache.lockPath("apt-" + suites.joined(separator: "+"))) {
                if !hasIndexes { try update() }
                let tmp = try cache.makeTemporaryDirectory("download")
                defer { try? fm.removeItem(atPath: tmp) }
                log("downloading \(missing.count) package(s) for \(what), \(missing.reduce(0) { $0 + $1.size } / 1_048_576) MiB")
                let files = try download(missing, into: tmp)
                try fm.createDirectory(atPath: cache.path("debs"), withIntermediateDirectories: true)
                for (p, file) in zip(missing, files) {
                    let actual = try Hashing.sha256(file: file)
                    guard actual == p.sha256 else {
                        throw ImagesError.checksumMismatch(file: (file as NSString).lastPathComponent, expected: p.sha256, actual: actual)
                    }
                    _ = rename(file, cache.path("debs", p.sha256 + ".deb"))
                }
            }
        }
        return packages.map { cache.path("debs", $0.sha256 + ".deb") }
    }
}
