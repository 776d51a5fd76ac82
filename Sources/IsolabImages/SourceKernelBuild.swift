import Foundation

/// A catalog kernel isolab compiles itself (`build:` in kernels.yaml): Debian's kernel source
/// package (`linux-source-X.Y`, its tarball in `/usr/src`) configured as `make tinyconfig`
/// plus the entry's config fragment, built with `make bzImage modules`, installed with
/// `make modules_install` into a tree shaped like an unpacked Debian kernel
/// (`boot/vmlinuz-R`, `boot/config-R`, `lib/modules/R`), cached in `kernels/built-<key>`.
///
/// The key covers the source package (sha256) and the fragment's text, so a second call is a
/// cache hit; the build log stays in the entry (`build.log`).
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
        let debRoot = (tmp as NSString).appendingPathComponent("deb")
        for file in files { try Shell.check(["dpkg-deb", "-x", file, debRoot]) }
        let usrSrc = (debRoot as NSString).appendingPathComponent("usr/src")
        guard let tarball = ((try? fm.contentsOfDirectory(atPath: usrSrc)) ?? []).sorted()
            .first(where: { $0.hasPrefix("linux-source-") && $0.hasSuffix(".tar.xz") }) else {
            throw ImagesError.badKernelTree(path: usrSrc, problem: "no linux-source-*.tar.xz: is the catalog's package a Debian kernel source package?")
        }
        let src = (tmp as NSString).appendingPathComponent("src")
        try fm.createDirectory(atPath: src, withIntermediateDirectories: true)
        log("\(kernelID): unpacking \(tarball)")
        try Shell.check(["tar", "-xf", (usrSrc as NSString).appendingPathComponent(tarball), "-C", src])
        try? fm.removeItem(atPath: debRoot)
        guard let top = ((try? fm.contentsOfDirectory(atPath: src)) ?? []).first(where: { $0.hasPrefix("linux") }) else {
            throw ImagesError.badKernelTree(path: src, problem: "the tarball has no linux-* directory")
        }
        let tree = (src as NSString).appendingPathComponent(top)
        let buildLog = (tmp as NSString).appendingPathComponent("build.log")
        let env = ["KBUILD_BUILD_USER": "isolab", "KBUILD_BUILD_HOST": "isolab", "LOCALVERSION": Self.localVersion,
                   "KBUILD_BUILD_TIMESTAMP": "isolab source build"]
        func make(_ targets: [String]) throws {
            let command = (["make", "-C", tree, "-j\(max(1, jobs))"] + targets).joined(separator: " ")
            let r = try Shell.run(["sh", "-c", "exec \(command) >>\"$ISOLAB_BUILD_LOG\" 2>&1"],
                                  environment: env.merging(["ISOLAB_BUILD_LOG": buildLog]) { $1 })
            guard r.status == 0 else {
                let out = (try? String(contentsOfFile: buildLog, encoding: .utf8)) ?? ""
                throw ImagesError.kernelBuildFailed(kernel: kernelID, step: "make " + targets.joined(separator: " "), log: buildLog, output: out)
            }
        }
        try make(["tinyconfig"])
        try Shell.check(["sh", "scripts/kconfig/merge_config.sh", "-m", ".config", fragmentPath], currentDirectory: tree)
        try make(["olddefconfig"])
        let configPath = (tree as NSString).appendingPathComponent(".config")
        let config = try KernelConfig(path: configPath)
        let wrong = fragment.mismatches(in: config)
        guard wrong.isEmpty else {
            throw ImagesError.invalidFile(file: fragmentPath, line: nil, field: wrong.map(\.symbol).joined(separator: ", "),
                                          problem: "after make olddefconfig: " + wrong.map { "\($0.symbol)=\($0.got) (asked \($0.wanted))" }.joined(separator: ", ")
                                            + "; a dependency is missing from the fragment or the symbol does not exist in this kernel",
                                          accepted: "symbols of this kernel's Kconfig with their dependencies")
        }
        log("\(kernelID): make -j\(jobs) bzImage modules (log: \(buildLog))")
        try make(["bzImage", "modules"])
        let root = (tmp as NSString).appendingPathComponent("root")
        try make(["modules_install", "INSTALL_MOD_PATH=\(root)", "INSTALL_MOD_STRIP=1"])
        let release = try String(contentsOfFile: (tree as NSString).appendingPathComponent("include/config/kernel.release"), encoding: .utf8)
            .trimmingCharacters(in: .whitespacesAndNewlines)
        let boot = (root as NSString).appendingPathComponent("boot")
        try fm.createDirectory(atPath: boot, withIntermediateDirectories: true)
        try fm.copyItem(atPath: (tree as NSString).appendingPathComponent("arch/x86/boot/bzImage"),
                        toPath: (boot as NSString).appendingPathComponent("vmlinuz-\(release)"))
        try fm.copyItem(atPath: configPath, toPath: (boot as NSString).appendingPathComponent("config-\(release)"))
        try fm.removeItem(atPath: src)
        try KernelResolver.finishTree(root: root, in: tmp)
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
                                      "CONFIG_PCI_STUB", "CONFIG_VFIO_PCI", "CONFIG_VIRTIO_PCI"]
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
