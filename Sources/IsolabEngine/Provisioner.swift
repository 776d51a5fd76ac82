import Foundation
import IsolabImages
import IsolabModel
import IsolabReport
import IsolabVM

/// Where a kernel's guest image comes from.
public enum KernelSource: Sendable {
    /// A `vm-images/kernels.yaml` id (a Debian package or a Debian source build).
    case catalog(String)
    /// A developer's build tree (`--kernel-tree`); `generation` as given with `--generation`.
    case tree(KernelBuildTree, generation: String?)
    /// A developer's installed kernel (`--kernel-image` + `--modules`).
    case local(LocalKernel)

    /// What the results record of a build tree.
    public var treeSource: KernelTreeSource? {
        guard case .tree(let t, _) = self else { return nil }
        return KernelTreeSource(path: t.path, gitCommit: t.git?.commit, gitDirty: t.git?.dirty,
                                gitDescribe: t.git?.describe, configSha256: t.configSha256)
    }
}

/// Provides what guests need: kernel images (built once, cached by content), the agent, and
/// emulators (``Provisioner/emulator(_:)``).
public final class Provisioner {
    public let builder: ImageBuilder
    private var agentPath: String?
    /// Wraps every image build (the CLI makes Ctrl-C cancel the tools a build runs).
    public var around: (() throws -> GuestImage) throws -> GuestImage = { try $0() }

    /// Opens the image cache and the recipe; errors name what is missing.
    public init(log: @escaping (String) -> Void) throws {
        do {
            builder = try ImageBuilder(cache: ImageCache(root: ImageCache.defaultRoot()), recipe: Recipe(directory: Recipe.locate()))
            builder.log = log
        } catch {
            throw EngineError.provisioning(String(describing: error))
        }
    }

    /// The static guest agent every image carries (located once, when an image is first built).
    public func agent() throws -> String {
        if let agentPath { return agentPath }
        do { agentPath = try AgentBinary.locate() } catch { throw EngineError.provisioning(String(describing: error)) }
        return agentPath!
    }

    /// The kernel's selftests, built (or found in the cache) once per provisioner.
    private var suite: SelftestSuite?

    /// The programs `topology`'s `selftest` steps run, by guest name → host file: the kernel's
    /// selftests (built from the catalog's `selftests:` kernel source the first time) and the
    /// developer's own files.
    public func programs(for topology: Topology) throws -> [String: String] {
        var out: [String: String] = [:]
        for scenario in topology.scenarios {
            for step in scenario.steps {
                guard case .selftest(let run) = step.action else { continue }
                switch run.source {
                case .file(let path): out[run.program] = path
                case .kernelSelftest:
                    let suite = try selftests()
                    guard let path = suite.path(of: run.program) else {
                        throw EngineError.provisioning("\(run.program) is not among the selftests built from \(suite.source): \(suite.programs.joined(separator: ", "))")
                    }
                    out[run.program] = path
                }
            }
        }
        return out
    }

    /// The kernel's own VFIO and iommufd selftests, built static from the catalog's
    /// `selftests:` kernel source package (cached by its sha256).
    public func selftests() throws -> SelftestSuite {
        if let suite { return suite }
        do {
            let built = try builder.selftestSuite()
            suite = built
            return built
        } catch let e as EngineError { throw e } catch {
            throw EngineError.provisioning(String(describing: error))
        }
    }

    /// The guest image of a kernel.
    public func image(_ source: KernelSource) throws -> GuestImage {
        let agent = try agent()
        return try around { [builder] in
            switch source {
            case .catalog(let id): return try builder.build(kernel: try builder.catalog.kernel(id: id), agent: agent)
            case .tree(let tree, let generation): return try builder.build(kernelTree: tree, generation: generation, agent: agent)
            case .local(let local): return try builder.build(localKernel: local, agent: agent)
            }
        }
    }

    /// What the results record of a booted kernel.
    public static func kernelBuild(label: String, image: GuestImage, source: KernelSource?) -> KernelBuild {
        KernelBuild(label: label, release: image.kernelRelease,
                    packages: image.metadata.packages.map { KernelPackage(name: $0.name, version: $0.version, sha256: $0.sha256) },
                    imageSha256: image.metadata.kernelSha256, tree: source?.treeSource)
    }
}
