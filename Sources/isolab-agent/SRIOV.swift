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
    func sriov(_ bdf: String, vfs: Int, _ d: inout StepDraft) {
        let file = Sysfs.device(bdf) + "/sriov_numvfs"
        guard Posix.exists(file) else {
            return d.fail("ENOENT", errno: ENOENT, "\(bdf) has no sriov_numvfs: no SR-IOV capability")
        }
        let before = declaredDrivers()
        let outcome = write(file, String(vfs))
        d.set(outcome, describe(outcome, "write \(vfs) to \(bdf)/sriov_numvfs"))
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
