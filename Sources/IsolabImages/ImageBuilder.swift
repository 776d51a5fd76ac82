import Foundation

/// A developer's own kernel: a bzImage and a `make modules_install INSTALL_MOD_PATH=` tree.
public struct LocalKernel: Sendable {
    /// `arch/x86/boot/bzImage`, or a bare ELF `vmlinux` with a PVH entry note (`CONFIG_PVH=y`);
    /// a bzImage's PVH vmlinux is unpacked from it when it has one.
    public var bzImage: String
    /// The INSTALL_MOD_PATH root (with `lib/modules/<release>`), or that release directory itself.
    public var modules: String
    /// Model generation; nil reads `major.minor` from the bzImage's version string.
    public var generation: String?

    public init(bzImage: String, modules: String, generation: String? = nil) {
        self.bzImage = bzImage; self.modules = modules; self.generation = generation
    }

    /// `lib/modules/<release>` for this kernel inside `modules`.
    func modulesDirectory(release: String) throws -> String {
        let fm = FileManager.default
        let candidates = ["lib/modules/\(release)", "usr/lib/modules/\(release)", ""]
            .map { $0.isEmpty ? modules : (modules as NSString).appendingPathComponent($0) }
        for dir in candidates where fm.fileExists(atPath: (dir as NSString).appendingPathComponent("modules.dep")) {
            return dir
        }
        throw ImagesError.badKernelTree(
            path: modules,
            problem: "no modules.dep for \(release) in \(candidates.joined(separator: ", ")); pass the INSTALL_MOD_PATH "
                + "of `make modules_install`, or run `depmod -b PATH \(release)`")
    }
}

/// Builds guest images (kernel + initramfs) into the content-addressed cache.
///
/// ```swift
/// let builder = try ImageBuilder(cache: ImageCache(root: ImageCache.defaultRoot()))
/// let image = try builder.build(kernel: builder.catalog.kernel(id: "6.1"), agent: nil)
/// // image.kernelPath, image.initramfsPath, image.kernelRelease, image.generation
/// ```
public final class ImageBuilder: @unchecked Sendable {
    public let cache: ImageCache
    public let recipe: Recipe
    public var resolver: KernelResolver
    /// Re-resolve "newest version" with apt instead of using the remembered resolution.
    public var refresh = false
    /// Progress lines; silent by default.
    public var log: (String) -> Void = { _ in } { didSet { resolver.log = log } }
    /// The static busybox copied into every image.
    public var busybox = "/bin/busybox"

    /// - Parameters:
    ///   - recipe: the `vm-images` recipe; located with `Recipe.locate()` when nil.
    public init(cache: ImageCache, recipe: Recipe? = nil) throws {
        self.cache = cache
        self.recipe = try recipe ?? Recipe(directory: Recipe.locate())
        resolver = KernelResolver(cache: cache)
    }

    /// The catalog beside the recipe (`vm-images/kernels.yaml`).
    public var catalog: KernelCatalog { get throws { try recipe.catalog() } }

    /// The image for a catalog kernel, built unless the cache has it. With a remembered
    /// resolution and a cached image this runs no apt and no external tool.
    public func build(kernel: CatalogKernel, agent: String? = nil) throws -> GuestImage {
        if let reason = kernel.unavailable { throw ImagesError.kernelUnavailable(id: kernel.id, reason: reason) }
        let resolved = try resolver.resolve(kernel, refresh: refresh)
        let key = try imageKey(kernel: kernel, packages: resolved.packages, agent: agent)
        if let image = cached(key) { return image }
        return try buildLocked(key: key) { work in
            let unpacked: UnpackedKernel
            if let fragment = kernel.build {
                var kbuild = SourceKernelBuild(cache: cache, resolver: resolver)
                kbuild.log = log
                unpacked = try kbuild.build(resolved, fragmentPath: fragmentPath(fragment))
            } else {
                unpacked = try resolver.unpack(resolved)
            }
            return try assemble(key: key, work: work, kernel: try KernelFile(path: unpacked.bzImage),
                                modulesDirectory: unpacked.modulesDirectory, kernelRelease: unpacked.kernelRelease,
                                agent: agent, kernelID: kernel.id, origin: .debian, suite: kernel.suite,
                                packages: resolved.packages, generation: kernel.generation)
        }
    }

    /// The image for a developer's kernel (a bzImage, or a bare ELF `vmlinux` with a PVH entry).
    /// Its key covers the kernel file, the modules shipped and the module index, not the whole
    /// modules tree.
    public func build(localKernel: LocalKernel, agent: String? = nil) throws -> GuestImage {
        try build(localKernel: localKernel, agent: agent, vmlinux: .extract, config: nil)
    }

    /// As `build(localKernel:agent:)`, with the PVH `vmlinux` from `vmlinux` and, for a build
    /// tree, its `.config` (both in the key when given).
    func build(localKernel: LocalKernel, agent: String?, vmlinux: VmlinuxSource, config: KernelConfig?) throws -> GuestImage {
        let kernel = try KernelFile(path: localKernel.bzImage)
        let release = kernel.release
        guard let generation = localKernel.generation ?? BzImage.generation(ofRelease: release) else {
            throw ImagesError.notABzImage(path: localKernel.bzImage,
                                          problem: "release '\(release)' has no major.minor; pass --generation")
        }
        let modulesDir = try localKernel.modulesDirectory(release: release)
        let index = try ModuleIndex(directory: modulesDir)
        let plan = try InitramfsBuilder(recipe: recipe, busybox: busybox).plan(index: index, kernelRelease: release)
        var moduleHashes: [String] = []
        for file in ["modules.dep", "modules.builtin"] + plan.modules.map({ index.paths[$0]! }) {
            let path = (modulesDir as NSString).appendingPathComponent(file)
            moduleHashes.append(FileManager.default.fileExists(atPath: path) ? "\(file)=\(try Hashing.sha256(file: path))" : "\(file)=none")
        }
        let kernelSha = try Hashing.sha256(file: localKernel.bzImage)
        let inputs = try commonInputs(agent: agent) + [
            "kernel-id: local-\(release)", "generation: \(generation)", "\(kernel.fileName.lowercased()): \(kernelSha)",
            "modules: \(moduleHashes.joined(separator: ","))",
        ] + (config == nil ? [] : ["vmlinux: \(vmlinux.keyPart)", "config: \(KernelConfig.modelSymbols.map { "\($0)=\(config![$0])" }.joined(separator: ","))"])
        let key = Hashing.sha256(inputs.joined(separator: "\n"))
        if let image = cached(key) { return image }
        return try buildLocked(key: key) { work in
            try assemble(key: key, work: work, kernel: kernel, modulesDirectory: modulesDir,
                         kernelRelease: release, agent: agent, kernelID: "local-\(release)", origin: .local,
                         suite: nil, packages: [], generation: generation, vmlinux: vmlinux, config: config)
        }
    }

    /// Content key of the image for a catalog kernel built from `packages`.
    func imageKey(kernel: CatalogKernel, packages: [DebPackage], agent: String?) throws -> String {
        var build: [String] = []
        if let fragment = kernel.build {
            let path = fragmentPath(fragment)
            guard let data = FileManager.default.contents(atPath: path) else {
                throw ImagesError.io(path: path, problem: "cannot read kernel \(kernel.id)'s config fragment")
            }
            build = ["kbuild: \(SourceKernelBuild.format) \(Hashing.sha256(data))"]
        }
        let inputs = try commonInputs(agent: agent) + build + [
            "kernel-id: \(kernel.id)", "generation: \(kernel.generation)",
            "kernel-packages: \(packages.map(\.sha256).sorted().joined(separator: ","))",
        ]
        return Hashing.sha256(inputs.joined(separator: "\n"))
    }

    // MARK: - Internals

    /// A catalog entry's `build:` fragment, absolute (merge_config.sh runs inside the source tree).
    func fragmentPath(_ fragment: String) -> String {
        URL(fileURLWithPath: recipe.directory).appendingPathComponent(fragment).standardized.path
    }

    private func commonInputs(agent: String?) throws -> [String] {
        var agentSha = "none"
        if let agent {
            guard FileManager.default.isReadableFile(atPath: agent) else {
                throw ImagesError.badAgent(path: agent, problem: "no such readable file")
            }
            agentSha = try Hashing.sha256(file: agent)
        }
        return ["format: \(Recipe.format)", "recipe: \(recipe.sha256)",
                "busybox: \(try Hashing.sha256(file: try Shell.which(busybox)))", "agent: \(agentSha)"]
    }

    private func imageDirectory(_ key: String) -> String { cache.path("images", key) }

    private func cached(_ key: String) -> GuestImage? { try? GuestImage(directory: imageDirectory(key)) }

    /// Builds under the key's lock in a temporary directory, then renames it into place.
    private func buildLocked(key: String, _ body: (String) throws -> ImageMetadata) throws -> GuestImage {
        try FileLock.withLock(cache.lockPath("image-" + key)) {
            if let image = cached(key) { return image }
            let work = try cache.makeTemporaryDirectory("image-\(key.prefix(12))")
            do {
                let metadata = try body(work)
                try FileManager.default.removeItem(atPath: (work as NSString).appendingPathComponent("stage"))
                try JSONCoding.encoder.encode(metadata)
                    .write(to: URL(fileURLWithPath: (work as NSString).appendingPathComponent(GuestImage.metadataFile)))
                try cache.publish(work, as: imageDirectory(key))
            } catch {
                try? FileManager.default.removeItem(atPath: work)
                throw error
            }
            return try GuestImage(directory: imageDirectory(key))
        }
    }

    private func assemble(key: String, work: String, kernel: KernelFile, modulesDirectory: String,
                          kernelRelease: String, agent: String?, kernelID: String, origin: KernelOrigin,
                          suite: String?, packages: [DebPackage], generation: String,
                          vmlinux source: VmlinuxSource = .extract, config: KernelConfig? = nil) throws -> ImageMetadata {
        guard kernel.release == kernelRelease else {
            throw ImagesError.badKernelTree(path: kernel.path, problem: "the kernel is \(kernel.release) but the modules are for \(kernelRelease)")
        }
        log("building initramfs for \(kernelID) (\(kernelRelease))")
        let fm = FileManager.default
        let kernelCopy = (work as NSString).appendingPathComponent(kernel.fileName)
        // A developer's files are copied: a rebuild rewrites arch/x86/boot/bzImage in place.
        if origin != .debian || link(kernel.path, kernelCopy) != 0 { try fm.copyItem(atPath: kernel.path, toPath: kernelCopy) }
        let (vmlinux, pvhUnavailable) = try pvhKernel(kernel, copy: kernelCopy, work: work, kernelID: kernelID, source: source)
        let index = try ModuleIndex(directory: modulesDirectory)
        let contents = try InitramfsBuilder(recipe: recipe, busybox: try Shell.which(busybox)).build(
            output: (work as NSString).appendingPathComponent("initramfs.cpio"), work: work,
            modulesDirectory: modulesDirectory, kernelRelease: kernelRelease, index: index, agent: agent)
        return ImageMetadata(
            key: key, kernelID: kernelID, origin: origin, suite: suite, packages: packages,
            kernelSha256: try Hashing.sha256(file: kernelCopy), kernelRelease: kernelRelease,
            kernelVersionString: kernel.versionString, generation: generation, modules: contents.modules,
            builtinModules: contents.builtin, absentModules: contents.absent,
            agentSha256: try agent.map { try Hashing.sha256(file: $0) },
            busyboxSha256: try Hashing.sha256(file: try Shell.which(busybox)), recipeSha256: recipe.sha256,
            initramfsBytes: contents.bytes, createdAt: Date(), vmlinux: vmlinux, pvhUnavailable: pvhUnavailable,
            kernelConfig: config.map { c in Dictionary(uniqueKeysWithValues: KernelConfig.modelSymbols.map { ($0, c[$0]) }) }
                ?? Self.modelConfig(modulesDirectory: modulesDirectory, release: kernelRelease))
    }

    /// The model's `KernelConfig.modelSymbols` from the kernel's `config-R` (Debian's
    /// `boot/config-R`, a source build's `.config` copy, or `lib/modules/R/config`); nil if none.
    static func modelConfig(modulesDirectory: String, release: String) -> [String: String]? {
        // modulesDirectory is <root>/lib/modules/R or <root>/usr/lib/modules/R.
        let modules = URL(fileURLWithPath: modulesDirectory)
        var root = modules.deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        if root.lastPathComponent == "usr" { root = root.deletingLastPathComponent() }
        let candidates = [root.appendingPathComponent("boot/config-\(release)").path,
                          modules.appendingPathComponent("config").path]
        guard let path = candidates.first(where: { FileManager.default.fileExists(atPath: $0) }),
              let config = try? KernelConfig(path: path) else { return nil }
        return Dictionary(uniqueKeysWithValues: KernelConfig.modelSymbols.map { ($0, config[$0]) })
    }

    /// The image's PVH `vmlinux` (`work/vmlinux`): unpacked from the bzImage's payload, or the
    /// developer's own. A kernel without a PVH entry gets none, with the reason.
    private func pvhKernel(_ kernel: KernelFile, copy: String, work: String, kernelID: String,
                           source: VmlinuxSource) throws -> (VmlinuxMetadata?, String?) {
        let output = (work as NSString).appendingPathComponent("vmlinux")
        switch source {
        case .extract: break
        case .none(let why):
            log("\(kernelID): no PVH boot, the bzImage is used: \(why)")
            return (nil, why)
        case .file(let path):
            // A copy without debug info (the PVH note and the banner stay).
            try FileManager.default.copyItem(atPath: path, toPath: output)
            if let strip = try? Shell.which("strip") { _ = try? Shell.run([strip, "--strip-debug", output]) }
            let elf = try ELFKernel(path: output)
            return (VmlinuxMetadata(sha256: try Hashing.sha256(file: output), bytes: Int(ImageCache.size(output)),
                                    pvhEntry: elf.pvhEntry, compression: nil), nil)
        }
        if let elf = kernel.elf {
            return (VmlinuxMetadata(sha256: try Hashing.sha256(file: copy), bytes: Int(ImageCache.size(copy)),
                                    pvhEntry: elf.pvhEntry, compression: nil), nil)
        }
        do {
            let (elf, payload) = try BzImagePayload.extractVmlinux(bzImage: copy, to: output)
            return (VmlinuxMetadata(sha256: try Hashing.sha256(file: output), bytes: payload.uncompressedSize,
                                    pvhEntry: elf.pvhEntry, compression: payload.compression), nil)
        } catch let e as PVHError {
            log("\(kernelID): no PVH boot, the bzImage is used: \(e)")
            return (nil, e.description)
        }
    }
}

/// The kernel file a build starts from: a bzImage, or a bare ELF `vmlinux` with a PVH entry.
struct KernelFile {
    var path: String
    /// The version string (`6.1.0-57-amd64 (debian-kernel@…) #1 SMP …`).
    var versionString: String
    /// Set for a bare `vmlinux`.
    var elf: ELFKernel?

    /// The file's name inside the image directory.
    var fileName: String { elf == nil ? "bzImage" : "vmlinux" }
    /// `uname -r`: the version string's first word.
    var release: String { String(versionString.split(separator: " ").first ?? "") }

    init(path: String) throws {
        self.path = path
        do {
            versionString = try BzImage(path: path).versionString
        } catch let bzError {
            let head = FileHandle(forReadingAtPath: path).flatMap { try? $0.read(upToCount: 4) } ?? Data()
            guard head.elementsEqual(ELFKernel.magic.prefix(4)) else { throw bzError }
            let data = try Data(contentsOf: URL(fileURLWithPath: path), options: .alwaysMapped)
            let elf: ELFKernel
            do { elf = try ELFKernel(data: data, path: path, readBanner: true) } catch let e as PVHError {
                throw ImagesError.notABzImage(path: path, problem: "an ELF vmlinux boots only through a PVH entry, and \(e); "
                                              + "give arch/x86/boot/bzImage instead")
            }
            guard let banner = elf.banner, banner.first?.isNumber == true else {
                throw ImagesError.notABzImage(path: path, problem: "an ELF vmlinux without a 'Linux version' banner; give arch/x86/boot/bzImage")
            }
            versionString = banner
            self.elf = elf
        }
    }
}
