import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// An exclusive `flock(2)` on a lock file: serialises isolab processes (and threads, each
/// with its own open file) that work on the same cache entry.
final class FileLock {
    private let fd: Int32
    let path: String

    /// Blocks until the lock on `path` is held; the file is created if needed.
    init(path: String) throws {
        self.path = path
        try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent,
                                                withIntermediateDirectories: true)
        fd = open(path, O_CREAT | O_RDWR | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw ImagesError.io(path: path, problem: "cannot open lock file: \(String(cString: strerror(errno)))") }
        while flock(fd, LOCK_EX) != 0 {
            guard errno == EINTR else {
                let problem = String(cString: strerror(errno))
                close(fd)
                throw ImagesError.io(path: path, problem: "cannot lock: \(problem)")
            }
        }
    }

    deinit { flock(fd, LOCK_UN); close(fd) }

    /// Runs `body` while holding the lock on `path`.
    static func withLock<T>(_ path: String, _ body: () throws -> T) throws -> T {
        let lock = try FileLock(path: path)
        defer { withExtendedLifetime(lock) {} }
        return try body()
    }
}
