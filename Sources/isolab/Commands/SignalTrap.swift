import ArgumentParser
import Dispatch
import Foundation
import IsolabImages
import IsolabVM

/// Turns SIGINT and SIGTERM into a cancellation: running guests are destroyed, finished results
/// are still written, and the command exits 130.
///
/// One pair of dispatch sources serves the whole process (libdispatch on Linux installs its
/// handler for a signal once; a second source after the first was cancelled never fires), and
/// the innermost live trap gets the signal. With no trap alive, a signal ends the process with
/// 130, as the default disposition would.
final class SignalTrap: @unchecked Sendable {
    private static let lock = NSLock()
    nonisolated(unsafe) private static var handlers: [(id: Int, run: @Sendable () -> Void)] = []
    nonisolated(unsafe) private static var sources: [DispatchSourceSignal] = []
    nonisolated(unsafe) private static var nextID = 0
    private let id: Int

    convenience init(cancel: Cancellation, log: @escaping (String) -> Void) {
        self.init {
            if !cancel.isCancelled { log("interrupted: destroying the running guests") }
            cancel.cancel()
        }
    }

    init(onSignal: @escaping @Sendable () -> Void) {
        Self.lock.lock(); defer { Self.lock.unlock() }
        if Self.sources.isEmpty {
            for sig in [SIGINT, SIGTERM] {
                signal(sig, SIG_IGN)
                let source = DispatchSource.makeSignalSource(signal: sig, queue: .global())
                source.setEventHandler { SignalTrap.deliver() }
                source.resume()
                Self.sources.append(source)
            }
        }
        Self.nextID += 1
        id = Self.nextID
        Self.handlers.append((id, onSignal))
    }

    private static func deliver() {
        lock.lock()
        let current = handlers.last?.run
        lock.unlock()
        guard let current else { exit(130) }
        current()
    }

    func release() {
        Self.lock.lock(); defer { Self.lock.unlock() }
        Self.handlers.removeAll { $0.id == id }
    }

    /// Runs image builds so that Ctrl-C (or SIGTERM) ends every tool they run, with what it
    /// started (`Shell.cancelAll()`), and the command exits 130. A build in progress lives in
    /// the cache's tmp/ and is removed, never published.
    static func cancellingImageBuilds<T>(_ body: () throws -> T) throws -> T {
        let trap = SignalTrap { Shell.cancelAll() }
        defer { trap.release() }
        do {
            return try body()
        } catch let e as ImagesError {
            guard case .cancelled = e else { throw e }
            cliLogger.warning("interrupted: \(e.description)")
            throw ExitCode(130)
        }
    }
}
