import CLibvirt
import Foundation

/// A blocking libvirt data stream (`virStreamPtr`): a volume upload, or a guest's serial port
/// opened with ``LibvirtDomain/openConsole(_:)``. Works the same on the embedded driver, a
/// local daemon and a remote host, which is what lets isolab read a guest it shares no file
/// system with.
public final class LibvirtStream: @unchecked Sendable {
    private let pointer: OpaquePointer
    private let lock = NSLock()
    private var ended = false
    /// Keeps the connection open while the stream lives.
    public let connection: LibvirtConnection

    /// `nonBlocking`: the stream never blocks, and ``receive(max:)`` returns nil when nothing
    /// has arrived yet.
    init(connection: LibvirtConnection, nonBlocking: Bool = false) throws {
        let flags = nonBlocking ? UInt32(VIR_STREAM_NONBLOCK.rawValue) : 0
        guard let p = virStreamNew(try connection.handle(), flags) else { throw LibvirtError.last("virStreamNew") }
        pointer = p
        self.connection = connection
    }

    deinit {
        end(abort: true)
        virStreamFree(pointer)
    }

    var handle: OpaquePointer { pointer }

    /// Sends all of `data` (`virStreamSend`, repeated until every byte is taken).
    public func send(_ data: Data) throws {
        try data.withUnsafeBytes { (raw: UnsafeRawBufferPointer) in
            guard let base = raw.bindMemory(to: CChar.self).baseAddress else { return }
            var offset = 0
            while offset < raw.count {
                let n = virStreamSend(pointer, base + offset, raw.count - offset)
                if n == -2 { usleep(1000); continue }   // a non-blocking stream that is full
                guard n > 0 else { throw LibvirtError.last("virStreamSend") }
                offset += Int(n)
            }
        }
    }

    /// The bytes that have arrived, empty at the end of the stream. A blocking stream waits
    /// for some; a non-blocking one returns nil when none are there yet. Throws when the
    /// stream fails (its domain or connection went away mid-read).
    public func receive(max: Int = 65536) throws -> Data? {
        var buffer = [CChar](repeating: 0, count: max)
        let n = buffer.withUnsafeMutableBufferPointer { virStreamRecv(pointer, $0.baseAddress, max) }
        if n == -2 { return nil }
        if n < 0 { throw LibvirtError.last("virStreamRecv") }
        return Data(buffer.prefix(Int(n)).map { UInt8(bitPattern: $0) })
    }

    /// Ends the stream: `virStreamFinish` (every byte delivered) or, with `abort`, `virStreamAbort`.
    /// Idempotent; the first call decides.
    public func end(abort: Bool = false) {
        guard claimEnd() else { return }
        if (abort ? virStreamAbort(pointer) : virStreamFinish(pointer)) != 0 { virResetLastError() }
    }

    /// Ends the stream, reporting libvirt's error (an upload whose last bytes were refused).
    public func finish() throws {
        guard claimEnd() else { return }
        guard virStreamFinish(pointer) == 0 else { throw LibvirtError.last("virStreamFinish") }
    }

    /// True for the first caller only: the one that ends the stream.
    private func claimEnd() -> Bool {
        lock.withLock {
            defer { ended = true }
            return !ended
        }
    }
}

extension LibvirtDomain {
    /// Opens the guest's character device `device` (`serial0`, `serial1`; the device must use a
    /// pty) as a stream, taking it over from any other client (`virDomainOpenConsole` with
    /// `VIR_DOMAIN_CONSOLE_FORCE`). QEMU drops what a pty serial port writes while nothing
    /// holds it open, so open it while the domain is still paused.
    ///
    /// The stream is non-blocking (poll ``LibvirtStream/receive(max:)``), as virsh's console
    /// is. A blocking `virStreamRecv` on a remote connection can miss data for good: it looks
    /// at the stream's queue, lets go of the stream's lock, then queues a call that waits for
    /// the *next* packet (virNetClientStreamRecvPacket, libvirt 9.0 to today), and a packet the
    /// connection's other readers (the event loop, another stream's reader) queued in between
    /// wakes nobody. A guest that then stays quiet leaves its last bytes in the client's queue.
    public func openConsole(_ device: String) throws -> LibvirtStream {
        let stream = try LibvirtStream(connection: connection, nonBlocking: true)
        guard virDomainOpenConsole(handle, device, stream.handle, UInt32(VIR_DOMAIN_CONSOLE_FORCE.rawValue)) == 0 else {
            throw LibvirtError.last("virDomainOpenConsole(\(name), \(device))")
        }
        return stream
    }
}

extension LibvirtConnection {
    /// The connection still works (`virConnectIsAlive`): false once a remote host's daemon
    /// is gone or the network between is broken.
    public var isAlive: Bool {
        guard let p = try? handle() else { return false }
        let alive = virConnectIsAlive(p)
        if alive < 0 { virResetLastError() }
        return alive == 1
    }

    /// The host the URI names (`qemu+tcp://HOST/system` → HOST), nil for a local connection.
    public var remoteHost: String? {
        guard let c = URLComponents(string: uri), let host = c.host, !host.isEmpty else { return nil }
        return host
    }
}
