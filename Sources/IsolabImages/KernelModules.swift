import Foundation

/// Canonical module name: file name without `.ko[.xz|.zst|.gz]`, dashes as underscores
/// (the kernel treats `vfio-pci` and `vfio_pci` as one module).
public func moduleName(_ pathOrName: String) -> String {
    var base = (pathOrName as NSString).lastPathComponent
    for ext in [".xz", ".zst", ".gz"] where base.hasSuffix(ext) { base.removeLast(ext.count) }
    if base.hasSuffix(".ko") { base.removeLast(3) }
    return base.replacingOccurrences(of: "-", with: "_")
}

/// A kernel's `modules.dep` and `modules.builtin`: which modules exist, what each needs.
public struct ModuleIndex: Sendable {
    /// Module name → path relative to the modules directory.
    public private(set) var paths: [String: String] = [:]
    /// Module name → names of the modules it depends on (from modules.dep, in its order).
    public private(set) var dependencies: [String: [String]] = [:]
    /// Names of modules built into the kernel image.
    public private(set) var builtin: Set<String> = []

    /// Parses the text of `modules.dep` and `modules.builtin`.
    public init(modulesDep: String, modulesBuiltin: String = "") {
        for line in modulesDep.split(separator: "\n") {
            guard let colon = line.firstIndex(of: ":") else { continue }
            let path = String(line[..<colon])
            let name = moduleName(path)
            paths[name] = path
            dependencies[name] = line[line.index(after: colon)...].split(separator: " ").map { moduleName(String($0)) }
        }
        builtin = Set(modulesBuiltin.split(separator: "\n").map { moduleName(String($0)) })
    }

    /// Reads `modules.dep` (required) and `modules.builtin` (optional) from a modules directory.
    public init(directory: String) throws {
        let dep = (directory as NSString).appendingPathComponent("modules.dep")
        guard let data = FileManager.default.contents(atPath: dep) else {
            throw ImagesError.badKernelTree(path: directory, problem: "no modules.dep; run `depmod -b ROOT KERNELRELEASE`")
        }
        let builtinData = FileManager.default.contents(atPath: (directory as NSString).appendingPathComponent("modules.builtin"))
        self.init(modulesDep: String(decoding: data, as: UTF8.self),
                  modulesBuiltin: builtinData.map { String(decoding: $0, as: UTF8.self) } ?? "")
    }

    /// The modules to ship for `names`, each after its dependencies (the order `insmod` needs).
    /// Names neither a module nor built in are returned in `absent`.
    public func closure(of names: [String]) -> (modules: [String], builtin: [String], absent: [String]) {
        var ordered: [String] = [], seen = Set<String>(), builtins: [String] = [], absent: [String] = []
        func visit(_ name: String) {
            guard !seen.contains(name) else { return }
            seen.insert(name)
            // modules.dep lists the full transitive set; visiting recursively keeps the order right
            // even for a hand-written modules.dep that lists only direct dependencies.
            for dep in dependencies[name] ?? [] { visit(dep) }
            ordered.append(name)
        }
        for raw in names {
            let name = moduleName(raw)
            if paths[name] != nil { visit(name) }
            else if builtin.contains(name) { builtins.append(name) }
            else { absent.append(name) }
        }
        return (ordered, builtins, absent)
    }
}

/// One line of the initramfs module list: a module and whether the image needs it.
public struct ModuleRequest: Equatable, Sendable {
    public var name: String
    /// Required modules must exist (as a module or built in) or the build fails;
    /// optional ones are shipped where the kernel has them.
    public var required: Bool
}

/// Parses `vm-images/initramfs/modules.list`: `name [required|optional]`, `#` comments.
public func parseModuleList(_ text: String, file: String = "modules.list") throws -> [ModuleRequest] {
    var out: [ModuleRequest] = []
    for (i, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
        let line = raw.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
        let words = line.split(whereSeparator: \.isWhitespace).map(String.init)
        if words.isEmpty { continue }
        guard words.count <= 2 else {
            throw ImagesError.invalidFile(file: file, line: i + 1, field: words[0], problem: "too many words",
                                          accepted: "NAME [required|optional]")
        }
        let need = words.count == 2 ? words[1] : "required"
        guard need == "required" || need == "optional" else {
            throw ImagesError.invalidFile(file: file, line: i + 1, field: words[0], problem: "'\(need)' is not a need",
                                          accepted: "required, optional")
        }
        out.append(ModuleRequest(name: moduleName(words[0]), required: need == "required"))
    }
    return out
}
