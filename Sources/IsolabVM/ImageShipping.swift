import Foundation
import IsolabImages
import IsolabLibvirt
import Logging

/// Puts the files a guest boots from (kernel or vmlinux, initramfs) into a storage pool on a
/// libvirt host that shares no file system with isolab, and names their paths there.
///
/// The pool is `isolab` on the host: used as it is when the host's administrator defined it,
/// defined by isolab otherwise (a directory pool at ``defaultTarget(for:)``). A volume is named
/// by its content's SHA-256 and the file's name (`3f2a…-initramfs.cpio`) and counts as there
/// only with its `.ok` marker volume, made after the upload finished, so a second run uploads
/// nothing and an interrupted upload is never booted.
public final class ImageShipping: @unchecked Sendable {
    public let connection: LibvirtConnection
    /// The pool's name on every host.
    public static let poolName = "isolab"

    private let lock = NSLock()
    private var pool: LibvirtStoragePool?
    /// Local file (path, size, mtime) → its path on the host.
    private var shipped: [String: String] = [:]
    /// Files uploaded by this process (a second run of the same images: 0).
    public private(set) var uploads = 0

    public init(connection: LibvirtConnection) { self.connection = connection }

    /// Where isolab defines the pool when the host has none: libvirt's image directory for a
    /// privileged daemon (`…/system`), a directory of the daemon's user under /var/tmp for a
    /// session daemon (whose home isolab cannot know).
    public static func defaultTarget(for uri: String) -> String {
        let c = URLComponents(string: uri)
        if c?.path == "/system" { return "/var/lib/libvirt/images/isolab" }
        let who = [c?.host, c?.user].compactMap { $0 }.joined(separator: "-")
            .map { $0.isLetter || $0.isNumber || $0 == "." || $0 == "-" ? $0 : "_" }
        return "/var/tmp/isolab-pool-" + (who.isEmpty ? "session" : String(who))
    }

    /// The path on the host of the local file `path`, uploading it first if the pool lacks it.
    public func ship(_ path: String) throws -> String {
        lock.lock(); defer { lock.unlock() }
        let attributes = try FileManager.default.attributesOfItem(atPath: path)
        let size = (attributes[.size] as? NSNumber)?.int64Value ?? 0
        let mtime = (attributes[.modificationDate] as? Date)?.timeIntervalSince1970 ?? 0
        let key = "\(path)|\(size)|\(mtime)"
        if let remote = shipped[key] { return remote }
        let pool = try ensurePool()
        let name = String(try Hashing.sha256(file: path).prefix(24)) + "-" + (path as NSString).lastPathComponent
        let remote: String
        do {
            if let volume = try pool.volume(named: name), try pool.volume(named: name + ".ok") != nil,
               try volume.capacity() == size {
                remote = try volume.path()
            } else {
                // Left by an upload that never finished (or a different file of that name): replace it.
                try pool.volume(named: name)?.delete()
                try pool.volume(named: name + ".ok")?.delete()
                let volume = try pool.createVolume(named: name, bytes: size)
                do {
                    try volume.upload(fileAt: path)
                    _ = try pool.createVolume(named: name + ".ok", bytes: 1)
                } catch {
                    try? volume.delete()
                    throw error
                }
                uploads += 1
                Logger(label: "isolab.shipping").info("uploaded \((path as NSString).lastPathComponent) (\(size >> 20) MiB) into pool '\(Self.poolName)' on \(connection.uri) as \(name)")
                remote = try volume.path()
            }
        } catch let e as LibvirtError {
            throw ShippingError.upload(uri: connection.uri, file: path, pool: Self.poolName, e.message)
        }
        shipped[key] = remote
        return remote
    }

    /// The host's `isolab` pool, started; defined, built and started first when it is missing.
    private func ensurePool() throws -> LibvirtStoragePool {
        if let pool { return pool }
        let target = Self.defaultTarget(for: connection.uri)
        do {
            let found: LibvirtStoragePool
            if let existing = try connection.storagePool(named: Self.poolName) {
                found = existing
            } else {
                found = try connection.defineDirectoryPool(named: Self.poolName, target: target)
                do { try found.build() } catch { /* the directory may be there already */ }
                try? found.setAutostart()
            }
            try found.start()
            pool = found
            return found
        } catch let e as LibvirtError {
            throw ShippingError.noPool(uri: connection.uri, target: target, e.message)
        }
    }
}

/// Why a guest's files could not be put on its host.
public enum ShippingError: Error, CustomStringConvertible, Equatable {
    /// The host has no usable `isolab` pool and refused to make one.
    case noPool(uri: String, target: String, String)
    /// A volume could not be made or written.
    case upload(uri: String, file: String, pool: String, String)

    public var description: String {
        switch self {
        case .noPool(let uri, let target, let why):
            return "cannot use a storage pool '\(ImageShipping.poolName)' on \(uri): \(why). isolab ships the guest's kernel "
                + "and initramfs into that pool; give the connection's user one it may write, e.g. "
                + "`virsh -c \(uri) pool-define-as \(ImageShipping.poolName) dir --target \(target)` then `pool-build`, "
                + "`pool-start` and `pool-autostart` (any directory its QEMU can read)"
        case .upload(let uri, let file, let pool, let why):
            return "cannot upload \(file) into pool '\(pool)' on \(uri): \(why)"
        }
    }
}
