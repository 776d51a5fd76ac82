import Foundation
import IsolabModel
import IsolabTopology
import XCTest

/// Generates malformed and mutated topology files and asserts one clear, located error for each.
final class MalformedTopologyTests: XCTestCase {
    static let base = """
    name: base
    iommu: intel
    fabric:
      - root-port: rp0
        slot: 4
        children:
          - switch: sw0
            downstream:
              - port: dp0
                children:
                  - device: A
                    model: edu
              - port: dp1
                children:
                  - device: B
                    model: edu
      - root-port: rp1
        children:
          - device: nic0
            model: e1000e
            function: 0
          - device: C
            model: edu
            function: 1
      - pcie-pci-bridge: br0
        children:
          - device: D
            model: edu
    scenarios:
      - name: s
        steps:
          - load-driver: e1000e
          - vfio-bind: C
          - vfio-open: C
          - dma: {from: A, to: B, map: peer}

    """

    /// (name, text, expected fragment of the message or field)
    static func cases() -> [(String, String, String)] {
        var out: [(String, String, String)] = []
        let b = base
        func mutate(_ name: String, _ from: String, _ to: String, _ expect: String) {
            precondition(b.contains(from), name)
            out.append((name, b.replacingOccurrences(of: from, with: to), expect))
        }
        // Unknown keys, at every level.
        for (i, key) in ["colour", "Fabric", "iommus", "memroy", "x", "scenario"].enumerated() {
            out.append(("unknown-top-\(i)", b + "\(key): 1\n", "unknown key '\(key)'"))
        }
        for key in ["speed", "acs-mode", "bus", "children2"] {
            mutate("unknown-rp-\(key)", "    slot: 4\n", "    slot: 4\n    \(key): 1\n", "unknown key '\(key)'")
        }
        for key in ["slot", "function", "acs", "children", "colour"] {
            mutate("unknown-switch-\(key)", "      - switch: sw0\n", "      - switch: sw0\n        \(key): 1\n", "unknown key '\(key)'")
        }
        for key in ["acs", "children", "irq"] {
            mutate("unknown-device-\(key)", "                model: edu\n          - port: dp1", "                model: edu\n                \(key): 1\n          - port: dp1", "unknown key '\(key)'")
        }
        // Unknown kinds and models.
        for kind in ["bridge", "root_port", "Device", "ioh3420", "endpoint", "upstream"] {
            mutate("unknown-kind-\(kind)", "  - pcie-pci-bridge: br0", "  - \(kind): br0", "node kind")
        }
        for model in ["e1000", "virtio-blk", "EDU", "ivshmem", "1"] {
            mutate("unknown-model-\(model)", "        model: e1000e", "        model: \(model)", "unknown value '\(model)'")
        }
        for v in ["amdvi", "smmu", "Intel", "yes"] {
            mutate("unknown-iommu-\(v)", "iommu: intel", "iommu: \(v)", "unknown value")
        }
        // Wrong types.
        for v in ["four", "4.5", "[4]", "{a: 1}", "-1", "32", "99", "0x20"] {
            mutate("bad-slot-\(v)", "    slot: 4\n", "    slot: \(v)\n", "slot")
        }
        for v in ["8", "-1", "one", "[0]", "9"] {
            mutate("bad-function-\(v)", "        function: 1\n", "        function: \(v)\n", "function")
        }
        for v in ["maybe", "1", "[true]", "enabled"] {
            mutate("bad-acs-\(v)", "    slot: 4\n", "    slot: 4\n    acs: \(v)\n", "acs")
        }
        for v in ["big", "64", "100000", "[512]"] {
            out.append(("bad-memory-\(v)", b.replacingOccurrences(of: "iommu: intel\n", with: "iommu: intel\nmemory: \(v)\n"), "memory"))
        }
        for v in ["Base", "-x", "a b", "[a]", "ünï"] {
            mutate("bad-name-\(v)", "name: base", "name: \(v)", "name")
        }
        out.append(("fabric-not-list", b.replacingOccurrences(of: "fabric:\n", with: "fabric: 3\nfabric_old:\n"), "unknown key"))
        out.append(("fabric-scalar", "name: x\nfabric: rp0\n", "expected a list"))
        out.append(("fabric-empty", "name: x\nfabric: []\n", "the fabric is empty"))
        out.append(("no-fabric", "name: x\n", "missing required key 'fabric'"))
        out.append(("no-name", "fabric:\n  - device: A\n    model: edu\n", "missing required key 'name'"))
        out.append(("node-scalar", "name: x\nfabric:\n  - rp0\n", "expected a node mapping"))
        out.append(("two-kinds", "name: x\nfabric:\n  - device: A\n    root-port: B\n    model: edu\n", "more than one node kind"))
        out.append(("device-no-model", "name: x\nfabric:\n  - device: A\n", "has no model"))
        out.append(("dma-mask-on-nic", "name: x\nfabric:\n  - device: A\n    model: e1000e\n    dma-mask: 40\n", "dma-mask applies to edu only"))
        out.append(("dma-mask-small", "name: x\nfabric:\n  - device: A\n    model: edu\n    dma-mask: 12\n", "dma-mask"))
        // Duplicate ids and slot.function pairs.
        for (from, to) in [("device: B", "device: A"), ("device: D", "device: rp0"), ("port: dp1", "port: dp0"),
                           ("switch: sw0", "switch: rp1"), ("device: C", "device: nic0")] {
            mutate("dup-id-\(to)", from, to, "duplicate id")
        }
        mutate("dup-key", "    slot: 4\n", "    slot: 4\n    slot: 5\n", "duplicate key")
        out.append(("dup-slotfn", "name: x\nfabric:\n  - device: A\n    model: edu\n    slot: 3\n  - device: B\n    model: edu\n    slot: 3\n", "already used by 'A'"))
        mutate("dup-slot-rp", "  - pcie-pci-bridge: br0\n", "  - pcie-pci-bridge: br0\n    slot: 4\n", "already used by")
        for (s, f) in [(0, 0), (31, 0), (31, 2), (31, 3)] {
            mutate("chipset-\(s).\(f)", "  - pcie-pci-bridge: br0\n", "  - pcie-pci-bridge: br0\n    slot: \(s)\n    function: \(f)\n", "q35 chipset")
        }
        // Orphan functions.
        mutate("orphan-fn", "        function: 0\n", "        function: 2\n", "function 2 without a slot")
        out.append(("orphan-first", "name: x\nfabric:\n  - device: A\n    model: edu\n    function: 3\n", "no node before it"))
        out.append(("orphan-slot", "name: x\nfabric:\n  - device: A\n    model: edu\n    slot: 3\n    function: 5\n", "no function 0"))
        // More than 32 slots / 8 functions.
        var many = "name: x\nfabric:\n  - pcie-pci-bridge: br\n    children:\n"
        for i in 0..<32 { many += "      - device: d\(i)\n        model: edu\n" }
        out.append(("33-slots", many, "no free slot"))
        var rootMany = "name: x\nfabric:\n"
        for i in 0..<31 { rootMany += "  - device: d\(i)\n    model: edu\n" }
        out.append(("root-31-slots", rootMany, "no free slot"))
        out.append(("9-functions", "name: x\nfabric:\n  - device: A\n    model: edu\n    slot: 3\n    function: 8\n", "function"))
        // Placement.
        mutate("port-outside-switch", "      - device: D\n", "      - port: pX\n", "a downstream port outside a switch")
        mutate("port-on-root", "  - pcie-pci-bridge: br0\n    children:\n      - device: D\n        model: edu\n", "  - port: pX\n", "a downstream port outside a switch")
        mutate("device-in-downstream", "          - port: dp1\n", "          - device: Z\n            model: edu\n          - port: dp1\n", "holds only ports")
        mutate("rp-under-bridge", "      - device: D\n        model: edu\n", "      - root-port: rpX\n", "conventional PCI bus")
        mutate("switch-under-bridge", "      - device: D\n        model: edu\n", "      - switch: swX\n        downstream:\n          - port: q\n", "conventional PCI bus")
        mutate("rp-under-rp", "      - device: nic0\n", "      - root-port: rpX\n      - device: nic0\n", "root port cannot sit below")
        mutate("switch-on-root", "  - pcie-pci-bridge: br0\n    children:\n      - device: D\n        model: edu\n", "  - switch: swX\n    downstream:\n      - port: q\n", "needs a PCIe port above it")
        mutate("ppb-under-bridge", "      - device: D\n        model: edu\n", "      - pcie-pci-bridge: brX\n", "needs a PCIe bus")
        mutate("switch-no-downstream", "        downstream:\n", "        downstreams:\n", "unknown key")
        out.append(("switch-empty", "name: x\nfabric:\n  - root-port: r\n    children:\n      - switch: s\n        downstream: []\n", "at least one downstream port"))
        // Scenarios.
        for dev in ["Z", "a", "nic1", "sw1"] {
            mutate("unknown-device-vfio-\(dev)", "      - vfio-bind: C\n", "      - vfio-bind: \(dev)\n", "unknown device '\(dev)'")
        }
        mutate("unknown-device-dma-to", "to: B, map", "to: Q, map", "unknown device 'Q'")
        mutate("unknown-device-dma-from", "{from: A,", "{from: Q,", "unknown device 'Q'")
        mutate("dma-from-nic", "{from: A,", "{from: nic0,", "cannot start a DMA probe")
        mutate("dma-to-self", "to: B, map", "to: A, map", "its own peer")
        mutate("dma-to-port", "to: B, map", "to: dp0, map", "not a device")
        mutate("dma-bad-map", "map: peer", "map: all", "unknown value 'all'")
        mutate("dma-peer-memory", "to: B, map: peer", "to: memory, map: peer", "needs a device")
        mutate("dma-no-to", ", to: B, map: peer}", "}", "needs from: and to:")
        mutate("dma-extra", "map: peer}", "map: peer, size: 4}", "unknown key 'size'")
        mutate("unknown-step", "      - vfio-open: C\n", "      - vfio-reset: C\n", "unknown key 'vfio-reset'")
        mutate("two-steps", "      - vfio-open: C\n", "      - vfio-open: C\n        unbind: C\n", "more than one step kind")
        mutate("unknown-module", "load-driver: e1000e", "load-driver: ixgbe", "unknown value 'ixgbe'")
        mutate("vfio-open-bad-via", "      - vfio-open: C\n", "      - vfio-open: {device: C, via: iommufd}\n", "unknown value 'iommufd'")
        mutate("vfio-open-no-device", "      - vfio-open: C\n", "      - vfio-open: {via: cdev}\n", "missing required key 'device'")
        mutate("options-on-e1000e", "load-driver: e1000e", "load-driver: {module: e1000e, options: [debug=1]}", "isolab passes no options to e1000e")
        mutate("unknown-vfio-option", "load-driver: e1000e", "load-driver: {module: vfio, options: [enable_unsafe_noiommu_mode=2]}", "unknown value 'enable_unsafe_noiommu_mode=2'")
        mutate("bad-expect", "      - vfio-open: C\n", "      - vfio-open: C\n        expect: EWHATEVER\n        because: x\n", "unknown value 'EWHATEVER'")
        mutate("expect-no-because", "      - vfio-open: C\n", "      - vfio-open: C\n        expect: EPERM\n", "needs a reason")
        mutate("because-no-expect", "      - vfio-open: C\n", "      - vfio-open: C\n        because: x\n", "without expect")
        mutate("scenario-no-steps", "    steps:\n", "    stepz:\n", "unknown key 'stepz'")
        mutate("scenario-no-name", "  - name: s\n", "  - description: s\n", "missing required key 'name'")
        out.append(("scenario-dup", b + "  - name: s\n    steps:\n      - vfio-bind: A\n", "duplicate scenario name"))
        mutate("scenario-empty-steps", "    steps:\n      - load-driver: e1000e\n      - vfio-bind: C\n      - vfio-open: C\n      - dma: {from: A, to: B, map: peer}\n", "    steps: []\n", "has no steps")
        mutate("bind-bad-driver", "      - vfio-bind: C\n", "      - bind: {device: C, driver: ahci}\n", "unknown value 'ahci'")
        mutate("bind-no-device", "      - vfio-bind: C\n", "      - bind: {driver: e1000e}\n", "missing required key 'device'")
        mutate("steps-scalar", "    steps:\n      - load-driver", "    steps: 3\n    x:\n      - load-driver", "unknown key 'x'")
        // Truncated YAML and binary junk.
        let cutPoints = [20, 57, 101, 150, 233, 300, 377, 420, 510, 640]
        for c in cutPoints where c < b.count {
            var t = String(b.prefix(c))
            t += "\n  - {unterminated: [\n"
            out.append(("truncated-\(c)", t, "not valid YAML"))
        }
        out.append(("tab-indent", "name: x\nfabric:\n\t- device: A\n", "YAML"))
        out.append(("bad-quote", "name: \"x\nfabric: []\n", "not valid YAML"))
        out.append(("empty", "", "the file is empty"))
        out.append(("only-comment", "# nothing\n", "the file is empty"))
        out.append(("top-list", "- a\n- b\n", "expected a mapping"))
        out.append(("top-scalar", "hello\n", "expected a mapping"))
        var seed: UInt64 = 0x1234_5678
        for i in 0..<10 {
            var bytes: [UInt8] = []
            for _ in 0..<(64 + i * 13) {
                seed = seed &* 6364136223846793005 &+ 1442695040888963407
                bytes.append(UInt8(truncatingIfNeeded: seed >> 33))
            }
            out.append(("junk-\(i)", String(decoding: bytes, as: UTF8.self), ""))
        }
        return out
    }

    func testEveryMalformedFileGetsOneLocatedError() throws {
        let cases = Self.cases()
        XCTAssertGreaterThanOrEqual(cases.count, 100)
        for (name, text, expect) in cases {
            do {
                let t = try TopologyLoader.parse(text, file: "\(name).yaml")
                XCTFail("\(name): accepted, got topology \(t.name)")
            } catch let e as TopologyError {
                XCTAssertEqual(e.file, "\(name).yaml")
                XCTAssertGreaterThanOrEqual(e.line, 1, name)
                XCTAssertGreaterThanOrEqual(e.column, 1, name)
                XCTAssertFalse(e.field.isEmpty, name)
                XCTAssertFalse(e.description.contains("\n"), "\(name): one line: \(e)")
                if !expect.isEmpty {
                    XCTAssertTrue(e.description.contains(expect), "\(name): expected '\(expect)' in: \(e)")
                }
            } catch {
                XCTFail("\(name): not a TopologyError: \(error)")
            }
        }
    }

    func testBinaryJunkFileIsRefusedAsNotText() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("isolab-junk-\(getpid())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("junk.yaml").path
        FileManager.default.createFile(atPath: path, contents: Data([0x00, 0xff, 0xfe, 0x13, 0x37, 0x00, 0xc3]))
        XCTAssertThrowsError(try TopologyLoader.load(path: path)) { e in
            XCTAssertEqual((e as? TopologyError)?.message, "not UTF-8 text")
        }
        XCTAssertThrowsError(try TopologyLoader.load(path: dir.appendingPathComponent("missing.yaml").path))
    }

    func testErrorNamesLineColumnAndField() {
        let text = Self.base.replacingOccurrences(of: "    slot: 4\n", with: "    slot: forty\n")
        XCTAssertThrowsError(try TopologyLoader.parse(text, file: "f.yaml")) { e in
            XCTAssertEqual((e as! TopologyError).description,
                           "f.yaml:5:11: fabric[0].slot: expected a whole number from 0 to 31, found 'forty'")
        }
    }

    func testBaseIsValidAndSlotsAreResolved() throws {
        let t = try TopologyLoader.parse(Self.base, file: "base.yaml")
        let slots = t.fabric.map { "\($0.id)@\($0.slot).\($0.function)" }
        XCTAssertEqual(slots, ["rp0@4.0", "rp1@1.0", "br0@2.0"])
        let rp1 = t.fabric[1]
        XCTAssertEqual(rp1.children.map { "\($0.slot).\($0.function)" }, ["0.0", "0.1"])
        XCTAssertEqual(t.scenarios[0].steps.count, 4)
        let line = Self.base.split(separator: "\n", omittingEmptySubsequences: false).firstIndex { $0.contains("vfio-open: C") }! + 1
        XCTAssertEqual(t.scenarios[0].steps[2].location.line, line)
    }

    func testCatalogIsValid() throws {
        let dir = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("topologies")
        let files = try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { $0.hasSuffix(".yaml") }
        XCTAssertGreaterThanOrEqual(files.count, 12)
        for f in files {
            XCTAssertNoThrow(try TopologyLoader.load(path: dir.appendingPathComponent(f).path), f)
        }
    }
}

/// The kernel catalog and the model agree on generations.
final class KernelCatalogGenerationTests: XCTestCase {
    func testEveryCatalogKernelHasAModelGeneration() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let text = try String(contentsOf: root.appendingPathComponent("vm-images/kernels.yaml"), encoding: .utf8)
        let generations = text.split(separator: "\n").compactMap { line -> String? in
            let t = line.trimmingCharacters(in: .whitespaces)
            guard t.hasPrefix("generation:") else { return nil }
            return t.dropFirst("generation:".count).trimmingCharacters(in: CharacterSet(charactersIn: " \""))
        }
        // Every entry resolves to a model generation (a catalog id, or a version such as 6.18.15),
        // and every model generation has a catalog kernel that boots it.
        for g in generations { XCTAssertNotNil(KernelGeneration.resolve(g), "generation '\(g)' is no model generation") }
        XCTAssertTrue(Set(generations).isSuperset(of: KernelGeneration.catalog.map(\.id)), "\(generations)")
    }
}
