import Foundation

/// isolab's cache directory: resolved versions, downloaded .debs, unpacked kernels and
/// built images, each keyed by content. Safe for several isolab processes at once:
/// entries are built in `tmp/` and renamed into place under a per-key `flock`.
///
/// Layout: `apt/<suites>/` (private apt state), `resolved/<kernel>.json`,
/// `debs/<sha256>.deb`, `kernels/<key>/`, `images/<key>/`, `locks/`, `tmp/`.
public struct ImageCache: Sendable {
    public let root: String

    public init(root: String) { self.root = root }

    /// `$ISOLAB_CACHE_DIR`, else `$XDG_CACHE_HOME/isolab`, else `~/.cache/isolab`.
    public static func defaultRoot(environment: [String: String] = ProcessInfo.processInfo.environment) -> String {
        if let dir = environment["ISOLAB_CACHE_DIR"], !dir.isEmpty { return dir }
        if let xdg = environment["XDG_CACHE_HOME"], !xdg.isEmpty { return (xdg as NSString).appendingPathComponent("isolab") }
        let home = environment["HOME"].flatMap { $0.isEmpty ? nil : $0 } ?? NSHomeDirectory()
        return (home as NSString).appendingPathComponent(".cache/isolab")
    }

    func path(_ components: String...) -> String {
        components.reduce(root) { ($0 as NSString).appendingPathComponent($1) }
    }

    func lockPath(_ name: String) -> String { path("locks", name + ".lock") }

    /// A fresh private directory in `tmp/` (same file system as the entries, so rename is atomic).
    func makeTemporaryDirectory(_ label: String) throws -> String {
        let dir = path("tmp", "\(label).\(getpid()).\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return dir
    }

    /// Moves a finished `temporary` directory to `final` atomically; if another process got
    /// there first, keeps theirs and discards ours.
    func publish(_ temporary: String, as final: String) throws {
        let fm = FileManager.default
        // Ctrl-C during the build: whatever the entry holds, it is not published.
        if Shell.isCancelled {
            try? fm.removeItem(atPath: temporary)
            throw ImagesError.cancelled(command: "building \((final as NSString).lastPathComponent)")
        }
        try fm.createDirectory(atPath: (final as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        if rename(temporary, final) != 0 {
            let err = errno
            try? fm.removeItem(atPath: temporary)
            guard err == EEXIST || err == ENOTEMPTY else {
                throw ImagesError.io(path: final, problem: "cannot move the built entry into place: \(String(cString: strerror(err)))")
            }
        }
    }

    /// The images in the cache, newest first; unreadable entries are skipped.
    public func list(kernel: String? = nil) -> [GuestImage] {
        let dir = path("images")
        let names = (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []
        return names.compactMap { try? GuestImage(directory: (dir as NSString).appendingPathComponent($0)) }
            .filter { kernel == nil || $0.metadata.kernelID == kernel }
            .sorted { $0.metadata.createdAt > $1.metadata.createdAt }
    }

    /// What `prune` removed.
    public struct PruneReport: Codable, Sendable {
        public var images: [String] = []
        public var kernels: [String] = []
        public var debs: [String] = []
        public var bytes: Int64 = 0
    }

    /// Removes images of `kernel` (or of every kernel) except the `keep` newest per kernel id
    /// whose packages match the kernel's current resolution; then unpacked kernels and .debs
    /// that no remaining image and no current resolution uses. `keep: 0` removes all images.
    public func prune(kernel: String? = nil, keep: Int = 1) throws -> PruneReport {
        var report = PruneReport()
        let resolved = KernelResolver.cachedResolutions(in: self)
        var kept: [String: Int] = [:]
        for image in list() {
            let m = image.metadata
            var keepIt = kernel != nil && m.kernelID != kernel
            if !keepIt, keep > 0, kept[m.kernelID, default: 0] < keep {
                let current = resolved[m.kernelID].map { Set($0.packages.map(\.sha256)) == Set(m.packages.map(\.sha256)) }
                if m.origin == .local || current ?? true { keepIt = true }
            }
            if keepIt { kept[m.kernelID, default: 0] += 1; continue }
            try FileLock.withLock(lockPath("image-" + m.key)) {
                report.bytes += Self.size(image.directory)
                try FileManager.default.removeItem(atPath: image.directory)
            }
            report.images.append("\(m.kernelID) \(m.key.prefix(12))")
        }
        // Debs and unpacked kernels still needed: those of current resolutions and remaining images.
        var needed = Set<String>()
        for r in resolved.values { needed.formUnion(r.packages.map(\.sha256)) }
        for image in list() { needed.formUnion(image.metadata.packages.map(\.sha256)) }
        let neededKernels = Set(resolved.values.map { KernelResolver.kernelKey($0.packages) }
            + list().filter { $0.metadata.origin == .debian }.map { KernelResolver.kernelKey($0.metadata.packages) })
        let fm = FileManager.default
        for name in (try? fm.contentsOfDirectory(atPath: path("kernels"))) ?? [] where !neededKernels.contains(name) {
            let dir = path("kernels", name)
            try FileLock.withLock(lockPath("kernel-" + name)) {
                report.bytes += Self.size(dir)
                try fm.removeItem(atPath: dir)
            }
            report.kernels.append(String(name.prefix(12)))
        }
        for name in (try? fm.contentsOfDirectory(atPath: path("debs"))) ?? [] where name.hasSuffix(".deb") {
            guard !needed.contains(String(name.dropLast(4))) else { continue }
            let file = path("debs", name)
            report.bytes += Self.size(file)
            try fm.removeItem(atPath: file)
            report.debs.append(name)
        }
        // Leftovers of interrupted builds: entries whose building process is gone.
        for name in (try? fm.contentsOfDirectory(atPath: path("tmp"))) ?? [] {
            let parts = name.split(separator: ".")
            guard parts.count >= 3, let pid = Int32(parts[parts.count - 2]), kill(pid, 0) != 0, errno == ESRCH else { continue }
            try? fm.removeItem(atPath: path("tmp", name))
        }
        return report
    }

    static func size(_ path: String) -> Int64 {
        let fm = FileManager.default
        var isDir: ObjCBool = false
        guard fm.fileExists(atPath: path, isDirectory: &isDir) else { return 0 }
        guard isDir.boolValue else { return (try? fm.attributesOfItem(atPath: path)[.size] as? Int64) ?? 0 }
        var total: Int64 = 0
        let entries = fm.enumerator(atPath: path)?.allObjects as? [String] ?? []
        for rel in entries {
            let attrs = try? fm.attributesOfItem(atPath: (path as NSString).appendingPathComponent(rel))
            if (attrs?[.type] as? FileAttributeType) == .typeRegular { total += (attrs?[.size] as? Int64) ?? 0 }
        }
        return total
    }
}
