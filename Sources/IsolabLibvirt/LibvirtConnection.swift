import CLibvirt
import Foundation

/// A connection to a libvirt hypervisor driver: `qemu:///embed?root=…` (in this process),
/// `qemu:///system`, or a remote/daemon URI. Thread-safe; lifecycle handlers run on the
/// process's libvirt event-loop thread.
public final class LibvirtConnection: @unchecked Sendable {
    public let uri: String
    /// Where the driver keeps `<domain>.pid` files, when they are on this machine.
    let runDirectory: String?
    /// The connection runs the QEMU driver inside this process (`qemu:///embed`).
    public let isEmbedded: Bool

    private let lock = NSLock()
    private var pointer: OpaquePointer?
    private var lifecycleCallbackID: Int32?
    private let lifecycleHandlers = HandlerTable()
    /// UUIDs of the domains to destroy on close (the embedded driver has no autodestroy).
    private var autodestroyUUIDs: Set<String> = []

    private init(uri: String, pointer: OpaquePointer) {
        self.uri = uri
        self.pointer = pointer
        let root = Self.embeddedRoot(uri)
        isEmbedded = root != nil
        if let root {
            runDirectory = root + "/run/qemu"
        } else if uri == "qemu:///system" || uri == "qemu+unix:///system" {
            runDirectory = "/run/libvirt/qemu"
        } else {
            runDirectory = nil
        }
    }

    /// Opens `uri`. Registers the default event implementation once per process and runs it
    /// on a dedicated thread (embedded drivers and lifecycle events need it).
    public static func open(_ uri: String) throws -> LibvirtConnection {
        try EventLoop.ensure()
        let uri = routed(uri)
        if embeddedRoot(uri) != nil {
            // The embedded driver daemonizes QEMU; as subreaper this process inherits it and
            // reaps it the moment it exits, which lets libvirt report `stopped` in about
            // 0.2 s instead of 1.2–2 s (PERF-NOTES). Before the open: it may probe QEMU.
            ChildReaper.start()
        }
        guard let p = virConnectOpen(uri) else { throw LibvirtError.last("virConnectOpen(\(uri))") }
        if embeddedRoot(uri) != nil {
            embeddedLock.lock(); embeddedDriverLoaded = true; embeddedLock.unlock()
        } else if virConnectSetKeepAlive(p, keepAliveInterval, keepAliveCount) < 0 {
            // Keepalive (virsh's figures): a daemon whose host left the network (no RST, no FIN)
            // is declared gone after about 30 s, and every call waiting on it fails, instead of
            // waiting in poll() for ever. A driver without keepalive is served as before.
            virResetLastError()
        }
        return LibvirtConnection(uri: uri, pointer: p)
    }

    deinit { close() }

    /// Seconds between keepalive probes to a daemon, and how many may go unanswered.
    static let keepAliveInterval: Int32 = 5
    static let keepAliveCount: UInt32 = 6

    private static let embeddedLock = NSLock()
    nonisolated(unsafe) private static var embeddedDriverLoaded = false

    /// Once the embedded QEMU driver runs in this process it answers every `qemu:///…` URI
    /// itself (`qemu:///session?socket=…` fails with "Missing URI parameter 'root'"), so a
    /// daemon's `qemu:///…` is then reached through the remote driver: `qemu+unix:///…`,
    /// the same local socket.
    static func routed(_ uri: String) -> String {
        embeddedLock.lock()
        let loaded = embeddedDriverLoaded
        embeddedLock.unlock()
        guard loaded, uri.hasPrefix("qemu:///"), embeddedRoot(uri) == nil else { return uri }
        return "qemu+unix:///" + uri.dropFirst("qemu:///".count)
    }

    /// The `root` of a `qemu:///embed?root=…` URI.
    static func embeddedRoot(_ uri: String) -> String? {
        guard let c = URLComponents(string: uri), c.scheme == "qemu", c.host?.isEmpty ?? true, c.path == "/embed",
              let root = c.queryItems?.first(where: { $0.name == "root" })?.value, !root.isEmpty else { return nil }
        return root
    }

    /// The live pointer, or an error once closed.
    func handle() throws -> OpaquePointer {
        lock.lock(); defer { lock.unlock() }
        guard let p = pointer else { throw LibvirtError.wrapper("the libvirt connection to \(uri) is closed") }
        return p
    }

    /// Starts a transient domain from `xml` (`virDomainCreateXML`). With `autodestroy` the
    /// domain is destroyed when this connection closes. The embedded driver of libvirt 9.0
    /// refuses the flag ("Domain autodestroy not supported for embedded drivers yet"), so
    /// there this connection destroys such domains itself in `close()`.
    public func createDomain(xml: String, paused: Bool = false, autodestroy: Bool = true) throws -> LibvirtDomain {
        var flags: UInt32 = 0
        if paused { flags |= VIR_DOMAIN_START_PAUSED.rawValue }
        if autodestroy && !isEmbedded { flags |= VIR_DOMAIN_START_AUTODESTROY.rawValue }
        guard let d = virDomainCreateXML(try handle(), xml, flags) else {
            throw LibvirtError.last("virDomainCreateXML")
        }
        let domain = LibvirtDomain(pointer: d, connection: self)
        if autodestroy && isEmbedded, let uuid = domain.uuid {
            lock.lock(); autodestroyUUIDs.insert(uuid); lock.unlock()
        }
        return domain
    }

    /// Starts a domain from a state file written by ``LibvirtDomain/save(to:)``
    /// (`virDomainRestoreFlags`), with `xml` in place of the saved definition when given: it
    /// must keep the saved name, UUID and devices (libvirt checks the ABI), and may change
    /// host-side paths such as serial files and sockets. `autodestroy` as for ``createDomain``.
    ///
    /// A restored copy reuses its saved domain's name (libvirt refuses another), so while
    /// libvirt still removes the previous copy of that name the restore is retried, for at most
    /// `nameWait` seconds; then the error names both states.
    public func restoreDomain(from path: String, xml: String?, name: String, autodestroy: Bool = true,
                              nameWait: Double = 10) throws -> LibvirtDomain {
        let deadline = Date().addingTimeInterval(nameWait)
        var waited = 0.0
        while virDomainRestoreFlags(try handle(), path, xml, 0) != 0 {
            let e = LibvirtError.last("virDomainRestoreFlags(\(path))")
            guard e.isNameStillTaken else { throw e }
            guard Date() < deadline else {
                let previous = (try? domain(named: name)).flatMap { $0 }.map { "still listed, \($0.isActive() ? "active" : "inactive")" } ?? "no longer listed"
                throw LibvirtError(code: e.code, domain: e.domain,
                                   message: "\(e.message) (retried for \(Int(waited)) s; the earlier domain '\(name)' is \(previous))")
            }
            Thread.sleep(forTimeInterval: 0.05)
            waited += 0.05
        }
        guard let domain = try self.domain(named: name) else {
            throw LibvirtError.wrapper("the domain restored from \(path) is not called \(name)")
        }
        if autodestroy, let uuid = domain.uuid {
            // Neither driver has an autodestroy flag for restore: this connection destroys it on close.
            lock.lock(); autodestroyUUIDs.insert(uuid); lock.unlock()
        }
        return domain
    }

    /// The domain definition kept in a state file (`virDomainSaveImageGetXMLDesc`).
    public func savedDomainXML(at path: String) throws -> String {
        guard let s = virDomainSaveImageGetXMLDesc(try handle(), path, 0) else {
            throw LibvirtError.last("virDomainSaveImageGetXMLDesc(\(path))")
        }
        defer { free(s) }
        return String(cString: s)
    }

    /// The running (and paused) domains.
    public func activeDomains() throws -> [LibvirtDomain] {
        var list: UnsafeMutablePointer<OpaquePointer?>?
        let n = virConnectListAllDomains(try handle(), &list, VIR_CONNECT_LIST_DOMAINS_ACTIVE.rawValue)
        guard n >= 0 else { throw LibvirtError.last("virConnectListAllDomains") }
        defer { free(list) }
        return (0..<Int(n)).compactMap { i in list?[i].map { LibvirtDomain(pointer: $0, connection: self) } }
    }

    /// The domain called `named`, or nil when there is none.
    public func domain(named name: String) throws -> LibvirtDomain? {
        guard let d = virDomainLookupByName(try handle(), name) else {
            let error = LibvirtError.last("virDomainLookupByName")
            if error.isNoDomain { return nil }
            throw error
        }
        return LibvirtDomain(pointer: d, connection: self)
    }

    /// Calls `handler` on the event-loop thread for every lifecycle event of any domain;
    /// returns a token for `removeLifecycleHandler`. The handler must not call libvirt
    /// synchronously (the loop it would wait on is the one running it): hand work off.
    public func addLifecycleHandler(_ handler: @escaping @Sendable (_ domainName: String, _ event: LifecycleEvent) -> Void) throws -> Int32 {
        let p = try handle()
        lock.lock(); defer { lock.unlock() }
        if lifecycleCallbackID == nil {
            // libvirt tracks a callback by its function, not its opaque pointer ("event
            // callback already tracked"), so one registration per connection dispatches to
            // every handler. libvirt holds a reference to the table until it deregisters.
            let opaque = Unmanaged.passRetained(lifecycleHandlers).toOpaque()
            let id = isolab_register_lifecycle(p, { _, dom, event, detail, opaque in
                guard let opaque, let dom else { return 0 }
                let table = Unmanaged<HandlerTable>.fromOpaque(opaque).takeUnretainedValue()
                let name = virDomainGetName(dom).map { String(cString: $0) } ?? ""
                table.dispatch(name, LifecycleEvent(event: event, detail: detail))
                return 0
            }, opaque, { opaque in
                if let opaque { Unmanaged<HandlerTable>.fromOpaque(opaque).release() }
            })
            guard id >= 0 else {
                Unmanaged<HandlerTable>.fromOpaque(opaque).release()
                throw LibvirtError.last("virConnectDomainEventRegisterAny")
            }
            lifecycleCallbackID = id
        }
        return lifecycleHandlers.add(handler)
    }

    /// Stops calling the handler registered under `token`.
    public func removeLifecycleHandler(_ token: Int32) {
        lifecycleHandlers.remove(token)
    }

    /// libvirt's version, e.g. `9.0.0`.
    public func libvirtVersion() -> String {
        var v: UInt = 0
        guard let p = try? handle(), virConnectGetLibVersion(p, &v) == 0 else { return "unknown" }
        return Self.versionText(v)
    }

    /// The hypervisor's version, e.g. `7.2.22` for QEMU.
    public func hypervisorVersion() -> String {
        var v: UInt = 0
        guard let p = try? handle(), virConnectGetVersion(p, &v) == 0 else { return "unknown" }
        return Self.versionText(v)
    }

    static func versionText(_ v: UInt) -> String { "\(v / 1_000_000).\(v / 1000 % 1000).\(v % 1000)" }

    /// The QEMU command line libvirt would run for `xml` (`virConnectDomainXMLToNative`,
    /// format `qemu-argv`). Validates the XML the way starting it would, without starting it.
    public func domainXMLToNative(_ xml: String) throws -> String {
        guard let s = virConnectDomainXMLToNative(try handle(), "qemu-argv", xml, 0) else {
            throw LibvirtError.last("virConnectDomainXMLToNative")
        }
        defer { free(s) }
        return String(cString: s)
    }

    /// Deregisters the lifecycle handlers and closes the connection (destroying its
    /// autodestroy domains). Idempotent.
    public func close() {
        lock.lock()
        let p = pointer
        pointer = nil
        let callbackID = lifecycleCallbackID
        lifecycleCallbackID = nil
        let doomed = autodestroyUUIDs
        autodestroyUUIDs = []
        lock.unlock()
        guard let p else { return }
        if let callbackID { _ = virConnectDomainEventDeregisterAny(p, callbackID) }
        for uuid in doomed {
            if let d = virDomainLookupByUUIDString(p, uuid) {
                _ = virDomainDestroy(d)
                virDomainFree(d)
            }
            virResetLastError()
        }
        _ = virConnectClose(p)
    }
}

/// The lifecycle handlers of one connection, by token.
private final class HandlerTable: @unchecked Sendable {
    private let lock = NSLock()
    private var handlers: [Int32: @Sendable (String, LifecycleEvent) -> Void] = [:]
    private var next: Int32 = 1

    func add(_ handler: @escaping @Sendable (String, LifecycleEvent) -> Void) -> Int32 {
        lock.lock(); defer { lock.unlock() }
        let token = next
        next += 1
        handlers[token] = handler
        return token
    }

    func remove(_ token: Int32) {
        lock.lock(); defer { lock.unlock() }
        handlers[token] = nil
    }

    func dispatch(_ name: String, _ event: LifecycleEvent) {
        lock.lock()
        let current = handlers.sorted { $0.key < $1.key }.map(\.value)
        lock.unlock()
        for h in current { h(name, event) }
    }
}
