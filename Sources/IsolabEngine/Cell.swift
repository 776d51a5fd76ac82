import Foundation
import IsolabImages
import IsolabModel
import IsolabTopology

/// One cell of a matrix: a fabric (under one vIOMMU) on one kernel and one emulator.
public struct Cell: Sendable {
    public var topology: Topology
    /// The kernel's label (a catalog id or a developer kernel's label).
    public var kernel: String
    /// The emulator's label (an `emulators.yaml` id, or a developer build's label).
    public var emulator: String
    /// The model generation the kernel is judged against before its image is known.
    public var generation: KernelGeneration
    /// Hex sha256 of the topology file's bytes.
    public var sha256: String
    /// Why the emulator cannot build it as declared; empty when it boots.
    public var unrealizable: [Unrealizable]

    public init(topology: Topology, kernel: String, emulator: String, generation: KernelGeneration, sha256: String,
                unrealizable: [Unrealizable]) {
        self.topology = topology; self.kernel = kernel; self.emulator = emulator
        self.generation = generation; self.sha256 = sha256; self.unrealizable = unrealizable
    }
}

/// A kernel of the matrix: its label and the generation it is judged against.
public struct MatrixKernel: Sendable {
    public var label: String
    public var generation: KernelGeneration
    public init(label: String, generation: KernelGeneration) { self.label = label; self.generation = generation }
}

/// An emulator of the matrix: its label and what its binary answered a probe (nil: the host's
/// QEMU as the model assumes it).
public struct MatrixEmulator: Sendable {
    public var label: String
    public var facts: EmulatorFacts?
    public init(label: String, facts: EmulatorFacts?) { self.label = label; self.facts = facts }
}

/// Builds a matrix's cells: fabric × vIOMMU × kernel × emulator, in that order.
public enum MatrixPlanner {
    /// Every cell. A topology that declares `intel` is also run under each other vIOMMU of
    /// `iommus`, named `<name>.<iommu>`, on the kernels that drive it; a declared vIOMMU runs
    /// on every kernel. Each cell's topology carries its emulator's facts, which decide what is
    /// realizable (``Realizability/check(_:)``) and how it is built.
    public static func cells(topologies: [(topology: Topology, sha256: String)], kernels: [MatrixKernel],
                             iommus: [IOMMUModel], emulators: [MatrixEmulator]) -> [Cell] {
        var cells: [Cell] = []
        for (t, sha) in topologies {
            var variants = [t]
            if t.iommu == .intel {
                for m in iommus where m != .intel {
                    var v = t
                    v.iommu = m
                    v.name = "\(t.name).\(m.rawValue)"
                    variants.append(v)
                }
            }
            for v in variants {
                for k in kernels {
                    // An added vIOMMU runs only where the kernel drives it; a declared one everywhere.
                    if v.name != t.name, !k.generation.drives(v.iommu) { continue }
                    for e in emulators {
                        var built = v
                        built.emulator = e.facts
                        cells.append(Cell(topology: built, kernel: k.label, emulator: e.label, generation: k.generation,
                                          sha256: sha, unrealizable: Realizability.check(built)))
                    }
                }
            }
        }
        return cells
    }

    /// Shard `index` (1-based) of `count`: every `count`-th cell, deterministically.
    public static func shard(_ cells: [Cell], index: Int, of count: Int) -> [Cell] {
        cells.enumerated().filter { $0.offset % count == index - 1 }.map(\.element)
    }

    /// Parses `I/N` (1 ≤ I ≤ N); nil when malformed.
    public static func parseShard(_ text: String) -> (index: Int, count: Int)? {
        let parts = text.split(separator: "/").compactMap { Int($0) }
        guard parts.count == 2, parts[1] >= 1, (1...parts[1]).contains(parts[0]) else { return nil }
        return (parts[0], parts[1])
    }

    /// Hex sha256 of a file's bytes (empty input for an unreadable file).
    public static func fileSHA256(_ path: String) -> String {
        (try? Hashing.sha256(file: path)) ?? Hashing.sha256(Data())
    }
}
