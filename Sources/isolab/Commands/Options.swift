import ArgumentParser
import Foundation
import IsolabEngine
import IsolabReport
import IsolabImages
import IsolabModel
import IsolabTopology
import IsolabVM

/// Output formats shared by the commands; each command accepts the ones it can write.
enum OutputFormat: String, ExpressibleByArgument, CaseIterable {
    case text, json, markdown, html
}

/// `--format`, defined once.
struct FormatOptions: ParsableArguments {
    @Option(help: "Output format: text, json, markdown or html (each command says which it writes).")
    var format: OutputFormat = .text

    /// The format, if this command writes it; else bad input naming the ones it does.
    func accepted(_ formats: [OutputFormat]) throws -> OutputFormat {
        guard formats.contains(format) else {
            throw InputError("--format: this command does not write \(format.rawValue) (accepted: \(formats.map(\.rawValue).joined(separator: ", ")))")
        }
        return format
    }
}

/// `--output`, defined once: the directory results and reports are written to.
struct OutputOptions: ParsableArguments {
    @Option(help: "Directory for the results and reports.")
    var output: String = "reports"
    @Option(help: "The KCIDB origin kcidb.json is submitted as (your CI system's name in KCIDB: lowercase letters, digits, _).")
    var kcidbOrigin: String = "isolab"

    func validate() throws {
        guard KCIDBRenderer.isValidOrigin(kcidbOrigin) else {
            throw ValidationError("--kcidb-origin: '\(kcidbOrigin)' is not a KCIDB origin (accepted: lowercase letters, digits and _, e.g. isolab)")
        }
    }
}

/// `--jobs`, defined once: guests at once (per libvirt connection).
struct JobsOptions: ParsableArguments {
    @Option(help: "Guests at once per libvirt connection (default: the matrix file's jobs, else the number of cores).")
    var jobs: Int?

    func validate() throws {
        if let jobs, jobs < 1 { throw ValidationError("--jobs: must be at least 1") }
    }

    /// The jobs asked for, else `fallback`, else the number of cores.
    func resolve(_ fallback: Int? = nil) -> Int { jobs ?? fallback ?? ProcessInfo.processInfo.activeProcessorCount }
}

/// `--emulator`, defined once: catalog ids (`vm-images/emulators.yaml`) or a developer's
/// `qemu-system-x86_64`, comma-separated or repeated (repeats accumulate).
struct EmulatorOptions: ParsableArguments {
    @Option(name: .long, help: "Emulators: vm-images/emulators.yaml ids (7.2, the host's QEMU; 10.0, Debian's, fetched into isolab's cache) or the path of a qemu-system-x86_64 (a developer's build); comma-separated or repeated (default: the matrix file's, else the host's).")
    var emulator: [String] = []
    @Option(help: "The data folder (pc-bios/ of a build tree, share/qemu of an install) of an --emulator PATH, when it is not beside the binary.")
    var emulatorData: String?

    /// Whether `--emulator` was given.
    var given: Bool { !emulator.isEmpty }

    /// The emulators asked for, in order and each once, or `fallback`.
    func sources(or fallback: [String]) -> [EmulatorSource] {
        var seen = Set<String>()
        let values = (given ? emulator.flatMap { $0.split(separator: ",").map(String.init) } : fallback).filter { seen.insert($0).inserted }
        return values.map { EmulatorSource.parse($0, data: emulatorData) }
    }

    /// The facts of the one emulator given (predict, explain); nil when none was given.
    func facts() throws -> EmulatorFacts? {
        guard given else { return nil }
        let sources = self.sources(or: [])
        guard sources.count == 1 else { throw InputError("--emulator: give one emulator (its facts decide what is realizable)") }
        let provisioner = try asInputOrExit { try Provisioner(log: { cliLogger.info("\($0)") }) }
        return try Self.provide(sources, with: provisioner)[0].facts
    }

    /// Provides each emulator (a catalog one fetched and unpacked once, every binary probed once):
    /// bad input exits 2 with one line, a failed fetch 3.
    static func provide(_ sources: [EmulatorSource], with provisioner: Provisioner) throws -> [ProvidedEmulator] {
        try asInputOrExit {
            var out: [ProvidedEmulator] = []
            for s in sources {
                let e = try provisioner.emulator(s)
                guard !out.contains(where: { $0.label == e.label }) else { continue }
                cliLogger.info("emulator \(e.label): \(e.facts.version)\(e.binary.map { ", \($0)" } ?? " (libvirt's default)")")
                out.append(e)
            }
            return out
        }
    }
}

/// `--connect`, defined once: libvirt connections, guests spread over them.
struct ConnectOptions: ParsableArguments {
    @Option(help: "libvirt connection URI (repeatable: guests are spread over them; default: the embedded driver, qemu:///embed; qemu:///system or qemu+ssh://HOST/system use a daemon).")
    var connect: [String] = []

    /// The URIs to open; nil stands for the embedded driver.
    var uris: [String?] { connect.isEmpty ? [nil] : connect.map { Optional($0) } }
}

/// `--kernel`, defined once for every command: ids, comma-separated or repeated (repeats
/// accumulate), `all` for the model catalog; commands that do not boot also take versions.
struct KernelOptions: ParsableArguments {
    @Option(name: .long, help: "Kernels: catalog ids (\(KernelGeneration.catalog.map(\.id).joined(separator: ", ")), or a vm-images/kernels.yaml id), 'all', or (predict, explain) a version such as 6.8.0; comma-separated or repeated.")
    var kernel: [String] = []

    /// Whether `--kernel` was given.
    var given: Bool { !kernel.isEmpty }

    /// The ids asked for, in order and without repeats (`all` expanded to the model catalog),
    /// or `fallback` when none was given.
    func ids(or fallback: [String] = ["all"]) -> [String] {
        var out: [String] = []
        for part in (kernel.isEmpty ? fallback : kernel).flatMap({ $0.split(separator: ",") }) {
            let id = part.trimmingCharacters(in: .whitespaces)
            for x in id == "all" ? KernelGeneration.catalog.map(\.id) : [id] where !out.contains(x) { out.append(x) }
        }
        return out
    }

    /// Ids that must boot: each must be a catalog kernel, else bad input listing them.
    func bootable(or fallback: [String]) throws -> [String] {
        let ids = ids(or: fallback)
        let bootable = Self.bootableIDs()
        for k in ids where !bootable.contains(k) {
            throw InputError("--kernel: '\(k)' is not a catalog kernel (accepted: \(bootable.joined(separator: ", ")), all)")
        }
        return ids
    }

    /// The kernels to predict for, each with the label it is reported under: a model catalog
    /// id, an id of `vm-images/kernels.yaml` (a source-built kernel with what its fragment
    /// builds), or a version.
    func resolve(or fallback: [String] = ["all"]) throws -> [(label: String, generation: KernelGeneration)] {
        return try ids(or: fallback).map { id in
            if let g = try Self.imageCatalogGeneration(id) { return (id, g) }
            guard let g = KernelGeneration.resolve(id) else {
                throw InputError("--kernel: unknown kernel '\(id)' (accepted: \(KernelGeneration.catalog.map(\.id).joined(separator: ", ")), all, or a version such as 6.8.0)")
            }
            return (id, g)
        }
    }
}

extension KernelOptions {
    /// The generation of a kernels.yaml entry that is not a model catalog id, with what its
    /// config fragment builds; nil for model catalog ids and unknown ids.
    static func imageCatalogGeneration(_ id: String) throws -> KernelGeneration? {
        try asInput { try MatrixKernel.imageCatalogGeneration(id) }
    }

    /// The kernel ids `run` and `matrix` can boot: the model catalog's and kernels.yaml's.
    static func bootableIDs() -> [String] {
        let images = (try? Recipe(directory: Recipe.locate()).catalog().available.map(\.id)) ?? []
        return KernelGeneration.catalog.map(\.id) + images.filter { id in !KernelGeneration.catalog.contains { $0.id == id } }
    }
}

/// `--debian-mirror`, defined once for every command that may fetch kernels or emulators.
/// It sets `ISOLAB_DEBIAN_MIRROR` for this process, the one place the images layer reads it.
struct MirrorOptions: ParsableArguments {
    @Option(help: ArgumentHelp("A Debian mirror to fetch kernels and emulators from (default: $ISOLAB_DEBIAN_MIRROR, else the Debian URIs of this machine's apt); Debian's archive keyring still verifies them.", valueName: "uri"))
    var debianMirror: String?

    func validate() throws {
        guard let debianMirror else { return }
        do { _ = try DebianSources.mirror(debianMirror) } catch { throw ValidationError("--debian-mirror: \(error)") }
        setenv(DebianSources.mirrorVariable, debianMirror, 1)
    }
}

/// `--boot`, defined once (`run`, `matrix`).
struct BootOptions: ParsableArguments {
    @Option(help: "Kernel entry: pvh (the uncompressed vmlinux at its PVH entry; the bzImage when the kernel has no PVH note) or bzimage.")
    var boot: BootPath = .pvh
    @Option(help: "Guest clock: host, or icount (counted in instructions, idle time skipped: device timers and sleeps cost no wall time, a busy boot takes about 1.5× as long, step milliseconds are guest time).")
    var clock: GuestClock = .host

    /// The clock asked for (argument-parser refused any other value).
    func resolveClock() throws -> GuestClock { clock }

    /// The boot path asked for (argument-parser refused any other value).
    func resolve() throws -> BootPath { boot }

    /// Logs, once per kernel, that its image falls back from the requested boot path.
    static func noteFallbacks(_ images: [String: GuestImage], boot: BootPath, log: (String) -> Void) {
        for (label, image) in images.sorted(by: { $0.key < $1.key }) {
            let k = image.bootKernel(boot)
            if let why = k.fallback { log("kernel \(label): booting \(k.boot.rawValue) instead of \(boot.rawValue): \(why)") }
        }
    }
}

// Enumerated option values: help and shell completion list them, and argument-parser refuses
// anything else with one line (isolab's main turns it into `isolab: …`, exit 2).
extension BootPath: ExpressibleByArgument {}
extension GuestClock: ExpressibleByArgument {}
extension IOMMUModel: ExpressibleByArgument {}

/// `--accel`: how QEMU runs guest code.
enum Accel: String, ExpressibleByArgument, CaseIterable {
    /// TCG, always (the default): /dev/kvm here can hang a guest.
    case tcg
    /// KVM, once a probe boot proved it works (else exit 3).
    case kvm
    /// KVM if the probe works, else TCG.
    case auto
}

/// Bad input: printed as one line on stderr, exit status 2.
struct InputError: Error, CustomStringConvertible {
    var description: String
    init(_ d: String) { description = d }
}

/// Loads topology files, turning every failure into one line on stderr and exit status 2.
func loadTopologies(_ paths: [String]) throws -> [Topology] {
    try asInput { try TopologySet.load(paths) }
}

/// The engine's bad-input errors as one `isolab: …` line and exit 2, anything else exit 3.
func asInputOrExit<T>(_ body: () throws -> T) throws -> T {
    do { return try body() } catch let e as EngineError {
        if case .input(let s) = e { Isolab.badInput(s) }
        cliLogger.warning("\(e)")
        throw ExitCode(3)
    }
}

/// The engine's bad-input errors as the CLI's.
func asInput<T>(_ body: () throws -> T) throws -> T {
    do { return try body() } catch let e as EngineError {
        guard case .input(let s) = e else { throw e }
        throw InputError(s)
    }
}

/// Runs a command body, reporting bad input the way isolab promises: one line, exit 2.
func reportingInputErrors(_ body: () throws -> Void) throws {
    do {
        try body()
    } catch let e as InputError {
        FileHandle.standardError.write(Data(("isolab: " + e.description + "\n").utf8))
        throw ExitCode(2)
    }
}
