import Foundation

/// Where an image's kernel came from.
public enum KernelOrigin: String, Codable, Sendable {
    /// Debian packages from the kernel catalog.
    case debian
    /// A developer's own build (`--kernel-image` / `--modules`).
    case local
}

/// Everything known about a built image; stored as `image.json` beside it.
public struct ImageMetadata: Codable, Equatable, Sendable {
    /// Content key: sha256 over every input (kernel packages, modules, agent, recipe, busybox).
    public var key: String
    /// Catalog id (`6.1`) or `local-<release>` for a developer's kernel.
    public var kernelID: String
    public var origin: KernelOrigin
    public var suite: String?
    /// The exact .deb files used: name, version, sha256 (empty for a local kernel).
    public var packages: [DebPackage]
    /// sha256 of the kernel file the image was built from: the bzImage, or a developer's bare
    /// `vmlinux` (always set; for a local kernel it is the kernel's identity).
    public var kernelSha256: String
    public var kernelRelease: String
    public var kernelVersionString: String
    public var generation: String
    /// Modules in the initramfs, dependencies first.
    public var modules: [String]
    /// Requested modules the kernel has built in (nothing to ship).
    public var builtinModules: [String]
    /// Optional modules this kernel does not have.
    public var absentModules: [String]
    public var agentSha256: String?
    public var busyboxSha256: String
    public var recipeSha256: String
    public var initramfsBytes: Int
    public var createdAt: Date
    /// The uncompressed ELF `vmlinux` with a PVH entry, beside the bzImage; nil when the kernel
    /// has none (then `pvhUnavailable` says why and the image boots its bzImage).
    public var vmlinux: VmlinuxMetadata?
    /// Why the image has no PVH `vmlinux` (no PVH note, an unsupported payload compression, …).
    public var pvhUnavailable: String?
    /// The kernel's values of `KernelConfig.modelSymbols` (`CONFIG_IOMMUFD` …) from its config
    /// file; nil when the kernel tree had none (older images, a local kernel without one).
    public var kernelConfig: [String: String]?
}

/// The image's PVH-bootable `vmlinux`.
public struct VmlinuxMetadata: Codable, Equatable, Sendable {
    public var sha256: String
    public var bytes: Int
    /// Physical address of the PVH entry (the XEN_ELFNOTE_PHYS32_ENTRY note).
    public var pvhEntry: UInt64
    /// The bzImage payload compression it was unpacked from; nil when a developer gave the vmlinux itself.
    public var compression: PayloadCompression?

    public init(sha256: String, bytes: Int, pvhEntry: UInt64, compression: PayloadCompression?) {
        self.sha256 = sha256; self.bytes = bytes; self.pvhEntry = pvhEntry; self.compression = compression
    }
}

/// How QEMU enters the guest kernel.
public enum BootPath: String, Codable, Sendable, CaseIterable {
    /// The uncompressed ELF `vmlinux` at its PVH entry: no decompression under TCG (about half
    /// the boot time of 5.10 and 6.1, PERF-NOTES.md). The default.
    case pvh
    /// The bzImage through the Linux boot protocol (it decompresses itself first).
    case bzImage = "bzimage"
}

/// The kernel file a boot uses, and whether it is the one asked for.
public struct BootKernel: Sendable, Equatable {
    /// The file for `<os><kernel>` / `-kernel`.
    public var path: String
    /// How the guest is entered with it.
    public var boot: BootPath
    /// What the caller asked for.
    public var requested: BootPath
    /// Why `boot` differs from `requested` (nil when it does not).
    public var fallback: String?
}

/// A built guest image: a kernel and an initramfs that boot to `ISOLAB-INIT: ready`.
public struct GuestImage: Sendable {
    /// Directory holding `bzImage`, `initramfs.cpio` and `image.json`.
    public var directory: String
    public var metadata: ImageMetadata

    /// The kernel image the image was built from: the bzImage, or a developer's bare `vmlinux`
    /// when that is all the image has. Boots choose their file with `bootKernel(_:)`.
    public var kernelPath: String { bzImagePath ?? (directory as NSString).appendingPathComponent("vmlinux") }
    /// The bzImage; nil for an image built from a developer's bare `vmlinux`.
    public var bzImagePath: String? {
        let path = (directory as NSString).appendingPathComponent("bzImage")
        return FileManager.default.fileExists(atPath: path) ? path : nil
    }
    /// The uncompressed ELF `vmlinux` with a PVH entry note; nil when the kernel has none.
    public var vmlinuxPath: String? {
        metadata.vmlinux == nil ? nil : (directory as NSString).appendingPathComponent("vmlinux")
    }

    /// The kernel file for a boot by `requested`, falling back to the other path when the image
    /// lacks it (no PVH `vmlinux`: the bzImage; no bzImage: the developer's `vmlinux`).
    public func bootKernel(_ requested: BootPath = .pvh) -> BootKernel {
        switch (requested, vmlinuxPath, bzImagePath) {
        case (.pvh, let v?, _), (.bzImage, let v?, nil):
            let why = requested == .pvh ? nil : "the image has no bzImage (built from a bare vmlinux)"
            return BootKernel(path: v, boot: .pvh, requested: requested, fallback: why)
        case (.bzImage, _, let b?), (.pvh, nil, let b?):
            let why = requested == .bzImage ? nil : "no PVH vmlinux: " + (metadata.pvhUnavailable ?? "the image predates PVH extraction")
            return BootKernel(path: b, boot: .bzImage, requested: requested, fallback: why)
        case (_, nil, nil):
            return BootKernel(path: kernelPath, boot: .bzImage, requested: requested, fallback: "the image has no kernel file")
        }
    }
    /// The uncompressed newc initramfs for `-initrd`.
    public var initramfsPath: String { (directory as NSString).appendingPathComponent("initramfs.cpio") }
    /// `uname -r` of the kernel.
    public var kernelRelease: String { metadata.kernelRelease }
    /// Model generation (e.g. `6.12`).
    public var generation: String { metadata.generation }
    /// Content key of the image.
    public var key: String { metadata.key }

    static let metadataFile = "image.json"

    /// Loads the image in `directory`.
    public init(directory: String) throws {
        let path = (directory as NSString).appendingPathComponent(Self.metadataFile)
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ImagesError.io(path: path, problem: "no image metadata")
        }
        do { metadata = try JSONCoding.decoder.decode(ImageMetadata.self, from: data) }
        catch { throw ImagesError.io(path: path, problem: "unreadable image metadata: \(error)") }
        self.directory = directory
    }

    init(directory: String, metadata: ImageMetadata) { self.directory = directory; self.metadata = metadata }
}

/// JSON as isolab writes it: sorted keys, ISO 8601 dates with milliseconds (so images
/// built within one second still sort by age).
public enum JSONCoding {
    private static func formatter() -> ISO8601DateFormatter {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return f
    }

    public static var encoder: JSONEncoder {
        let e = JSONEncoder()
        e.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        e.dateEncodingStrategy = .custom { date, encoder in
            var c = encoder.singleValueContainer()
            try c.encode(formatter().string(from: date))
        }
        return e
    }

    public static var decoder: JSONDecoder {
        let d = JSONDecoder()
        d.dateDecodingStrategy = .custom { decoder in
            let text = try decoder.singleValueContainer().decode(String.self)
            let plain = ISO8601DateFormatter()
            guard let date = formatter().date(from: text) ?? plain.date(from: text) else {
                throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: "bad date \(text)"))
            }
            return date
        }
        return d
    }
}

extension GuestImage {
    /// Writes `output`: this image's initramfs followed by a second cpio archive holding `files`
    /// (path inside the guest → contents). The kernel unpacks both, so the files appear in the
    /// guest's root without rebuilding the image.
    public func initramfs(appending files: [String: Data], to output: String) throws {
        try initramfs(appending: files, executables: [:], to: output)
    }

    /// As ``initramfs(appending:to:)``, with `executables` (archive name → host file) added
    /// with mode 0755: the programs `selftest` steps run.
    public func initramfs(appending files: [String: Data], executables: [String: String], to output: String) throws {
        var all = files
        for (name, host) in executables {
            guard let data = FileManager.default.contents(atPath: host) else {
                throw ImagesError.io(path: host, problem: "cannot read the program to ship into the guest")
            }
            all[name] = data
        }
        try writeInitramfs(appending: all, executableNames: Set(executables.keys), to: output)
    }

    private func writeInitramfs(appending files: [String: Data], executableNames: Set<String>, to output: String) throws {
        let fm = FileManager.default
        try? fm.removeItem(atPath: output)
        guard fm.createFile(atPath: output, contents: nil) else {
            throw ImagesError.io(path: output, problem: "cannot create the run's initramfs")
        }
        let extra = output + ".extra"
        var writer = try CpioWriter(path: extra)
        var dirs = Set<String>()
        for name in files.keys.sorted() {
            var parent = (name as NSString).deletingLastPathComponent
            var chain: [String] = []
            while !parent.isEmpty, parent != "/", !dirs.contains(parent) {
                chain.insert(parent, at: 0)
                dirs.insert(parent)
                parent = (parent as NSString).deletingLastPathComponent
            }
            for d in chain { try writer.add(name: d, mode: UInt32(S_IFDIR) | 0o755, data: Data()) }
            try writer.add(name: name, mode: UInt32(S_IFREG) | (executableNames.contains(name) ? 0o755 : 0o644), data: files[name]!)
        }
        try writer.finish()
        defer { try? fm.removeItem(atPath: extra) }
        guard let out = FileHandle(forWritingAtPath: output),
              let base = FileHandle(forReadingAtPath: initramfsPath),
              let tail = fm.contents(atPath: extra) else {
            throw ImagesError.io(path: output, problem: "cannot assemble the run's initramfs")
        }
        defer { try? out.close(); try? base.close() }
        while let chunk = try base.read(upToCount: 1 << 20), !chunk.isEmpty { try out.write(contentsOf: chunk) }
        try out.write(contentsOf: tail)
    }
}
