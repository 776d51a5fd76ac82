import CLibvirt

/// An error reported by libvirt (`virGetLastError`), or by this wrapper in libvirt's terms.
public struct LibvirtError: Error, CustomStringConvertible, Sendable, Equatable {
    /// `virErrorNumber`, e.g. 42 `VIR_ERR_NO_DOMAIN`.
    public var code: Int32
    /// `virErrorDomain`, e.g. 10 `VIR_FROM_QEMU`.
    public var domain: Int32
    /// libvirt's own message, as `virsh` would print it.
    public var message: String

    public init(code: Int32, domain: Int32, message: String) {
        self.code = code
        self.domain = domain
        self.message = message
    }

    public var description: String { message }

    /// The domain does not exist (any more).
    public var isNoDomain: Bool { code == Int32(VIR_ERR_NO_DOMAIN.rawValue) }
    /// The operation does not apply in the domain's state (e.g. destroying a stopped domain).
    public var isOperationInvalid: Bool { code == Int32(VIR_ERR_OPERATION_INVALID.rawValue) }
    /// libvirt still holds an earlier domain of the same name: "domain '…' is already being
    /// removed" or "domain '…' already exists" (a QEMU that just ended, not yet forgotten).
    public var isNameStillTaken: Bool {
        message.contains("is already being removed") || message.contains("already exists")
    }

    /// The calling thread's last libvirt error, or one naming `operation` when libvirt set none.
    static func last(_ operation: String) -> LibvirtError {
        guard let e = virGetLastError() else {
            return LibvirtError(code: Int32(VIR_ERR_INTERNAL_ERROR.rawValue), domain: 0,
                                message: "\(operation) failed without a libvirt error")
        }
        let message = e.pointee.message.map { String(cString: $0) } ?? "\(operation) failed"
        let error = LibvirtError(code: e.pointee.code, domain: e.pointee.domain, message: message)
        virResetLastError()
        return error
    }

    /// An error of this wrapper (not libvirt's), e.g. using a closed connection.
    static func wrapper(_ message: String) -> LibvirtError {
        LibvirtError(code: Int32(VIR_ERR_INTERNAL_ERROR.rawValue), domain: 0, message: message)
    }
}
