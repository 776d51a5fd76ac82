import Foundation

/// What went into an initramfs.
struct InitramfsContents {
    var modules: [String]
    var builtin: [String]
    var absent: [String]
    var bytes: Int
}

/// Builds the uncompressed newc initramfs: busybox-static and its applet links, the
/// recipe's `init`, the requested modules with their dependencies (decompressed, with
/// depmod's index files so `modprobe` works), and optionally the isolab agent.
struct InitramfsBuilder {
    var recipe: Recipe
    var busybox: String

    /// Modules to ship for a kernel; fails when a required module is neither a module nor built in.
    func plan(index: ModuleIndex, kernelRelease: String) throws -> (modules: [String], builtin: [String], absent: [String]) {
        let c = index.closure(of: recipe.modules.map(\.name))
        let missing = recipe.modules.filter { $0.required && c.absent.contains($0.name) }.map(\.name)
        guard missing.isEmpty else { throw ImagesError.missingModules(kernelRelease: kernelRelease, modules: missing) }
        return c
    }

    /// Writes `output` from a staging tree built in `work`.
    func build(output: String, work: String, modulesDirectory: String, kernelRelease: String,
               index: ModuleIndex, agent: String?) throws -> InitramfsContents {
        let fm = FileManager.default
        let plan = try plan(index: index, kernelRelease: kernelRelease)
        let stage = (work as NSString).appendingPathComponent("stage")
        func p(_ rel: String) -> String { (stage as NSString).appendingPathComponent(rel) }
        let moduleRoot = "lib/modules/\(kernelRelease)"
        for dir in ["bin", "sbin", "usr/bin", "usr/sbin", "proc", "sys", "dev", "tmp", "run", "etc", "root", moduleRoot] {
            try fm.createDirectory(atPath: p(dir), withIntermediateDirectories: true)
        }
        // busybox and a link per applet.
        try fm.copyItem(atPath: busybox, toPath: p("bin/busybox"))
        try chmod755(p("bin/busybox"))
        let applets = try Shell.check([busybox, "--list-full"]).text.split(separator: "\n").map(String.init)
        for applet in applets where applet != "bin/busybox" && !applet.isEmpty && !fm.fileExists(atPath: p(applet)) {
            try fm.createDirectory(atPath: (p(applet) as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            try fm.createSymbolicLink(atPath: p(applet), withDestinationPath: "/bin/busybox")
        }
        try recipe.initScript.write(to: URL(fileURLWithPath: p("init")))
        try chmod755(p("init"))

        // Modules, decompressed, at their modules.dep paths; then depmod for the subset.
        for name in plan.modules {
            let rel = index.paths[name]!
            let src = (modulesDirectory as NSString).appendingPathComponent(rel)
            var dstRel = rel
            for ext in [".xz", ".zst", ".gz"] where dstRel.hasSuffix(ext) { dstRel.removeLast(ext.count) }
            let dst = p("\(moduleRoot)/\(dstRel)")
            try fm.createDirectory(atPath: (dst as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            if rel.hasSuffix(".xz") { try Shell.check(["xz", "-dc", src], stdoutTo: dst) }
            else if rel.hasSuffix(".zst") { try Shell.check(["zstd", "-dcq", src], stdoutTo: dst) }
            else if rel.hasSuffix(".gz") { try Shell.check(["gzip", "-dc", src], stdoutTo: dst) }
            else { try fm.copyItem(atPath: src, toPath: dst) }
        }
        for file in ["modules.order", "modules.builtin", "modules.builtin.modinfo"] {
            let src = (modulesDirectory as NSString).appendingPathComponent(file)
            if fm.fileExists(atPath: src) { try fm.copyItem(atPath: src, toPath: p("\(moduleRoot)/\(file)")) }
        }
        try Shell.check(["depmod", "-b", stage, kernelRelease])

        if let agent { try AgentBinary(path: agent).install(into: stage) }

        var cpio = try CpioWriter(path: output)
        try cpio.addTree(stage)
        // The kernel opens /dev/console for init before any devtmpfs is mounted.
        try cpio.addCharDevice(name: "dev/console", major: 5, minor: 1)
        try cpio.addCharDevice(name: "dev/null", major: 1, minor: 3, mode: 0o666)
        try cpio.finish()
        return InitramfsContents(modules: plan.modules.map { index.paths[$0].map(moduleName) ?? $0 },
                                 builtin: plan.builtin, absent: plan.absent, bytes: cpio.bytesWritten)
    }
}

func chmod755(_ path: String) throws {
    try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: path)
}

/// The isolab agent binary: copied to `/isolab-agent`; when dynamically linked, with exactly
/// the shared libraries `ldd` lists, at the paths it lists.
struct AgentBinary {
    let path: String

    /// True when the ELF has a PT_INTERP program header (needs a dynamic loader).
    func isDynamic() throws -> Bool {
        guard let h = FileHandle(forReadingAtPath: path) else { throw ImagesError.badAgent(path: path, problem: "cannot read it") }
        defer { try? h.close() }
        let head = [UInt8]((try? h.read(upToCount: 64)) ?? Data())
        guard head.count == 64, head[0..<4].elementsEqual([0x7f, 0x45, 0x4c, 0x46]) else {
            throw ImagesError.badAgent(path: path, problem: "not an ELF executable")
        }
        guard head[4] == 2, head[0x12] == 0x3e else {
            throw ImagesError.badAgent(path: path, problem: "not a 64-bit x86-64 ELF (the guest is x86_64)")
        }
        func le(_ off: Int, _ n: Int) -> Int { (0..<n).reduce(0) { $0 | Int(head[off + $1]) << (8 * $1) } }
        let phoff = le(0x20, 8), phentsize = le(0x36, 2), phnum = le(0x38, 2)
        try h.seek(toOffset: UInt64(phoff))
        let table = [UInt8]((try? h.read(upToCount: phentsize * phnum)) ?? Data())
        guard table.count == phentsize * phnum else { throw ImagesError.badAgent(path: path, problem: "truncated program headers") }
        for i in 0..<phnum {
            let o = i * phentsize
            let type = (0..<4).reduce(0) { $0 | Int(table[o + $1]) << (8 * $1) }
            if type == 3 { return true }  // PT_INTERP
        }
        return false
    }

    /// Library paths `ldd` lists for the agent (the vDSO excluded).
    func sharedLibraries() throws -> [String] {
        let r = try Shell.run(["ldd", path])
        guard r.status == 0 else {
            throw ImagesError.badAgent(path: path, problem: "ldd failed: \(r.errorText + r.text)")
        }
        var libs: [String] = []
        for line in r.text.split(separator: "\n") {
            let words = line.split(whereSeparator: \.isWhitespace).map(String.init)
            if line.contains("not found") {
                throw ImagesError.badAgent(path: path, problem: "ldd cannot find \(words.first ?? "a library")")
            }
            if let arrow = words.firstIndex(of: "=>"), arrow + 1 < words.count, words[arrow + 1].hasPrefix("/") {
                libs.append(words[arrow + 1])
            } else if let first = words.first, first.hasPrefix("/") {
                libs.append(first)  // the dynamic loader
            }
        }
        return libs
    }

    /// Copies the agent into `stage`, its symbol tables and debug info stripped: a static Swift
    /// agent is 23 MB as built and 14 MB stripped. Every byte of the initramfs is in a saved guest
    /// twice (the initrd's freed pages and the unpacked rootfs), so this is 18 MB less to save and
    /// restore per fabric; the guest has no symbolizer to use the tables anyway.
    func install(into stage: String) throws {
        let fm = FileManager.default
        let dst = (stage as NSString).appendingPathComponent("isolab-agent")
        try fm.copyItem(atPath: path, toPath: dst)
        try chmod755(dst)
        try Shell.check(["strip", "--strip-all", dst])
        guard try isDynamic() else { return }
        for lib in try sharedLibraries() {
            let target = (stage as NSString).appendingPathComponent(String(lib.dropFirst()))
            guard !fm.fileExists(atPath: target) else { continue }
            try fm.createDirectory(atPath: (target as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            // Copy the file the path resolves to, under the name the loader asks for.
            try fm.copyItem(atPath: (lib as NSString).resolvingSymlinksInPath, toPath: target)
        }
    }
}
