import CLibvirt
import Foundation

/// Process-wide libvirt set-up, done once: library initialisation, errors kept off stderr
/// (they come back as `LibvirtError`), the default event implementation, and a thread
/// that runs it for ever. Embedded drivers and lifecycle events need that loop.
enum EventLoop {
    /// Where libvirt's own log lines go when `LIBVIRT_LOG_OUTPUTS` is not set: warnings
    /// and errors, appended to this file instead of the caller's stderr (errors reach the
    /// caller as `LibvirtError` anyway). Set before the first connection; libvirt reads it
    /// once. Without it they are dropped.
    nonisolated(unsafe) static var logFile: String?

    private static let setUp: Result<Void, LibvirtError> = {
        if getenv("LIBVIRT_LOG_OUTPUTS") == nil {
            // libvirt logs warnings (e.g. "security driver none disables default policy")
            // to stderr by default; isolab's output is its own.
            let output = "3:file:" + (logFile ?? "/dev/null")
            setenv("LIBVIRT_LOG_OUTPUTS", output, 0)
        }
        // libvirt's own warnings (e.g. about file xattrs) would land on isolab's stderr through the
        // embedded driver; errors reach isolab as LibvirtError anyway. A user's setting wins.
        setenv("LIBVIRT_LOG_OUTPUTS", "4:stderr", 0)
        guard virInitialize() == 0 else { return .failure(LibvirtError.last("virInitialize")) }
        // The default handler prints every error to stderr; callers get them as Swift errors.
        virSetErrorFunc(nil, { _, _ in })
        guard virEventRegisterDefaultImpl() == 0 else {
            return .failure(LibvirtError.last("virEventRegisterDefaultImpl"))
        }
        let thread = Thread {
            while true {
                if virEventRunDefaultImpl() < 0 { usleep(10_000) }
            }
        }
        thread.name = "libvirt-events"
        thread.stackSize = 1 << 20
        thread.start()
        return .success(())
    }()

    /// Sets everything up the first time; afterwards returns at once.
    static func ensure() throws {
        try setUp.get()
    }
}
