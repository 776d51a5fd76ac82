import Foundation

/// A developer's kernel build tree after `make bzImage modules`, used as it is: no
/// `make modules_install`. isolab reads `include/config/kernel.release`, `.config`,
/// `modules.builtin` and `modules.order`, boots `arch/x86/boot/bzImage` (or the tree's
/// `vmlinux` at its PVH entry) and takes each module's `.ko` from beside its object.
public struct KernelBuildTree: Sendable {
    /// The tree's directory (absolute, standardized).
    public var path: String
    /// `include/config/kernel.release` (what `uname -r` will say).
    public var release: String
    public var config: KernelConfig
    public var configSha256: String
    /// `arch/x86/boot/bzImage`.
    public var bzImage: String
    /// `vmlinux` at the tree's top, when the build left one.
    public var vmlinux: String?
    /// Modules built into the kernel (`modules.builtin`), canonical names.
    public var builtin: Set<String>
    /// Module name → `.ko` path relative to the tree (from `modules.order`).
    public var modules: [String: String]
    /// The tree's git state when it is a git work tree.
    public var git: GitState?

    /// `git describe --always --dirty` and friends for a git tree.
    public struct GitState: Sendable, Codable, Equatable {
        public var commit: String
        public var dirty: Bool
        public var describe: String
    }

    /// Reads the tree. Only `.config` and `kernel.release` must exist here: what the guest
    /// needs is checked by `requirementProblems(recipe:)`, the kernel files by `kernelFiles()`.
    public init(path: String) throws {
        let fm = FileManager.default
        let root = URL(fileURLWithPath: path).standardizedFileURL.path
        var isDir: ObjCBool = false
        guard fm.fileExists(atPath: root, isDirectory: &isDir), isDir.boolValue else {
            throw ImagesError.badKernelTree(path: root, problem: "no such directory; give the top of a kernel build tree (where `make` ran)")
        }
        self.path = root
        func p(_ rel: String) -> String { (root as NSString).appendingPathComponent(rel) }
        let configPath = p(".config")
        guard let configData = fm.contents(atPath: configPath) else {
            throw ImagesError.badKernelTree(path: root, problem: "no .config; give the top of a configured kernel build tree")
        }
        config = KernelConfig(text: String(decoding: configData, as: UTF8.self))
        configSha256 = Hashing.sha256(configData)
        guard let rel = fm.contents(atPath: p("include/config/kernel.release")).map({ String(decoding: $0, as: UTF8.self) })?
            .trimmingCharacters(in: .whitespacesAndNewlines), !rel.isEmpty else {
            throw ImagesError.badKernelTree(path: root, problem: "no include/config/kernel.release; run `make bzImage modules` in the tree first")
        }
        release = rel
        bzImage = p("arch/x86/boot/bzImage")
        vmlinux = fm.fileExists(atPath: p("vmlinux")) ? p("vmlinux") : nil
        builtin = Set(Self.lines(p("modules.builtin")).map(moduleName))
        var mods: [String: String] = [:]
        for line in Self.lines(p("modules.order")) {
            let rel = Self.modulePath(orderLine: line)
            mods[moduleName(rel)] = rel
        }
        modules = mods
        git = Self.gitState(root)
    }

    /// The default label: the release, plus `git describe --always --dirty` for a git tree.
    public var defaultLabel: String {
        guard let git else { return release }
        return "\(release)@\(git.describe)"
    }

    /// Kconfig symbols isolab's guest depends on: the vIOMMU drivers are bool, the VFIO stack
    /// and pci-stub may be modules. The recipe's required modules are checked too.
    static let requiredOptions: [(symbol: String, accepted: [String], why: String)] = [
        ("CONFIG_PCI", ["y"], "the fabrics are PCI"),
        ("CONFIG_BLK_DEV_INITRD", ["y"], "the guest is an initramfs"),
        ("CONFIG_MODULES", ["y"], "the guest loads its drivers as modules"),
        ("CONFIG_IOMMU_SUPPORT", ["y"], "the model judges IOMMU groups"),
        ("CONFIG_INTEL_IOMMU", ["y"], "the catalog fabrics' vIOMMU is intel-iommu"),
        ("CONFIG_IRQ_REMAP", ["y"], "VFIO type1 refuses a container without interrupt remapping"),
        ("CONFIG_VFIO", ["y", "m"], "the scenarios open VFIO groups"),
        ("CONFIG_VFIO_IOMMU_TYPE1", ["y", "m"], "the scenarios set a type1 container"),
        ("CONFIG_VFIO_PCI", ["y", "m"], "the scenarios bind devices to vfio-pci"),
        ("CONFIG_PCI_STUB", ["y", "m"], "the recipe ships pci-stub"),
        // A build tree's modules are unsigned: `make modules_install` signs them.
        ("CONFIG_MODULE_SIG_FORCE", ["n"], "a build tree's modules are unsigned until `make modules_install`"),
    ]

    /// The Kconfig symbol that builds each module the initramfs recipe may require.
    static let moduleSymbols = [
        "vfio": "CONFIG_VFIO", "vfio_iommu_type1": "CONFIG_VFIO_IOMMU_TYPE1", "vfio_pci": "CONFIG_VFIO_PCI",
        "vfio_pci_core": "CONFIG_VFIO_PCI_CORE", "irqbypass": "CONFIG_IRQ_BYPASS_MANAGER", "pci_stub": "CONFIG_PCI_STUB",
        "e1000e": "CONFIG_E1000E", "nvme": "CONFIG_BLK_DEV_NVME", "virtio_pci": "CONFIG_VIRTIO_PCI",
        "virtio_iommu": "CONFIG_VIRTIO_IOMMU",
    ]

    /// What the guest needs and the tree lacks, each naming the option; empty when it can boot.
    /// Read from `.config`, `modules.builtin` and the `.ko` files alone: nothing is built.
    public func requirementProblems(recipe: Recipe) -> [String] {
        var out: [String] = []
        for r in Self.requiredOptions where !r.accepted.contains(config[r.symbol]) {
            let got = config[r.symbol] == "n" ? " is not set" : "=\(config[r.symbol])"
            out.append("\(r.symbol)\(got) (\(r.why); build it \(r.accepted.map { "=\($0)" }.joined(separator: " or ")))")
        }
        let fm = FileManager.default
        guard fm.fileExists(atPath: (path as NSString).appendingPathComponent("modules.order")) else {
            return out + ["no modules.order: the tree's modules are not built (run `make bzImage modules` in the tree)"]
        }
        for m in recipe.modules where m.required {
            if builtin.contains(m.name) { continue }
            let symbol = Self.moduleSymbols[m.name] ?? "the option that builds \(m.name)"
            if let rel = modules[m.name] {
                if fm.fileExists(atPath: (path as NSString).appendingPathComponent(rel)) { continue }
                out.append("\(symbol)=\(config[symbol]) but \(rel) is not built (run `make modules` in the tree)")
            } else if out.contains(where: { $0.hasPrefix(symbol + " ") }) {
                continue
            } else if config[symbol] == "n" {
                out.append("\(symbol) is not set (the guest's initramfs requires module \(m.name); build it =m or =y)")
            } else {
                out.append("\(symbol)=\(config[symbol]) but \(m.name) is in neither modules.order nor modules.builtin (run `make bzImage modules` in the tree)")
            }
        }
        return out
    }

    /// The bzImage must exist and be built from this configuration; a stale or missing
    /// `vmlinux` is dropped (the bzImage boots, and `vmlinuxProblem` says why).
    public func kernelFiles() throws -> (bzImage: String, vmlinux: String?, vmlinuxProblem: String?) {
        let fm = FileManager.default
        guard fm.fileExists(atPath: bzImage) else {
            throw ImagesError.badKernelTree(path: path, problem: "no arch/x86/boot/bzImage; run `make bzImage modules` in the tree")
        }
        let bz = try KernelFile(path: bzImage)
        guard bz.release == release else {
            throw ImagesError.badKernelTree(path: path, problem: "arch/x86/boot/bzImage is \(bz.release) but include/config/kernel.release says \(release); run `make bzImage modules`")
        }
        guard let vmlinux else { return (bzImage, nil, "the tree has no vmlinux") }
        guard let data = try? Data(contentsOf: URL(fileURLWithPath: vmlinux), options: .alwaysMapped) else {
            return (bzImage, nil, "the tree's vmlinux is unreadable")
        }
        do {
            _ = try ELFKernel(data: data, path: vmlinux)
            // Its banner (version-timestamp.c's linux_banner: "Linux version R (by@host) (compiler)
            // UTS_VERSION"; init/version.c keeps a weak one without the build number) has the
            // bzImage's release and UTS_VERSION (the setup header's "R (by@host) UTS_VERSION").
            let words = bz.versionString.split(separator: ")", maxSplits: 1)
            let utsVersion = words.count == 2 ? words[1].trimmingCharacters(in: .whitespaces) : bz.versionString
            guard data.range(of: Data("Linux version \(release) ".utf8)) != nil,
                  data.range(of: Data(" \(utsVersion)\n".utf8)) != nil else {
                return (bzImage, nil, "the tree's vmlinux is not the bzImage's kernel (\(bz.versionString) is not in it): run `make bzImage`")
            }
            return (bzImage, vmlinux, nil)
        } catch {
            return (bzImage, nil, "the tree's vmlinux has no PVH entry: \(error)")
        }
    }

    // MARK: - Helpers

    /// A `modules.order` line as the `.ko` path relative to the tree: 6.3 and later list
    /// objects (`drivers/vfio/vfio.o`), earlier trees `.ko` files, installed ones `kernel/…`.
    static func modulePath(orderLine line: String) -> String {
        var rel = line.hasPrefix("kernel/") ? String(line.dropFirst(7)) : line
        if rel.hasSuffix(".o") { rel = String(rel.dropLast(2)) + ".ko" }
        return rel
    }

    static func lines(_ path: String) -> [String] {
        guard let data = FileManager.default.contents(atPath: path) else { return [] }
        return String(decoding: data, as: UTF8.self).split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }
            .filter { !$0.isEmpty }
    }

    static func gitState(_ root: String) -> GitState? {
        guard (try? Shell.which("git")) != nil,
              let top = try? Shell.run(["git", "-C", root, "rev-parse", "--show-toplevel"]), top.status == 0,
              URL(fileURLWithPath: top.text.trimmingCharacters(in: .whitespacesAndNewlines)).standardizedFileURL.path == root,
              let commit = try? Shell.run(["git", "-C", root, "rev-parse", "HEAD"]), commit.status == 0,
              let describe = try? Shell.run(["git", "-C", root, "describe", "--always", "--dirty"]), describe.status == 0
        else { return nil }
        let d = describe.text.trimmingCharacters(in: .whitespacesAndNewlines)
        return GitState(commit: commit.text.trimmingCharacters(in: .whitespacesAndNewlines), dirty: d.hasSuffix("-dirty"), describe: d)
    }
}

/// What a report records about a kernel built from a developer's tree.
public struct KernelTreeRecord: Codable, Equatable, Sendable {
    public var path: String
    public var gitCommit: String?
    public var gitDirty: Bool?
    public var gitDescribe: String?
    public var configSha256: String

    public init(_ tree: KernelBuildTree) {
        path = tree.path; gitCommit = tree.git?.commit; gitDirty = tree.git?.dirty
        gitDescribe = tree.git?.describe; configSha256 = tree.configSha256
    }
}
