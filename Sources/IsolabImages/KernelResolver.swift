import Foundation

/// A catalog kernel resolved to exact package versions (remembered in `resolved/<id>.json`).
public struct ResolvedKernel: Codable, Equatable, Sendable {
    /// The catalog entry as it was when resolved (a changed entry forces a new resolution).
    public var kernel: CatalogKernel
    public var packages: [DebPackage]
    public var resolvedAt: Date
    /// Dependencies the archive no longer has and that were left out (`linux-base-R v`).
    public var skipped: [String]?
    /// Version of the catalog's package (the meta-package) that was chosen.
    public var version: String { packages.first?.version ?? "?" }
}

/// A kernel unpacked from its .debs (`kernels/<key>/`), with `modules.dep` generated.
public struct UnpackedKernel: Codable, Sendable {
    /// Root of the unpacked file tree.
    public var root: String
    /// Path of the bzImage inside it.
    public var bzImage: String
    /// `…/lib/modules/<release>` inside it.
    public var modulesDirectory: String
    public var kernelRelease: String
}

/// Resolves catalog kernels with apt, downloads and unpacks their packages into the cache.
/// Nothing is installed on the host: packages are unpacked with `dpkg-deb -x`.
public struct KernelResolver {
    public let cache: ImageCache
    public var sources: () throws -> DebianSources
    /// Progress lines (`resolving 6.1 …`); silent by default.
    public var log: (String) -> Void = { _ in }

    public init(cache: ImageCache, sources: @escaping () throws -> DebianSources = { try DebianSources.configured() }) {
        self.cache = cache; self.sources = sources
    }

    static func memoPath(_ cache: ImageCache, _ id: String) -> String { cache.path("resolved", id + ".json") }

    /// All remembered resolutions by kernel id.
    static func cachedResolutions(in cache: ImageCache) -> [String: ResolvedKernel] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: cache.path("resolved"))) ?? []
        var out: [String: ResolvedKernel] = [:]
        for name in names where name.hasSuffix(".json") {
            if let data = FileManager.default.contents(atPath: cache.path("resolved", name)),
               let r = try? JSONCoding.decoder.decode(ResolvedKernel.self, from: data) { out[r.kernel.id] = r }
        }
        return out
    }

    /// The remembered resolution of `kernel`, if its catalog entry has not changed since.
    public func remembered(_ kernel: CatalogKernel) -> ResolvedKernel? {
        guard let data = FileManager.default.contents(atPath: Self.memoPath(cache, kernel.id)),
              let r = try? JSONCoding.decoder.decode(ResolvedKernel.self, from: data), r.kernel == kernel else { return nil }
        return r
    }

    /// Exact packages for `kernel`: the remembered resolution unless `refresh` (or the catalog
    /// entry changed); otherwise asks apt (private indexes, updated when missing or on refresh).
    public func resolve(_ kernel: CatalogKernel, refresh: Bool = false) throws -> ResolvedKernel {
        if !refresh, let r = remembered(kernel) { return r }
        let apt = try archive(for: kernel)
        return try FileLock.withLock(cache.lockPath("apt-" + kernel.suites.joined(separator: "+"))) {
            if refresh || !apt.hasIndexes {
                log("apt-get update (\(kernel.suites.joined(separator: ", ")))")
                try apt.update()
            }
            var skipped: [String] = []
            let packages = try apt.resolve(package: kernel.package, version: kernel.version, skipped: &skipped)
            let resolved = ResolvedKernel(kernel: kernel, packages: packages, resolvedAt: Date(), skipped: skipped.isEmpty ? nil : skipped)
            log("resolved \(kernel.id): \(packages.map { "\($0.name) \($0.version)" }.joined(separator: ", "))"
                + (skipped.isEmpty ? "" : "; left out, gone from the archive: " + skipped.joined(separator: ", ")))
            try FileManager.default.createDirectory(atPath: cache.path("resolved"), withIntermediateDirectories: true)
            let memo = Self.memoPath(cache, kernel.id)
            try JSONCoding.encoder.encode(resolved).write(to: URL(fileURLWithPath: memo + ".tmp"))
            _ = rename(memo + ".tmp", memo)
            return resolved
        }
    }

    func archive(for kernel: CatalogKernel) throws -> AptArchive {
        AptArchive(root: cache.path("apt", kernel.suites.joined(separator: "+")), suites: kernel.suites, sources: try sources())
    }

    /// Key of an unpacked kernel: sha256 over its packages' sha256s.
    static func kernelKey(_ packages: [DebPackage]) -> String {
        Hashing.sha256(packages.map(\.sha256).sorted().joined(separator: "\n"))
    }

    /// The .debs of `resolved` in `debs/`, downloading (and checking sha256) those missing.
    public func debs(for resolved: ResolvedKernel) throws -> [String] {
        try archive(for: resolved.kernel).cachedDebs(resolved.packages, cache: cache, what: resolved.kernel.id, log: log)
    }

    /// The unpacked kernel for `resolved`, downloading and unpacking when not cached.
    public func unpack(_ resolved: ResolvedKernel) throws -> UnpackedKernel {
        let key = Self.kernelKey(resolved.packages)
        let final = cache.path("kernels", key)
        if let k = try? Self.loadUnpacked(final) { return k }
        return try FileLock.withLock(cache.lockPath("kernel-" + key)) {
            if let k = try? Self.loadUnpacked(final) { return k }
            let files = try debs(for: resolved)
            log("unpacking \(resolved.kernel.id) (\(files.count) package(s))")
            let tmp = try cache.makeTemporaryDirectory("kernel-\(key.prefix(12))")
            let root = (tmp as NSString).appendingPathComponent("root")
            do {
                for file in files { try Shell.check(["dpkg-deb", "-x", file, root]) }
                try Self.finishTree(root: root, in: tmp)
            } catch {
                try? FileManager.default.removeItem(atPath: tmp)
                throw error
            }
            try cache.publish(tmp, as: final)
            return try Self.loadUnpacked(final)
        }
    }

    /// Locates kernel and modules in an unpacked tree, runs depmod, writes `kernel.json`
    /// (with paths relative to the entry so the entry can be renamed).
    static func finishTree(root: String, in entry: String) throws {
        let layout = try KernelTreeLayout.find(root: root)
        if !FileManager.default.fileExists(atPath: (layout.modulesDirectory as NSString).appendingPathComponent("modules.dep")) {
            try Shell.check(["depmod", "-b", layout.depmodBase, layout.kernelRelease])
        }
        let rel = { (p: String) in String(p.dropFirst(entry.count + 1)) }
        let k = UnpackedKernel(root: rel(root), bzImage: rel(layout.bzImage),
                               modulesDirectory: rel(layout.modulesDirectory), kernelRelease: layout.kernelRelease)
        try JSONCoding.encoder.encode(k).write(to: URL(fileURLWithPath: (entry as NSString).appendingPathComponent("kernel.json")))
    }

    static func loadUnpacked(_ entry: String) throws -> UnpackedKernel {
        guard let data = FileManager.default.contents(atPath: (entry as NSString).appendingPathComponent("kernel.json")) else {
            throw ImagesError.io(path: entry, problem: "not unpacked")
        }
        var k = try JSONCoding.decoder.decode(UnpackedKernel.self, from: data)
        let abs = { (p: String) in (entry as NSString).appendingPathComponent(p) }
        k.root = abs(k.root); k.bzImage = abs(k.bzImage); k.modulesDirectory = abs(k.modulesDirectory)
        return k
    }
}

/// Where a Debian kernel package set puts things: `/boot/vmlinuz-R` + `/lib/modules/R`
/// (5.10, 6.1), `/boot` + `/usr/lib/modules/R` (6.12), or `vmlinuz` inside
/// `/usr/lib/modules/R` from split `linux-binary-*` / `linux-modules-*` packages (7.3).
struct KernelTreeLayout {
    var bzImage: String
    var modulesDirectory: String
    var kernelRelease: String
    /// The `-b` directory for depmod (`<base>/lib/modules/<release>`).
    var depmodBase: String

    static func find(root: String) throws -> KernelTreeLayout {
        let fm = FileManager.default
        for base in [root, (root as NSString).appendingPathComponent("usr")] {
            let modules = (base as NSString).appendingPathComponent("lib/modules")
            for release in ((try? fm.contentsOfDirectory(atPath: modules)) ?? []).sorted() {
                let dir = (modules as NSString).appendingPathComponent(release)
                guard fm.fileExists(atPath: (dir as NSString).appendingPathComponent("kernel")) else { continue }
                let candidates = [(dir as NSString).appendingPathComponent("vmlinuz"),
                                  (root as NSString).appendingPathComponent("boot/vmlinuz-\(release)")]
                guard let bz = candidates.first(where: { fm.fileExists(atPath: $0) }) else {
                    throw ImagesError.badKernelTree(path: root, problem: "modules for \(release) but no vmlinuz in \(candidates.joined(separator: " or "))")
                }
                return KernelTreeLayout(bzImage: bz, modulesDirectory: dir, kernelRelease: release, depmodBase: base)
            }
        }
        throw ImagesError.badKernelTree(path: root, problem: "no lib/modules/<release>/kernel or usr/lib/modules/<release>/kernel")
    }
}
