import Foundation

/// The kernel's own VFIO and iommufd selftests (`tools/testing/selftests/vfio`, `…/iommu`),
/// built static from a Debian kernel source package so they run from a guest's initramfs.
public struct SelftestSuite: Codable, Sendable, Equatable {
    /// The kernel source they come from (`linux-source-7.3 7.3.4-1~bpo13+1`).
    public var source: String
    /// The folder holding the programs.
    public var directory: String
    /// The programs' names (`vfio_dma_mapping_test`, `iommufd`, …), sorted.
    public var programs: [String]

    /// The host path of a program of the suite.
    public func path(of program: String) -> String? {
        programs.contains(program) ? (directory as NSString).appendingPathComponent(program) : nil
    }

    static let manifest = "suite.json"
}

/// Builds a ``SelftestSuite`` once per source package (its sha256-named deb) and caches it in
/// `selftests/<key>`: unpack the source, `make headers`, then each suite's Makefile with
/// `-static` (libuuid and libcap from the host's uuid-dev and libcap-dev). About 40 s.
public struct SelftestBuilder {
    let cache: ImageCache
    let resolver: KernelResolver
    public var log: (String) -> Void = { _ in }
    public var jobs = ProcessInfo.processInfo.activeProcessorCount
    /// Bumped when the way the suite is built changes.
    static let format = "isolab-selftests-1"
    /// The selftest folders built, each with its Makefile's LDFLAGS.
    static let suites: [(folder: String, ldflags: String)] = [("vfio", "-static -pthread"), ("iommu", "-static")]

    public init(cache: ImageCache, resolver: KernelResolver) {
        self.cache = cache
        self.resolver = resolver
    }

    /// The suite of `resolved` (a `linux-source-X.Y` resolution), built unless cached.
    public func build(_ resolved: ResolvedKernel) throws -> SelftestSuite {
        let key = Hashing.sha256([Self.format, KernelResolver.kernelKey(resolved.packages)].joined(separator: "\n"))
        let final = cache.path("selftests", key)
        if let suite = Self.load(final) { return suite }
        return try FileLock.withLock(cache.lockPath("selftests-" + key)) {
            if let suite = Self.load(final) { return suite }
            for tool in ["make", "gcc", "tar", "xz", "dpkg-deb"] { _ = try Shell.which(tool) }
            for (lib, package) in [("libuuid.a", "uuid-dev"), ("libcap.a", "libcap-dev")]
            where !FileManager.default.fileExists(atPath: "/usr/lib/x86_64-linux-gnu/" + lib) {
                throw ImagesError.toolMissing(tool: lib + " (the kernel selftests link it statically)", package: package)
            }
            let files = try resolver.debs(for: resolved)
            let tmp = try cache.makeTemporaryDirectory("selftests-\(key.prefix(12))")
            let source = resolved.packages.map { "\($0.name) \($0.version)" }.joined(separator: ", ")
            do {
                let programs = try compile(files: files, in: tmp, kernelID: resolved.kernel.id)
                try FileManager.default.removeItem(atPath: (tmp as NSString).appendingPathComponent("src"))
                let suite = SelftestSuite(source: source, directory: (final as NSString).appendingPathComponent("bin"), programs: programs)
                try JSONCoding.encoder.encode(suite).write(to: URL(fileURLWithPath: (tmp as NSString).appendingPathComponent(SelftestSuite.manifest)))
                try cache.publish(tmp, as: final)
                guard let loaded = Self.load(final) else {
                    throw ImagesError.io(path: final, problem: "the built selftest suite has no readable manifest")
                }
                return loaded
            } catch {
                try? FileManager.default.removeItem(atPath: (tmp as NSString).appendingPathComponent("src"))
                throw error
            }
        }
    }

    /// The suite cached in `dir`. Its programs are in `dir/bin` wherever the cache is now: a
    /// cache copied or restored under another home (another user, a CI cache) keeps working,
    /// whatever folder the manifest was written in.
    static func load(_ dir: String) -> SelftestSuite? {
        guard let data = FileManager.default.contents(atPath: (dir as NSString).appendingPathComponent(SelftestSuite.manifest)),
              var suite = try? JSONCoding.decoder.decode(SelftestSuite.self, from: data) else { return nil }
        suite.directory = (dir as NSString).appendingPathComponent("bin")
        guard suite.programs.allSatisfy({ FileManager.default.isExecutableFile(atPath: (suite.directory as NSString).appendingPathComponent($0)) })
        else { return nil }
        return suite
    }

    private func compile(files: [String], in tmp: String, kernelID: String) throws -> [String] {
        let fm = FileManager.default
        let tree = try SourceKernelBuild.unpackSource(files: files, in: tmp, log: { log("\(kernelID): \($0) for the selftests") })
        let buildLog = (tmp as NSString).appendingPathComponent("build.log")
        try make(["-C", tree, "headers"], log: buildLog, kernelID: kernelID)
        let bin = (tmp as NSString).appendingPathComponent("bin")
        try fm.createDirectory(atPath: bin, withIntermediateDirectories: true)
        var programs: [String] = []
        for suite in Self.suites {
            let folder = (tree as NSString).appendingPathComponent("tools/testing/selftests/" + suite.folder)
            guard fm.fileExists(atPath: (folder as NSString).appendingPathComponent("Makefile")) else {
                throw ImagesError.badKernelTree(path: folder, problem: "no selftests here: the VFIO selftests are in Linux 6.18 and later")
            }
            let out = (tmp as NSString).appendingPathComponent("out/" + suite.folder)
            try fm.createDirectory(atPath: out, withIntermediateDirectories: true)
            log("\(kernelID): building tools/testing/selftests/\(suite.folder) (static)")
            try make(["-C", folder, "OUTPUT=\(out)", "LDFLAGS=\(suite.ldflags)"], log: buildLog, kernelID: kernelID)
            // The programs are the executables the Makefile left in OUTPUT (TEST_GEN_PROGS).
            let names = ((try? fm.contentsOfDirectory(atPath: out)) ?? []).filter { name in
                var isDir: ObjCBool = false
                let p = (out as NSString).appendingPathComponent(name)
                return fm.fileExists(atPath: p, isDirectory: &isDir) && !isDir.boolValue && fm.isExecutableFile(atPath: p)
            }
            guard !names.isEmpty else {
                throw ImagesError.kernelBuildFailed(kernel: kernelID, step: "make -C tools/testing/selftests/\(suite.folder)", log: buildLog, output: "no programs built")
            }
            for name in names {
                let from = (out as NSString).appendingPathComponent(name)
                try fm.copyItem(atPath: from, toPath: (bin as NSString).appendingPathComponent(name))
                programs.append(name)
            }
        }
        try? fm.removeItem(atPath: (tmp as NSString).appendingPathComponent("out"))
        return programs.sorted()
    }

    private func make(_ arguments: [String], log buildLog: String, kernelID: String) throws {
        let command = (["make", "-j\(max(1, jobs))"] + arguments.map { "'\($0)'" }).joined(separator: " ")
        let r = try Shell.run(["sh", "-c", "exec \(command) >>\"$ISOLAB_BUILD_LOG\" 2>&1"], environment: ["ISOLAB_BUILD_LOG": buildLog])
        guard r.status == 0 else {
            let out = (try? String(contentsOfFile: buildLog, encoding: .utf8)) ?? ""
            throw ImagesError.kernelBuildFailed(kernel: kernelID, step: "make " + arguments.joined(separator: " "), log: buildLog, output: out)
        }
    }
}

extension ImageBuilder {
    /// The kernel's own selftests built from the catalog's `selftests:` kernel source (cached).
    public func selftestSuite() throws -> SelftestSuite {
        let catalog = try self.catalog
        guard let id = catalog.selftestSource else {
            throw ImagesError.invalidFile(file: recipe.catalogPath, line: nil, field: "selftests",
                                          problem: "no kernel names the source the kernel selftests are built from",
                                          accepted: "selftests: ID of a kernel with build:")
        }
        let resolved = try resolver.resolve(try catalog.kernel(id: id), refresh: refresh)
        var b = SelftestBuilder(cache: cache, resolver: resolver)
        b.log = log
        return try b.build(resolved)
    }
}
