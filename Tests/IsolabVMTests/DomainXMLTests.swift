import Foundation
import IsolabLibvirt
import IsolabModel
import IsolabTopology
@testable import IsolabVM
import XCTest

/// Golden domain XML for every catalog fabric × vIOMMU, compared byte for byte;
/// `ISOLAB_UPDATE_GOLDEN=1` (or `ISOLAB_REGENERATE=1`) rewrites them (a changed golden file is
/// a change of behaviour). Each is also given to libvirt (`domainXMLToNative`), which must accept it.
final class DomainXMLGoldenTests: XCTestCase {
    static func parameters(_ topology: Topology) -> DomainParameters {
        DomainParameters(name: "isolab-\(topology.name)-\(topology.iommu.rawValue)",
                         kernelPath: "/isolab/image/vmlinux", initrdPath: "/isolab/image/initramfs.cpio",
                         kernelCommandLine: "console=ttyS0 panic=-1", consoleLogPath: "/isolab/run/console.log",
                         recordsPath: "/isolab/run/records.jsonl", boot: .pvh)
    }

    /// `t` as its domain is rendered: under amd without its scenarios, since QEMU 7.2's amd-iommu
    /// cannot show DMA probes (Realizability.amdVIOMMULimits) and the domain does not depend on them.
    static func renderable(_ t: Topology) -> Topology {
        var v = t
        if v.iommu == .amd { v.scenarios = [] }
        return v
    }

    /// Each catalog topology under each vIOMMU model.
    static func variants() throws -> [Topology] {
        try VMTestSupport.catalog().flatMap { t in
            IOMMUModel.allCases.map { iommu -> Topology in
                var v = t
                v.iommu = iommu
                return renderable(v)
            }
        }
    }

    func testEveryRealizableCatalogFabricAndVIOMMUMatchesItsGoldenXMLAndLibvirtAcceptsIt() throws {
        let env = ProcessInfo.processInfo.environment
        let update = env["ISOLAB_UPDATE_GOLDEN"] == "1" || env["ISOLAB_REGENERATE"] == "1"  // STYLE.md's name too
        let connection = try VMTestSupport.connect()
        var expectedFiles: Set<String> = []
        var checked = 0
        for topology in try Self.variants() {
            let file = "\(topology.name).\(topology.iommu.rawValue).xml"
            let xml: String
            do {
                xml = try DomainXML.render(topology, parameters: Self.parameters(topology))
            } catch DomainXMLError.unrealizable {
                XCTAssertFalse(Realizability.check(topology).isEmpty)
                continue
            } catch DomainXMLError.amdVIOMMUSlotTaken {
                continue
            }
            expectedFiles.insert(file)
            let path = VMTestSupport.goldenDirectory + "/" + file
            if update {
                try xml.write(toFile: path, atomically: true, encoding: .utf8)
            } else {
                let golden = try? String(contentsOfFile: path, encoding: .utf8)
                XCTAssertEqual(xml, golden, "\(file) differs from the golden file; ISOLAB_UPDATE_GOLDEN=1 rewrites it")
            }
            do {
                _ = try connection.domainXMLToNative(xml)
            } catch {
                XCTFail("libvirt refuses \(file): \(error)")
            }
            checked += 1
        }
        let present = Set(try FileManager.default.contentsOfDirectory(atPath: VMTestSupport.goldenDirectory))
        XCTAssertEqual(present.subtracting(expectedFiles), [], "golden files for no current variant")
        XCTAssertGreaterThanOrEqual(checked, 56)
    }
}

/// The XML's structure, checked on what it must contain rather than on bytes.
final class DomainXMLContentTests: XCTestCase {
    func render(_ name: String, iommu: IOMMUModel? = nil, _ tweak: (inout DomainParameters) -> Void = { _ in }) throws -> String {
        var t = try VMTestSupport.topology(name)
        if let iommu { t.iommu = iommu }
        t = DomainXMLGoldenTests.renderable(t)
        var p = DomainXMLGoldenTests.parameters(t)
        tweak(&p)
        return try DomainXML.render(t, parameters: p)
    }

    func testUnrealizableSwitchWithACSIsRefusedWithTheModelsReason() throws {
        let t = try VMTestSupport.topology("switch-acs-unrealizable")
        XCTAssertThrowsError(try DomainXML.render(t, parameters: DomainXMLGoldenTests.parameters(t))) { error in
            guard case DomainXMLError.unrealizable(let name, let problems) = error else {
                return XCTFail("expected unrealizable, got \(error)")
            }
            XCTAssertEqual(name, "switch-acs-unrealizable")
            XCTAssertEqual(problems, Realizability.check(t))
            XCTAssertEqual(problems.map(\.node), ["dp0", "dp1"])
            XCTAssertTrue("\(error)".contains("xio3130-downstream"), "\(error)")
            XCTAssertTrue("\(error)".contains("switch-acs-unrealizable.yaml:"), "\(error)")
        }
    }

    func testNoImplicitDevicesAndTCGByDefault() throws {
        let xml = try render("switch-no-acs")
        XCTAssertTrue(xml.contains(#"<domain xmlns:qemu="http://libvirt.org/schemas/domain/qemu/1.0" type="qemu">"#))
        XCTAssertTrue(xml.contains(#"<controller type="usb" model="none"/>"#))
        XCTAssertTrue(xml.contains(#"<memballoon model="none"/>"#))
        for absent in ["<interface", "<video", "<graphics", "<disk", "<sound"] { XCTAssertFalse(xml.contains(absent), absent) }
    }

    func testBzImageBootOnlyChangesTheKernelFileAndItsComment() throws {
        let pvh = try render("switch-no-acs")
        XCTAssertTrue(pvh.contains("<kernel>/isolab/image/vmlinux</kernel>"), pvh)
        XCTAssertTrue(pvh.contains("<!-- ELF vmlinux, entered at its PVH entry note; seabios -->"), pvh)
        let bz = try render("switch-no-acs") { $0.kernelPath = "/isolab/image/bzImage"; $0.boot = .bzImage }
        XCTAssertEqual(bz, pvh.replacingOccurrences(of: "/isolab/image/vmlinux", with: "/isolab/image/bzImage")
            .replacingOccurrences(of: "ELF vmlinux, entered at its PVH entry note", with: "bzImage, Linux boot protocol"))
        for firmware in ["<loader", "<nvram", "<bios"] { XCTAssertFalse(pvh.contains(firmware), firmware) }
    }

    func testKVMOnlyChangesTheDomainType() throws {
        let tcg = try render("switch-no-acs")
        let kvm = try render("switch-no-acs") { $0.accelerator = .kvm }
        XCTAssertEqual(kvm, tcg.replacingOccurrences(of: #"type="qemu">"#, with: #"type="kvm">"#))
    }

    /// Snapshot mode's vmstate drive has no device (so no `<disk>`, nothing on a guest bus) and
    /// only adds QEMU arguments after the fabric's own; `-loadvm` names the snapshot to start from,
    /// and a domain started from it names no kernel.
    func testVMStateDriveAndLoadVMOnlyAddQEMUArgumentsAfterTheFabrics() throws {
        let plain = try render("switch-no-acs")
        let saved = try render("switch-no-acs") { $0.vmstateDrivePath = "/isolab/run/snap,1/vmstate.qcow2" }
        let again = try render("switch-no-acs") {
            $0.vmstateDrivePath = "/isolab/run/snap,1/vmstate.qcow2"
            $0.loadSnapshotTag = "isolab-ready"
        }
        let drive = #"""
            <qemu:arg value="-drive"/>
            <qemu:arg value="if=none,id=isolab-vmstate,format=qcow2,cache=unsafe,aio=io_uring,file=/isolab/run/snap,,1/vmstate.qcow2"/>

        """#
        let loadvm = #"""
            <qemu:arg value="-loadvm"/>
            <qemu:arg value="isolab-ready"/>

        """#
        XCTAssertEqual(saved, plain.replacingOccurrences(of: "  </qemu:commandline>", with: drive + "  </qemu:commandline>"))
        // Started from the snapshot, QEMU loads no kernel: each reset would write it into RAM again.
        let kernelLines = saved.split(separator: "\n").filter { $0.contains("<kernel>") || $0.contains("<initrd>") || $0.contains("<cmdline>") }
        XCTAssertEqual(kernelLines.count, 3)
        var expected = saved.replacingOccurrences(of: "  </qemu:commandline>", with: loadvm + "  </qemu:commandline>")
        for line in kernelLines { expected = expected.replacingOccurrences(of: line + "\n", with: "") }
        XCTAssertEqual(again, expected)
        XCTAssertFalse(again.contains("<disk"))
        let counted = try render("switch-no-acs") { $0.clock = .icount }
        let icount = #"""
            <qemu:arg value="-icount"/>
            <qemu:arg value="shift=auto,sleep=off"/>

        """#
        XCTAssertEqual(counted, plain.replacingOccurrences(of: "  </qemu:commandline>", with: icount + "  </qemu:commandline>"))
    }

    func testSwitchPortsAndEndpointsSitAtTheModelsPaths() throws {
        let t = try VMTestSupport.topology("switch-no-acs")
        let layout = DomainLayout(topology: t, fabric: Fabric(t))
        let rows = layout.placements.map { "\($0.nodeID) \($0.qemuID) on \($0.bus) \($0.slot).\($0.function) \($0.path)" }
        XCTAssertEqual(rows, [
            "rp0 pci.1 on pcie.0 4.0 04.0",
            "sw0 pci.2 on pci.1 0.0 04.0/00.0",
            "dp0 pci.3 on pci.2 0.0 04.0/00.0/00.0",
            "dp1 pci.4 on pci.2 1.0 04.0/00.0/01.0",
            "A isolab-A on pci.3 0.0 04.0/00.0/00.0/00.0",
            "B isolab-B on pci.4 0.0 04.0/00.0/01.0/00.0",
        ])
        let xml = try render("switch-no-acs")
        XCTAssertTrue(xml.contains(#"{&quot;driver&quot;:&quot;edu&quot;,&quot;id&quot;:&quot;isolab-A&quot;,&quot;bus&quot;:&quot;pci.3&quot;,&quot;addr&quot;:&quot;0x0&quot;"#), xml)
    }

    func testPCIePCIBridgeOnTheRootBusIsBuiltOnTheQEMUCommandLine() throws {
        // libvirt 9.0 refuses a pcie-to-pci-bridge on pcie.0; QEMU builds it there.
        let t = try VMTestSupport.topology("pci-bridge-nested")
        let layout = DomainLayout(topology: t, fabric: Fabric(t))
        XCTAssertEqual(layout.controllers.count, 0)
        let rows = layout.placements.map { "\($0.qemuID) on \($0.bus) \($0.path)" }
        XCTAssertEqual(rows, ["isolab-br0 on pcie.0 07.0", "isolab-D on isolab-br0 07.0/01.0",
                              "isolab-br1 on isolab-br0 07.0/02.0", "isolab-F on isolab-br1 07.0/02.0/01.0"])
    }

    func testRootPortsWithoutACSGetDisableACSOverridesAndMultifunctionOnFunctionZero() throws {
        let xml = try render("rootports-multifunction")
        XCTAssertTrue(xml.contains(#"<qemu:device alias="pci.1">"#))
        XCTAssertTrue(xml.contains(#"<qemu:device alias="pci.2">"#))
        XCTAssertFalse(xml.contains(#"<qemu:device alias="pci.3">"#))
        XCTAssertTrue(xml.contains(#"<address type="pci" domain="0x0000" bus="0x00" slot="0x05" function="0x0" multifunction="on"/>"#))
        XCTAssertTrue(xml.contains(#"<address type="pci" domain="0x0000" bus="0x00" slot="0x05" function="0x1"/>"#))
    }

    func testVirtioAndAMDVIOMMUTakeTheModelsSlot() throws {
        let t = try VMTestSupport.topology("virtio-iommu")
        XCTAssertEqual(Fabric.viommuSlot(for: t), 1)
        let virtio = try render("virtio-iommu")
        XCTAssertTrue(virtio.contains(#"<iommu model="virtio">"#))
        XCTAssertTrue(virtio.contains(#"<address type="pci" domain="0x0000" bus="0x00" slot="0x01" function="0x0"/>"#))
        let amd = try render("virtio-iommu", iommu: .amd)
        XCTAssertTrue(amd.contains(#"<qemu:arg value="amd-iommu,intremap=on"/>"#))
        XCTAssertFalse(amd.contains("<iommu"))
        let none = try render("virtio-iommu", iommu: IOMMUModel.none)
        XCTAssertFalse(none.contains("<iommu"))
        XCTAssertFalse(none.contains("amd-iommu"))
    }

    func testAMDVIOMMUWithPCIe0Slot1DeclaredIsRefusedBeforeBooting() throws {
        // Measured: QEMU creates amd-iommu first, its AMDVI-PCI takes 00:01.0, and a root port
        // declared there fails: "PCI: slot 1 function 0 not available for pcie-root-port, in use by AMDVI-PCI".
        let t = try TopologyLoader.parse("""
            name: amd-slot1
            iommu: amd
            fabric:
              - root-port: rp0
                slot: 1
                children:
                  - device: A
                    model: edu
            """, file: "amd-slot1.yaml")
        XCTAssertThrowsError(try DomainXML.render(t, parameters: DomainXMLGoldenTests.parameters(t))) { error in
            guard case DomainXMLError.unrealizable(_, let problems) = error else {
                return XCTFail("expected unrealizable, got \(error)")
            }
            XCTAssertEqual(problems.map(\.node), ["rp0"])
            XCTAssertEqual(problems.first?.location.file, "amd-slot1.yaml")
            XCTAssertTrue(problems.first?.reason.contains("AMDVI-PCI") == true, "\(error)")
        }
    }

    func testBadEmulatorPathGivesLibvirtsError() throws {
        let xml = try render("rootports-acs") { $0.emulator = "/nonexistent/qemu-system-x86_64" }
        XCTAssertTrue(xml.contains("<emulator>/nonexistent/qemu-system-x86_64</emulator>"))
        let connection = try VMTestSupport.connect()
        XCTAssertThrowsError(try connection.domainXMLToNative(xml)) { error in
            XCTAssertTrue("\(error)".contains("/nonexistent/qemu-system-x86_64"), "\(error)")
        }
    }
}
