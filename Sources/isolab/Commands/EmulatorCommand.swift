import ArgumentParser
import Foundation
import IsolabEngine
import IsolabImages
import IsolabModel

extension ImagesCommand {
    /// `isolab images emulator [ID|PATH]…`: provides emulators (a catalog one fetched through
    /// isolab's private apt configuration and unpacked into its cache) and prints what each is
    /// and what it can build.
    struct Emulator: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Fetch emulators (vm-images/emulators.yaml ids, or a qemu-system-x86_64 path) and print their versions and facts.",
            discussion: """
            Facts are probed from the binary (-device help, -device X,help) and cached by its \
            sha256: which of isolab's device models it has and whether pcie-root-port has \
            disable-acs (else an ACS-less root port is built as an ioh3420).
            """)
        @Argument(help: "Emulator ids or paths (default: every catalog emulator).")
        var emulators: [String] = []
        @Option(help: "The data folder of a PATH, when it is not beside the binary.")
        var emulatorData: String?
        @OptionGroup var formatOptions: FormatOptions
        @OptionGroup var mirrorOptions: MirrorOptions

        func run() throws {
            var format = OutputFormat.text
            try reportingInputErrors { format = try formatOptions.accepted([.text, .json]) }
            let provisioner = try asInputOrExit { try Provisioner(log: { cliLogger.info("\($0)") }) }
            let ids = try emulators.isEmpty
                ? asInputOrExit { try provisioner.builder.recipe.emulatorCatalog().emulators.map(\.id) } : emulators
            let provided = try SignalTrap.cancellingImageBuilds {
                try EmulatorOptions.provide(ids.map { EmulatorSource.parse($0, data: emulatorData) }, with: provisioner)
            }
            if format == .json {
                let e = JSONEncoder()
                e.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
                print(String(decoding: try e.encode(provided), as: UTF8.self))
                return
            }
            for p in provided {
                print("\(p.label): \(p.facts.version)")
                print("  runs as: \(p.binary ?? "libvirt's default (\(p.qemu))")")
                print("  qemu sha256: \(p.qemuSHA256)")
                for d in p.packages { print("  package: \(d.name) \(d.version) sha256 \(d.sha256)") }
                let models = EmulatorFacts.probedModels.map { p.facts.has($0) ? $0 : "no \($0)" }
                print("  models: \(models.joined(separator: ", "))")
                print("  pcie-root-port disable-acs: \(p.facts.rootPortCanDisableACS ? "yes" : "no (an ACS-less root port is an ioh3420)")")
                print("  nvme sriov_max_vfs: \(p.facts.has(property: "sriov_max_vfs", of: "nvme") ? "yes" : "no")")
            }
        }
    }
}
