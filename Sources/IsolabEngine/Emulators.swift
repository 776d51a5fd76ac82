import Foundation
import IsolabImages
import IsolabModel
import IsolabReport

/// Where an emulator comes from.
public enum EmulatorSource: Sendable, Equatable {
    /// A `vm-images/emulators.yaml` id (`7.2`, the host's; `10.0`, Debian packages).
    case catalog(String)
    /// A developer's `qemu-system-x86_64`, with its data folder when it is not beside it.
    case build(path: String, data: String?)

    /// An `--emulator` value: a path when it names a file, else a catalog id.
    public static func parse(_ text: String, data: String? = nil) -> EmulatorSource {
        text.contains("/") || FileManager.default.isExecutableFile(atPath: text) ? .build(path: text, data: data) : .catalog(text)
    }
}

extension Provisioner {
    /// The emulator ready to run guests: fetched and unpacked when it is a catalog one (once,
    /// cached by content), its facts probed from the binary (cached by its sha256).
    public func emulator(_ source: EmulatorSource) throws -> ProvidedEmulator {
        do {
            var provider = EmulatorProvider(cache: builder.cache)
            provider.log = builder.log
            switch source {
            case .catalog(let id):
                return try provider.provide(try builder.recipe.emulatorCatalog().emulator(id: id))
            case .build(let path, let data):
                return try provider.provide(path: path, data: data)
            }
        } catch let e as ImagesError where e.isBadInput {
            throw EngineError.input(e.description)
        } catch let e as ImagesError {
            throw EngineError.provisioning("emulator: \(e.description)")
        }
    }

    /// The host's catalog emulator id (libvirt's default), `7.2` in the shipped catalog.
    public func hostEmulatorID() throws -> String {
        guard let id = try builder.recipe.emulatorCatalog().host?.id else {
            throw EngineError.input("\(builder.recipe.emulatorCatalogPath): no emulator with host: (the host's QEMU)")
        }
        return id
    }
}

extension ProvidedEmulator {
    /// The matrix axis value.
    public var matrixEmulator: MatrixEmulator { MatrixEmulator(label: label, facts: facts) }

    /// What the results record of it, with the libvirt that drove it.
    public func record(libvirt: String?) -> EmulatorBuild {
        EmulatorBuild(label: label, version: facts.version, binary: binary, binarySha256: qemuSHA256,
                      packages: packages.map { KernelPackage(name: $0.name, version: $0.version, sha256: $0.sha256) },
                      libvirt: libvirt)
    }
}
