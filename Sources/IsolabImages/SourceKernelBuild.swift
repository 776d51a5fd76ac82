import Foundation

/// A catalog kernel isolab compiles itself (`build:` in kernels.yaml): Debian's kernel source
/// package (`linux-source-X.Y`, its tarball in `/usr/src`) configured as `make tinyconfig`
/// plus the entry's config fragment, built with `make bzImage modules` in a build tree that is
/// kept (`trees/<key>`, see `tree(_:fragmentPath:patch:)`), then installed with
/// `make modules_install` into a tree shaped like an unpacked Debian kernel
/// (`boot/vmlinuz-R`, `boot/config-R`, `lib/modules/R`), cached in `kernels/built-<key>`.
///
/// The keys cover the source package (sha256) and the fragment's text, so a second call is a
/// cache hit; the build log stays in the tree's entry (`build.log`). One compile serves the
/// catalog image, `--kernel-tree` and every patched copy of the tree.
struct SourceKernelBuild {
    let cache: ImageCache
    let resolver: KernelResolver
    var log: (String) -> Void = { _ in }
    /// Parallel jobs for make (default: the online CPUs).
    var jobs = ProcessInfo.processInfo.activeProcessorCount
    /// Appended to the release (`6.12.57-isolab`), so the guest's `uname -r` says what it is.
    static let localVersion = "-isolab"
    /// Bumped when the way kernels are built changes, so old builds are not reused.
    static let format = "isolab-kbuild-1"

    /// The built kernel for `resolved` configured by the fragment at `fragmentPath`.
    func build(_ resolved: ResolvedKernel, fragmentPath: String) throws -> UnpackedKernel {
        guard let fragmentData = FileManager.default.contents(atPath: fragmentPath) else {
            throw ImagesError.io(path: fragmentPath, problem: "cannot read the kernel config fragment")
        }
        let fragment = try ConfigFragment(text: String(decoding: fragmentData, as: UTF8.self), file: fragmentPath)
        let key = Hashing.sha256([Self.format, KernelResolver.kernelKey(resolved.packages),
                                  Hashing.sha256(fragmentData)].joined(separator: "\n"))
        let final = cache.path("kernels", "built-" + key)
        if let k = try? KernelResolver.loadUnpacked(final) { return k }
        return try FileLock.withLock(cache.lockPath("kbuild-" + key)) {
            if let k = try? KernelResolver.loadUnpacked(final) { return k }
            for tool in ["make", "gcc", "flex", "bison", "bc", "tar", "xz", "depmod"] { _ = try Shell.which(tool) }
            let files = try resolver.debs(for: resolved)
            let tmp = try cache.makeTemporaryDirectory("kbuild-\(key.prefix(12))")
            do {
                try compile(files: files, fragment: fragment, fragmentPath: fragmentPath, in: tmp, kernelID: resolved.kernel.id)
                try cache.publish(tmp, as: final)
                return try KernelResolver.loadUnpacked(final)
            } catch {
                // Keep the log where a developer can read it; drop the (large) source tree.
                try? FileManager.default.removeItem(atPath: (tmp as NSString).appendingPathComponent("src"))
                throw error
            }
        }
    }

    private func compile(files: [String], fragment: ConfigFragment, fragmentPath: String, in tmp: String,
                         kernelID: String) throws {
        let fm = FileManager.default
        let tree = try buildTree(files: files, fragment: fragment, fragmentPath: fragmentPath, kernelID: kernelID)
        let buildLog = (tmp as NSString).appendingPathComponent("build.log")
        let root = (tmp as NSString).appendingPathComponent("root")
        try make(tree, ["modules_install", "INSTALL_MOD_PATH=\(root)", "INSTALL_MOD_STRIP=1"], log: buildLog, kernelID: kernelID)
        let release = try String(contentsOfFile: (tree as NSString).appendingPathComponent("include/config/kernel.release"), encoding: .utf8)
            .trimmingCharacters(in: .whitespacesAndNewlines)
        let boot = (root as NSString).appendingPathComponent("boot")
        try fm.createDirectory(atPath: boot, withIntermediateDirectories: true)
        try fm.copyItem(atPath: (tree as NSString).appendingPathComponent("arch/x86/boot/bzImage"),
                        toPath: (boot as NSString).appendingPathComponent("vmlinuz-\(release)"))
        try fm.copyItem(atPath: (tree as NSString).appendingPathComponent(".config"),
                        toPath: (boot as NSString).appendingPathComponent("config-\(release)"))
        try KernelResolver.finishTree(root: root, in: tmp)
    }

    // MARK: - Kept build trees

    /// The kept build tree (after `make bzImage modules`, never `modules_install`) of `resolved`
    /// configured by the fragment, with `patch` (a `patch -p1` file) applied when given: what a
    /// developer hands `--kernel-tree`. Cached in `trees/<key>/src/linux-*`, the key covering the
    /// source package, the fragment and the patch. A patched tree starts as a copy of the
    /// unpatched one (built first if needed), so only what the patch touches recompiles.
    public func tree(_ resolved: ResolvedKernel, fragmentPath: String, patch: String? = nil) throws -> String {
        guard let fragmentData = FileManager.default.contents(atPath: fragmentPath) else {
            throw ImagesError.io(path: fragmentPath, problem: "cannot read the kernel config fragment")
        }
        let fragment = try ConfigFragment(text: String(decoding: fragmentData, as: UTF8.self), file: fragmentPath)
        let files = try resolver.debs(for: resolved)
        let base = try buildTree(files: files, fragment: fragment, fragmentPath: fragmentPath, kernelID: resolved.kernel.id)
        guard let patch else { return base }
        guard let patchData = FileManager.default.contents(atPath: patch) else {
            throw ImagesError.io(path: patch, problem: "cannot read the kernel patch")
        }
        let key = Hashing.sha256([Self.treeFormat, Self.treeKey(files: files, fragment: fragmentData), "patch: " + Hashing.sha256(patchData)]
            .joined(separator: "\n"))
        return try keptTree(key: key, kernelID: resolved.kernel.id + "+" + (patch as NSString).lastPathComponent) { dir, buildLog in
            let top = (base as NSString).lastPathComponent
            let src = (dir as NSString).appendingPathComponent("src")
            try FileManager.default.createDirectory(atPath: src, withIntermediateDirectories: true)
            log("\(resolved.kernel.id): copying the built tree to apply \((patch as NSString).lastPathComponent)")
            try Shell.check(["cp", "-a", base, src])
            let tree = (src as NSString).appendingPathComponent(top)
            try Shell.check(["patch", "-p1", "--forward", "-i", URL(fileURLWithPath: patch).standardizedFileURL.path], currentDirectory: tree)
            log("\(resolved.kernel.id): make -j\(jobs) bzImage modules after the patch (log: \(buildLog))")
            try make(tree, ["bzImage", "modules"], log: buildLog, kernelID: resolved.kernel.id)
            return tree
        }
    }

    static let treeFormat = "isolab-ktree-1"

    static func treeKey(files: [String], fragment: Data) -> String {
        Hashing.sha256(files.map { ($0 as NSString).lastPathComponent }.sorted().joined(separator: ",") + "\n" + Hashing.sha256(fragment))
    }

    /// The unpatched tree: unpack, `make tinyconfig` + fragment, `make bzImage modules`.
    private func buildTree(files: [String], fragment: ConfigFragment, fragmentPath: String, kernelID: String) throws -> String {
        let fragmentData = FileManager.default.contents(atPath: fragmentPath) ?? Data()
        let key = Hashing.sha256([Self.treeFormat, Self.treeKey(files: files, fragment: fragmentData)].joined(separator: "\n"))
        return try keptTree(key: key, kernelID: kernelID) { dir, buildLog in
            try unpackAndConfigure(files: files, fragment: fragment, fragmentPath: fragmentPath, in: dir, kernelID: kernelID, buildLog: buildLog)
        }
    }

    /// `trees/<key>`: built in place under the key's lock (a tree's object files record their
    /// paths, so it is never moved), done when `tree.txt` names the tree.
    private func keptTree(key: String, kernelID: String, _ body: (String, String) throws -> String) throws -> String {
        let fm = FileManager.default
        let dir = cache.path("trees", key)
        let marker = (dir as NSString).appendingPathComponent("tree.txt")
        func done() -> String? {
            guard let t = fm.contents(atPath: marker).map({ String(decoding: $0, as: UTF8.self) }) else { return nil }
            let tree = (dir as NSString).appendingPathComponent(t.trimmingCharacters(in: .whitespacesAndNewlines))
            return fm.fileExists(atPath: (tree as NSString).appendingPathComponent("arch/x86/boot/bzImage")) ? tree : nil
        }
        if let t = done() { return t }
        return try FileLock.withLock(cache.lockPath("ktree-" + key)) {
            if let t = done() { return t }
            for tool in ["make", "gcc", "flex", "bison", "bc", "tar", "xz", "patch"] { _ = try Shell.which(tool) }
            try? fm.removeItem(atPath: dir)
            try fm.createDirectory(atPath: dir, withIntermediateDirectories: true)
            let buildLog = (dir as NSString).appendingPathComponent("build.log")
            let started = Date()
            do {
                let tree = try body(dir, buildLog)
                log(String(format: "%@: tree built in %.0f s: %@", kernelID, Date().timeIntervalSince(started), tree))
                try String(tree.dropFirst(dir.count + 1)).write(toFile: marker, atomically: true, encoding: .utf8)
                return tree
            } catch {
                // Keep the log where a developer can read it; drop the (large) source tree.
                try? fm.removeItem(atPath: (dir as NSString).appendingPathComponent("src"))
                throw error
            }
        }
    }

    private func unpackAndConfigure(files: [String], fragment: ConfigFragment, fragmentPath: String, in dir: String,
                                    kernelID: String, buildLog: String) throws -> String {
        let tree = try Self.unpackSource(files: files, in: dir, log: { log("\(kernelID): \($0)") })
        try make(tree, ["tinyconfig"], log: buildLog, kernelID: kernelID)
        try Shell.check(["sh", "scripts/kconfig/merge_config.sh", "-m", ".config", fragmentPath], currentDirectory: tree)
        try make(tree, ["olddefconfig"], log: buildLog, kernelID: kernelID)
        let config = try KernelConfig(path: (tree as NSString).appendingPathComponent(".config"))
        let wrong = fragment.mismatches(in: config)
        guard wrong.isEmpty else {
            throw ImagesError.invalidFile(file: fragmentPath, line: nil, field: wrong.map(\.symbol).joined(separator: ", "),
                                          problem: "after make olddefconfig: " + wrong.map { "\($0.symbol)=\($0.got) (asked \($0.wanted))" }.joined(separator: ", ")
                                            + "; a dependency is missing from the fragment or the symbol does not exist in this kernel",
                                          accepted: "symbols of this kernel's Kconfig with their dependencies")
        }
        log("\(kernelID): make -j\(jobs) bzImage modules (log: \(buildLog))")
        try make(tree, ["bzImage", "modules"], log: buildLog, kernelID: kernelID)
        return tree
    }

    private func make(_ tree: String, _ targets: [String], log buildLog: String, kernelID: String) throws {
        let env = ["KBUILD_BUILD_USER": "isolab", "KBUILD_BUILD_HOST": "isolab", "LOCALVERSION": Self.localVersion,
                   "KBUILD_BUILD_TIMESTAMP": "isolab source build", "ISOLAB_BUILD_LOG": buildLog]
        let command = (["make", "-C", tree, "-j\(max(1, jobs))"] + targets).joined(separator: " ")
        let r = try Shell.run(["sh", "-c", "exec \(command) >>\"$ISOLAB_BUILD_LOG\" 2>&1"], environment: env)
        guard r.status == 0 else {
            let out = (try? String(contentsOfFile: buildLog, encoding: .utf8)) ?? ""
            throw ImagesError.kernelBuildFailed(kernel: kernelID, step: "make " + targets.joined(separator: " "), log: buildLog, output: out)
        }
    }
}

extension SourceKernelBuild {
    /// Unpacks a Debian kernel source package (`linux-source-X.Y`: its debs in `files`, the
    /// tarball in `/usr/src`) into `dir/src`; returns the tree (`dir/src/linux-source-X.Y`).
    static func unpackSource(files: [String], in dir: String, log: (String) -> Void) throws -> String {
        let fm = FileManager.default
        let debRoot = (dir as NSString).appendingPathComponent("deb")
        for file in files { try Shell.check(["dpkg-deb", "-x", file, debRoot]) }
        let usrSrc = (debRoot as NSString).appendingPathComponent("usr/src")
        guard let tarball = ((try? fm.contentsOfDirectory(atPath: usrSrc)) ?? []).sorted()
            .first(where: { $0.hasPrefix("linux-source-") && $0.hasSuffix(".tar.xz") }) else {
            throw ImagesError.badKernelTree(path: usrSrc, problem: "no linux-source-*.tar.xz: is the catalog's package a Debian kernel source package?")
        }
        let src = (dir as NSString).appendingPathComponent("src")
        try fm.createDirectory(atPath: src, withIntermediateDirectories: true)
        log("unpacking \(tarball)")
        try Shell.check(["tar", "-xf", (usrSrc as NSString).appendingPathComponent(tarball), "-C", src])
        try? fm.removeItem(atPath: debRoot)
        guard let top = ((try? fm.contentsOfDirectory(atPath: src)) ?? []).first(where: { $0.hasPrefix("linux") }) else {
            throw ImagesError.badKernelTree(path: src, problem: "the tarball has no linux-* directory")
        }
        return (src as NSString).appendingPathComponent(top)
    }
}

/// A kernel `.config` as symbol → value (`y`, `m`, a string or number; `n` for "is not set").
public struct KernelConfig: Sendable, Equatable {
    public var values: [String: String]

    public init(text: String) {
        var v: [String: String] = [:]
        for raw in text.split(separator: "\n") {
            let line = raw.trimmingCharacters(in: .whitespaces)
            if line.hasPrefix("CONFIG_"), let eq = line.firstIndex(of: "=") {
                v[String(line[..<eq])] = String(line[line.index(after: eq)...])
            } else if line.hasPrefix("# CONFIG_"), line.hasSuffix(" is not set") {
                v[String(line.dropFirst(2).dropLast(" is not set".count))] = "n"
            }
        }
        values = v
    }

    public init(path: String) throws {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ImagesError.io(path: path, problem: "cannot read the kernel config")
        }
        self.init(text: String(decoding: data, as: UTF8.self))
    }

    /// The symbol's value; `n` when unset or absent.
    public subscript(_ symbol: String) -> String { values[symbol] ?? "n" }

    /// The symbols the IOMMU model reads from a build's configuration.
    /// (IsolabModel's `KernelGeneration.configSymbols`; IsolabImages does not depend on the model.)
    public static let modelSymbols = ["CONFIG_IOMMUFD", "CONFIG_VFIO_DEVICE_CDEV", "CONFIG_VFIO_NOIOMMU", "CONFIG_VIRTIO_IOMMU",
                                      "CONFIG_BLK_DEV_NVME", "CONFIG_E1000E", "CONFIG_HOTPLUG_PCI_SHPC", "CONFIG_PCIEPORTBUS",
                                      "CONFIG_PCI_STUB", "CONFIG_VFIO_PCI", "CONFIG_VIRTIO_PCI", "CONFIG_PCI_IOV",
                                      "CONFIG_IOMMUFD_TEST", "CONFIG_FAILSLAB", "CONFIG_FAULT_INJECTION_DEBUG_FS", "CONFIG_HUGETLBFS"]
}

/// A config fragment: the symbols a build must end up with.
struct ConfigFragment {
    var wanted: [(symbol: String, value: String)]

    init(text: String, file: String) throws {
        let parsed = KernelConfig(text: text)
        var order: [(String, String)] = []
        for (i, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = raw.trimmingCharacters(in: .whitespaces)
            if line.isEmpty || (line.hasPrefix("#") && !line.hasPrefix("# CONFIG_")) { continue }
            let symbol = KernelConfig(text: line).values.keys.first
            guard let symbol else {
                throw ImagesError.invalidFile(file: file, line: i + 1, field: nil, problem: "'\(line)' is not a config line",
                                              accepted: "CONFIG_X=y|m|value, # CONFIG_X is not set, or # comments")
            }
            order.append((symbol, parsed[symbol]))
        }
        wanted = order
    }

    func mismatches(in config: KernelConfig) -> [(symbol: String, wanted: String, got: String)] {
        wanted.compactMap { w in config[w.symbol] == w.value ? nil : (w.symbol, w.value, config[w.symbol]) }
    }
}
