import Foundation

/// Writes an uncompressed `newc` cpio archive (the initramfs format) deterministically:
/// sorted paths, owner root, mtime 0, so equal inputs give byte-identical archives.
struct CpioWriter {
    private var out: FileHandle
    private var inode: UInt32 = 1
    private(set) var bytesWritten = 0

    init(path: String) throws {
        guard FileManager.default.createFile(atPath: path, contents: nil),
              let h = FileHandle(forWritingAtPath: path) else {
            throw ImagesError.io(path: path, problem: "cannot create the initramfs")
        }
        out = h
    }

    /// Adds every entry under `directory` (not the directory itself), parents before children.
    mutating func addTree(_ directory: String) throws {
        let fm = FileManager.default
        guard let walker = fm.enumerator(atPath: directory) else {
            throw ImagesError.io(path: directory, problem: "cannot list the staging tree")
        }
        let paths = (walker.allObjects as? [String] ?? []).sorted()
        for rel in paths {
            let full = (directory as NSString).appendingPathComponent(rel)
            var st = stat()
            guard lstat(full, &st) == 0 else { throw ImagesError.io(path: full, problem: "cannot stat") }
            let perm = UInt32(st.st_mode) & 0o7777
            switch UInt32(st.st_mode) & UInt32(S_IFMT) {
            case UInt32(S_IFDIR): try add(name: rel, mode: UInt32(S_IFDIR) | perm, data: Data())
            case UInt32(S_IFLNK):
                let target = try fm.destinationOfSymbolicLink(atPath: full)
                try add(name: rel, mode: UInt32(S_IFLNK) | 0o777, data: Data(target.utf8))
            case UInt32(S_IFREG):
                guard let data = fm.contents(atPath: full) else { throw ImagesError.io(path: full, problem: "cannot read") }
                try add(name: rel, mode: UInt32(S_IFREG) | perm, data: data)
            default:
                throw ImagesError.io(path: full, problem: "unsupported file type in the initramfs staging tree")
            }
        }
    }

    /// Adds a character device node (needs no privilege: it is only a header).
    mutating func addCharDevice(name: String, major: UInt32, minor: UInt32, mode: UInt32 = 0o600) throws {
        try add(name: name, mode: UInt32(S_IFCHR) | mode, data: Data(), rdev: (major, minor))
    }

    mutating func add(name: String, mode: UInt32, data: Data, rdev: (UInt32, UInt32) = (0, 0)) throws {
        let nlink: UInt32 = (mode & UInt32(S_IFMT)) == UInt32(S_IFDIR) ? 2 : 1
        let fields: [UInt32] = [inode, mode, 0, 0, nlink, 0, UInt32(data.count), 0, 0, rdev.0, rdev.1,
                                UInt32(name.utf8.count + 1), 0]
        inode += 1
        var header = "070701"
        for f in fields { header += String(format: "%08X", f) }
        var chunk = Data(header.utf8)
        chunk.append(contentsOf: Array(name.utf8) + [0])
        chunk.append(contentsOf: [UInt8](repeating: 0, count: Self.pad(chunk.count)))
        chunk.append(data)
        chunk.append(contentsOf: [UInt8](repeating: 0, count: Self.pad(data.count)))
        try out.write(contentsOf: chunk)
        bytesWritten += chunk.count
    }

    /// Writes the trailer and closes the file.
    mutating func finish() throws {
        try add(name: "TRAILER!!!", mode: 0, data: Data())
        try out.synchronize()
        try out.close()
    }

    private static func pad(_ n: Int) -> Int { (4 - n % 4) % 4 }
}
