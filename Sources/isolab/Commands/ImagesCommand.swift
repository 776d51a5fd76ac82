import ArgumentParser
import Foundation
import IsolabImages

/// `isolab images`: build, list and prune cached guest images.
struct ImagesCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "images",
        abstract: "Build, list and prune cached guest images.",
        discussion: """
        Images (a Debian kernel plus an initramfs with busybox, the guest's modules and the \
        optional isolab agent) are cached by the content of all their inputs under \
        $ISOLAB_CACHE_DIR, else $XDG_CACHE_HOME/isolab, else ~/.cache/isolab.
        """,
        subcommands: [Build.self, Tree.self, Selftests.self, Emulator.self, List.self, Prune.self],
        defaultSubcommand: List.self
    )

    struct Common: ParsableArguments {
        @Option(help: "Cache directory (default: $ISOLAB_CACHE_DIR, $XDG_CACHE_HOME/isolab, ~/.cache/isolab).")
        var cacheDir: String?
        @OptionGroup var formatOptions: FormatOptions
        @OptionGroup var mirrorOptions: MirrorOptions
        @Option(help: "The vm-images directory with kernels.yaml and initramfs/ (default: found from the current directory).")
        var vmImages: String?

        var cache: ImageCache { ImageCache(root: cacheDir ?? ImageCache.defaultRoot()) }
        /// text or json.
        var format: OutputFormat { formatOptions.format }

        func validate() throws {
            guard [.text, .json].contains(format) else {
                throw ValidationError("--format: images writes text or json, not \(format.rawValue)")
            }
        }
        func recipe() throws -> Recipe { try Recipe(directory: vmImages ?? Recipe.locate()) }
    }

    struct Build: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Build images (all catalog kernels unless --kernel is given).",
            discussion: """
            The newest version in each kernel's suite is resolved once and remembered; \
            --refresh asks the archive again. A developer's kernel is built with \
            --kernel-image PATH/bzImage --modules INSTALL_MOD_PATH (or a bare vmlinux with a \
            PVH entry note). Each image keeps the uncompressed PVH vmlinux beside the bzImage \
            when the kernel has one (the default boot path of run and matrix).
            """)
        @OptionGroup var common: Common
        @OptionGroup var kernelOptions: KernelOptions
        var kernels: [String] { kernelOptions.ids(or: []) }
        @Option(help: "isolab-agent binary to include as /isolab-agent.")
        var agent: String?
        @Flag(help: "Resolve the newest package versions again (runs apt-get update).")
        var refresh = false
        @Option(help: "A developer's bzImage, or ELF vmlinux with a PVH entry note (instead of catalog kernels).")
        var kernelImage: String?
        @Option(help: "The INSTALL_MOD_PATH tree of `make modules_install` for --kernel-image.")
        var modules: String?
        @Option(help: "Model generation for --kernel-image (default: major.minor of its version).")
        var generation: String?

        func validate() throws {
            if (kernelImage == nil) != (modules == nil) {
                throw ValidationError("--kernel-image and --modules go together")
            }
            if kernelImage != nil && !kernels.isEmpty {
                throw ValidationError("use either --kernel or --kernel-image, not both")
            }
            if generation != nil && kernelImage == nil {
                throw ValidationError("--generation only applies to --kernel-image")
            }
        }

        func run() throws {
            try reportingErrors { try SignalTrap.cancellingImageBuilds {
                let builder = try ImageBuilder(cache: common.cache, recipe: try common.recipe())
                builder.refresh = refresh
                builder.log = { cliLogger.info("\($0)") }
                var images: [GuestImage] = []
                if let kernelImage, let modules {
                    images.append(try builder.build(localKernel: LocalKernel(bzImage: kernelImage, modules: modules,
                                                                             generation: generation), agent: agent))
                } else {
                    let catalog = try builder.catalog
                    let chosen = kernels.isEmpty ? catalog.available : try kernels.map { try catalog.kernel(id: $0) }
                    for kernel in chosen { images.append(try builder.build(kernel: kernel, agent: agent)) }
                }
                try printImages(images, format: common.format)
            } }
        }
    }

    struct Tree: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Build and keep the build tree of a source-built catalog kernel, optionally patched; print its path.",
            discussion: """
            For a kernel of kernels.yaml with a build: fragment (7.3-iommufd, 6.12-iommufd). The tree is what \
            `make bzImage modules` leaves (no modules_install), as a developer's --kernel-tree. \
            --patch FILE (patch -p1) builds a copy of the unpatched tree with the patch applied, \
            so only what the patch touches recompiles. Cached by source, fragment and patch.
            """)
        @OptionGroup var common: Common
        /// One catalog kernel with a build: fragment (default 7.3-iommufd, the one the tests build).
        @OptionGroup var kernelOptions: KernelOptions
        private var kernels: [String] { kernelOptions.ids(or: ["7.3-iommufd"]) }
        var kernel: String { kernels[0] }

        func validate() throws {
            guard kernels.count == 1 else {
                throw ValidationError("--kernel: images tree builds one kernel")
            }
        }
        @Option(help: "A patch (-p1) to apply to the tree before building.")
        var patch: String?

        func run() throws {
            try reportingErrors {
                let builder = try ImageBuilder(cache: common.cache, recipe: try common.recipe())
                builder.log = { line in FileHandle.standardError.write(Data("isolab: \(line)\n".utf8)) }
                print(try builder.sourceTree(kernel: try builder.catalog.kernel(id: kernel), patch: patch))
            }
        }
    }

    struct Selftests: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Build (once) and print the kernel's own VFIO and iommufd selftests that selftest steps run.",
            discussion: """
            Built static from the kernel source that kernels.yaml's selftests: names (Debian's \
            linux-source-7.3), cached by the source package. Prints the source, the folder and \
            the programs.
            """)
        @OptionGroup var common: Common

        func run() throws {
            try reportingErrors {
                let builder = try ImageBuilder(cache: common.cache, recipe: try common.recipe())
                builder.log = { line in FileHandle.standardError.write(Data("isolab: \(line)\n".utf8)) }
                let suite = try builder.selftestSuite()
                if common.format == .json {
                    print(String(decoding: try JSONCoding.encoder.encode(suite), as: UTF8.self))
                } else {
                    print("source: \(suite.source)\nfolder: \(suite.directory)\nprograms: \(suite.programs.joined(separator: " "))")
                }
            }
        }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List cached images, newest first.")
        @OptionGroup var common: Common
        /// Only images of these kernels.
        @OptionGroup var kernelOptions: KernelOptions

        func run() throws {
            let ids = kernelOptions.ids(or: [])
            try reportingErrors {
                try printImages(ids.isEmpty ? common.cache.list() : ids.flatMap { common.cache.list(kernel: $0) }, format: common.format)
            }
        }
    }

    struct Prune: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Remove old images, unpacked kernels and .debs no longer used.",
            discussion: "Keeps the --keep newest images per kernel built from its current packages.")
        @OptionGroup var common: Common
        /// Only images of these kernels.
        @OptionGroup var kernelOptions: KernelOptions
        @Option(help: "Images to keep per kernel (0 removes all).")
        var keep: Int = 1

        func run() throws {
            try reportingErrors {
                let ids = kernelOptions.ids(or: [])
                let kernels: [String?] = ids.isEmpty ? [nil] : ids
                var report = try common.cache.prune(kernel: kernels[0], keep: keep)
                for k in kernels.dropFirst() {
                    let r = try common.cache.prune(kernel: k, keep: keep)
                    report.images += r.images
                    report.kernels += r.kernels
                    report.debs += r.debs
                    report.bytes += r.bytes
                }
                switch common.format {
                case .json:
                    let e = JSONEncoder(); e.outputFormatting = [.prettyPrinted, .sortedKeys]
                    print(String(decoding: try e.encode(report), as: UTF8.self))
                default:
                    for i in report.images { print("removed image \(i)") }
                    for k in report.kernels { print("removed unpacked kernel \(k)") }
                    for d in report.debs { print("removed \(d)") }
                    print("freed \(report.bytes / 1_048_576) MiB")
                }
            }
        }
    }
}

/// Turns images errors into one line on stderr: exit 2 for bad input (a file, a kernel tree,
/// an id), 3 for the machine or the archive, as `run` and `matrix` report them.
private func reportingErrors(_ body: () throws -> Void) throws {
    do { try body() } catch let error as ImagesError {
        FileHandle.standardError.write(Data("isolab: \(error.description)\n".utf8))
        throw ExitCode(error.isBadInput ? 2 : 3)
    }
}

private func printImages(_ images: [GuestImage], format: OutputFormat) throws {
    switch format {
    case .json:
        struct Row: Encodable {
            var directory, kernelPath, initramfsPath: String
            var bzImagePath, vmlinuxPath: String?
            var metadata: ImageMetadata
        }
        let e = JSONCoding.encoder
        let rows = images.map { Row(directory: $0.directory, kernelPath: $0.kernelPath, initramfsPath: $0.initramfsPath,
                                    bzImagePath: $0.bzImagePath, vmlinuxPath: $0.vmlinuxPath, metadata: $0.metadata) }
        print(String(decoding: try e.encode(rows), as: UTF8.self))
    default:
        for image in images {
            let m = image.metadata
            let version = m.packages.first.map { "\($0.name) \($0.version)" } ?? "local kernel"
            print("\(m.kernelID)\t\(m.kernelRelease)\tgen \(m.generation)\t\(m.key.prefix(12))\t"
                  + "initramfs \(m.initramfsBytes / 1024) KiB\t\(m.vmlinux == nil ? "bzImage only" : "pvh")\t\(version)\t\(image.directory)")
        }
    }
}
