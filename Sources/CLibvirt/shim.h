#ifndef ISOLAB_CLIBVIRT_SHIM_H
#define ISOLAB_CLIBVIRT_SHIM_H

#include <stddef.h>
#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>
#include <libvirt/libvirt-qemu.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

/* VIR_DOMAIN_EVENT_CALLBACK() is a cast Swift cannot express for a @convention(c) closure. */
static inline int isolab_register_lifecycle(virConnectPtr conn, virConnectDomainEventCallback cb,
                                            void *opaque, virFreeCallback freecb) {
    return virConnectDomainEventRegisterAny(conn, NULL, VIR_DOMAIN_EVENT_ID_LIFECYCLE,
                                            VIR_DOMAIN_EVENT_CALLBACK(cb), opaque, freecb);
}

/* prctl() is variadic, which Swift cannot call. Makes this process the reaper of its
 * orphaned descendants, so the QEMU that the embedded driver daemonizes stays its child. */
static inline int isolab_set_child_subreaper(void) {
    return prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
}

/* syscall() is variadic too. pidfd_open(2) (Linux 5.3) and pidfd_getfd(2) (5.6): a
 * descriptor for a process, and a duplicate of one of its descriptors; -1 with errno. */
static inline int isolab_pidfd_open(int pid) {
#ifdef SYS_pidfd_open
    return (int)syscall(SYS_pidfd_open, pid, 0);
#else
    return (int)syscall(434, pid, 0);
#endif
}

static inline int isolab_pidfd_getfd(int pidfd, int fd) {
#ifdef SYS_pidfd_getfd
    return (int)syscall(SYS_pidfd_getfd, pidfd, fd, 0);
#else
    return (int)syscall(438, pidfd, fd, 0);
#endif
}

#endif
