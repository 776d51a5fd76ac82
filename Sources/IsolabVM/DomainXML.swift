import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif
import IsolabImages
import IsolabModel

/// Turns a topology into a libvirt domain (q35, TCG by default, no implicit devices):
/// every controller and device at the explicit address of the model's guest path.
///
/// ```swift
/// let xml = try DomainXML.render(topology, parameters: DomainParameters(
///     name: "isolab-switch-no-acs-1", kernelPath: image.bootKernel(.pvh).path, initrdPath: image.initramfsPath,
///     kernelCommandLine: "console=ttyS0 intel_iommu=on", consoleLogPath: "…/console.log",
///     recordsPath: "…/records.jsonl"))
/// ```
public enum DomainXML {
    static let qemuNamespace = "http://libvirt.org/schemas/domain/qemu/1.0"

    /// Where QEMU 7.2 puts the AMD vIOMMU's AMDVI-PCI function (1022:0008) when it is built
    /// through libvirt: it is created before every other device, so it takes the first free
    /// pcie.0 slot then, whatever the topology declares (see `commandLine`).
    public static let amdVIOMMUSlot = Fabric.amdVIOMMUSlot

    /// The firmware of every domain: no `<loader>`, so libvirt's q35 default, SeaBIOS, which
    /// hands over to the kernel through QEMU's option ROM (`pvh.bin` for a PVH vmlinux).
    /// qboot is not faster once the kernel is PVH and numbers PCI buses in reverse (PERF-NOTES.md).
    public static let firmware = "seabios"

    /// The domain XML for `topology`, or `DomainXMLError.unrealizable` with the model's
    /// reasons when QEMU cannot build it as declared.
    /// - Parameter fabric: the topology's `Fabric`, if the caller has it already.
    public static func render(_ topology: Topology, fabric: Fabric? = nil, parameters: DomainParameters) throws -> String {
        let problems = Realizability.check(topology)
        guard problems.isEmpty else { throw DomainXMLError.unrealizable(topology: topology.name, problems: problems) }
        let fabric = fabric ?? Fabric(topology)
        let layout = DomainLayout(topology: topology, fabric: fabric)
        if topology.iommu == .amd, let taken = topology.fabric.first(where: { $0.slot == amdVIOMMUSlot }) {
            throw DomainXMLError.amdVIOMMUSlotTaken(topology: topology.name, node: taken.id, location: taken.location)
        }
        if topology.iommu == .virtio || topology.iommu == .amd, layout.viommuSlot == nil {
            throw DomainXMLError.noSlotForVIOMMU(topology: topology.name, iommu: topology.iommu)
        }
        return document(topology, layout: layout, parameters: parameters)
    }

    static func document(_ topology: Topology, layout: DomainLayout, parameters p: DomainParameters) -> String {
        let domain = element("domain", ["type": p.accelerator.domainType])
        domain.addNamespace(XMLNode.namespace(withName: "qemu", stringValue: qemuNamespace) as! XMLNode)
        domain.addChild(XMLNode.comment(withStringValue: " isolab topology \(topology.name), vIOMMU \(topology.iommu.rawValue) ") as! XMLNode)
        domain.addChild(element("name", text: p.name))
        domain.addChild(element("memory", ["unit": "MiB"], text: String(p.memoryMiB ?? topology.memoryMiB)))
        domain.addChild(element("vcpu", text: String(p.vcpus)))
        let os = element("os", children: [element("type", [("arch", "x86_64"), ("machine", "q35")], text: "hvm")])
        switch p.boot {
        case .pvh?: os.addChild(XMLNode.comment(withStringValue: " ELF vmlinux, entered at its PVH entry note; \(firmware) ") as! XMLNode)
        case .bzImage?: os.addChild(XMLNode.comment(withStringValue: " bzImage, Linux boot protocol; \(firmware) ") as! XMLNode)
        case nil: break
        }
        // The initrd is the image's uncompressed newc cpio: the kernel need not inflate it.
        // A QEMU started from a snapshot (`-loadvm`) gets no kernel: the snapshot holds the
        // guest's memory, and a kernel QEMU loads is a ROM that every machine reset (each
        // `loadvm` begins with one) writes into guest RAM again (hw/core/loader.c rom_reset):
        // a PVH vmlinux's 60 MB, each page's translated code invalidated under TCG, most of a
        // `loadvm`'s time.
        if p.loadSnapshotTag == nil {
            for child in [element("kernel", text: p.kernelPath), element("initrd", text: p.initrdPath),
                          element("cmdline", text: p.kernelCommandLine)] { os.addChild(child) }
        }
        domain.addChild(os)
        var features = [element("acpi"), element("apic")]
        // Interrupt remapping needs QEMU's own IOAPIC (kernel_irqchip=split under KVM).
        if topology.iommu == .intel || topology.iommu == .amd { features.append(element("ioapic", ["driver": "qemu"])) }
        domain.addChild(element("features", children: features))
        domain.addChild(element("cpu", ["mode": "maximum"]))
        for event in ["on_poweroff", "on_reboot", "on_crash"] { domain.addChild(element(event, text: "destroy")) }
        domain.addChild(devices(topology, layout: layout, parameters: p))
        let args = commandLine(topology, layout: layout) + snapshotArguments(p)
        if !args.isEmpty {
            domain.addChild(element("qemu:commandline", children: args.map { element("qemu:arg", ["value": $0]) }))
        }
        // An ACS-less root port is pcie-root-port with disable-acs, or an ioh3420 (libvirt's
        // model name) where the emulator has no disable-acs.
        let overrides = topology.buildsRootPortWithoutACSAsIOH3420 ? []
            : layout.controllers.filter { if case .rootPort(acs: false) = $0.kind { return true } else { return false } }
        if !overrides.isEmpty {
            // libvirt has no attribute for disable-acs; <qemu:override> sets the property on
            // the device libvirt itself creates (libvirt >= 8.2).
            domain.addChild(element("qemu:override", children: overrides.map { rp in
                element("qemu:device", ["alias": rp.qemuID], children: [
                    element("qemu:frontend", children: [
                        element("qemu:property", [("name", "disable-acs"), ("type", "bool"), ("value", "true")]),
                    ]),
                ])
            }))
        }
        return domain.xmlString(options: [.nodePrettyPrint, .nodeCompactEmptyElement]) + "\n"
    }

    static func devices(_ topology: Topology, layout: DomainLayout, parameters p: DomainParameters) -> XMLElement {
        let devices = element("devices")
        if let emulator = p.emulator { devices.addChild(element("emulator", text: emulator)) }
        devices.addChild(element("controller", [("type", "usb"), ("model", "none")]))
        devices.addChild(element("controller", [("type", "pci"), ("index", "0"), ("model", "pcie-root")]))
        for c in layout.controllers {
            guard let index = c.controllerIndex else { continue }
            devices.addChild(XMLNode.comment(withStringValue: " \(c.kind.keyword) \(c.nodeID) at \(c.path) ") as! XMLNode)
            let model: String
            var children: [XMLElement] = []
            switch c.kind {
            case .rootPort(let acs):
                model = "pcie-root-port"
                if !acs, topology.buildsRootPortWithoutACSAsIOH3420 { children.append(element("model", ["name": "ioh3420"])) }
                children.append(element("target", [("chassis", String(index)), ("port", hex(c.slot << 3 | c.function))]))
            case .switchUpstream:
                model = "pcie-switch-upstream-port"
            case .downstreamPort:
                model = "pcie-switch-downstream-port"
                children.append(element("target", [("chassis", String(index)), ("port", hex(c.slot << 3 | c.function))]))
            case .pciePCIBridge:
                model = "pcie-to-pci-bridge"
            case .pciBridge:
                model = "pci-bridge"
                children.append(element("target", ["chassisNr": String(index)]))
            case .device:
                continue
            }
            children.append(address(bus: busNumber(c.bus), slot: c.slot, function: c.function, multifunction: c.multifunction))
            devices.addChild(element("controller", [("type", "pci"), ("index", String(index)), ("model", model)], children: children))
        }
        for (port, path) in [(0, p.consoleLogPath), (1, p.recordsPath)] {
            // --interactive: the console is a Unix socket QEMU listens on, and isolab relays it.
            // Snapshot mode: the agent's channel is a Unix socket the host talks on both ways.
            // A shipped guest: ptys on its host, which isolab opens through libvirt.
            let socket = port == 0 ? p.consoleSocketPath : p.channelSocketPath
            let target = element("target", [("type", "isa-serial"), ("port", String(port))], children: [element("model", ["name": "isa-serial"])])
            if p.serialsOverLibvirt {
                devices.addChild(element("serial", ["type": "pty"], children: [target]))
                continue
            }
            devices.addChild(element("serial", ["type": socket == nil ? "file" : "unix"], children: [
                socket.map { element("source", [("mode", "bind"), ("path", $0)]) } ?? element("source", ["path": path]),
                target,
            ]))
        }
        switch topology.iommu {
        case .intel:
            devices.addChild(element("iommu", ["model": "intel"], children: [element("driver", ["intremap": "on"])]))
        case .virtio:
            devices.addChild(element("iommu", ["model": "virtio"], children: [
                address(bus: 0, slot: layout.viommuSlot ?? 1, function: 0, multifunction: false),
            ]))
        case .amd, .none:
            break  // amd: libvirt 9.0 has no element for it (see commandLine)
        }
        devices.addChild(element("memballoon", ["model": "none"]))
        return devices
    }

    /// `<qemu:commandline>` arguments: the AMD vIOMMU, then every node libvirt does not build,
    /// parents first.
    static func commandLine(_ topology: Topology, layout: DomainLayout) -> [String] {
        var args: [String] = []
        if topology.iommu == .amd {
            // libvirt 9.0 has no <iommu model='amd'>. Legacy -device options are created
            // before the JSON ones libvirt emits, so the IOMMU exists before any PCI device
            // (QEMU sets a device's DMA address space when it is realized), and its AMDVI-PCI
            // function takes the first free pcie.0 slot at that moment: 01, as only the
            // chipset is there. (`-global AMDVI-PCI.addr=…` cannot pin it: QEMU 7.2 aborts
            // in visit_start_alternate.)
            args += ["-device", "amd-iommu,intremap=on"]
        }
        var chassis = 100
        for n in layout.commandLineNodes {
            var json = JSONObject()
            json["driver"] = .string(Realizability.qemuDevice(n.kind, ioh3420: topology.buildsRootPortWithoutACSAsIOH3420))
            json["id"] = .string(n.qemuID)
            json["bus"] = .string(n.bus)
            json["addr"] = .string(n.function == 0 ? hex(n.slot) : "\(hex(n.slot)).\(hex(n.function))")
            if n.multifunction { json["multifunction"] = .bool(true) }
            switch n.kind {
            case .rootPort(let acs):
                chassis += 1
                json["chassis"] = .int(chassis)
                json["port"] = .int(n.slot << 3 | n.function)
                if !acs, !topology.buildsRootPortWithoutACSAsIOH3420 { json["disable-acs"] = .bool(true) }
            case .downstreamPort:
                chassis += 1
                json["chassis"] = .int(chassis)
                json["port"] = .int(n.slot << 3 | n.function)
            case .pciBridge:
                chassis += 1
                json["chassis_nr"] = .int(chassis)
            case .device(.edu, _):
                let bits = n.dmaMaskBits ?? 64
                json["dma_mask"] = .uint(bits >= 64 ? UInt64.max : (UInt64(1) << UInt64(bits)) - 1)
            case .device(.nvme, _):
                json["serial"] = .string(n.nodeID)
                if let vfs = topology.allNodes.first(where: { $0.id == n.nodeID })?.virtualFunctions, vfs > 0 {
                    // SR-IOV needs an NVM subsystem and flexible resources for the VFs:
                    // 2 queue pairs and 1 interrupt each (hw/nvme/ctrl.c nvme_check_params()).
                    let subsys = n.qemuID + "-subsys"
                    args += ["-device", "{\"driver\":\"nvme-subsys\",\"id\":\"\(subsys)\",\"nqn\":\"\(subsys)\"}"]
                    json["subsys"] = .string(subsys)
                    json["sriov_max_vfs"] = .int(vfs)
                    json["sriov_vq_flexible"] = .int(2 * vfs)
                    json["sriov_vi_flexible"] = .int(vfs)
                }
            case .device(.virtioNet, _):
                // Modern only (1af4:1041) on every bus, as the model assumes; QEMU would make it
                // transitional (1af4:1000) on a conventional bus otherwise.
                json["disable-legacy"] = .string("on")
            case .switchUpstream, .pciePCIBridge, .device(.e1000e, _), .device(.igb, _), .device(.igbVF, _):
                break
            }
            args += ["-device", json.text]
        }
        return args
    }

    /// Snapshot mode's QEMU arguments: the vmstate drive (no device, so no guest-visible
    /// change; `cache=unsafe`: the state is scratch, `savevm` need not wait for fsync;
    /// `aio=io_uring`: `loadvm` reads the state in 3,700 chunks of 32 KiB, which through
    /// QEMU's default thread pool cost a thread hand-off each, 0.45 s a load against 0.12 s)
    /// and the snapshot to start from. libvirt 9.0 makes internal snapshots only of its own
    /// disks, and a SATA disk would be set up by SeaBIOS in ICH9 AHCI, whose state then fails
    /// to load (QEMU 7.2: "bad FIS receive buffer address").
    static func snapshotArguments(_ p: DomainParameters) -> [String] {
        var args: [String] = []
        if let path = p.vmstateDrivePath {
            args += ["-drive", "if=none,id=\(vmstateDriveID),format=qcow2,cache=unsafe,aio=io_uring,file=\(path.replacingOccurrences(of: ",", with: ",,"))"]
        }
        if let tag = p.loadSnapshotTag { args += ["-loadvm", tag] }
        if p.clock == .icount { args += ["-icount", instructionCountedClock] }
        return args
    }

    /// `-icount`'s options for ``GuestClock/icount``: the shift adapts so that busy guest time
    /// keeps up with the host's; idle time is skipped.
    public static let instructionCountedClock = "shift=auto,sleep=off"

    /// The id of the vmstate drive.
    public static let vmstateDriveID = "isolab-vmstate"

    /// libvirt's bus number of a libvirt-built bus (`pcie.0` → 0, `pci.N` → N).
    static func busNumber(_ bus: String) -> Int {
        bus.hasPrefix("pci.") ? Int(bus.dropFirst(4)) ?? 0 : 0
    }

    static func address(bus: Int, slot: Int, function: Int, multifunction: Bool) -> XMLElement {
        var attrs = [("type", "pci"), ("domain", "0x0000"), ("bus", "0x" + slotText(bus)),
                     ("slot", "0x" + slotText(slot)), ("function", hex(function))]
        if multifunction { attrs.append(("multifunction", "on")) }
        return element("address", attrs)
    }

    static func hex(_ v: Int) -> String { "0x" + String(v, radix: 16) }

    static func element(_ name: String, _ attributes: [(String, String)] = [], text: String? = nil,
                        children: [XMLElement] = []) -> XMLElement {
        let e = text.map { XMLElement(name: name, stringValue: $0) } ?? XMLElement(name: name)
        for (k, v) in attributes { e.addAttribute(XMLNode.attribute(withName: k, stringValue: v) as! XMLNode) }
        for c in children { e.addChild(c) }
        return e
    }

    static func element(_ name: String, _ attribute: [String: String], text: String? = nil,
                        children: [XMLElement] = []) -> XMLElement {
        element(name, attribute.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }, text: text, children: children)
    }
}

/// A flat JSON object that keeps its keys in insertion order (QEMU's `-device` JSON reads
/// best as driver, id, bus, addr, then properties).
struct JSONObject {
    enum Value {
        case string(String), bool(Bool), int(Int), uint(UInt64)
    }

    private var entries: [(String, Value)] = []

    subscript(key: String) -> Value? {
        get { entries.first { $0.0 == key }?.1 }
        set {
            entries.removeAll { $0.0 == key }
            if let newValue { entries.append((key, newValue)) }
        }
    }

    var text: String {
        "{" + entries.map { k, v in
            let value: String
            switch v {
            case .string(let s): value = Self.quoted(s)
            case .bool(let b): value = b ? "true" : "false"
            case .int(let i): value = String(i)
            case .uint(let u): value = String(u)
            }
            return Self.quoted(k) + ":" + value
        }.joined(separator: ",") + "}"
    }

    static func quoted(_ s: String) -> String {
        let data = (try? JSONSerialization.data(withJSONObject: s, options: [.fragmentsAllowed, .withoutEscapingSlashes])) ?? Data()
        return String(decoding: data, as: UTF8.self)
    }
}
