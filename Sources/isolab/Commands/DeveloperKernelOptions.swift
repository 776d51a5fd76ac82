import ArgumentParser
import Foundation
import IsolabEngine
import IsolabImages
import IsolabModel
import IsolabReport

/// `--kernel-tree`, `--kernel-image`/`--modules`, `--generation`, `--kernel-label`: a kernel the
/// developer built, for `run`, `matrix`, `predict` and `explain`.
struct DeveloperKernelOptions: ParsableArguments {
    @Option(help: "A kernel build tree after `make bzImage modules` (no modules_install needed): its bzImage (its vmlinux for the PVH entry), .config and modules as built.")
    var kernelTree: String?
    @Option(help: "A developer's bzImage (or ELF vmlinux with a PVH entry), with --modules.")
    var kernelImage: String?
    @Option(help: "The INSTALL_MOD_PATH tree of `make modules_install` for --kernel-image.")
    var modules: String?
    @Option(help: "Model generation for --kernel-tree or --kernel-image (\(KernelGeneration.catalog.map(\.id).joined(separator: ", ")) or a version; default: from the kernel's version and .config).")
    var generation: String?
    @Option(help: "The label the developer's kernel is reported under (default: its release, plus `git describe --always --dirty` of a git tree).")
    var kernelLabel: String?

    var given: Bool { kernelTree != nil || kernelImage != nil }

    /// The developer's kernel, or nil when none was given. `requirements` (for commands that
    /// boot) refuses a tree lacking what the guest needs, naming the option. Bad input is an
    /// `InputError` (one line, exit 2).
    func resolve(requirements: Bool) throws -> DeveloperKernel? {
        if kernelTree != nil && kernelImage != nil { throw InputError("use either --kernel-tree or --kernel-image, not both") }
        if (kernelImage == nil) != (modules == nil) && kernelTree == nil { throw InputError("--kernel-image and --modules go together") }
        if modules != nil && kernelTree != nil { throw InputError("--modules goes with --kernel-image; a --kernel-tree's modules are read from the tree") }
        guard given else {
            if generation != nil || kernelLabel != nil {
                throw InputError("--generation and --kernel-label apply to --kernel-tree or --kernel-image")
            }
            return nil
        }
        var dev: DeveloperKernel
        if let kernelTree {
            let tree: KernelBuildTree
            do { tree = try KernelBuildTree(path: kernelTree) } catch let e as ImagesError { throw InputError("--kernel-tree: \(e)") }
            if requirements {
                let recipe = try Recipe(directory: Recipe.locate())
                let problems = tree.requirementProblems(recipe: recipe)
                if !problems.isEmpty {
                    throw InputError("--kernel-tree \(tree.path): the guest cannot run on this kernel: \(problems.joined(separator: "; "))")
                }
            }
            let config = Dictionary(uniqueKeysWithValues: KernelConfig.modelSymbols.map { ($0, tree.config[$0]) })
            dev = DeveloperKernel(label: kernelLabel ?? tree.defaultLabel, release: tree.release,
                                  generation: try Self.generation(generation ?? tree.release, config: config),
                                  generationID: generation, tree: tree, local: nil)
        } else {
            let path = kernelImage!
            let release: String
            do { release = try BzImage(path: path).kernelRelease } catch {
                guard generation != nil else { throw InputError("--kernel-image \(path): \(error); pass --generation for a bare vmlinux") }
                release = "unknown"
            }
            dev = DeveloperKernel(label: kernelLabel ?? "local-\(release)", release: release,
                                  generation: try Self.generation(generation ?? release, config: nil),
                                  generationID: generation, tree: nil,
                                  local: LocalKernel(bzImage: path, modules: modules!, generation: generation))
        }
        if KernelOptions.bootableIDs().contains(dev.label) {
            throw InputError("--kernel-label: '\(dev.label)' is a catalog kernel's id; choose another label")
        }
        return dev
    }

    static func generation(_ idOrVersion: String, config: [String: String]?) throws -> KernelGeneration {
        guard let g = KernelGeneration.resolve(idOrVersion) else {
            throw InputError("--generation: '\(idOrVersion)' is not a model generation (accepted: \(KernelGeneration.catalog.map(\.id).joined(separator: ", ")) or a version such as 6.8.0)")
        }
        return g.configured(by: config)
    }
}

/// A kernel the developer built: reported under `label`, judged against `generation`.
struct DeveloperKernel {
    var label: String
    var release: String
    var generation: KernelGeneration
    /// `--generation` as given (the image records it); nil: from the release.
    var generationID: String?
    var tree: KernelBuildTree?
    var local: LocalKernel?

    /// Where its guest image comes from.
    var source: KernelSource {
        if let tree { return .tree(tree, generation: generationID) }
        return .local(local!)
    }

    /// What the results record of its tree.
    var treeSource: KernelTreeSource? { source.treeSource }
}
