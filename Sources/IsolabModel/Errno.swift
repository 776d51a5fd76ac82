/// The errno values the model predicts, by Linux x86-64 name and number.
public enum Errno: Int32, Sendable, Codable, CaseIterable, CustomStringConvertible {
    case EPERM = 1
    case ENOENT = 2
    case EBADF = 9
    case EAGAIN = 11
    case EACCES = 13
    case EFAULT = 14
    case EBUSY = 16
    case ENODEV = 19
    case EINVAL = 22
    case ENOTTY = 25
    case ERANGE = 34
    case EBADFD = 77

    public var name: String {
        switch self {
        case .EPERM: return "EPERM"
        case .ENOENT: return "ENOENT"
        case .EBADF: return "EBADF"
        case .EAGAIN: return "EAGAIN"
        case .EFAULT: return "EFAULT"
        case .EACCES: return "EACCES"
        case .EBUSY: return "EBUSY"
        case .ENODEV: return "ENODEV"
        case .EINVAL: return "EINVAL"
        case .ENOTTY: return "ENOTTY"
        case .ERANGE: return "ERANGE"
        case .EBADFD: return "EBADFD"
        }
    }
    public var description: String { "\(name) (\(rawValue))" }
    public init?(name: String) {
        guard let e = Errno.allCases.first(where: { $0.name == name }) else { return nil }
        self = e
    }
}
