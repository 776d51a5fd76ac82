#if canImport(Glibc)
import Glibc
#endif
import CVFIO
import IsolabAgentCore
import IsolabProtocol

extension Agent {
    /// `sriov`: writes the count to the PF's `sriov_numvfs` (in a child: removing a VF whose
    /// VFIO device is open blocks), then reports the PF's VFs from its `virtfnN` links and
    /// learns the plan's VF nodes (`<pf>.vfN`) by their guest paths.
    func sriov(_ bdf: String, vfs: Int, online: Bool = false, _ d: inout StepDraft) {
        let file = Sysfs.device(bdf) + "/sriov_numvfs"
        guard Posix.exists(file) else {
            return d.fail("ENOENT", errno: ENOENT, "\(bdf) has no sriov_numvfs: no SR-IOV capability")
        }
        let before = declaredDrivers()
        let autoprobe = Sysfs.device(bdf) + "/sriov_drivers_autoprobe"
        let bringOnline = online && vfs > 0
        if bringOnline { _ = Posix.write(autoprobe, "0") }
        let outcome = write(file, String(vfs))
        d.set(outcome, describe(outcome, "write \(vfs) to \(bdf)/sriov_numvfs"))
        if bringOnline {
            _ = Posix.write(autoprobe, "1")
            if outcome == .ok {
                d.note(NVMeVirtualization.online(pf: bdf, vfs: vfs))
                // What autoprobe would have done had the controllers been ready: probe each VF.
                for vf in virtualFunctions(of: bdf) { _ = write("/sys/bus/pci/drivers_probe", vf.bdf) }
                Sysfs.waitForProbesToSettle()
            }
        }
        guard outcome != .blocked else { return }
        let records = virtualFunctions(of: bdf)
        d.record.virtualFunctions = records
        // Forget nodes whose function is gone (removed VFs); learn the VFs that now exist.
        for (id, old) in bdfOfNode where !Posix.exists(Sysfs.device(old)) {
            bdfOfNode[id] = nil
            nodeOfBDF[old] = nil
        }
        let byPath = Dictionary(records.map { ($0.path, $0.bdf) }, uniquingKeysWith: { a, _ in a })
        for node in plan.nodes {
            guard let vf = byPath[node.path] else { continue }
            bdfOfNode[node.id] = vf
            nodeOfBDF[vf] = node.id
        }
        d.record.bound = newlyBound(since: before)
    }

    /// The VFs of `pf` (`virtfn0`, `virtfn1`, …) with their paths, drivers and groups.
    func virtualFunctions(of pf: String) -> [VirtualFunctionRecord] {
        let dir = Sysfs.device(pf)
        let links = Posix.list(dir).filter { $0.hasPrefix("virtfn") }
            .compactMap { name -> (Int, String)? in Int(name.dropFirst(6)).map { ($0, name) } }
            .sorted { $0.0 < $1.0 }
        let paths = Sysfs.paths()
        for (bdf, path) in paths { pathOfBDF[bdf] = path }
        return links.compactMap { index, name in
            guard let vf = Posix.linkName("\(dir)/\(name)") else { return nil }
            let vendor = Posix.text("\(Sysfs.device(vf))/vendor").flatMap(Hex.parse)
            let device = Posix.text("\(Sysfs.device(vf))/device").flatMap(Hex.parse)
            let vd = vendor.flatMap { v in device.map { "\(Hex.digits(v & 0xffff, width: 4)):\(Hex.digits($0 & 0xffff, width: 4))" } }
            let group = Sysfs.group(of: vf)
            let members = group.map { g in
                Posix.list("/sys/kernel/iommu_groups/\(g)/devices").map { paths[$0] ?? "?\($0)" }.sorted()
            } ?? []
            return VirtualFunctionRecord(index: index, bdf: vf, path: paths[vf] ?? "?\(vf)", vendorDevice: vd,
                                         driver: Sysfs.driver(of: vf), group: group, groupMembers: members)
        }
    }

    /// `vf-token`: `VFIO_DEVICE_FEATURE_PCI_VF_TOKEN` (SET) on the device fd a `vfio-open` opened.
    func setVFToken(_ bdf: String, _ token: String, _ d: inout StepDraft) {
        guard let fd = vfio.groups.values.lazy.compactMap({ $0.devices[bdf] }).first else {
            return d.fail("EBADF", errno: EBADF, "\(bdf) has no open VFIO device fd")
        }
        let hex = token.filter(\.isHexDigit)
        guard hex.count == 32 else { return d.fail("EINVAL", errno: EINVAL, "'\(token)' is not a UUID") }
        var bytes = [UInt8](repeating: 0, count: 16)
        var i = hex.startIndex
        for k in 0..<16 {
            let j = hex.index(i, offsetBy: 2)
            bytes[k] = UInt8(hex[i..<j], radix: 16) ?? 0
            i = j
        }
        let r = cvfio_device_set_vf_token(fd, bytes)
        if r < 0 { return d.fail(ErrnoName.name(r), errno: -r, "VFIO_DEVICE_FEATURE(SET | PCI_VF_TOKEN): \(Posix.errorText(-r))") }
        d.set(.ok, "VF token set to \(token)")
    }
}

/// NVMe Virtualization Management (admin opcode 0x1C) through a PF's `/dev/nvmeN`: each VF's
/// secondary controller (found by its VF number in the Secondary Controller List, Identify CNS
/// 0x15) gets 1 interrupt and 2 queues assigned and is brought online, as QEMU's nvme needs
/// before a VF's controller becomes ready (docs/system/devices/nvme.rst).
enum NVMeVirtualization {
    static let virtualizationManagement: UInt8 = 0x1C
    static let identify: UInt8 = 0x06
    enum Action: UInt32 { case secondaryAssign = 0x8, secondaryOnline = 0x9 }
    enum Resource: UInt32 { case queue = 0, interrupt = 1 }

    /// What was done, one clause per command, for the step's detail.
    static func online(pf: String, vfs: Int) -> String {
        guard let ctrl = Posix.list(Sysfs.device(pf) + "/nvme").first(where: { $0.hasPrefix("nvme") }) else {
            return "online: \(pf) has no nvme controller (the nvme driver does not drive it)"
        }
        let fd = open("/dev/" + ctrl, O_RDWR)
        guard fd >= 0 else { return "online: open /dev/\(ctrl): \(Posix.errorText(errno))" }
        defer { close(fd) }
        var list = [UInt8](repeating: 0, count: 4096)
        let r = list.withUnsafeMutableBytes { cvfio_nvme_admin(fd, identify, 0x15, 0, $0.baseAddress, 4096, nil) }
        guard r == 0 else { return "online: Identify (Secondary Controller List) on \(ctrl): " + status(r) }
        // numcntl at byte 0; 32-byte entries from byte 32: SCID +0, VFN +8.
        var scidOfVF: [Int: UInt16] = [:]
        for i in 0..<min(Int(list[0]), 127) {
            let e = 32 + 32 * i
            let scid = UInt16(list[e]) | UInt16(list[e + 1]) << 8
            let vfn = Int(UInt16(list[e + 8]) | UInt16(list[e + 9]) << 8)
            scidOfVF[vfn] = scid
        }
        var done: [String] = []
        for vf in 1...vfs {
            guard let scid = scidOfVF[vf] else { done.append("VF \(vf): no secondary controller"); continue }
            let steps: [(Action, Resource, UInt32, String)] = [(.secondaryAssign, .interrupt, 1, "assign 1 VI"),
                                                              (.secondaryAssign, .queue, 2, "assign 2 VQ"),
                                                              (.secondaryOnline, .queue, 0, "online")]
            var results: [String] = []
            for (action, resource, count, what) in steps {
                let cdw10 = action.rawValue | resource.rawValue << 8 | UInt32(scid) << 16
                let r = cvfio_nvme_admin(fd, virtualizationManagement, cdw10, count, nil, 0, nil)
                results.append(r == 0 ? what : "\(what): " + status(r))
                if r != 0 { break }
            }
            done.append("VF \(vf) (controller \(scid)): " + results.joined(separator: ", "))
        }
        return "online via \(ctrl): " + done.joined(separator: "; ")
    }

    static func status(_ r: Int32) -> String {
        r < 0 ? Posix.errorText(-r) : "NVMe status 0x\(String(r, radix: 16))"
    }
}
