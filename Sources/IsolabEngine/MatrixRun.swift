import Foundation
import IsolabImages
import IsolabLibvirt
import IsolabModel
import IsolabProtocol
import IsolabReport
import IsolabVM

/// A matrix's whole life: provision every kernel's image, run every cell's scenarios (each
/// `repetitions` times) over the libvirt connections, judge every observation against the
/// model. `isolab matrix`, `isolab run` and the benches call it; they only parse and print.
public struct MatrixRun {
    public var cells: [Cell]
    /// Where each kernel label's image comes from.
    public var kernels: [String: KernelSource]
    /// The emulators the cells name, by label, provided (see ``Provisioner/emulator(_:)``).
    public var emulators: [String: ProvidedEmulator]
    public var repetitions = 1
    public var settings = RunSettings()
    /// libvirt URIs; nil is the embedded driver.
    public var connections: [String?] = [nil]
    /// Guests at once per connection.
    public var jobs = ProcessInfo.processInfo.activeProcessorCount
    /// One saved boot per fabric, restored for each scenario.
    public var snapshots = true
    /// How guests run: TCG (the default: a paravirtual /dev/kvm can hang guests), KVM once a
    /// probe boot on the first connection proves it works (else a libvirt error), or KVM when
    /// the probe works and TCG otherwise.
    public var accel: AccelChoice = .tcg
    /// Where measured guest costs are kept (``CostBook``): read to plan which boots to save and
    /// in what order, updated with this run's guests. nil: the typical figures, nothing kept.
    public var costBook: String? = MatrixRun.defaultCostBook()
    /// Saved boots kept between runs (``BootCache``, embedded driver only): a fabric booted once
    /// starts from its saved boot in later runs. nil (`--no-boot-cache`): every run boots.
    public var bootCache: BootCache? = BootCache(directory: BootCache.defaultDirectory())

    /// `$ISOLAB_CACHE_DIR` or `$XDG_CACHE_HOME/isolab` (else ~/.cache/isolab) + `/costs.json`.
    public static func defaultCostBook() -> String {
        ImageCache.defaultRoot() + "/costs.json"
    }

    /// `--accel`.
    public enum AccelChoice: String, Sendable, CaseIterable {
        case tcg, kvm, auto
    }

    public init(cells: [Cell], kernels: [String: KernelSource], emulators: [String: ProvidedEmulator]) {
        self.cells = cells
        self.kernels = kernels
        self.emulators = emulators
    }

    /// What a finished matrix gives back.
    public struct Outcome {
        public var document: ResultsDocument
        public var observations: [VMObservation]
        public var images: [String: GuestImage]
        /// Seconds from the first guest's start to the last one's end.
        public var wall: Double
        public var cancelled: Bool
        /// The KVM probe's answer, when `accel` asked for one.
        public var kvmProbe: AccelProbe.Result?
        /// The guest seconds the plan expected (from the cost book, else typical figures).
        public var expectedVMSeconds: Double
    }

    /// The guest image of every kernel the cells name, in label order.
    public func provision(_ provisioner: Provisioner) throws -> [String: GuestImage] {
        var images: [String: GuestImage] = [:]
        for k in Set(cells.map(\.kernel)).sorted() {
            guard let source = kernels[k] else { throw EngineError.provisioning("kernel \(k): no source given") }
            do { images[k] = try provisioner.image(source) } catch let e as EngineError { throw e } catch let e as ImagesError {
                if case .cancelled = e { throw e }
                throw EngineError.provisioning(String(describing: e))
            }
        }
        return images
    }

    /// The programs each cell's fabric ships for its `selftest` steps, by topology file.
    public func programs(_ provisioner: Provisioner) throws -> [String: [String: String]] {
        var out: [String: [String: String]] = [:]
        for cell in cells where cell.unrealizable.isEmpty && out[cell.topology.file] == nil {
            out[cell.topology.file] = try provisioner.programs(for: cell.topology)
        }
        return out
    }

    /// How many guests ``run(_:observer:cancellation:provisioned:)`` will start.
    public var requestCount: Int {
        repetitions * cells.filter(\.unrealizable.isEmpty).reduce(0) { $0 + settings.scenarios(of: $1.topology).count }
    }

    /// One request per scenario per realizable cell per repetition, with the cell and
    /// repetition each belongs to.
    public func requests(images: [String: GuestImage], runsRoot: String = RunsDirectory.root(),
                         programs: [String: [String: String]] = [:])
        -> [(request: RunRequest, cell: Int, repetition: Int)] {
        var out: [(RunRequest, Int, Int)] = []
        for rep in 0..<repetitions {
            for (ci, cell) in cells.enumerated() where cell.unrealizable.isEmpty {
                for r in settings.requests(cell.topology, image: images[cell.kernel]!, kernel: cell.kernel,
                                           emulator: emulators[cell.emulator], runsRoot: runsRoot,
                                           programs: programs[cell.topology.file] ?? [:]) {
                    out.append((r, ci, rep))
                }
            }
        }
        RunsDirectory.prune(runsRoot, keep: max(200, out.count * 2))
        return out
    }

    /// Opens the connections (closed by the caller).
    public func connect() throws -> [LibvirtConnection] {
        do { return try connections.map { try LibvirtConnection.open(connect: $0) } } catch {
            throw EngineError.libvirt("cannot connect: \(error)")
        }
    }

    /// Provisions, runs and judges. `cancellation` stops the guests (finished ones are still judged).
    public func run(_ provisioner: Provisioner, observer: FleetObserver? = nil,
                    cancellation: Cancellation = Cancellation(),
                    provisioned: ([String: GuestImage]) -> Void = { _ in }) throws -> Outcome {
        let images = try provision(provisioner)
        provisioned(images)
        var planned = requests(images: images, programs: try programs(provisioner))
        let connections = try connect()
        defer { connections.forEach { $0.close() } }
        var probe: AccelProbe.Result?
        if accel != .tcg, let first = planned.first?.request {
            let runner: GuestRunner
            do { runner = try GuestRunner(connection: connections[0]) } catch { throw EngineError.libvirt("\(error)") }
            let result = AccelProbe.probeKVM(runner: runner, image: first.image, kernelLabel: first.kernelLabel,
                                             directory: RunsDirectory.new(in: RunsDirectory.root(), label: "kvm-probe"))
            if result.works {
                for i in planned.indices { planned[i].request.accel = .kvm }
            } else if accel == .kvm {
                throw EngineError.libvirt("--accel kvm: KVM does not work here (\(result.reason ?? "no answer")); use --accel tcg or auto")
            }
            probe = result
        }
        var fleet = Fleet(connections: connections, jobs: jobs, snapshots: snapshots, cancellation: cancellation)
        var book = costBook.map(CostBook.load)
        fleet.costs = book
        fleet.bootCache = snapshots ? bootCache : nil
        let expected = fleet.expectedSeconds(planned.map(\.request))
        let started = Date()
        let observations = try fleet.run(planned.map(\.request), observer: observer)
        let wall = Date().timeIntervalSince(started)
        if let path = costBook, !cancellation.isCancelled {
            let owner = fleet.connectionIndex(planned.map(\.request))
            let stores = fleet.stores
            book?.record(keyed: planned.indices.map { (CostBook.key(planned[$0].request, store: stores[owner[$0]]), observations[$0]) })
            book?.save(path)
        }
        let environment = Environment(isolab: Self.isolabVersion, qemu: connections[0].hypervisorVersion(),
                                      libvirt: connections[0].libvirtVersion())
        var document = judge(planned.map { ($0.cell, $0.repetition) }, observations: observations, images: images,
                             environment: environment)
        document.emulators = emulators.keys.sorted().map { emulators[$0]!.record(libvirt: environment.libvirt) }
        document.wallSeconds = wall
        return Outcome(document: document, observations: observations, images: images, wall: wall,
                       cancelled: cancellation.isCancelled, kvmProbe: probe, expectedVMSeconds: expected)
    }

    /// Every cell judged against the model (an unrealizable cell with its reasons, no observation).
    public func judge(_ owners: [(cell: Int, repetition: Int)], observations: [VMObservation],
                      images: [String: GuestImage], environment: Environment) -> ResultsDocument {
        var inputs: [ResultsDocument.Input] = []
        for (ci, cell) in cells.enumerated() {
            let reps = (0..<repetitions).map { rep in zip(owners, observations).filter { $0.0.cell == ci && $0.0.repetition == rep }.map(\.1) }
            // Judged against what the booted kernel's config builds (an image records it).
            let generation = images[cell.kernel].flatMap(KernelGeneration.of) ?? cell.generation
            var input = ResultsDocument.Input(prediction: Predictor.predict(cell.topology, kernel: generation),
                                              kernelLabel: cell.kernel, repetitions: reps, topologySHA256: cell.sha256)
            if let e = emulators[cell.emulator] {
                input.emulator = cell.emulator
                input.environment = Environment(isolab: environment.isolab, qemu: e.facts.shortVersion, libvirt: environment.libvirt)
            }
            inputs.append(input)
        }
        let builds = images.keys.sorted().map { Provisioner.kernelBuild(label: $0, image: images[$0]!, source: kernels[$0]) }
        return ResultsDocument(isolab: Self.isolabVersion, environment: environment, kernels: builds, inputs: inputs)
    }

    /// The isolab version results record (set by the CLI from its configuration).
    nonisolated(unsafe) public static var isolabVersion = "dev"
}

/// Writes a results document and every rendering of it into a directory.
public enum ReportFiles {
    /// Writes results.json, results.xml (JUnit), results.tap, summary.md, report.html and
    /// kcidb.json (KCIDB v5.3, submitted as `kcidbOrigin`) into `directory`, and history.json,
    /// .md and .html (``HistoryReport``) when the results span several kernels or emulators.
    public static func write(_ doc: ResultsDocument, to directory: String, kcidbOrigin: String = "isolab") throws {
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            let files: [(String, String)] = [
                ("results.json", try doc.json()),
                ("results.xml", JUnitRenderer.render(doc)),
                ("results.tap", TAPRenderer.render(doc)),
                ("summary.md", MarkdownRenderer.render(doc)),
                ("report.html", HTMLRenderer.render(doc)),
                ("kcidb.json", try KCIDBRenderer.render(doc, origin: kcidbOrigin)),
            ]
            var all = files
            // Several kernels or emulators: in which release did each observation change?
            let history = HistoryReport(doc)
            if history.kernels.count > 1 || history.emulators.count > 1 {
                all += [("history.json", try history.json()), ("history.md", history.markdown()), ("history.html", history.html())]
            }
            for (name, text) in all {
                try text.write(toFile: directory + "/" + name, atomically: true, encoding: .utf8)
            }
        } catch {
            throw EngineError.reporting("\(directory): \(error)")
        }
    }
}
