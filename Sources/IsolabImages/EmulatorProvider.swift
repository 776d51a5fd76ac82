import Foundation
import IsolabModel

/// An emulator ready to run guests: what libvirt is told to run, what it is, what it can build.
public struct ProvidedEmulator: Codable, Equatable, Sendable {
    /// The label it is reported under (`7.2`, `10.0`, or a developer build's).
    public var label: String
    /// What libvirt runs (`<emulator>`); nil: libvirt's default (the host's QEMU).
    public var binary: String?
    /// The QEMU binary itself (the wrapper execs it).
    public var qemu: String
    /// Hex sha256 of `qemu`.
    public var qemuSHA256: String
    /// The Debian packages it was unpacked from (empty for the host's and a developer's).
    public var packages: [DebPackage]
    public var facts: EmulatorFacts
}

/// Provides catalog emulators (the host's binary, or Debian packages fetched through isolab's
/// private apt configuration and unpacked into its cache, nothing installed on the host) and a
/// developer's own build.
public struct EmulatorProvider {
    public let cache: ImageCache
    /// The machine's Debian archive (as for kernels).
    public var sources: () throws -> DebianSources = { try DebianSources.configured() }
    /// Progress lines (fetching, unpacking); silent by default.
    public var log: (String) -> Void = { _ in }

    public init(cache: ImageCache) { self.cache = cache }

    /// A catalog emulator.
    public func provide(_ e: CatalogEmulator) throws -> ProvidedEmulator {
        if let host = e.host {
            let path = host.hasPrefix("/") ? host : try Shell.which(host)
            let sha = try Hashing.sha256(file: path)
            let facts = try EmulatorProbe.facts(of: path, identity: sha, cache: cache)
            return ProvidedEmulator(label: e.id, binary: nil, qemu: path, qemuSHA256: sha, packages: [], facts: facts)
        }
        let packages = try resolve(e)
        let key = Hashing.sha256(packages.map(\.sha256).sorted().joined(separator: "\n"))
        let dir = cache.path("emulators", key)
        let wrapper = dir + "/bin/qemu-system-x86_64"
        let wrapped = (qemu: dir + "/root/usr/bin/qemu-system-x86_64", modules: dir + "/root/usr/lib/x86_64-linux-gnu/qemu",
                       data: [dir + "/root/usr/share/qemu", "/usr/share/qemu"])
        // The wrapper names the unpacked QEMU by its path: a cache copied or restored under
        // another home (another user's, a CI cache) gets its wrapper rewritten for where it is now.
        let current = { (try? String(contentsOfFile: wrapper, encoding: .utf8)) == Self.wrapperText(wrapped.qemu, wrapped.modules, wrapped.data) }
        if !FileManager.default.isExecutableFile(atPath: wrapper) || !current() {
            try FileLock.withLock(cache.lockPath("emulator-" + key)) {
                if FileManager.default.isExecutableFile(atPath: wrapper) {
                    if !current() { try writeWrapper(qemu: wrapped.qemu, modules: wrapped.modules, data: wrapped.data, to: wrapper) }
                    return
                }
                let debs = try archive(e.suite!).cachedDebs(packages, cache: cache, what: "emulator \(e.id)", log: log)
                log("unpacking emulator \(e.id) (\(debs.count) packages)")
                let tmp = try cache.makeTemporaryDirectory("emulator")
                for deb in debs { try Shell.check(["dpkg-deb", "-x", deb, tmp + "/root"]) }
                try writeWrapper(qemu: wrapped.qemu, modules: wrapped.modules, data: wrapped.data, to: tmp + "/bin/qemu-system-x86_64")
                try cache.publish(tmp, as: dir)
            }
        }
        let qemu = dir + "/root/usr/bin/qemu-system-x86_64"
        let sha = try Hashing.sha256(file: qemu)
        let facts = try EmulatorProbe.facts(of: wrapper, identity: sha + "-" + key.prefix(16), cache: cache)
        return ProvidedEmulator(label: e.id, binary: wrapper, qemu: qemu, qemuSHA256: sha, packages: packages, facts: facts)
    }

    /// A developer's build: `qemu-system-x86_64` of a build tree or an install, its data folder
    /// given or found next to it (`pc-bios/` of a build tree, `../share/qemu` of an install).
    public func provide(path: String, data: String? = nil, label: String? = nil) throws -> ProvidedEmulator {
        let qemu = URL(fileURLWithPath: path).standardizedFileURL.path
        guard FileManager.default.isExecutableFile(atPath: qemu) else {
            throw ImagesError.badEmulator(path: qemu, problem: "not an executable file")
        }
        let bin = (qemu as NSString).deletingLastPathComponent
        let candidates = data.map { [$0] } ?? [bin + "/pc-bios", (bin as NSString).deletingLastPathComponent + "/share/qemu"]
        guard let dataDir = candidates.first(where: { FileManager.default.fileExists(atPath: $0 + "/kvmvapic.bin") || FileManager.default.fileExists(atPath: $0 + "/bios-256k.bin") }) else {
            throw ImagesError.badEmulator(path: qemu, problem: "no data folder (pc-bios or share/qemu with bios-256k.bin) at \(candidates.joined(separator: " or ")); give it with --emulator-data")
        }
        let sha = try Hashing.sha256(file: qemu)
        let key = Hashing.sha256(sha + "\n" + dataDir)
        let dir = cache.path("emulators", "build-" + key)
        let wrapper = dir + "/bin/qemu-system-x86_64"
        if !FileManager.default.isExecutableFile(atPath: wrapper) {
            let tmp = try cache.makeTemporaryDirectory("emulator")
            // A build tree's modules sit beside its binary; an install's in lib/…/qemu.
            try writeWrapper(qemu: qemu, modules: bin, data: [dataDir, "/usr/share/qemu"], to: tmp + "/bin/qemu-system-x86_64")
            try cache.publish(tmp, as: dir)
        }
        let facts = try EmulatorProbe.facts(of: wrapper, identity: sha + "-" + key.prefix(16), cache: cache)
        return ProvidedEmulator(label: label ?? "build-" + facts.shortVersion + "-" + sha.prefix(8), binary: wrapper, qemu: qemu,
                                qemuSHA256: sha, packages: [], facts: facts)
    }

    /// A script libvirt can run as `<emulator>` (it execs with a cleaned environment): QEMU
    /// with its own module folder and its own data first, the host's SeaBIOS behind it.
    func writeWrapper(qemu: String, modules: String, data: [String], to path: String) throws {
        try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try Self.wrapperText(qemu, modules, data).write(toFile: path, atomically: true, encoding: .utf8)
        chmod(path, 0o755)
    }

    static func wrapperText(_ qemu: String, _ modules: String, _ data: [String]) -> String {
        let quoted = { (s: String) in "'" + s.replacingOccurrences(of: "'", with: "'\\''") + "'" }
        return """
            #!/bin/sh
            # Written by isolab: runs this QEMU with its own modules and data (see vm-images/emulators.yaml).
            export QEMU_MODULE_DIR=\(quoted(modules))
            exec \(quoted(qemu)) \(data.map { "-L " + quoted($0) }.joined(separator: " ")) "$@"

            """
    }

    /// Exact versions of `e`'s packages, remembered in `resolved/emulator-<id>.json`.
    func resolve(_ e: CatalogEmulator) throws -> [DebPackage] {
        let memo = cache.path("resolved", "emulator-\(e.id).json")
        struct Memo: Codable { var entry: CatalogEmulator; var packages: [DebPackage] }
        if let data = FileManager.default.contents(atPath: memo), let m = try? JSONDecoder().decode(Memo.self, from: data), m.entry == e {
            return m.packages
        }
        let apt = try archive(e.suite!)
        let packages = try FileLock.withLock(cache.lockPath("apt-" + e.suite!)) { () -> [DebPackage] in
            if !apt.hasIndexes {
                log("apt-get update (\(e.suite!))")
                try apt.update()
            }
            return try apt.exact(e.packages, version: e.version!)
        }
        log("resolved emulator \(e.id): \(packages.map { "\($0.name) \($0.version)" }.joined(separator: ", "))")
        try FileManager.default.createDirectory(atPath: cache.path("resolved"), withIntermediateDirectories: true)
        try JSONEncoder().encode(Memo(entry: e, packages: packages)).write(to: URL(fileURLWithPath: memo))
        return packages
    }

    func archive(_ suite: String) throws -> AptArchive {
        AptArchive(root: cache.path("apt", suite), suites: [suite], sources: try sources())
    }
}
