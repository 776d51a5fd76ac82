/// What stops the engine: bad input (exit 2), or the machine, not the fabric (exit 3).
public enum EngineError: Error, CustomStringConvertible, Sendable {
    /// Bad input: a file, option or id the user gave (exit 2); the text says what is accepted.
    case input(String)
    /// Images, emulators or the agent could not be provided.
    case provisioning(String)
    /// A libvirt connection could not be opened or could not run guests.
    case libvirt(String)
    /// Results or reports could not be written.
    case reporting(String)

    public var description: String {
        switch self {
        case .input(let s): return s
        case .provisioning(let s): return s
        case .libvirt(let s): return "libvirt: \(s)"
        case .reporting(let s): return "cannot write the reports: \(s)"
        }
    }
}
