import CLibvirt

/// Why a domain stopped (`virDomainEventStoppedDetailType`).
public enum StopReason: Sendable, Equatable {
    /// The guest powered off (or QEMU exited on its own after a guest shutdown).
    case shutdown
    /// `virDomainDestroy`, or the connection that started an autodestroy domain closed.
    case destroyed
    case crashed
    case migrated
    case saved
    /// QEMU failed (e.g. exited while starting, or died unexpectedly).
    case failed
    case fromSnapshot
    case unknown(Int32)

    init(detail: Int32) {
        switch UInt32(bitPattern: detail) {
        case VIR_DOMAIN_EVENT_STOPPED_SHUTDOWN.rawValue: self = .shutdown
        case VIR_DOMAIN_EVENT_STOPPED_DESTROYED.rawValue: self = .destroyed
        case VIR_DOMAIN_EVENT_STOPPED_CRASHED.rawValue: self = .crashed
        case VIR_DOMAIN_EVENT_STOPPED_MIGRATED.rawValue: self = .migrated
        case VIR_DOMAIN_EVENT_STOPPED_SAVED.rawValue: self = .saved
        case VIR_DOMAIN_EVENT_STOPPED_FAILED.rawValue: self = .failed
        case VIR_DOMAIN_EVENT_STOPPED_FROM_SNAPSHOT.rawValue: self = .fromSnapshot
        default: self = .unknown(detail)
        }
    }
}

/// A domain lifecycle event (`virDomainEventType`), with the stop reason for `stopped`.
public enum LifecycleEvent: Sendable, Equatable {
    case started, suspended, resumed
    case stopped(StopReason)
    /// The guest began (or finished) shutting down; `stopped` follows when QEMU is gone.
    case shutdown
    case crashed
    /// Any other (event, detail) pair, e.g. defined/undefined/pmsuspended.
    case other(Int32, Int32)

    init(event: Int32, detail: Int32) {
        switch UInt32(bitPattern: event) {
        case VIR_DOMAIN_EVENT_STARTED.rawValue: self = .started
        case VIR_DOMAIN_EVENT_SUSPENDED.rawValue: self = .suspended
        case VIR_DOMAIN_EVENT_RESUMED.rawValue: self = .resumed
        case VIR_DOMAIN_EVENT_STOPPED.rawValue: self = .stopped(StopReason(detail: detail))
        case VIR_DOMAIN_EVENT_SHUTDOWN.rawValue: self = .shutdown
        case VIR_DOMAIN_EVENT_CRASHED.rawValue: self = .crashed
        default: self = .other(event, detail)
        }
    }

    /// The domain is gone: QEMU has exited, for whatever reason.
    public var isStopped: Bool {
        if case .stopped = self { return true }
        return false
    }
}
