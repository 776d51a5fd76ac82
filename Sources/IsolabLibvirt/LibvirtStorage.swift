import CLibvirt
import Foundation

/// A storage pool on a libvirt host (`virStoragePoolPtr`).
public final class LibvirtStoragePool: @unchecked Sendable {
    public let name: String
    public let connection: LibvirtConnection
    private let pointer: OpaquePointer

    init(pointer: OpaquePointer, connection: LibvirtConnection) {
        self.pointer = pointer
        self.connection = connection
        name = virStoragePoolGetName(pointer).map { String(cString: $0) } ?? ""
    }

    deinit { virStoragePoolFree(pointer) }

    /// The pool is started (its volumes can be used).
    public var isActive: Bool { virStoragePoolIsActive(pointer) == 1 }

    /// Starts the pool (`virStoragePoolCreate`); nothing when it runs already.
    public func start() throws {
        guard !isActive else { return }
        guard virStoragePoolCreate(pointer, 0) == 0 else { throw LibvirtError.last("virStoragePoolCreate(\(name))") }
    }

    /// Makes the pool's target (`virStoragePoolBuild`: for a directory pool, mkdir with the
    /// pool's permissions).
    public func build() throws {
        guard virStoragePoolBuild(pointer, 0) == 0 else { throw LibvirtError.last("virStoragePoolBuild(\(name))") }
    }

    /// Marks the pool to start with the daemon (`virStoragePoolSetAutostart`).
    public func setAutostart() throws {
        guard virStoragePoolSetAutostart(pointer, 1) == 0 else { throw LibvirtError.last("virStoragePoolSetAutostart(\(name))") }
    }

    /// Stops the pool if it runs and forgets its definition (its directory stays).
    public func destroyAndUndefine() throws {
        if isActive, virStoragePoolDestroy(pointer) != 0 { throw LibvirtError.last("virStoragePoolDestroy(\(name))") }
        guard virStoragePoolUndefine(pointer) == 0 else { throw LibvirtError.last("virStoragePoolUndefine(\(name))") }
    }

    /// The volume called `named`, or nil (`virStorageVolLookupByName`).
    public func volume(named name: String) throws -> LibvirtStorageVolume? {
        guard let v = virStorageVolLookupByName(pointer, name) else {
            let e = LibvirtError.last("virStorageVolLookupByName(\(name))")
            if e.code == Int32(VIR_ERR_NO_STORAGE_VOL.rawValue) { return nil }
            throw e
        }
        return LibvirtStorageVolume(pointer: v, connection: connection)
    }

    /// Creates a raw volume of `bytes` (`virStorageVolCreateXML`).
    public func createVolume(named name: String, bytes: Int64, mode: String = "0644") throws -> LibvirtStorageVolume {
        let xml = """
            <volume><name>\(Self.escaped(name))</name><capacity unit='bytes'>\(bytes)</capacity>\
            <allocation unit='bytes'>0</allocation><target><format type='raw'/>\
            <permissions><mode>\(mode)</mode></permissions></target></volume>
            """
        guard let v = virStorageVolCreateXML(pointer, xml, 0) else { throw LibvirtError.last("virStorageVolCreateXML(\(name))") }
        return LibvirtStorageVolume(pointer: v, connection: connection)
    }

    static func escaped(_ s: String) -> String {
        s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
            .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "'", with: "&apos;")
    }
}

/// A volume of a storage pool (`virStorageVolPtr`).
public final class LibvirtStorageVolume: @unchecked Sendable {
    public let name: String
    public let connection: LibvirtConnection
    private let pointer: OpaquePointer

    init(pointer: OpaquePointer, connection: LibvirtConnection) {
        self.pointer = pointer
        self.connection = connection
        name = virStorageVolGetName(pointer).map { String(cString: $0) } ?? ""
    }

    deinit { virStorageVolFree(pointer) }

    /// The volume's path on its host (`virStorageVolGetPath`).
    public func path() throws -> String {
        guard let s = virStorageVolGetPath(pointer) else { throw LibvirtError.last("virStorageVolGetPath(\(name))") }
        defer { free(s) }
        return String(cString: s)
    }

    /// The volume's capacity in bytes (`virStorageVolGetInfo`).
    public func capacity() throws -> Int64 {
        var info = virStorageVolInfo()
        guard virStorageVolGetInfo(pointer, &info) == 0 else { throw LibvirtError.last("virStorageVolGetInfo(\(name))") }
        return Int64(info.capacity)
    }

    /// Writes the local file at `path` into the volume from offset 0 (`virStorageVolUpload`
    /// through a stream, 1 MiB at a time).
    public func upload(fileAt path: String) throws {
        guard let file = FileHandle(forReadingAtPath: path) else {
            throw LibvirtError.wrapper("cannot read \(path) to upload it into volume \(name)")
        }
        defer { try? file.close() }
        let size = (try FileManager.default.attributesOfItem(atPath: path)[.size] as? NSNumber)?.uint64Value ?? 0
        let stream = try LibvirtStream(connection: connection)
        guard virStorageVolUpload(pointer, stream.handle, 0, size, 0) == 0 else {
            throw LibvirtError.last("virStorageVolUpload(\(name))")
        }
        do {
            while let chunk = try file.read(upToCount: 1 << 20), !chunk.isEmpty { try stream.send(chunk) }
            try stream.finish()
        } catch {
            stream.end(abort: true)
            throw error
        }
    }

    /// Deletes the volume (`virStorageVolDelete`).
    public func delete() throws {
        guard virStorageVolDelete(pointer, 0) == 0 else { throw LibvirtError.last("virStorageVolDelete(\(name))") }
    }
}

extension LibvirtConnection {
    /// The storage pool called `named`, or nil (`virStoragePoolLookupByName`).
    public func storagePool(named name: String) throws -> LibvirtStoragePool? {
        guard let p = virStoragePoolLookupByName(try handle(), name) else {
            let e = LibvirtError.last("virStoragePoolLookupByName(\(name))")
            if e.code == Int32(VIR_ERR_NO_STORAGE_POOL.rawValue) { return nil }
            throw e
        }
        return LibvirtStoragePool(pointer: p, connection: self)
    }

    /// Defines a persistent directory pool `name` at `target` on the host
    /// (`virStoragePoolDefineXML`); the caller builds and starts it.
    public func defineDirectoryPool(named name: String, target: String, mode: String = "0711") throws -> LibvirtStoragePool {
        let xml = """
            <pool type='dir'><name>\(LibvirtStoragePool.escaped(name))</name><target>\
            <path>\(LibvirtStoragePool.escaped(target))</path><permissions><mode>\(mode)</mode></permissions>\
            </target></pool>
            """
        guard let p = virStoragePoolDefineXML(try handle(), xml, 0) else {
            throw LibvirtError.last("virStoragePoolDefineXML(\(name))")
        }
        return LibvirtStoragePool(pointer: p, connection: self)
    }
}
