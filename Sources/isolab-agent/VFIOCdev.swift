#if canImport(Glibc)
import Glibc
#endif
import CVFIO
import IsolabAgentCore
import IsolabProtocol

/// What the agent holds open per IOMMU group on the cdev path: an iommufd with one IOAS, and
/// the bound device cdevs. Kept across steps until `vfio-close` of the group's last device.
final class CdevHandle {
    let id: Int
    var iommufd: Int32 = -1
    var ioas: UInt32 = 0
    var devices: [String: Int32] = [:]

    init(id: Int) { self.id = id }

    func closeAll() {
        for fd in devices.values { close(fd) }
        devices = [:]
        if iommufd >= 0 {
            _ = cvfio_iommufd_destroy(iommufd, ioas)
            close(iommufd)
        }
        iommufd = -1
    }
}

extension Agent {
    /// The VFIO device cdev path (v6.6+): `/dev/iommu` and an IOAS, `/dev/vfio/devices/vfioN`,
    /// `VFIO_DEVICE_BIND_IOMMUFD`, `VFIO_DEVICE_ATTACH_IOMMUFD_PT`. Sub-step names follow the
    /// model (OwnershipModel.vfioCdevOpen). A kernel without iommufd gives `unsupported`.
    func vfioCdevOpen(_ bdf: String, _ d: inout StepDraft) {
        if vfio.cdevs.isEmpty, !Posix.exists("/dev/iommu") { _ = modprobe("iommufd") }
        guard Posix.exists("/dev/iommu") else {
            d.substep(.openIOMMUFD, -ENOENT, "/dev/iommu")
            return d.fail("unsupported", "the kernel offers no iommufd: no /dev/iommu, and modprobe iommufd found no module (CONFIG_IOMMUFD is not set)")
        }
        guard let key = Sysfs.group(of: bdf) else {
            return d.substep(.openDevice, -ENOENT, "\(bdf) has no iommu_group link, so no VFIO device and no cdev")
        }
        let h = vfio.cdevs[key] ?? CdevHandle(id: key)
        vfio.cdevs[key] = h
        if h.iommufd < 0 {
            let fd = cvfio_open("/dev/iommu", O_RDWR)
            d.substep(.openIOMMUFD, fd < 0 ? fd : 0, "/dev/iommu")
            guard fd >= 0 else { vfio.cdevs[key] = nil; return }
            var ioas: UInt32 = 0
            let r = cvfio_ioas_alloc(fd, &ioas)
            d.substep(.allocIOAS, r, r < 0 ? nil : "IOAS \(ioas)")
            guard r == 0 else { close(fd); vfio.cdevs[key] = nil; return }
            h.iommufd = fd
            h.ioas = ioas
        }
        if h.devices[bdf] != nil {
            d.record.detail = "\(bdf)'s cdev is open already"
            return
        }
        guard let name = Posix.list(Sysfs.device(bdf) + "/vfio-dev").first(where: { $0.hasPrefix("vfio") }) else {
            if Sysfs.driver(of: bdf) == "vfio-pci", !Posix.exists("/dev/vfio/devices") {
                d.substep(.openDevice, -ENOENT, "no \(bdf)/vfio-dev")
                return d.fail("unsupported", "vfio-pci drives \(bdf) but the kernel makes no device cdevs (CONFIG_VFIO_DEVICE_CDEV is not set)")
            }
            return d.substep(.openDevice, -ENOENT, "\(bdf) has no vfio-dev/vfioN in sysfs (bound to \(Sysfs.driver(of: bdf) ?? "no driver"))")
        }
        let path = "/dev/vfio/devices/\(name)"
        let fd = cvfio_open(path, O_RDWR)
        d.substep(.openDevice, fd < 0 ? fd : 0, path)
        guard fd >= 0 else { return }
        var devid: UInt32 = 0
        let b = cvfio_device_bind_iommufd(fd, h.iommufd, &devid)
        d.substep(.bindIOMMUFD, b, b < 0 ? nil : "device id \(devid)")
        guard b == 0 else { close(fd); return }
        let a = cvfio_device_attach_pt(fd, h.ioas)
        d.substep(.attachIOAS, a, a < 0 ? nil : "IOAS \(h.ioas)")
        guard a == 0 else { close(fd); return }
        h.devices[bdf] = fd
    }

    /// The cdev part of `vfio-close`: the device's cdev and, with the group's last one, its IOAS
    /// and iommufd. True if the group had any of them open.
    func cdevClose(_ bdf: String, _ d: inout StepDraft) -> Bool {
        let gid = Sysfs.group(of: bdf) ?? vfio.cdevs.values.first(where: { $0.devices[bdf] != nil })?.id ?? -1
        guard let h = vfio.cdevs[gid] else { return false }
        if let fd = h.devices.removeValue(forKey: bdf) { close(fd) }
        if h.devices.isEmpty {
            h.closeAll()
            vfio.cdevs[gid] = nil
            d.record.detail = "closed \(bdf)'s cdev, the group's IOAS and its iommufd"
        } else {
            d.record.detail = "closed \(bdf)'s cdev; the IOAS stays for \(h.devices.keys.sorted().joined(separator: ", "))"
        }
        leftBehindGrace = 1
        return true
    }
}
