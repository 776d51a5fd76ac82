// Thin wrappers around the legacy VFIO uAPI of <linux/vfio.h> (container/group + type1) and a
// few POSIX calls Swift cannot make directly (variadic ioctl/open, termios raw mode).
// Every function returns >= 0 on success and -errno on failure.
#ifndef CVFIO_H
#define CVFIO_H

#include <stdint.h>
#include <stddef.h>

#define CVFIO_TYPE1_IOMMU 1
#define CVFIO_TYPE1v2_IOMMU 3
#define CVFIO_NOIOMMU_IOMMU 8
#define CVFIO_GROUP_FLAGS_VIABLE (1u << 0)
#define CVFIO_GROUP_FLAGS_CONTAINER_SET (1u << 1)
#define CVFIO_PCI_BAR0_REGION_INDEX 0
#define CVFIO_PCI_CONFIG_REGION_INDEX 7

/// A region of a VFIO device (VFIO_DEVICE_GET_REGION_INFO).
typedef struct {
    uint32_t flags;
    uint64_t size;
    uint64_t offset;
} cvfio_region;

/// VFIO_GET_API_VERSION on a container fd: the version (0) or -errno.
int cvfio_get_api_version(int container);
/// VFIO_CHECK_EXTENSION: 1/0 (or a positive value) or -errno.
int cvfio_check_extension(int container, int extension);
/// VFIO_SET_IOMMU: 0 or -errno.
int cvfio_set_iommu(int container, int type);
/// VFIO_GROUP_GET_STATUS: writes the flags; 0 or -errno.
int cvfio_group_get_status(int group, uint32_t *flags);
/// VFIO_GROUP_SET_CONTAINER: 0 or -errno.
int cvfio_group_set_container(int group, int container);
/// VFIO_GROUP_GET_DEVICE_FD with the device's name (its BDF): the fd or -errno.
int cvfio_group_get_device_fd(int group, const char *name);
/// VFIO_DEVICE_FEATURE with VFIO_DEVICE_FEATURE_SET | VFIO_DEVICE_FEATURE_PCI_VF_TOKEN and a
/// 16-byte UUID on a device fd: 0 or -errno.
int cvfio_device_set_vf_token(int device, const uint8_t uuid[16]);
/// NVME_IOCTL_ADMIN_CMD on an nvme controller's char device: 0, the NVMe status (> 0) the
/// controller completed the command with, or -errno; `result_out` gets the completion's DW0.
int cvfio_nvme_admin(int fd, uint8_t opcode, uint32_t cdw10, uint32_t cdw11, void *data, uint32_t length, uint32_t *result_out);
/// VFIO_DEVICE_GET_REGION_INFO for one region index: 0 or -errno.
int cvfio_device_get_region_info(int device, uint32_t index, cvfio_region *region);
/// VFIO_IOMMU_MAP_DMA (read and write): 0 or -errno.
int cvfio_map_dma(int container, uint64_t vaddr, uint64_t iova, uint64_t size);
/// VFIO_IOMMU_UNMAP_DMA: 0 or -errno.
int cvfio_unmap_dma(int container, uint64_t iova, uint64_t size);

// The iommufd / VFIO device cdev uAPI (uapi/linux/iommufd.h from v6.2, VFIO_DEVICE_BIND_IOMMUFD
// and VFIO_DEVICE_ATTACH_IOMMUFD_PT in uapi/linux/vfio.h from v6.6). The build host's headers
// (Debian 12: 6.1) predate them, so CVFIO.c spells the structs and numbers out.

/// VFIO_DEVICE_BIND_IOMMUFD on a /dev/vfio/devices/vfioN fd: writes the iommufd device id; 0 or -errno.
int cvfio_device_bind_iommufd(int device, int iommufd, uint32_t *devid);
/// VFIO_DEVICE_ATTACH_IOMMUFD_PT to an IOAS or HWPT id: 0 or -errno.
int cvfio_device_attach_pt(int device, uint32_t pt_id);
/// IOMMU_IOAS_ALLOC on /dev/iommu: writes the IOAS id; 0 or -errno.
int cvfio_ioas_alloc(int iommufd, uint32_t *ioas);
/// IOMMU_IOAS_MAP at a fixed IOVA, readable and writeable: 0 or -errno.
int cvfio_ioas_map(int iommufd, uint32_t ioas, uint64_t vaddr, uint64_t iova, uint64_t size);
/// IOMMU_IOAS_UNMAP: 0 or -errno.
int cvfio_ioas_unmap(int iommufd, uint32_t ioas, uint64_t iova, uint64_t size);
/// IOMMU_DESTROY of an iommufd object id: 0 or -errno.
int cvfio_iommufd_destroy(int iommufd, uint32_t id);

/// open(2) with flags; the fd or -errno.
int cvfio_open(const char *path, int flags);
/// pidfd_open(2) (Linux 5.3+): a descriptor that turns readable when the process `pid` ends; the fd or -errno.
int cvfio_pidfd_open(int pid);
/// poll(2) for POLLIN on `fd` for up to `milliseconds`: 1 readable, 0 timed out, or -errno.
int cvfio_wait_readable(int fd, int milliseconds);
/// Puts a tty into raw mode (cfmakeraw, 115200 baud); 0 or -errno.
int cvfio_tty_raw(int fd);

/// A sysfs write running in a clone(2)d child (ChildWrite.c): shares the agent's memory,
/// holds none of its descriptors, never execs.
struct cvfio_write_job;
/// Starts a child that writes `length` bytes of `value` to `path` in one write(2); its pid
/// (reap it with waitpid) and the job in `out`, or -errno (-ENOSYS where unsupported).
int cvfio_write_start(const char *path, const char *value, size_t length, struct cvfio_write_job **out);
/// After the child is reaped: 0 or the errno of its open or write (EIO if it did not finish).
int cvfio_write_result(const struct cvfio_write_job *job);
/// Frees the job's memory, the child's stack among it: only once the child is reaped.
void cvfio_write_free(struct cvfio_write_job *job);

/// Volatile MMIO accessors for mapped BARs (edu takes only 4- and 8-byte accesses).
uint32_t cvfio_mmio_read32(const volatile void *base, size_t offset);
uint64_t cvfio_mmio_read64(const volatile void *base, size_t offset);
void cvfio_mmio_write32(volatile void *base, size_t offset, uint32_t value);
void cvfio_mmio_write64(volatile void *base, size_t offset, uint64_t value);

#endif
