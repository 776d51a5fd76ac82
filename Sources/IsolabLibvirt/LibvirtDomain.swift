import CLibvirt
import Foundation

/// A libvirt domain (`virDomainPtr`). Keeps its connection alive.
public final class LibvirtDomain: @unchecked Sendable {
    public let name: String
    public let connection: LibvirtConnection
    private let pointer: OpaquePointer

    init(pointer: OpaquePointer, connection: LibvirtConnection) {
        self.pointer = pointer
        self.connection = connection
        name = virDomainGetName(pointer).map { String(cString: $0) } ?? ""
    }

    deinit { virDomainFree(pointer) }

    var handle: OpaquePointer { pointer }

    /// The domain's UUID (libvirt makes one up for a transient domain without one).
    public var uuid: String? {
        var buffer = [CChar](repeating: 0, count: Int(VIR_UUID_STRING_BUFLEN))
        guard virDomainGetUUIDString(pointer, &buffer) == 0 else {
            virResetLastError()
            return nil
        }
        return String(cString: buffer)
    }

    /// Resumes a paused domain (`virDomainResume`).
    public func resume() throws {
        guard virDomainResume(pointer) == 0 else { throw LibvirtError.last("virDomainResume(\(name))") }
    }

    /// Kills QEMU at once (`virDomainDestroy`). No error if the domain is already gone.
    public func destroy() throws {
        guard virDomainDestroy(pointer) == 0 else {
            let error = LibvirtError.last("virDomainDestroy(\(name))")
            if error.isNoDomain || error.isOperationInvalid { return }
            throw error
        }
    }

    /// QEMU is running (or paused) for this domain.
    public func isActive() -> Bool { virDomainIsActive(pointer) == 1 }

    /// Saves the guest's state to `path` and stops it (`virDomainSave`; needs libvirt's
    /// I/O helper from the libvirt-daemon package).
    public func save(to path: String) throws {
        guard virDomainSave(pointer, path) == 0 else { throw LibvirtError.last("virDomainSave(\(name))") }
    }

    /// Runs `command` on QEMU's human monitor (`virDomainQemuMonitorCommand` with the HMP
    /// flag, from libvirt-qemu; libvirt marks the domain tainted: custom-monitor) and returns
    /// what it printed.
    public func humanMonitorCommand(_ command: String) throws -> String {
        var result: UnsafeMutablePointer<CChar>?
        guard virDomainQemuMonitorCommand(pointer, command, &result,
                                          UInt32(VIR_DOMAIN_QEMU_MONITOR_COMMAND_HMP.rawValue)) == 0 else {
            throw LibvirtError.last("virDomainQemuMonitorCommand(\(name), \(command))")
        }
        defer { free(result) }
        return result.map { String(cString: $0) } ?? ""
    }

    /// Saves the running guest as QEMU's internal snapshot `tag` (HMP `savevm`): its RAM and
    /// device state go into the first snapshot-capable drive, and it keeps running. libvirt
    /// keeps no metadata of such a snapshot. HMP answers an error with text, success with none.
    public func saveInternalSnapshot(tag: String) throws {
        try monitorCommandWithoutOutput("savevm \(tag)")
    }

    /// Puts the guest back into internal snapshot `tag` in the same QEMU process (HMP
    /// `loadvm`: QEMU stops the vCPUs, resets the machine, loads the state and runs on).
    public func loadInternalSnapshot(tag: String) throws {
        try monitorCommandWithoutOutput("loadvm \(tag)")
    }

    private func monitorCommandWithoutOutput(_ command: String) throws {
        let output = try humanMonitorCommand(command).trimmingCharacters(in: .whitespacesAndNewlines)
        guard output.isEmpty else {
            throw LibvirtError(code: Int32(VIR_ERR_OPERATION_FAILED.rawValue), domain: Int32(VIR_FROM_QEMU.rawValue),
                               message: "QEMU refused `\(command)` for \(name): \(output.replacingOccurrences(of: "\r\n", with: "; "))")
        }
    }

    /// QEMU's process id, from the driver's `<name>.pid` file when it is on this machine
    /// (embedded root or `qemu:///system`); nil if unknown or no longer running.
    public func qemuPID() -> Int32? {
        guard let dir = connection.runDirectory,
              let text = try? String(contentsOfFile: (dir as NSString).appendingPathComponent(name + ".pid"), encoding: .utf8),
              let pid = Int32(text.trimmingCharacters(in: .whitespacesAndNewlines)), pid > 0
        else { return nil }
        guard kill(pid, 0) == 0 || errno == EPERM else { return nil }
        return pid
    }
}
