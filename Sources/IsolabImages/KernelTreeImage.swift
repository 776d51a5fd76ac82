import Foundation

extension KernelBuildTree {
    /// A modules directory for the tree as `make modules_install` would lay it out, without
    /// running it: `tree-modules/<key>/lib/modules/<release>`, a symlink per `.ko` of
    /// `modules.order` into the tree, `modules.builtin`, and depmod's index. The modules the
    /// recipe ships are copies (debug info stripped), so the image never reads the tree later.
    ///
    /// The key covers each module's path, size and modification time and the builtin lists:
    /// a rebuild of one file makes a new directory (cheap: symlinks and one depmod), and the
    /// image key, which hashes the shipped modules' contents, changes only if they did.
    public func stagedModules(cache: ImageCache, recipe: Recipe) throws -> String {
        let fm = FileManager.default
        func p(_ rel: String) -> String { (path as NSString).appendingPathComponent(rel) }
        var inputs = ["format: isolab-tree-modules-1", "tree: \(path)", "release: \(release)"]
        for (name, rel) in modules.sorted(by: { $0.key < $1.key }) {
            let a = try? fm.attributesOfItem(atPath: p(rel))
            let size = (a?[.size] as? NSNumber)?.int64Value ?? -1
            let mtime = (a?[.modificationDate] as? Date)?.timeIntervalSince1970 ?? 0
            inputs.append("\(name) \(rel) \(size) \(mtime)")
        }
        for file in ["modules.builtin", "modules.builtin.modinfo", "modules.order"] {
            inputs.append("\(file): " + ((try? Hashing.sha256(file: p(file))) ?? "none"))
        }
        let key = Hashing.sha256(inputs.joined(separator: "\n"))
        let final = cache.path("tree-modules", key)
        let modulesDir = (final as NSString).appendingPathComponent("lib/modules/\(release)")
        if fm.fileExists(atPath: (modulesDir as NSString).appendingPathComponent("modules.dep")) { return modulesDir }
        return try FileLock.withLock(cache.lockPath("tree-modules-" + key)) {
            if fm.fileExists(atPath: (modulesDir as NSString).appendingPathComponent("modules.dep")) { return modulesDir }
            let tmp = try cache.makeTemporaryDirectory("tree-modules-\(key.prefix(12))")
            do {
                let dir = (tmp as NSString).appendingPathComponent("lib/modules/\(release)")
                try fm.createDirectory(atPath: dir, withIntermediateDirectories: true)
                var order: [String] = []
                for line in Self.lines(p("modules.order")) {
                    let rel = Self.modulePath(orderLine: line)
                    guard fm.fileExists(atPath: p(rel)) else { continue }
                    let link = (dir as NSString).appendingPathComponent("kernel/" + rel)
                    try fm.createDirectory(atPath: (link as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
                    try fm.createSymbolicLink(atPath: link, withDestinationPath: p(rel))
                    order.append("kernel/" + rel)
                }
                try (order.map { $0 + "\n" }.joined()).write(toFile: (dir as NSString).appendingPathComponent("modules.order"),
                                                              atomically: false, encoding: .utf8)
                // The tree's modules.builtin lists `kernel/….ko` (or objects, in some versions).
                let builtinLines = Self.lines(p("modules.builtin")).map { line -> String in
                    var rel = line.hasPrefix("kernel/") ? line : "kernel/" + line
                    if rel.hasSuffix(".o") { rel = String(rel.dropLast(2)) + ".ko" }
                    return rel
                }
                try (builtinLines.map { $0 + "\n" }.joined()).write(toFile: (dir as NSString).appendingPathComponent("modules.builtin"),
                                                                   atomically: false, encoding: .utf8)
                if fm.fileExists(atPath: p("modules.builtin.modinfo")) {
                    try fm.copyItem(atPath: p("modules.builtin.modinfo"), toPath: (dir as NSString).appendingPathComponent("modules.builtin.modinfo"))
                }
                try Shell.check(["depmod", "-b", tmp, release])
                // Ship copies, not links into the tree.
                let index = try ModuleIndex(directory: dir)
                let strip = try? Shell.which("strip")
                for name in index.closure(of: recipe.modules.map(\.name)).modules {
                    guard let rel = index.paths[name] else { continue }
                    let link = (dir as NSString).appendingPathComponent(rel)
                    let target = try fm.destinationOfSymbolicLink(atPath: link)
                    try fm.removeItem(atPath: link)
                    try fm.copyItem(atPath: target, toPath: link)
                    if let strip { _ = try? Shell.run([strip, "--strip-debug", link]) }
                }
                try cache.publish(tmp, as: final)
            } catch {
                try? fm.removeItem(atPath: tmp)
                throw error
            }
            return modulesDir
        }
    }
}

extension ImageBuilder {
    /// The kept build tree of a source-built catalog kernel (`build:` in kernels.yaml), with
    /// `patch` applied when given: a developer's `--kernel-tree` that isolab built itself
    /// (`SourceKernelBuild.tree`). Built once; later calls find it in the cache.
    public func sourceTree(kernel: CatalogKernel, patch: String? = nil) throws -> String {
        guard let fragment = kernel.build else {
            throw ImagesError.badKernelTree(path: recipe.catalogPath, problem: "kernel '\(kernel.id)' is not built from source (no build: fragment)")
        }
        var kbuild = SourceKernelBuild(cache: cache, resolver: resolver)
        kbuild.log = log
        return try kbuild.tree(try resolver.resolve(kernel, refresh: refresh), fragmentPath: fragmentPath(fragment), patch: patch)
    }

    /// The image for a developer's kernel build tree, refused before anything is built when the
    /// tree lacks what the guest needs (`KernelBuildTree.requirementProblems`). Boots through
    /// the tree's `vmlinux` at its PVH entry when it has one; otherwise the image has only the
    /// bzImage and `pvhUnavailable` says why.
    public func build(kernelTree tree: KernelBuildTree, generation: String? = nil, agent: String? = nil) throws -> GuestImage {
        let problems = tree.requirementProblems(recipe: recipe)
        guard problems.isEmpty else {
            throw ImagesError.badKernelTree(path: tree.path, problem: problems.joined(separator: "; "))
        }
        let files = try tree.kernelFiles()
        guard let generation = generation ?? BzImage.generation(ofRelease: tree.release) else {
            throw ImagesError.badKernelTree(path: tree.path, problem: "release '\(tree.release)' has no major.minor; pass --generation")
        }
        let modulesDir = try tree.stagedModules(cache: cache, recipe: recipe)
        let vmlinux: VmlinuxSource = files.vmlinux.map { .file($0) } ?? .none(files.vmlinuxProblem ?? "the tree has no vmlinux")
        return try build(localKernel: LocalKernel(bzImage: files.bzImage, modules: modulesDir, generation: generation),
                         agent: agent, vmlinux: vmlinux, config: tree.config)
    }
}

/// Where an image's PVH `vmlinux` comes from.
enum VmlinuxSource {
    /// Unpacked from the bzImage's payload (catalog kernels, `--kernel-image`).
    case extract
    /// A build tree's own `vmlinux`.
    case file(String)
    /// None: the image boots its bzImage, for this reason.
    case none(String)

    var keyPart: String {
        switch self {
        case .extract: return "extract"
        case .file(let path): return "file " + ((try? Hashing.sha256(file: path)) ?? path)
        case .none(let why): return "none: " + why
        }
    }
}
