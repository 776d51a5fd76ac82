import IsolabModel
import IsolabTopology
import XCTest

/// SR-IOV virtual functions: where `pci_iov_add_virtfn()` puts them, how `pci_device_group()`
/// groups them, and what `sriov_numvfs_store()` and the PF driver answer.
final class SRIOVTests: XCTestCase {
    private func igb(behind port: String, _ extra: String = "", steps: String = "      - load-driver: igb\n") -> String {
        """
        name: t
        fabric:
        \(port)
        scenarios:
          - name: s
            steps:
        \(steps)
        """
    }

    private let acsPort = """
      - root-port: rp0
        slot: 4
        children:
          - device: A
            model: igb
            vfs: 3
    """

    // pci_iov_virtfn_devfn(): PF devfn + First VF Offset (0x80) + VF Stride (2) × n, on the
    // PF's bus; the path is the PF's bus path with the VF's slot.function.
    func testVFPathsFollowQEMUsOffsetAndStride() throws {
        let p = try predict(igb(behind: acsPort))
        XCTAssertEqual(["A.vf0", "A.vf1", "A.vf2"].compactMap { p.fabric.function(of: $0)?.path },
                       ["04.0/10.0", "04.0/10.2", "04.0/10.4"])
        let integrated = try predict(igb(behind: "  - device: A\n    model: igb\n    slot: 6\n    vfs: 2"))
        XCTAssertEqual(["A.vf0", "A.vf1"].compactMap { integrated.fabric.function(of: $0)?.path }, ["16.0", "16.2"])
        XCTAssertEqual(integrated.fabric.function(of: "A.vf0")?.pcieType, .rcEndpoint)
    }

    // QEMU's nvme: TotalVFs = sriov_max_vfs (the declared count), offset 1, stride 1, the PF's
    // ID; on the root bus the VFs share the PF's slot and still get groups of their own.
    func testNVMeVFsTakeThePFsNextFunctions() throws {
        let steps = """
              - load-driver: {module: vfio-pci, options: [enable_sriov=1]}
              - vfio-bind: N
              - sriov: {device: N, vfs: 3}
              - sriov: {device: N, vfs: 2}

        """
        let p = try predict(igb(behind: "  - device: N\n    model: nvme\n    slot: 7\n    vfs: 2", steps: steps))
        XCTAssertEqual(p.results("s"), ["ok", "ok", "ERANGE", "ok"])
        let vfs = p.scenarios[0].steps[3].virtualFunctions
        XCTAssertEqual(vfs.map(\.path), ["07.1", "07.2"])
        XCTAssertEqual(vfs.map(\.groupMembers), [["07.1"], ["07.2"]])
        XCTAssertEqual(p.fabric.function(of: "N.vf0")?.vendorDevice, "1b36:0010")
        XCTAssertEqual(p.group("N"), ["N"])
        // An nvme without vfs: has no SR-IOV capability; sriov steps name only a declared PF.
        XCTAssertThrowsError(try predict(igb(behind: "  - device: N\n    model: nvme\n    slot: 7", steps: "      - sriov: {device: N, vfs: 1}\n"))) { e in
            XCTAssertTrue("\(e)".contains("declares no VFs"), "\(e)")
        }
    }

    // With every declared VF enabled, a VF behind an ACS-less switch port reaches an endpoint
    // behind its sibling port past the IOMMU, though the kernel groups them apart; behind an
    // ACS root port a VF has no such peer (PF and VF both redirect upstream).
    func testVFHazardsOnceTheVFsAreEnabled() throws {
        // GroupingTests' switch fabric with A an igb with one VF (its scenario vfio-opens A).
        let sw = switchYAML.replacingOccurrences(of: "- device: A\n                model: edu",
                                                 with: "- device: A\n                model: igb\n                vfs: 1")
        let p = try predict(sw)
        XCTAssertEqual(Set(p.virtualFunctionHazards.map { "\($0.from)->\($0.to)" }), ["A.vf0->B", "B->A.vf0"])
        XCTAssertTrue(p.virtualFunctionHazards[0].reason.contains("no ACS capability"))
        XCTAssertEqual(p.hazardPairs(), ["A->B", "B->A"], "the boot hazards leave VFs out")
        XCTAssertEqual(try predict(igb(behind: acsPort)).virtualFunctionHazards.count, 0)
    }

    // vf-names: the first VFs take declared ids, the rest keep <pf>.vf<n>.
    func testDeclaredVFNames() throws {
        let p = try predict(igb(behind: acsPort.replacingOccurrences(of: "vfs: 3", with: "vfs: 3\n        vf-names: [guest0, guest1]"),
                                steps: "      - load-driver: igb\n      - sriov: {device: A, vfs: 3}\n      - vfio-bind: guest1\n"))
        XCTAssertEqual(p.scenarios[0].steps[1].virtualFunctions.map(\.id), ["guest0", "guest1", "A.vf2"])
        XCTAssertEqual(p.fabric.function(of: "guest1")?.path, "04.0/10.2")
        XCTAssertEqual(p.results("s"), ["ok", "ok", "ok"])
    }

    // The nvme driver on QEMU's offline nvme VFs is timing-bound: such scenarios are refused.
    func testTheNVMeDriverOnNVMeVFsIsUnrealizable() throws {
        let pf = "  - device: N\n    model: nvme\n    slot: 7\n    vfs: 1"
        for steps in ["      - bind: N\n      - sriov: {device: N, vfs: 1}\n",
                      "      - load-driver: {module: vfio-pci, options: [enable_sriov=1]}\n      - vfio-bind: N\n      - sriov: {device: N, vfs: 1}\n      - unbind: N.vf0\n      - bind: N.vf0\n"] {
            let t = try TopologyLoader.parse(igb(behind: pf, steps: steps), file: "t.yaml")
            XCTAssertEqual(Realizability.check(t).count, 1, steps)
            XCTAssertTrue(Realizability.check(t).first?.reason.contains("NVMe virtualization management") == true)
        }
        let fine = try TopologyLoader.parse(igb(behind: pf, steps: "      - load-driver: {module: vfio-pci, options: [enable_sriov=1]}\n      - vfio-bind: N\n      - sriov: {device: N, vfs: 1}\n"), file: "t.yaml")
        XCTAssertEqual(Realizability.check(fine).count, 0)
        // Brought online first, the VFs are ready: nvme's autoprobe binds them, and that is judged.
        let online = try TopologyLoader.parse(igb(behind: pf, steps: "      - load-driver: nvme\n      - sriov: {device: N, vfs: 1, online: true}\n      - unbind: N.vf0\n      - bind: N.vf0\n"), file: "t.yaml")
        XCTAssertEqual(Realizability.check(online).count, 0)
        let p = Predictor.predict(online, kernel: .v6_1)
        XCTAssertEqual(p.scenarios[0].steps[1].bound, ["N.vf0"])
        XCTAssertEqual(p.scenarios[0].steps[1].step.action.summary, "sriov N vfs 1 online")
        XCTAssertThrowsError(try TopologyLoader.parse(igb(behind: acsPort, steps: "      - sriov: {device: A, vfs: 1, online: true}\n"), file: "t.yaml")) { e in
            XCTAssertTrue("\(e)".contains("is not an nvme"), "\(e)")
        }
    }

    // VFs exist only once created: not in the boot groups, not built by the domain.
    func testVFsAreAbsentAtBoot() throws {
        let p = try predict(igb(behind: acsPort))
        XCTAssertEqual(p.fabric.bootFunctions.count + 3, p.fabric.functions.count)
        XCTAssertNil(p.grouping?.groupOf[p.fabric.function(of: "A.vf0")!.index])
        XCTAssertFalse(p.fabric.endpoints.contains { $0.isVirtualFunction })
    }

    // pci_device_group(): a VF is single-function (pci_iov_add_virtfn() sets multifunction = 0),
    // so pci_acs_enabled() is true for it; behind an ACS path it gets its own group.
    func testVFsBehindAnACSPortGetGroupsOfTheirOwn() throws {
        let p = try predict(igb(behind: acsPort, steps: "      - load-driver: igb\n      - sriov: {device: A, vfs: 2}\n"))
        let step = p.scenarios[0].steps[1]
        XCTAssertEqual(step.result, .ok)
        XCTAssertEqual(step.virtualFunctions.map(\.path), ["04.0/10.0", "04.0/10.2"])
        XCTAssertEqual(step.virtualFunctions.map(\.groupMembers), [["04.0/10.0"], ["04.0/10.2"]])
        XCTAssertTrue(step.rule.description.contains("pci_iov_add_virtfn()"), step.rule.description)
    }

    // The upstream walk from the VF's bus stops at no port: the VFs join the ACS-less port's
    // group with the PF, and a VF cannot be claimed while igb drives the PF (≥5.19 DMA owner).
    func testVFsBehindAPortWithoutACSJoinThePFsGroup() throws {
        let port = acsPort.replacingOccurrences(of: "slot: 4\n", with: "slot: 4\n    acs: false\n")
        let steps = "      - load-driver: igb\n      - sriov: {device: A, vfs: 2}\n      - vfio-bind: A.vf0\n      - vfio-open: A.vf0\n"
        let p = try predict(igb(behind: port, steps: steps))
        XCTAssertEqual(p.scenarios[0].steps[1].virtualFunctions.first?.groupMembers, ["04.0", "04.0/00.0", "04.0/10.0", "04.0/10.2"])
        XCTAssertEqual(p.results("s"), ["ok", "ok", "ok", "EPERM"])
        // 5.10: the group is not viable (igb is no driver VFIO allows): SET_CONTAINER gets -EINVAL.
        XCTAssertEqual(try predict(igb(behind: port, steps: steps), kernel: .v5_10).results("s"), ["ok", "ok", "ok", "EINVAL"])
    }

    /// An igb and an edu as functions 0 and 1 behind an ACS root port.
    private let multifunctionPort = """
      - root-port: rp0
        slot: 4
        children:
          - device: A
            model: igb
            function: 0
          - device: C
            model: edu
            function: 1
    """

    // pci_quirk_mf_endpoint_acs() lists the 82576 PF: its slot-mate without ACS does not join it.
    func testThe82576QuirkSeparatesAMultifunctionPFFromItsSlotMate() throws {
        let port = multifunctionPort
        let p = try predict(igb(behind: port))
        XCTAssertEqual(p.group("A"), ["A"])
        XCTAssertEqual(p.group("C"), ["C"])
        let e1000e = try predict(igb(behind: port.replacingOccurrences(of: "model: igb", with: "model: e1000e")))
        XCTAssertEqual(e1000e.group("A"), ["A", "C"], "without the quirk the slot shares a group")
    }

    // sriov_numvfs_store() and igb_enable_sriov(), in order.
    func testSRIOVNumVFsRules() throws {
        let steps = """
              - sriov: {device: A, vfs: 1}
              - vfio-bind: A
              - sriov: {device: A, vfs: 1}
              - bind: A
              - unbind: A
              - bind: A
              - sriov: {device: A, vfs: 9}
              - sriov: {device: A, vfs: 8}
              - sriov: {device: A, vfs: 2}
              - sriov: {device: A, vfs: 1}
              - sriov: {device: A, vfs: 2}
              - sriov: {device: A, vfs: 0}

        """
        let port = acsPort.replacingOccurrences(of: "vfs: 3", with: "vfs: 8")
        let p = try predict(igb(behind: port, steps: steps))
        // igb_probe_vfs() lowers TotalVFs (8) to 7 while igb is bound: 8 is -ERANGE then.
        XCTAssertEqual(p.results("s"), ["ENOENT", "ok", "ENOENT", "EBUSY", "ok", "ok", "ERANGE", "ERANGE", "ok", "EBUSY", "ok", "ok"])
        let rules = p.scenarios[0].steps.map(\.rule)
        XCTAssertEqual(rules[2].kernelFunction, "vfio_pci_sriov_configure()")
        XCTAssertTrue(rules[7].text.contains("igb_probe_vfs()"), rules[7].text)
        XCTAssertEqual(p.scenarios[0].steps[9].virtualFunctions.count, 2, "a refused write still reports the VFs that exist")
    }

    // Removing a VF whose VFIO device is open waits for it (vfio_unregister_group_dev()); the
    // write holds the PF's device lock, and closing the VF lets it finish.
    func testDisablingVFsWaitsForAnOpenVF() throws {
        let steps = """
              - load-driver: igb
              - sriov: {device: A, vfs: 2}
              - vfio-bind: A.vf0
              - vfio-open: A.vf0
              - sriov: {device: A, vfs: 0}
              - vfio-close: A.vf0
              - sriov: {device: A, vfs: 0}
              - vfio-bind: A.vf0

        """
        let p = try predict(igb(behind: acsPort, steps: steps))
        XCTAssertEqual(p.results("s"), ["ok", "ok", "ok", "ok", "blocked", "ok", "ok", "not-run"])
    }

    // igb_remove() disables SR-IOV: unbinding igb removes the VFs, and a VF driver loaded
    // before they are created binds them as they appear.
    func testUnbindingIgbRemovesTheVFsAndALoadedVFDriverBindsNewOnes() throws {
        let steps = """
              - load-driver: igb
              - load-driver: igbvf
              - sriov: {device: A, vfs: 2}
              - unbind: A
              - vfio-bind: A.vf0

        """
        let p = try predict(igb(behind: acsPort, steps: steps))
        XCTAssertEqual(p.results("s"), ["ok", "ok", "ok", "ok", "not-run"])
        XCTAssertEqual(Set(p.scenarios[0].steps[2].bound), ["A.vf0", "A.vf1"])
    }

    // pci_configure_ari() + next_fn(): behind a port, QEMU's igb (ARI Next Function 0) hides
    // its slot-mates; on the root bus (no ARI forwarding) they are scanned.
    func testAnIgbBehindAPortHidesItsSlotMates() throws {
        var t = try TopologyLoader.parse(igb(behind: multifunctionPort), file: "t.yaml")
        t.emulator = EmulatorFacts(version: "QEMU emulator version 10.0.2", devices: EmulatorFacts.assumedHostQEMU72.devices + ["igb"], properties: [:])
        XCTAssertEqual(Realizability.check(t).map(\.node), ["C"])
        XCTAssertTrue(Realizability.check(t)[0].reason.contains("next_fn()"))
        var root = try TopologyLoader.parse(igb(behind: "  - device: A\n    model: igb\n    slot: 5\n  - device: C\n    model: edu\n    slot: 5\n    function: 1"), file: "t.yaml")
        root.emulator = t.emulator
        XCTAssertEqual(Realizability.check(root).map(\.node), [])
    }

    // vfio_pci_validate_vf_token(): the PF's first open sets the token; a VF of a vfio-pci PF
    // needs it (none or a wrong one: -EACCES); the PF needs it while a VF is open; a token
    // where no vfio-pci PF is involved is -EINVAL.
    func testVFTokenRules() throws {
        let t = "5bd9f7e2-0c2f-4a1e-9c55-2f0e0f4d9a11"
        let steps = """
              - load-driver: {module: vfio-pci, options: [enable_sriov=1]}
              - vfio-bind: A
              - vfio-open: {device: A, token: \(t)}
              - sriov: {device: A, vfs: 2}
              - vfio-open: A.vf0
              - vfio-open: {device: A.vf0, token: 00000000-0000-0000-0000-0000000000ff}
              - vfio-open: {device: A.vf0, token: \(t)}
              - vfio-close: A
              - vfio-open: A
              - vfio-open: {device: A, token: \(t)}
              - vfio-close: A.vf0
              - vfio-close: A
              - vfio-open: A

        """
        for k in [KernelGeneration.v5_10, .v6_1, .v7_3] {
            let p = try predict(igb(behind: acsPort, steps: steps), kernel: k)
            XCTAssertEqual(p.results("s"), ["ok", "ok", "ok", "ok", "EACCES", "EACCES", "ok", "ok", "EACCES", "ok", "ok", "ok", "ok"], k.id)
            // vfio_pci_bus_notifier(): the new VFs get driver_override vfio-pci and bind to it.
            XCTAssertEqual(Set(p.scenarios[0].steps[3].bound), ["A.vf0", "A.vf1"])
            XCTAssertEqual(p.scenarios[0].steps[4].substeps.last?.name.rawValue, "get-device-fd")
        }
        let igbPF = try predict(igb(behind: acsPort, steps: "      - load-driver: igb\n      - sriov: {device: A, vfs: 1}\n      - vfio-bind: A.vf0\n      - vfio-open: {device: A.vf0, token: \(t)}\n"))
        XCTAssertEqual(igbPF.results("s"), ["ok", "ok", "ok", "EINVAL"])
        // Without enable_sriov, vfio-pci's sriov_configure refuses: -ENOENT.
        let plain = try predict(igb(behind: acsPort, steps: "      - vfio-bind: A\n      - sriov: {device: A, vfs: 1}\n"))
        XCTAssertEqual(plain.results("s"), ["ok", "ENOENT"])
    }

    // vfio_pci_core_feature_token(): SET on the open PF replaces the token even with a VF open;
    // a VF has no token (-ENOTTY); a device the agent has not opened has no fd (EBADF).
    func testVFTokenFeature() throws {
        let (t, u) = ("5bd9f7e2-0c2f-4a1e-9c55-2f0e0f4d9a11", "9d1c4e6a-7b3f-4c2d-8e5a-1f0b2c3d4e5f")
        let steps = """
              - load-driver: {module: vfio-pci, options: [enable_sriov=1]}
              - vfio-bind: A
              - vf-token: {device: A, token: \(u)}
              - vfio-open: {device: A, token: \(t)}
              - sriov: {device: A, vfs: 2}
              - vfio-open: {device: A.vf0, token: \(t)}
              - vf-token: {device: A.vf0, token: \(u)}
              - vf-token: {device: A, token: \(u)}
              - vfio-open: {device: A.vf1, token: \(t)}
              - vfio-open: {device: A.vf1, token: \(u)}

        """
        let p = try predict(igb(behind: acsPort, steps: steps))
        XCTAssertEqual(p.results("s"), ["ok", "ok", "EBADF", "ok", "ok", "ok", "ENOTTY", "ok", "EACCES", "ok"])
        XCTAssertEqual(p.scenarios[0].steps[6].rule.kernelFunction, "vfio_pci_core_feature_token()")
    }

    // A kernel without CONFIG_PCI_IOV: no sriov_numvfs, and a PF has no VF token.
    func testAKernelWithoutPCIIOVHasNoSRIOV() throws {
        var t = try TopologyLoader.parse(igb(behind: acsPort, steps: "      - vfio-bind: A\n      - sriov: {device: A, vfs: 1}\n      - vfio-open: {device: A, token: 5bd9f7e2-0c2f-4a1e-9c55-2f0e0f4d9a11}\n"), file: "t.yaml")
        t.emulator = nil
        let k = KernelGeneration.v6_12.configured(by: ["CONFIG_PCI_IOV": "n"])
        XCTAssertFalse(k.hasSRIOV)
        XCTAssertEqual(Predictor.predict(t, kernel: k).results("s"), ["ok", "ENOENT", "EINVAL"])
    }

    // A VF driver binding into a group userspace owns through its vfio-pci PF: -EBUSY from
    // 5.19 (iommu_device_use_default_domain()), 5.10's VFIO notifier BUG_ON.
    func testAVFDriverCannotBindIntoAUserOwnedGroup() throws {
        let port = acsPort.replacingOccurrences(of: "slot: 4\n", with: "slot: 4\n    acs: false\n")
        let steps = """
              - load-driver: {module: vfio-pci, options: [enable_sriov=1]}
              - vfio-bind: A
              - sriov: {device: A, vfs: 2}
              - vfio-open: A
              - unbind: A.vf1
              - bind: {device: A.vf1, driver: igbvf}

        """
        XCTAssertEqual(try predict(igb(behind: port, steps: steps), kernel: .v6_1).results("s"), ["ok", "ok", "ok", "ok", "ok", "EBUSY"])
        XCTAssertEqual(try predict(igb(behind: port, steps: steps), kernel: .v5_10).results("s"), ["ok", "ok", "ok", "ok", "ok", "crash"])
    }

    // The topology reader: vfs only on a model with SR-IOV, at most TotalVFs, VFs on the PF's
    // bus and free routing IDs; sriov steps name what the device declares.
    func testTopologyErrorsForVFs() {
        let cases: [(String, String)] = [
            (acsPort.replacingOccurrences(of: "model: igb", with: "model: e1000e"), "e1000e has no SR-IOV capability"),
            (acsPort.replacingOccurrences(of: "vfs: 3", with: "vfs: 9"), "offers 8 VFs"),
            ("  - device: A\n    model: igb\n    slot: 0x1e\n    vfs: 8", "past the PF's bus"),
            ("  - device: A\n    model: igb\n    slot: 6\n    vfs: 2\n  - device: B\n    model: edu\n    slot: 0x16", "which 'B' uses"),
            (acsPort.replacingOccurrences(of: "vfs: 3", with: "vfs: 1\n        vf-names: [a, b]"), "2 names for 1 VFs"),
            (acsPort.replacingOccurrences(of: "vfs: 3", with: "vfs: 1\n        vf-names: [rp0]"), "duplicate id 'rp0'"),
            (acsPort.replacingOccurrences(of: "vfs: 3", with: "vf-names: [a]"), "vf-names without vfs:"),
        ]
        for (port, expect) in cases {
            XCTAssertThrowsError(try predict(igb(behind: port))) { e in
                XCTAssertTrue("\(e)".contains(expect), "expected '\(expect)' in \(e)")
            }
        }
        XCTAssertThrowsError(try predict(igb(behind: acsPort, steps: "      - sriov: {device: A, vfs: 5}\n"))) { e in
            XCTAssertTrue("\(e)".contains("declares 3 VFs"), "\(e)")
        }
        XCTAssertThrowsError(try predict(igb(behind: acsPort, steps: "      - vfio-open: {device: A.vf0, token: nope}\n"))) { e in
            XCTAssertTrue("\(e)".contains("is not a UUID"), "\(e)")
        }
        XCTAssertThrowsError(try predict(igb(behind: acsPort, steps: "      - vfio-bind: A.vf3\n"))) { e in
            XCTAssertTrue("\(e)".contains("unknown device 'A.vf3'"), "\(e)")
        }
    }
}
