import Foundation
import IsolabModel
import IsolabProtocol
import Yams

/// Reads `scenarios:` and checks every step against the declared nodes.
struct ScenarioReader {
    let reader: YAMLReader
    let nodes: [String: DeclaredNode]

    static let stepKeys = PlanStep.Op.allCases.map(\.rawValue)
    /// Modules the guest image carries that bind PCI devices.
    static let modules = ["e1000e", "nvme", "virtio-pci", "virtio_pci", "vfio-pci", "vfio_pci", "pci-stub", "pci_stub", "igb", "igbvf"]
    static let drivers = ["e1000e", "nvme", "virtio-pci", "vfio-pci", "pci-stub", "igb", "igbvf"]
    /// Modules a scenario may load with options, and the options isolab passes on.
    static let optionModules = ["vfio": ["enable_unsafe_noiommu_mode=1"], "vfio-pci": ["enable_sriov=1"], "vfio_pci": ["enable_sriov=1"]]

    func scenarios(_ node: Yams.Node) throws -> [Scenario] {
        var out: [Scenario] = []
        var names: [String: Int] = [:]
        for (i, item) in try reader.sequence(node, "scenarios").enumerated() {
            let field = "scenarios[\(i)]"
            let entries = try reader.mapping(item, field, allowed: ["name", "description", "steps"])
            var name: String?
            var description: String?
            var steps: [Step]?
            for (key, _, value) in entries {
                switch key {
                case "name":
                    let n = try reader.identifier(value, field + ".name")
                    if let line = names[n] {
                        throw reader.error(value, field + ".name", "duplicate scenario name '\(n)' (first at line \(line))", accepted: "scenario names unique in the file")
                    }
                    names[n] = value.mark?.line ?? 0
                    name = n
                case "description": description = try reader.scalar(value, field + ".description", what: "text")
                default: steps = try self.steps(value, field + ".steps")
                }
            }
            guard let name else { throw reader.error(item, field, "missing required key 'name'", accepted: "a scenario name") }
            guard let steps, !steps.isEmpty else {
                throw reader.error(item, field + ".steps", "scenario '\(name)' has no steps", accepted: "steps: a list of \(Self.stepKeys.joined(separator: ", "))")
            }
            out.append(Scenario(name: name, description: description, steps: steps))
        }
        return out
    }

    func steps(_ node: Yams.Node, _ field: String) throws -> [Step] {
        try reader.sequence(node, field).enumerated().map { i, item in try step(item, "\(field)[\(i)]") }
    }

    func step(_ item: Yams.Node, _ field: String) throws -> Step {
        let entries = try reader.mapping(item, field, allowed: Self.stepKeys + ["expect", "because"])
        let actions = entries.filter { Self.stepKeys.contains($0.key) }
        guard actions.count == 1, let (key, keyNode, value) = actions.first else {
            throw reader.error(item, field, actions.isEmpty ? "no step kind" : "more than one step kind", accepted: "exactly one of \(Self.stepKeys.joined(separator: ", "))")
        }
        let f = field + "." + key
        let action: StepAction
        switch PlanStep.Op(rawValue: key)! {
        case .loadDriver:
            if case .mapping = value {
                let e = try reader.mapping(value, f, allowed: ["module", "options"])
                guard let m = e.first(where: { $0.key == "module" }) else {
                    throw reader.error(value, f, "missing required key 'module'", accepted: "module: NAME, options: [OPTION]")
                }
                let module = try reader.oneOf(m.value, f + ".module", Self.modules + Self.optionModules.keys.sorted())
                var options: [String] = []
                if let o = e.first(where: { $0.key == "options" }) {
                    let known = Self.optionModules[module] ?? []
                    guard !known.isEmpty else {
                        throw reader.error(o.value, f + ".options", "isolab passes no options to \(module)", accepted: Self.optionModules.map { "\($0.key): \($0.value.joined(separator: ", "))" }.sorted().joined(separator: "; "))
                    }
                    let nodes: [Yams.Node]
                    if case .sequence = o.value { nodes = try reader.sequence(o.value, f + ".options") } else { nodes = [o.value] }
                    options = try nodes.enumerated().map { i, n in try reader.oneOf(n, f + ".options[\(i)]", known) }
                }
                action = .loadDriver(module, options: options)
            } else {
                action = .loadDriver(try reader.oneOf(value, f, Self.modules + Self.optionModules.keys.sorted()))
            }
        case .bind:
            if case .mapping = value {
                let e = try reader.mapping(value, f, allowed: ["device", "driver"])
                guard let d = e.first(where: { $0.key == "device" }) else {
                    throw reader.error(value, f, "missing required key 'device'", accepted: "device: ID, driver: NAME")
                }
                let drv = try e.first(where: { $0.key == "driver" }).map { try reader.oneOf($0.value, f + ".driver", Self.drivers) }
                action = .bind(device: try node(d.value, f + ".device"), driver: drv)
            } else {
                action = .bind(device: try node(value, f), driver: nil)
            }
        case .unbind: action = .unbind(try node(value, f))
        case .vfioBind: action = .vfioBind(try node(value, f))
        case .vfioOpen:
            if case .mapping = value {
                let e = try reader.mapping(value, f, allowed: ["device", "via", "token"])
                guard let d = e.first(where: { $0.key == "device" }) else {
                    throw reader.error(value, f, "missing required key 'device'", accepted: "device: ID, via: \(VFIOPath.allCases.map(\.rawValue).joined(separator: " or ")), token: UUID")
                }
                let via = try e.first(where: { $0.key == "via" }).map {
                    VFIOPath(rawValue: try reader.oneOf($0.value, f + ".via", VFIOPath.allCases.map(\.rawValue)))!
                } ?? .group
                var token: String?
                if let t = e.first(where: { $0.key == "token" }) {
                    token = try uuid(t.value, f + ".token")
                    guard via == .group else {
                        throw reader.error(t.keyNode, f + ".token", "isolab passes a VF token only on the group path", accepted: "token: with via: group (the default)")
                    }
                }
                action = .vfioOpen(try node(d.value, f + ".device"), via: via, token: token)
            } else {
                action = .vfioOpen(try node(value, f))
            }
        case .vfioClose: action = .vfioClose(try node(value, f))
        case .dma: action = try dma(value, f)
        case .sriov: action = try sriov(value, f)
        case .vfToken:
            let e = try reader.mapping(value, f, allowed: ["device", "token"])
            guard let d = e.first(where: { $0.key == "device" }), let t = e.first(where: { $0.key == "token" }) else {
                throw reader.error(value, f, "a vf-token step needs device: and token:", accepted: "device: PF, token: UUID")
            }
            action = .vfToken(device: try node(d.value, f + ".device"), token: try uuid(t.value, f + ".token"))
        case .selftest: action = try selftest(value, f)
        }
        var expect: PinnedExpectation?
        if let e = entries.first(where: { $0.key == "expect" }) {
            let accepted = StepResult.tokens + Errno.allCases.map(\.name)
            let token = try reader.oneOf(e.value, field + ".expect", accepted)
            guard let b = entries.first(where: { $0.key == "because" }) else {
                throw reader.error(e.keyNode, field + ".expect", "a pinned result needs a reason", accepted: "because: a commit, bug link or explanation")
            }
            expect = PinnedExpectation(result: token, because: try reader.scalar(b.value, field + ".because", what: "text"))
        } else if let b = entries.first(where: { $0.key == "because" }) {
            throw reader.error(b.keyNode, field + ".because", "because: without expect:", accepted: "because: only beside expect:")
        }
        return Step(action, expect: expect, location: reader.location(keyNode))
    }

    /// A step's device: any declared node.
    func node(_ value: Yams.Node, _ field: String) throws -> String {
        let id = try reader.scalar(value, field, what: "a node id")
        guard nodes[id] != nil else {
            throw reader.error(value, field, "unknown device '\(id)'", accepted: nodes.keys.sorted().joined(separator: ", "))
        }
        return id
    }

    /// `sriov: {device: PF, vfs: N}`: N from 0 (remove the VFs) to the VFs the device declares;
    /// a number past the device's TotalVFs is accepted too (the kernel's -ERANGE is the result).
    func sriov(_ value: Yams.Node, _ field: String) throws -> StepAction {
        let e = try reader.mapping(value, field, allowed: ["device", "vfs", "online"])
        guard let d = e.first(where: { $0.key == "device" }), let n = e.first(where: { $0.key == "vfs" }) else {
            throw reader.error(value, field, "an sriov step needs device: and vfs:", accepted: "device: PF, vfs: N, online: true (nvme)")
        }
        let id = try node(d.value, field + ".device")
        let declared = nodes[id]?.virtualFunctions ?? 0
        guard case .device(let model, _)? = nodes[id]?.kind, declared > 0, let sriov = SRIOVCapability.of(model, vfs: declared) else {
            throw reader.error(d.value, field + ".device", "'\(id)' declares no VFs", accepted: "a device with vfs: declared")
        }
        let vfs = try reader.int(n.value, field + ".vfs", range: 0...255)
        guard vfs <= declared || vfs > sriov.totalVFs else {
            throw reader.error(n.value, field + ".vfs", "'\(id)' declares \(declared) VFs (vfs: \(declared)), so steps can name only those", accepted: "0...\(declared), or raise the device's vfs:")
        }
        var online = false
        if let o = e.first(where: { $0.key == "online" }) {
            online = try reader.oneOf(o.value, field + ".online", ["true", "false"]) == "true"
            var isNVMe = false
            if case .device(.nvme, _)? = nodes[id]?.kind { isNVMe = true }
            guard isNVMe || !online else {
                throw reader.error(o.keyNode, field + ".online", "online: brings nvme VF controllers online; '\(id)' is not an nvme", accepted: "online: only for an nvme PF")
            }
        }
        return .sriov(device: id, vfs: vfs, online: online)
    }

    /// `selftest: {program: P, devices: [A], args: [..], env: {K: V}, timeout: S}`: P is one of
    /// the kernel's selftests isolab builds, or a path (with a `/`, relative to the topology
    /// file) to the developer's own static executable.
    func selftest(_ value: Yams.Node, _ field: String) throws -> StepAction {
        let accepted = "program: NAME or PATH, devices: [ID], args: [ARG], env: {NAME: VALUE}, timeout: SECONDS, hugepages: N"
        let e = try reader.mapping(value, field, allowed: ["program", "devices", "args", "env", "timeout", "hugepages"])
        guard let p = e.first(where: { $0.key == "program" }) else {
            throw reader.error(value, field, "missing required key 'program'", accepted: accepted)
        }
        let text = try reader.scalar(p.value, field + ".program", what: "a program")
        let program: String, source: ProgramSource
        if text.contains("/") {
            let dir = (reader.file as NSString).deletingLastPathComponent
            let path = text.hasPrefix("/") ? text : URL(fileURLWithPath: dir.isEmpty ? "." : dir).appendingPathComponent(text).standardizedFileURL.path
            guard FileManager.default.isExecutableFile(atPath: path) else {
                throw reader.error(p.value, field + ".program", "'\(text)' is not an executable file (looked for \(path))",
                                   accepted: "a static executable, its path relative to the topology file, or one of " + KernelSelftest.allCases.map(\.rawValue).joined(separator: ", "))
            }
            program = (path as NSString).lastPathComponent
            source = .file(path)
        } else {
            program = try reader.oneOf(p.value, field + ".program", KernelSelftest.allCases.map(\.rawValue))
            source = .kernelSelftest
        }
        var devices: [String] = []
        if let d = e.first(where: { $0.key == "devices" }) {
            let items: [Yams.Node]
            if case .sequence = d.value { items = try reader.sequence(d.value, field + ".devices") } else { items = [d.value] }
            devices = try items.enumerated().map { i, n in
                let id = try node(n, field + ".devices[\(i)]")
                guard case .device? = nodes[id]?.kind else {
                    throw reader.error(n, field + ".devices[\(i)]", "'\(id)' is not a device", accepted: "device ids (a program is given their BDFs)")
                }
                return id
            }
        }
        var args: [String] = []
        if let a = e.first(where: { $0.key == "args" }) {
            args = try reader.sequence(a.value, field + ".args").enumerated().map { i, n in
                try reader.scalar(n, field + ".args[\(i)]", what: "an argument")
            }
        }
        var env: [String: String] = [:]
        if let v = e.first(where: { $0.key == "env" }) {
            guard case .mapping(let m) = v.value else {
                throw reader.error(v.value, field + ".env", "env is not a mapping", accepted: "env: {NAME: VALUE}")
            }
            for (k, val) in m {
                let name = try reader.scalar(k, field + ".env", what: "a variable name")
                guard let first = name.first, first.isLetter || first == "_", name.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "_" }) else {
                    throw reader.error(k, field + ".env", "'\(name)' is not a variable name", accepted: "letters, digits and _, not starting with a digit")
                }
                env[name] = try reader.scalar(val, field + ".env." + name, what: "a value")
            }
        }
        var timeout = ProgramRun.defaultTimeout
        if let t = e.first(where: { $0.key == "timeout" }) {
            timeout = Double(try reader.int(t.value, field + ".timeout", range: 1...3600))
        }
        var hugepages = 0
        if let h = e.first(where: { $0.key == "hugepages" }) {
            hugepages = try reader.int(h.value, field + ".hugepages", range: 0...65536)
        }
        return .selftest(ProgramRun(program: program, source: source, devices: devices, args: args, env: env,
                                    timeout: timeout, hugepages: hugepages))
    }

    /// A VF token, lowercased.
    func uuid(_ value: Yams.Node, _ field: String) throws -> String {
        let text = try reader.scalar(value, field, what: "a UUID")
        guard Self.isUUID(text) else {
            throw reader.error(value, field, "'\(text)' is not a UUID", accepted: "8-4-4-4-12 hex digits, e.g. 5bd9f7e2-0c2f-4a1e-9c55-2f0e0f4d9a11")
        }
        return text.lowercased()
    }

    /// A UUID as `uuid_parse()` reads it: 36 characters, hex digits and dashes at 8, 13, 18, 23.
    static func isUUID(_ s: String) -> Bool {
        let chars = Array(s)
        guard chars.count == 36 else { return false }
        for (i, c) in chars.enumerated() {
            if [8, 13, 18, 23].contains(i) { if c != "-" { return false } } else if !c.isHexDigit { return false }
        }
        return true
    }

    func dma(_ value: Yams.Node, _ field: String) throws -> StepAction {
        let e = try reader.mapping(value, field, allowed: ["from", "to", "map"])
        guard let fromE = e.first(where: { $0.key == "from" }), let toE = e.first(where: { $0.key == "to" }) else {
            throw reader.error(value, field, "a dma step needs from: and to:", accepted: "from: EDU-DEVICE, to: memory | unmapped | DEVICE, map: own | peer")
        }
        let from = try node(fromE.value, field + ".from")
        guard case .device(.edu, _)? = nodes[from]?.kind else {
            throw reader.error(fromE.value, field + ".from", "'\(from)' cannot start a DMA probe", accepted: "an edu device")
        }
        let toText = try reader.scalar(toE.value, field + ".to", what: "memory, unmapped or a device")
        let to: DMATarget
        switch toText {
        case "memory": to = .memory
        case "unmapped": to = .unmapped
        default:
            let id = try node(toE.value, field + ".to")
            guard case .device? = nodes[id]?.kind else {
                throw reader.error(toE.value, field + ".to", "'\(id)' is not a device with a BAR to write", accepted: "memory, unmapped or a device id")
            }
            guard id != from else {
                throw reader.error(toE.value, field + ".to", "a device cannot be its own peer", accepted: "memory, unmapped or another device")
            }
            to = .device(id)
        }
        var map = DMAMapping.own
        if let m = e.first(where: { $0.key == "map" }) {
            map = DMAMapping(rawValue: try reader.oneOf(m.value, field + ".map", ["own", "peer"]))!
            if map == .peer, case .device = to {} else if map == .peer {
                throw reader.error(m.value, field + ".map", "map: peer needs a device as target", accepted: "map: peer with to: DEVICE")
            }
        }
        return .dma(from: from, to: to, map: map)
    }
}
