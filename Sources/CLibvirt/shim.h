#ifndef ISOLAB_CLIBVIRT_SHIM_H
#define ISOLAB_CLIBVIRT_SHIM_H

#include <stddef.h>
#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>
#include <libvirt/libvirt-qemu.h>
#include <sys/prctl.h>

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

#endif
