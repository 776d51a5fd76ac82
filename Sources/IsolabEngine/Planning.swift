import Foundation
import IsolabImages
import IsolabModel
import IsolabTopology

extension MatrixKernel {
    /// A catalog kernel: a model catalog id (`6.1`) by its generation; another
    /// `vm-images/kernels.yaml` id by its entry's generation, with what its config fragment
    /// builds (`6.12-iommufd`).
    public static func catalog(_ id: String) throws -> MatrixKernel {
        if let g = try imageCatalogGeneration(id) { return MatrixKernel(label: id, generation: g) }
        guard let g = KernelGeneration.resolve(id) else {
            throw EngineError.input("--kernel: unknown kernel '\(id)' (accepted: \(KernelGeneration.catalog.map(\.id).joined(separator: ", ")), all, or a version such as 6.8.0)")
        }
        return MatrixKernel(label: id, generation: g)
    }

    /// The generation of a kernels.yaml entry that is not a model catalog id, with what its
    /// config fragment builds; nil for model catalog ids and unknown ids.
    public static func imageCatalogGeneration(_ id: String) throws -> KernelGeneration? {
        guard !KernelGeneration.catalog.contains(where: { $0.id == id }),
              let recipe = try? Recipe(directory: Recipe.locate()), let catalog = try? recipe.catalog(),
              let entry = catalog.kernels.first(where: { $0.id == id }) else { return nil }
        guard let g = KernelGeneration.resolve(entry.generation) else {
            throw EngineError.input("\(recipe.catalogPath): kernel '\(id)': generation '\(entry.generation)' is not a model generation (accepted: \(KernelGeneration.catalog.map(\.id).joined(separator: ", ")) or a version)")
        }
        guard let fragment = entry.build else { return g }
        let path = (recipe.directory as NSString).appendingPathComponent(fragment)
        guard let config = try? KernelConfig(path: path) else { return g }
        // The build is `make tinyconfig` plus the fragment: a symbol the fragment leaves out
        // keeps tinyconfig's answer, off.
        var values = config.values
        for symbol in KernelConfig.modelSymbols where values[symbol] == nil { values[symbol] = "n" }
        return g.configured(by: values)
    }
}

/// Topology files loaded as one catalog: every file valid, names unique.
public enum TopologySet {
    /// The topologies of `paths`, in order; the first bad file is one located error.
    public static func load(_ paths: [String]) throws -> [Topology] {
        var out: [Topology] = []
        var names: [String: String] = [:]
        for p in paths {
            let t: Topology
            do { t = try TopologyLoader.load(path: p) } catch let e as TopologyError { throw EngineError.input(e.description) }
            if let other = names[t.name] {
                throw EngineError.input("\(p): name '\(t.name)' is also the name of \(other); names are unique in a catalog")
            }
            names[t.name] = p
            out.append(t)
        }
        return out
    }
}

extension MatrixPlanner {
    /// The cells of a matrix file: its fabrics (globs) × `kernels` (default: the file's) ×
    /// its vIOMMUs × `emulators`.
    public static func cells(matrix: MatrixFile, kernels: [MatrixKernel]? = nil, emulators: [MatrixEmulator]) throws -> [Cell] {
        let files: [String]
        do { files = try matrix.expandFabrics() } catch let e as TopologyError { throw EngineError.input(e.description) }
        let topologies = try TopologySet.load(files).map { ($0, fileSHA256($0.file)) }
        let ks = try kernels ?? matrix.kernels.map(MatrixKernel.catalog)
        return cells(topologies: topologies, kernels: ks, iommus: matrix.iommus, emulators: emulators)
    }

    /// Loads a matrix file (its emulators checked against `emulators.yaml`); errors are bad
    /// input with the file's line and field.
    public static func load(_ path: String) throws -> MatrixFile {
        let recipe = try? Recipe(directory: Recipe.locate())
        let ids = try? recipe?.emulatorCatalog().emulators.map(\.id)
        let kernels = try? recipe?.catalog().kernels.map(\.id)
        do { return try MatrixFile.load(path: path, emulators: ids ?? nil, kernels: kernels ?? nil) } catch let e as TopologyError { throw EngineError.input(e.description) }
    }
}
