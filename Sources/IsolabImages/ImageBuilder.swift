import Foundation

/// A developer's own kernel: a bzImage and a `make modules_install INSTALL_MOD_PATH=` tree.
public struct LocalKernel: Sendable {
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
        let resolved = try resolver.resolve(kernel, refresh: refresh)
        let key = try imageKey(kernel: kernel, packages: resolved.packages, agent: agent)
        if let image = cached(key) { return image }
        return try buildLocked(key: key) { work in
            let unpacked = try resolver.unpack(resolved)
            let bz = try BzImage(path: unpacked.bzImage)
            return try assemble(key: key, work: work, bzImage: unpacked.bzImage, bzInfo: bz,
                                modulesDirectory: unpacked.modulesDirectory, kernelRelease: unpacked.kernelRelease,
                                agent: agent, kernelID: kernel.id, origin: .debian, suite: kernel.suite,
                                packages: resolved.packages, generation: kernel.generation)
        }
    }

    /// The image for a developer's kernel. Its key covers the bzImage, the modules shipped
    /// and the module index, not the whole modules tree.
    public func build(localKernel: LocalKernel, agent: String? = nil) throws -> GuestImage {
        let bz = try BzImage(path: localKernel.bzImage)
        let release = bz.kernelRelease
        guard let generation = localKernel.generation ?? bz.generation else {
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
            "kernel-id: local-\(release)", "generation: \(generation)", "bzimage: \(kernelSha)",
            "modules: \(moduleHashes.joined(separator: ","))",
        ]
        let key = Hashing.sha256(inputs.joined(separator: "\n"))
        if let image = cached(key) { return image }
        return try buildLocked(key: key) { work in
            try assemble(key: key, work: work, bzImage: localKernel.bzImage, bzInfo: bz, modulesDirectory: modulesDir,
                         kernelRelease: release, agent: agent, kernelID: "local-\(release)", origin: .local,
                         suite: nil, packages: [], generation: generation)
        }
    }

    /// Content key of the image for a catalog kernel built from `packages`.
    func imageKey(kernel: CatalogKernel, packages: [DebPackage], agent: String?) throws -> String {
        let inputs = try commonInputs(agent: agent) + [
            "kernel-id: \(kernel.id)", "generation: \(kernel.generation)",
            "kernel-packages: \(packages.map(\.sha256).sorted().joined(separator: ","))",
        ]
        return Hashing.sha256(inputs.joined(separator: "\n"))
    }

    // MARK: - Internals

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

    private func assemble(key: String, work: String, bzImage: String, bzInfo: BzImage, modulesDirectory: String,
                          kernelRelease: String, agent: String?, kernelID: String, origin: KernelOrigin,
                          suite: String?, packages: [DebPackage], generation: String) throws -> ImageMetadata {
        guard bzInfo.kernelRelease == kernelRelease else {
            throw ImagesError.badKernelTree(path: bzImage, problem: "bzImage is \(bzInfo.kernelRelease) but the modules are for \(kernelRelease)")
        }
        log("building initramfs for \(kernelID) (\(kernelRelease))")
        let fm = FileManager.default
        let kernelCopy = (work as NSString).appendingPathComponent("bzImage")
        if link(bzImage, kernelCopy) != 0 { try fm.copyItem(atPath: bzImage, toPath: kernelCopy) }
        let index = try ModuleIndex(directory: modulesDirectory)
        let contents = try InitramfsBuilder(recipe: recipe, busybox: try Shell.which(busybox)).build(
            output: (work as NSString).appendingPathComponent("initramfs.cpio"), work: work,
            modulesDirectory: modulesDirectory, kernelRelease: kernelRelease, index: index, agent: agent)
        return ImageMetadata(
            key: key, kernelID: kernelID, origin: origin, suite: suite, packages: packages,
            kernelSha256: try Hashing.sha256(file: kernelCopy), kernelRelease: kernelRelease,
            kernelVersionString: bzInfo.versionString, generation: generation, modules: contents.modules,
            builtinModules: contents.builtin, absentModules: contents.absent,
            agentSha256: try agent.map { try Hashing.sha256(file: $0) },
            busyboxSha256: try Hashing.sha256(file: try Shell.which(busybox)), recipeSha256: recipe.sha256,
            initramfsBytes: contents.bytes, createdAt: Date())
    }
}
