#if canImport(Glibc)
import Glibc
#endif
import CVFIO
import IsolabAgentCore
import IsolabProtocol

/// What the agent holds open per IOMMU group: one container per group, the group fd, and the
/// device fds. Kept across steps, and across failed sub-steps, until `vfio-close`.
final class GroupHandle {
    let id: Int
    var container: Int32 = -1
    var group: Int32 = -1
    var containerSet = false
    var iommuType: Int32?
    var devices: [String: Int32] = [:]
    /// IOVA mappings made into this container (iova → size), undone on close.
    var mappings: [UInt64: UInt64] = [:]

    init(id: Int) { self.id = id }

    func closeAll() {
        for fd in devices.values { close(fd) }
        devices = [:]
        if group >= 0 { close(group) }
        if container >= 0 { close(container) }
        group = -1
        container = -1
        containerSet = false
        iommuType = nil
        mappings = [:]
    }
}

struct VFIOState {
    var groups: [Int: GroupHandle] = [:]

    /// The open device fd of a function and its group handle.
    func device(_ bdf: String) -> (GroupHandle, Int32)? {
        for g in groups.values { if let fd = g.devices[bdf] { return (g, fd) } }
        return nil
    }
}

extension Agent {
    /// The legacy VFIO open sequence (KERNEL-NOTES §4), resumed where an earlier `vfio-open` of
    /// the group stopped. Sub-step names follow the model (OwnershipModel.vfioOpen).
    func vfioOpen(_ bdf: String, _ d: inout StepDraft) {
        var failed = false
        func sub(_ name: String, _ r: Int32, _ detail: String? = nil) {
            let ok = r >= 0
            d.record.substeps.append(SubstepRecord(name: name, result: ok ? "ok" : ErrnoName.name(r),
                                                   errno: ok ? nil : Int(-r), detail: detail))
            if !ok && !failed {
                failed = true
                d.record.result = ErrnoName.name(r)
                d.record.errno = Int(-r)
                d.record.detail = "\(name): \(Posix.errorText(-r))" + (detail.map { " (\($0))" } ?? "")
            }
        }
        guard let gid = Sysfs.group(of: bdf) else {
            return sub("find-group", -ENOENT, "\(bdf) has no iommu_group link")
        }
        let h = vfio.groups[gid] ?? GroupHandle(id: gid)
        vfio.groups[gid] = h
        if h.container < 0 {
            if !Posix.exists("/dev/vfio/vfio") { _ = modprobe("vfio_iommu_type1") }
            let fd = cvfio_open("/dev/vfio/vfio", O_RDWR)
            guard fd >= 0 else { return sub("open-container", fd, "/dev/vfio/vfio") }
            let version = cvfio_get_api_version(fd)
            var v2 = cvfio_check_extension(fd, CVFIO_TYPE1v2_IOMMU)
            if v2 <= 0 {
                _ = modprobe("vfio_iommu_type1")
                v2 = cvfio_check_extension(fd, CVFIO_TYPE1v2_IOMMU)
            }
            h.container = fd
            sub("open-container", version < 0 ? version : 0,
                "VFIO_GET_API_VERSION \(version), VFIO_CHECK_EXTENSION(TYPE1v2) \(v2)")
            if failed { return }
        }
        if h.group < 0 {
            let fd = cvfio_open("/dev/vfio/\(gid)", O_RDWR)
            sub("open-group", fd < 0 ? fd : 0, "/dev/vfio/\(gid)")
            guard fd >= 0 else { return }
            h.group = fd
        }
        var flags: UInt32 = 0
        let st = cvfio_group_get_status(h.group, &flags)
        var names: [String] = []
        if flags & CVFIO_GROUP_FLAGS_VIABLE != 0 { names.append("VIABLE") }
        if flags & CVFIO_GROUP_FLAGS_CONTAINER_SET != 0 { names.append("CONTAINER_SET") }
        sub("get-status", st, st < 0 ? nil : (names.isEmpty ? "0" : names.joined(separator: "|")))
        if failed { return }
        if !h.containerSet {
            let r = cvfio_group_set_container(h.group, h.container)
            sub("set-container", r)
            if failed { return }
            h.containerSet = true
        }
        if h.iommuType == nil {
            let type = cvfio_check_extension(h.container, CVFIO_TYPE1v2_IOMMU) > 0 ? CVFIO_TYPE1v2_IOMMU : CVFIO_TYPE1_IOMMU
            let r = cvfio_set_iommu(h.container, type)
            sub("set-iommu", r, type == CVFIO_TYPE1v2_IOMMU ? "VFIO_TYPE1v2_IOMMU" : "VFIO_TYPE1_IOMMU")
            if failed { return }
            h.iommuType = type
        }
        if h.devices[bdf] == nil {
            let fd = cvfio_group_get_device_fd(h.group, bdf)
            sub("get-device-fd", fd < 0 ? fd : 0)
            if failed { return }
            h.devices[bdf] = fd
        }
    }

    /// Closes the device fd; with the group's last device, the group and the container.
    func vfioClose(_ bdf: String, _ d: inout StepDraft) {
        guard let gid = Sysfs.group(of: bdf) ?? vfio.device(bdf).map({ $0.0.id }),
              let h = vfio.groups[gid], h.group >= 0 || h.container >= 0 else {
            return d.fail("EBADF", errno: EBADF, "nothing of \(bdf)'s group is open")
        }
        if let fd = h.devices.removeValue(forKey: bdf) { close(fd) }
        if h.devices.isEmpty {
            h.closeAll()
            vfio.groups[gid] = nil
            d.record.detail = "closed \(bdf)'s device fd, group \(gid) and its container"
        } else {
            d.record.detail = "closed \(bdf)'s device fd; group \(gid) stays open for \(h.devices.keys.sorted().joined(separator: ", "))"
        }
        // A write blocked on the device (unbind) may finish now: reapLeftBehind gives it a moment.
        leftBehindGrace = 1
    }
}
