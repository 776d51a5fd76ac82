import Foundation

/// Every failure of the images component, each with a sentence a user can act on.
public enum ImagesError: Error, LocalizedError, CustomStringConvertible, Equatable {
    /// A catalog or recipe file is malformed: `file:line: field: problem (accepted: …)`.
    case invalidFile(file: String, line: Int?, field: String?, problem: String, accepted: String?)
    /// The catalog has no kernel with this id.
    case unknownKernel(id: String, known: [String])
    /// A catalog kernel the archive cannot serve any more (`unavailable:` in kernels.yaml).
    case kernelUnavailable(id: String, reason: String)
    /// A developer's emulator binary that cannot be used as it is.
    case badEmulator(path: String, problem: String)
    /// An emulator id that is not in `vm-images/emulators.yaml` (and not a binary's path).
    case unknownEmulator(id: String, known: [String])
    /// No Debian archive URI could be found in the machine's apt configuration.
    case noDebianSources(searched: [String])
    /// `--debian-mirror` / `ISOLAB_DEBIAN_MIRROR` is not a URI apt can fetch from.
    case badMirror(String)
    /// A pinned version is not served by the archive.
    case versionNotAvailable(package: String, suite: String, wanted: String, available: [String])
    /// apt knows no such package in that suite.
    case packageNotFound(package: String, suites: [String])
    /// A downloaded .deb does not match the sha256 the archive's signed index lists.
    case checksumMismatch(file: String, expected: String, actual: String)
    /// An external command failed.
    case commandFailed(command: String, status: Int32, output: String)
    /// A tool ran past its deadline and was killed with what it started.
    case commandTimedOut(command: String, seconds: Double)
    /// The build was cancelled (Ctrl-C); nothing half-built was published.
    case cancelled(command: String)
    /// A required tool is not installed.
    case toolMissing(tool: String, package: String)
    /// The unpacked kernel tree does not have the expected shape.
    case badKernelTree(path: String, problem: String)
    /// The file is not a bzImage with a readable version string.
    case notABzImage(path: String, problem: String)
    /// Modules the recipe requires are neither modules nor built in.
    case missingModules(kernelRelease: String, modules: [String])
    /// The agent binary cannot be used.
    case badAgent(path: String, problem: String)
    /// Any other I/O failure, with the path involved.
    case io(path: String, problem: String)
    /// Compiling a source-built catalog kernel failed; the whole log is kept at `log`.
    case kernelBuildFailed(kernel: String, step: String, log: String, output: String)

    /// Whether the user's input is at fault (a file, a kernel tree, an id, an agent binary),
    /// rather than the machine or the archive: the CLI exits 2 for these, 3 otherwise.
    public var isBadInput: Bool {
        switch self {
        case .invalidFile, .unknownKernel, .kernelUnavailable, .unknownEmulator, .badEmulator, .badKernelTree, .notABzImage, .missingModules, .badAgent: return true
        default: return false
        }
    }

    public var description: String {
        switch self {
        case let .invalidFile(file, line, field, problem, accepted):
            var s = file
            if let line { s += ":\(line)" }
            s += ": "
            if let field { s += "\(field): " }
            s += problem
            if let accepted { s += " (accepted: \(accepted))" }
            return s
        case let .badEmulator(path, problem):
            return "--emulator \(path): \(problem)"
        case let .unknownEmulator(id, known):
            return "unknown emulator '\(id)' (accepted: \(known.joined(separator: ", ")), or the path of a qemu-system-x86_64)"
        case let .kernelUnavailable(id, reason):
            return "kernel '\(id)' cannot be fetched: \(reason) (vm-images/kernels.yaml marks it unavailable)"
        case let .unknownKernel(id, known):
            return "unknown kernel '\(id)'; the catalog has: \(known.joined(separator: ", "))"
        case let .noDebianSources(searched):
            return "no Debian archive URI found in \(searched.joined(separator: ", ")); "
                + "configure a 'debian' entry in /etc/apt/sources.list.d/*.sources, or name a Debian mirror "
                + "with --debian-mirror URI (or ISOLAB_DEBIAN_MIRROR)"
        case let .badMirror(uri):
            return "Debian mirror '\(uri)' is not a URI apt fetches from (accepted: http://, https:// or file:// URIs of a "
                + "Debian archive, the folder that holds dists/ and pool/)"
        case let .versionNotAvailable(package, suite, wanted, available):
            let list = available.isEmpty ? "none" : available.joined(separator: ", ")
            return "\(package) version \(wanted) is not in \(suite) any more; the archive has: \(list). "
                + "Change or remove 'version:' in the catalog"
        case let .packageNotFound(package, suites):
            return "package \(package) not found in \(suites.joined(separator: ", "))"
        case let .checksumMismatch(file, expected, actual):
            return "\(file): sha256 \(actual) does not match the archive's \(expected); delete it and retry"
        case let .commandTimedOut(command, seconds):
            return "\(command) was still running after \(Int(seconds)) s and was killed with what it started"
        case let .cancelled(command):
            return "cancelled while running \(command); nothing half-built was kept in the cache"
        case let .commandFailed(command, status, output):
            let tail = output.split(separator: "\n").suffix(15).joined(separator: "\n")
            return "`\(command)` exited with status \(status):\n\(tail)"
        case let .toolMissing(tool, package):
            return "\(tool) not found; install the Debian package \(package) (ci/bootstrap.sh does)"
        case let .badKernelTree(path, problem):
            return "\(path): \(problem)"
        case let .notABzImage(path, problem):
            return "\(path) is not a usable bzImage: \(problem)"
        case let .missingModules(release, modules):
            return "kernel \(release) lacks required modules (neither a .ko nor in modules.builtin): "
                + modules.joined(separator: ", ")
        case let .badAgent(path, problem):
            return "agent \(path): \(problem)"
        case let .io(path, problem):
            return "\(path): \(problem)"
        case let .kernelBuildFailed(kernel, step, log, output):
            let tail = output.split(separator: "\n").suffix(12).joined(separator: "\n")
            return "building kernel \(kernel): `\(step)` failed (full log: \(log)); install the build tools with ci/bootstrap.sh if one is missing:\n\(tail)"
        }
    }

    public var errorDescription: String? { description }
}
