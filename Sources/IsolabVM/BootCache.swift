import Foundation
import IsolabImages
import IsolabProtocol

/// Saved boots kept between runs, like ccache for guests: a fabric booted and saved in QEMU
/// (``SnapshotStore/inQEMU``) leaves its vmstate drive and the inventory its agent reported
/// here, under a key made of everything that decides the saved guest (``key(_:plan:parameters:libvirt:)``).
/// A later run with the same key starts QEMU from a copy of that drive (`-loadvm`) instead
/// of booting, and each scenario is checked as after any restore: its agent enumerates the
/// fabric again and must find the saved inventory.
///
/// Entries are folders `<directory>/<key>/` (`vmstate.qcow2.zst`, the drive compressed to a
/// quarter by ``VMStateDrive/pack(_:to:)``, and `inventory.json`); the least
/// recently used go once the whole exceeds `limitBytes`. A store that cannot be written or read
/// never fails a run: the guest is booted.
public struct BootCache: Sendable {
    public var directory: String
    public var limitBytes: UInt64

    /// 8 GiB: the default matrix keeps about 190 saved boots of ≈ 25 MB (both emulators), the
    /// test command more.
    public static let defaultLimit: UInt64 = 8 << 30

    public init(directory: String, limitBytes: UInt64 = BootCache.defaultLimit) {
        self.directory = directory
        self.limitBytes = limitBytes
    }

    /// `<isolab's cache>/boots` (``ImageCache/defaultRoot(environment:)``).
    public static func defaultDirectory() -> String { ImageCache.defaultRoot() + "/boots" }

    /// One saved boot.
    public struct Entry: Sendable {
        public var key: String
        /// The compressed drive (``VMStateDrive/unpack(_:to:)`` gives it back).
        public var packedPath: String
        public var inventory: Inventory
    }

    /// The key of `req`'s saved boot: the domain XML with every run's own path and name
    /// replaced (so the devices, memory, command line, kernel, emulator, accelerator and clock
    /// count), the serving plan without its run id, the kernel, the image's initramfs and the
    /// programs shipped beside it (path, size, modification time: the image cache is content
    /// addressed, so these change when the content does), the emulator's binary and version,
    /// and libvirt's version (it writes QEMU's command line).
    public static func key(_ req: RunRequest, plan: GuestPlan, parameters: DomainParameters, libvirt: String) throws -> String {
        var neutral = parameters
        neutral.name = "isolab-saved-boot"
        neutral.initrdPath = "/initramfs"
        neutral.consoleLogPath = "/console"
        neutral.recordsPath = "/records"
        neutral.channelSocketPath = parameters.channelSocketPath.map { _ in "/channel" }
        neutral.vmstateDrivePath = parameters.vmstateDrivePath.map { _ in "/vmstate" }
        neutral.loadSnapshotTag = nil
        let xml = try DomainXML.render(req.topology, fabric: req.fabric, parameters: neutral)
        var serving = plan
        serving.runID = ""
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        let planText = String(decoding: try encoder.encode(serving), as: UTF8.self)
        var files = [("kernel", parameters.kernelPath), ("initramfs", req.image.initramfsPath),
                     ("emulator", req.emulator ?? "/usr/bin/qemu-system-x86_64")]
        files += req.initramfsPrograms.sorted { $0.key < $1.key }.map { ("program " + $0.key, $0.value) }
        let identities = files.map { "\($0.0) \($0.1) \(fileIdentity($0.1))" }
        let text = (["isolab-boot-cache-2", "libvirt \(libvirt)", "emulator \(req.emulatorVersion ?? "default")"]
                    + identities + [planText, xml]).joined(separator: "\n")
        return Hashing.sha256(text)
    }

    /// `size mtime` of a file, `absent` when it cannot be read.
    static func fileIdentity(_ path: String) -> String {
        guard let a = try? FileManager.default.attributesOfItem(atPath: path),
              let size = a[.size] as? UInt64, let date = a[.modificationDate] as? Date else { return "absent" }
        return "\(size) \(date.timeIntervalSince1970)"
    }

    func folder(_ key: String) -> String { directory + "/" + key }

    /// The compressed vmstate drive in an entry's folder.
    static let packedName = "vmstate.qcow2.zst"

    /// Whether there is an entry for `key` (not marked as used: for planning).
    public func contains(_ key: String) -> Bool {
        let dir = folder(key)
        return FileManager.default.fileExists(atPath: dir + "/inventory.json") && FileManager.default.fileExists(atPath: dir + "/" + Self.packedName)
    }

    /// The entry for `key`, marked as just used; nil when there is none or it is unreadable.
    public func lookup(_ key: String) -> Entry? {
        let dir = folder(key)
        guard let data = FileManager.default.contents(atPath: dir + "/inventory.json"),
              let inventory = try? JSONDecoder().decode(Inventory.self, from: data),
              FileManager.default.fileExists(atPath: dir + "/" + Self.packedName) else { return nil }
        try? FileManager.default.setAttributes([.modificationDate: Date()], ofItemAtPath: dir)
        return Entry(key: key, packedPath: dir + "/" + Self.packedName, inventory: inventory)
    }

    /// Keeps a copy of `vmstate` (a drive `savevm` has just written) and `inventory` as `key`'s
    /// entry, then trims the cache. Another run storing the same key at once is harmless: the
    /// folder appears whole (a rename) or not at all.
    public func store(_ key: String, vmstate: String, inventory: Inventory) {
        let fm = FileManager.default
        let staging = directory + "/.staging-" + UUID().uuidString
        do {
            try fm.createDirectory(atPath: staging, withIntermediateDirectories: true)
            try VMStateDrive.pack(vmstate, to: staging + "/" + Self.packedName)
            try JSONEncoder().encode(inventory).write(to: URL(fileURLWithPath: staging + "/inventory.json"))
            if rename(staging, folder(key)) != 0 { try? fm.removeItem(atPath: staging) }
        } catch {
            try? fm.removeItem(atPath: staging)
            return
        }
        trim()
    }

    /// Drops `key`'s entry (one that did not start or did not give the saved guest back).
    public func evict(_ key: String) {
        try? FileManager.default.removeItem(atPath: folder(key))
    }

    /// Removes the least recently used entries until the rest fit in `limitBytes`, and staging
    /// folders older than an hour (left by a run that was killed).
    public func trim() {
        let fm = FileManager.default
        guard let names = try? fm.contentsOfDirectory(atPath: directory) else { return }
        var entries: [(path: String, used: Date, bytes: UInt64)] = []
        for name in names {
            let path = folder(name)
            let used = (try? fm.attributesOfItem(atPath: path)[.modificationDate] as? Date) ?? .distantPast
            if name.hasPrefix(".staging-") {
                if used.timeIntervalSinceNow < -3600 { try? fm.removeItem(atPath: path) }
                continue
            }
            let bytes = ((try? fm.contentsOfDirectory(atPath: path)) ?? []).reduce(UInt64(0)) {
                $0 + ((try? fm.attributesOfItem(atPath: path + "/" + $1)[.size] as? UInt64) ?? 0)
            }
            entries.append((path, used, bytes))
        }
        var total = entries.reduce(0) { $0 + $1.bytes }
        for e in entries.sorted(by: { $0.used < $1.used }) where total > limitBytes {
            try? fm.removeItem(atPath: e.path)
            total -= e.bytes
        }
    }
}
