import Foundation

/// The scratch qcow2 file a snapshot-mode guest keeps its saved state in (QEMU's internal
/// snapshots, `savevm`/`loadvm`, live in a qcow2 drive). The guest never sees it: QEMU opens
/// it as a drive without a device.
public enum VMStateDrive {
    /// Creates an empty qcow2 at `path` (`qemu-img create`), replacing any file there. The
    /// virtual size is nominal: the saved RAM and device state go beyond it.
    public static func create(at path: String) throws {
        try? FileManager.default.removeItem(atPath: path)
        try Shell.check(["qemu-img", "create", "-q", "-f", "qcow2", path, "1M"])
    }
}
