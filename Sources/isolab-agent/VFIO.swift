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

/// Where an open VFIO device's DMA goes and how the agent maps memory for it.
enum DMASpace {
    /// A type1 container: `VFIO_IOMMU_MAP_DMA`.
    case type1(container: Int32)
    /// An iommufd IOAS: `IOMMU_IOAS_MAP` at a fixed IOVA.
    case ioas(iommufd: Int32, id: UInt32)
    /// A no-IOMMU container: nothing translates, the device sees physical addresses.
    case noiommu

    /// Maps `size` bytes at `vaddr` to `iova`: 0 or -errno (`noiommu`: -ENOTTY, no mappings).
    func map(vaddr: UInt64, iova: UInt64, size: UInt64) -> Int32 {
        switch self {
        case .type1(let c): return cvfio_map_dma(c, vaddr, iova, size)
        case .ioas(let fd, let id): return cvfio_ioas_map(fd, id, vaddr, iova, size)
        case .noiommu: return -ENOTTY
        }
    }

    func unmap(iova: UInt64, size: UInt64) {
        switch self {
        case .type1(let c): _ = cvfio_unmap_dma(c, iova, size)
        case .ioas(let fd, let id): _ = cvfio_ioas_unmap(fd, id, iova, size)
        case .noiommu: break
        }
    }

    /// The ioctl that maps, for the record.
    var mapCall: String {
        switch self {
        case .type1: return "VFIO_IOMMU_MAP_DMA"
        case .ioas: return "IOMMU_IOAS_MAP"
        case .noiommu: return "none (no-IOMMU)"
        }
    }

    /// `DMAEvidence.path`: `vfio`, `iommufd` or `noiommu`.
    var evidencePath: String {
        switch self {
        case .type1: return "vfio"
        case .ioas: return "iommufd"
        case .noiommu: return "noiommu"
        }
    }
}

struct VFIOState {
    var groups: [Int: GroupHandle] = [:]
    /// Groups whose devices are open through their cdevs (`vfio-open via: cdev`).
    var cdevs: [Int: CdevHandle] = [:]

    /// The open device fd of a function and the DMA space it is attached to.
    func device(_ bdf: String) -> (space: DMASpace, fd: Int32)? {
        for g in groups.values {
            if let fd = g.devices[bdf] { return (g.iommuType == CVFIO_NOIOMMU_IOMMU ? .noiommu : .type1(container: g.container), fd) }
        }
        for c in cdevs.values {
            if let fd = c.devices[bdf] { return (.ioas(iommufd: c.iommufd, id: c.ioas), fd) }
        }
        return nil
    }
}

extension Agent {
    /// The legacy VFIO open sequence (KERNEL-NOTES §4), resumed where an earlier `vfio-open` of
    /// the group stopped. Sub-step names follow the model (OwnershipModel.vfioOpen).
    func vfioOpen(_ bdf: String, vfToken: String? = nil, _ d: inout StepDraft) {
        guard let gid = Sysfs.group(of: bdf) else {
            return d.substep(.findGroup, -ENOENT, "\(bdf) has no iommu_group link")
        }
        // VFIO names a no-IOMMU group's node noiommu-N (vfio_noiommu_group_alloc()).
        let noiommu = Sysfs.groupName(gid) == "vfio-noiommu"
        let node = noiommu ? "/dev/vfio/noiommu-\(gid)" : "/dev/vfio/\(gid)"
        let h = vfio.groups[gid] ?? GroupHandle(id: gid)
        vfio.groups[gid] = h
        if h.container < 0 {
            if !Posix.exists("/dev/vfio/vfio") { _ = modprobe("vfio_iommu_type1") }
            let fd = cvfio_open("/dev/vfio/vfio", O_RDWR)
            guard fd >= 0 else { return d.substep(.openContainer, fd, "/dev/vfio/vfio") }
            let version = cvfio_get_api_version(fd)
            var v2 = cvfio_check_extension(fd, CVFIO_TYPE1v2_IOMMU)
            if v2 <= 0 {
                _ = modprobe("vfio_iommu_type1")
                v2 = cvfio_check_extension(fd, CVFIO_TYPE1v2_IOMMU)
            }
            h.container = fd
            d.substep(.openContainer, version < 0 ? version : 0,
                "VFIO_GET_API_VERSION \(version), VFIO_CHECK_EXTENSION(TYPE1v2) \(v2)")
            if d.substepFailed { return }
        }
        if h.group < 0 {
            let fd = cvfio_open(node, O_RDWR)
            d.substep(.openGroup, fd < 0 ? fd : 0, node)
            guard fd >= 0 else { return }
            h.group = fd
        }
        var flags: UInt32 = 0
        let st = cvfio_group_get_status(h.group, &flags)
        var names: [String] = []
        if flags & CVFIO_GROUP_FLAGS_VIABLE != 0 { names.append("VIABLE") }
        if flags & CVFIO_GROUP_FLAGS_CONTAINER_SET != 0 { names.append("CONTAINER_SET") }
        d.substep(.getStatus, st, st < 0 ? nil : (names.isEmpty ? "0" : names.joined(separator: "|")))
        if d.substepFailed { return }
        if !h.containerSet {
            let r = cvfio_group_set_container(h.group, h.container)
            d.substep(.setContainer, r)
            if d.substepFailed { return }
            h.containerSet = true
        }
        if h.iommuType == nil {
            let type = noiommu ? CVFIO_NOIOMMU_IOMMU
                : cvfio_check_extension(h.container, CVFIO_TYPE1v2_IOMMU) > 0 ? CVFIO_TYPE1v2_IOMMU : CVFIO_TYPE1_IOMMU
            let r = cvfio_set_iommu(h.container, type)
            d.substep(.setIOMMU, r, type == CVFIO_NOIOMMU_IOMMU ? "VFIO_NOIOMMU_IOMMU" : type == CVFIO_TYPE1v2_IOMMU ? "VFIO_TYPE1v2_IOMMU" : "VFIO_TYPE1_IOMMU")
            if d.substepFailed { return }
            h.iommuType = type
        }
        if h.devices[bdf] == nil {
            // A VF token goes with the name: vfio_pci_core_match() parses "BDF vf_token=UUID".
            let name = vfToken.map { "\(bdf) vf_token=\($0)" } ?? bdf
            let fd = cvfio_group_get_device_fd(h.group, name)
            d.substep(.getDeviceFD, fd < 0 ? fd : 0, vfToken.map { "vf_token=\($0)" })
            if d.substepFailed { return }
            h.devices[bdf] = fd
        }
    }

    /// Closes the device fd; with the group's last device, the group and the container.
    func vfioClose(_ bdf: String, _ d: inout StepDraft) {
        let closedCdev = cdevClose(bdf, &d)
        guard let gid = Sysfs.group(of: bdf) ?? vfio.groups.values.first(where: { $0.devices[bdf] != nil })?.id,
              let h = vfio.groups[gid], h.group >= 0 || h.container >= 0 else {
            if closedCdev { return }
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
