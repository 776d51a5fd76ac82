#include "CVFIO.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <termios.h>
#include <linux/vfio.h>
#include <linux/nvme_ioctl.h>

_Static_assert(CVFIO_TYPE1_IOMMU == VFIO_TYPE1_IOMMU, "type1");
_Static_assert(CVFIO_TYPE1v2_IOMMU == VFIO_TYPE1v2_IOMMU, "type1v2");
_Static_assert(CVFIO_GROUP_FLAGS_VIABLE == VFIO_GROUP_FLAGS_VIABLE, "viable");
_Static_assert(CVFIO_GROUP_FLAGS_CONTAINER_SET == VFIO_GROUP_FLAGS_CONTAINER_SET, "container set");
_Static_assert(CVFIO_PCI_BAR0_REGION_INDEX == VFIO_PCI_BAR0_REGION_INDEX, "bar0");
_Static_assert(CVFIO_PCI_CONFIG_REGION_INDEX == VFIO_PCI_CONFIG_REGION_INDEX, "config");

static int result(int r) { return r < 0 ? -errno : r; }

int cvfio_get_api_version(int container) { return result(ioctl(container, VFIO_GET_API_VERSION)); }

int cvfio_check_extension(int container, int extension) {
    return result(ioctl(container, VFIO_CHECK_EXTENSION, extension));
}

int cvfio_set_iommu(int container, int type) { return result(ioctl(container, VFIO_SET_IOMMU, type)); }

int cvfio_group_get_status(int group, uint32_t *flags) {
    struct vfio_group_status status = { .argsz = sizeof(status) };
    int r = ioctl(group, VFIO_GROUP_GET_STATUS, &status);
    if (r < 0) return -errno;
    *flags = status.flags;
    return 0;
}

int cvfio_group_set_container(int group, int container) {
    return result(ioctl(group, VFIO_GROUP_SET_CONTAINER, &container));
}

int cvfio_group_get_device_fd(int group, const char *name) {
    return result(ioctl(group, VFIO_GROUP_GET_DEVICE_FD, name));
}

int cvfio_device_set_vf_token(int device, const uint8_t uuid[16]) {
    struct { struct vfio_device_feature feature; uint8_t uuid[16]; } arg;
    memset(&arg, 0, sizeof(arg));
    arg.feature.argsz = sizeof(arg);
    arg.feature.flags = VFIO_DEVICE_FEATURE_SET | VFIO_DEVICE_FEATURE_PCI_VF_TOKEN;
    memcpy(arg.uuid, uuid, 16);
    return result(ioctl(device, VFIO_DEVICE_FEATURE, &arg));
}

int cvfio_device_get_region_info(int device, uint32_t index, cvfio_region *region) {
    struct vfio_region_info info = { .argsz = sizeof(info), .index = index };
    int r = ioctl(device, VFIO_DEVICE_GET_REGION_INFO, &info);
    if (r < 0) return -errno;
    region->flags = info.flags;
    region->size = info.size;
    region->offset = info.offset;
    return 0;
}

int cvfio_map_dma(int container, uint64_t vaddr, uint64_t iova, uint64_t size) {
    struct vfio_iommu_type1_dma_map map = {
        .argsz = sizeof(map),
        .flags = VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE,
        .vaddr = vaddr, .iova = iova, .size = size,
    };
    return result(ioctl(container, VFIO_IOMMU_MAP_DMA, &map));
}

int cvfio_unmap_dma(int container, uint64_t iova, uint64_t size) {
    struct vfio_iommu_type1_dma_unmap unmap = { .argsz = sizeof(unmap), .iova = iova, .size = size };
    return result(ioctl(container, VFIO_IOMMU_UNMAP_DMA, &unmap));
}

/* iommufd and VFIO both use ioctl type ';' with the size-less _IO() encoding; iommufd
 * commands start at 0x80, VFIO's at VFIO_BASE (100). Layouts as in the v6.12 uAPI. */
#define CVFIO_IOCTL_TYPE ';'
#define CVFIO_IOMMU_DESTROY _IO(CVFIO_IOCTL_TYPE, 0x80)
#define CVFIO_IOMMU_IOAS_ALLOC _IO(CVFIO_IOCTL_TYPE, 0x81)
#define CVFIO_IOMMU_IOAS_MAP _IO(CVFIO_IOCTL_TYPE, 0x85)
#define CVFIO_IOMMU_IOAS_UNMAP _IO(CVFIO_IOCTL_TYPE, 0x86)
#define CVFIO_DEVICE_BIND_IOMMUFD _IO(CVFIO_IOCTL_TYPE, VFIO_BASE + 18)
#define CVFIO_DEVICE_ATTACH_IOMMUFD_PT _IO(CVFIO_IOCTL_TYPE, VFIO_BASE + 19)
#define CVFIO_IOAS_MAP_FIXED_IOVA (1u << 0)
#define CVFIO_IOAS_MAP_WRITEABLE (1u << 1)
#define CVFIO_IOAS_MAP_READABLE (1u << 2)
_Static_assert(CVFIO_NOIOMMU_IOMMU == VFIO_NOIOMMU_IOMMU, "noiommu");

struct cvfio_iommu_destroy { uint32_t size; uint32_t id; };
struct cvfio_ioas_alloc_arg { uint32_t size; uint32_t flags; uint32_t out_ioas_id; };
struct cvfio_ioas_map_arg {
    uint32_t size; uint32_t flags; uint32_t ioas_id; uint32_t reserved;
    uint64_t user_va; uint64_t length; uint64_t iova;
};
struct cvfio_ioas_unmap_arg { uint32_t size; uint32_t ioas_id; uint64_t iova; uint64_t length; };
struct cvfio_bind_iommufd { uint32_t argsz; uint32_t flags; int32_t iommufd; uint32_t out_devid; };
struct cvfio_attach_pt { uint32_t argsz; uint32_t flags; uint32_t pt_id; };

int cvfio_device_bind_iommufd(int device, int iommufd, uint32_t *devid) {
    struct cvfio_bind_iommufd bind = { .argsz = sizeof(bind), .iommufd = iommufd };
    int r = ioctl(device, CVFIO_DEVICE_BIND_IOMMUFD, &bind);
    if (r < 0) return -errno;
    *devid = bind.out_devid;
    return 0;
}

int cvfio_device_attach_pt(int device, uint32_t pt_id) {
    struct cvfio_attach_pt attach = { .argsz = sizeof(attach), .pt_id = pt_id };
    return result(ioctl(device, CVFIO_DEVICE_ATTACH_IOMMUFD_PT, &attach));
}

int cvfio_ioas_alloc(int iommufd, uint32_t *ioas) {
    struct cvfio_ioas_alloc_arg alloc = { .size = sizeof(alloc) };
    int r = ioctl(iommufd, CVFIO_IOMMU_IOAS_ALLOC, &alloc);
    if (r < 0) return -errno;
    *ioas = alloc.out_ioas_id;
    return 0;
}

int cvfio_ioas_map(int iommufd, uint32_t ioas, uint64_t vaddr, uint64_t iova, uint64_t size) {
    struct cvfio_ioas_map_arg map = {
        .size = sizeof(map), .ioas_id = ioas, .user_va = vaddr, .length = size, .iova = iova,
        .flags = CVFIO_IOAS_MAP_FIXED_IOVA | CVFIO_IOAS_MAP_WRITEABLE | CVFIO_IOAS_MAP_READABLE,
    };
    return result(ioctl(iommufd, CVFIO_IOMMU_IOAS_MAP, &map));
}

int cvfio_ioas_unmap(int iommufd, uint32_t ioas, uint64_t iova, uint64_t size) {
    struct cvfio_ioas_unmap_arg unmap = { .size = sizeof(unmap), .ioas_id = ioas, .iova = iova, .length = size };
    return result(ioctl(iommufd, CVFIO_IOMMU_IOAS_UNMAP, &unmap));
}

int cvfio_iommufd_destroy(int iommufd, uint32_t id) {
    struct cvfio_iommu_destroy destroy = { .size = sizeof(destroy), .id = id };
    return result(ioctl(iommufd, CVFIO_IOMMU_DESTROY, &destroy));
}

int cvfio_open(const char *path, int flags) { return result(open(path, flags | O_CLOEXEC)); }

int cvfio_pidfd_open(int pid) {
#ifdef SYS_pidfd_open
    return result((int)syscall(SYS_pidfd_open, pid, 0));
#else
    return result((int)syscall(434, pid, 0));
#endif
}

int cvfio_wait_readable(int fd, int milliseconds) {
    struct pollfd p = { .fd = fd, .events = POLLIN };
    return result(poll(&p, 1, milliseconds));
}

int cvfio_tty_raw(int fd) {
    struct termios t;
    if (tcgetattr(fd, &t) < 0) return -errno;
    cfmakeraw(&t);
    cfsetispeed(&t, B115200);
    cfsetospeed(&t, B115200);
    return result(tcsetattr(fd, TCSANOW, &t));
}

uint32_t cvfio_mmio_read32(const volatile void *base, size_t offset) {
    return *(const volatile uint32_t *)((const volatile char *)base + offset);
}
uint64_t cvfio_mmio_read64(const volatile void *base, size_t offset) {
    return *(const volatile uint64_t *)((const volatile char *)base + offset);
}
void cvfio_mmio_write32(volatile void *base, size_t offset, uint32_t value) {
    *(volatile uint32_t *)((volatile char *)base + offset) = value;
}
void cvfio_mmio_write64(volatile void *base, size_t offset, uint64_t value) {
    *(volatile uint64_t *)((volatile char *)base + offset) = value;
}

int cvfio_nvme_admin(int fd, uint8_t opcode, uint32_t cdw10, uint32_t cdw11, void *data, uint32_t length, uint32_t *result_out) {
    struct nvme_admin_cmd cmd;
    memset(&cmd, 0, sizeof(cmd));
    cmd.opcode = opcode;
    cmd.cdw10 = cdw10;
    cmd.cdw11 = cdw11;
    cmd.addr = (uint64_t)(uintptr_t)data;
    cmd.data_len = length;
    cmd.timeout_ms = 5000;
    int r = ioctl(fd, NVME_IOCTL_ADMIN_CMD, &cmd);
    if (r < 0) return -errno;
    if (result_out) *result_out = cmd.result;
    return r;
}
