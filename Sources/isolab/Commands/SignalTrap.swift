import Dispatch
import Foundation
import IsolabVM

/// Turns SIGINT and SIGTERM into a cancellation: running guests are destroyed, finished results
/// are still written, and the command exits 130.
final class SignalTrap: @unchecked Sendable {
    private var sources: [DispatchSourceSignal] = []

    init(cancel: Cancellation, log: @escaping (String) -> Void) {
        for sig in [SIGINT, SIGTERM] {
            signal(sig, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: sig, queue: .global())
            source.setEventHandler {
                if !cancel.isCancelled { log("interrupted: destroying the running guests") }
                cancel.cancel()
            }
            source.resume()
            sources.append(source)
        }
    }

    func release() {
        for s in sources { s.cancel() }
        sources = []
    }
}
