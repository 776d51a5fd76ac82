import Foundation

/// The initramfs recipe in `vm-images/initramfs/`: the `init` script and `modules.list`.
public struct Recipe: Sendable {
    /// The `vm-images` directory (holds `kernels.yaml` and `initramfs/`).
    public let directory: String
    public let initScript: Data
    public let moduleListText: String
    public let modules: [ModuleRequest]

    /// Bumped when the builder's output format changes, so old images are not reused.
    /// 2: images carry the PVH `vmlinux` unpacked from the bzImage.
    /// 3: the agent in the initramfs is stripped (``AgentBinary/install(into:)``).
    static let format = "isolab-image-3"

    /// Loads the recipe from a `vm-images` directory.
    public init(directory: String) throws {
        self.directory = directory
        let initPath = (directory as NSString).appendingPathComponent("initramfs/init")
        let listPath = (directory as NSString).appendingPathComponent("initramfs/modules.list")
        guard let initData = FileManager.default.contents(atPath: initPath) else {
            throw ImagesError.io(path: initPath, problem: "missing initramfs init script")
        }
        guard let listData = FileManager.default.contents(atPath: listPath) else {
            throw ImagesError.io(path: listPath, problem: "missing initramfs module list")
        }
        initScript = initData
        moduleListText = String(decoding: listData, as: UTF8.self)
        modules = try parseModuleList(moduleListText, file: listPath)
    }

    /// `vm-images/kernels.yaml`.
    public var catalogPath: String { (directory as NSString).appendingPathComponent("kernels.yaml") }

    /// Loads the kernel catalog beside the recipe.
    public func catalog() throws -> KernelCatalog { try KernelCatalog.load(from: URL(fileURLWithPath: catalogPath)) }

    /// `vm-images/emulators.yaml`.
    public var emulatorCatalogPath: String { (directory as NSString).appendingPathComponent("emulators.yaml") }

    /// Loads the emulator catalog beside the recipe.
    public func emulatorCatalog() throws -> EmulatorCatalog { try EmulatorCatalog.load(from: emulatorCatalogPath) }

    /// sha256 over the recipe files and the builder format.
    public var sha256: String {
        Hashing.sha256(Recipe.format + "\n" + Hashing.sha256(initScript) + "\n" + Hashing.sha256(moduleListText))
    }

    /// Finds `vm-images/`: `$ISOLAB_VM_IMAGES`, else the first `vm-images/kernels.yaml` in the
    /// current directory or its parents, else beside or above the running executable.
    public static func locate(environment: [String: String] = ProcessInfo.processInfo.environment) throws -> String {
        if let dir = environment["ISOLAB_VM_IMAGES"], !dir.isEmpty { return dir }
        var starts = [FileManager.default.currentDirectoryPath]
        if let exe = Bundle.main.executablePath { starts.append((exe as NSString).deletingLastPathComponent) }
        for start in starts {
            var dir = start
            while true {
                let candidate = (dir as NSString).appendingPathComponent("vm-images")
                if FileManager.default.fileExists(atPath: (candidate as NSString).appendingPathComponent("kernels.yaml")) {
                    return candidate
                }
                let parent = (dir as NSString).deletingLastPathComponent
                if parent == dir || parent.isEmpty { break }
                dir = parent
            }
        }
        throw ImagesError.io(path: "vm-images/kernels.yaml",
                             problem: "not found from \(starts.joined(separator: " or ")); run from the isolab checkout or set ISOLAB_VM_IMAGES")
    }
}
