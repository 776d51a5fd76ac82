// A sysfs write in a child that shares the agent's address space and nothing else it holds.
//
// The exec'd helper (`isolab-agent write PATH VALUE`) costs about 12 ms of TCG time a write,
// most of it starting the static Swift binary. This child is clone(2)d with CLONE_VM and no
// exec: it runs on its own small stack, closes every descriptor it inherited (so a blocked
// unbind never waits on a VFIO group or device file the child itself holds, and a crashed
// child takes none with it), then open(2)s, write(2)s and exits, all through raw system
// calls: it shares the agent's thread-local storage, so it must not set errno or enter libc.
// Sharing the memory means nothing is copied on write (pinned DMA pages stay the agent's).

#define _GNU_SOURCE
#include "CVFIO.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>

#define JOB_REGION (64 * 1024)
#define JOB_TEXT_MAX 8192

struct cvfio_write_job {
    /// EIO until the child stores the errno of its open or write (0: written).
    volatile int result;
    size_t length;
    char *path;
    char *value;
};

#if defined(__x86_64__)
static long raw_syscall(long n, long a, long b, long c, long d) {
    long ret;
    register long r10 __asm__("r10") = d;
    __asm__ volatile("syscall" : "=a"(ret) : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10) : "rcx", "r11", "memory");
    return ret;
}
#elif defined(__aarch64__)
static long raw_syscall(long n, long a, long b, long c, long d) {
    register long x8 __asm__("x8") = n;
    register long x0 __asm__("x0") = a;
    register long x1 __asm__("x1") = b;
    register long x2 __asm__("x2") = c;
    register long x3 __asm__("x3") = d;
    __asm__ volatile("svc #0" : "+r"(x0) : "r"(x8), "r"(x1), "r"(x2), "r"(x3) : "memory");
    return x0;
}
#endif

#if defined(__x86_64__) || defined(__aarch64__)
#ifndef SYS_close_range
#define SYS_close_range 436
#endif

static int write_child(void *arg) {
    struct cvfio_write_job *job = arg;
    if (raw_syscall(SYS_close_range, 0, (long)~0U, 0, 0) < 0) {
        for (long fd = 0; fd < 4096; fd++) raw_syscall(SYS_close, fd, 0, 0, 0);
    }
    long fd = raw_syscall(SYS_openat, AT_FDCWD, (long)job->path, O_WRONLY | O_CLOEXEC, 0);
    if (fd < 0) {
        job->result = (int)-fd;
    } else {
        long n = raw_syscall(SYS_write, fd, (long)job->value, (long)job->length, 0);
        job->result = n < 0 ? (int)-n : 0;
    }
    raw_syscall(SYS_exit, 0, 0, 0, 0);
    return 0;
}

int cvfio_write_start(const char *path, const char *value, size_t length, struct cvfio_write_job **out) {
    size_t pathLength = strlen(path);
    if (pathLength + length + 2 > JOB_TEXT_MAX) return -E2BIG;
    char *region = mmap(NULL, JOB_REGION, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
    if (region == MAP_FAILED) return -errno;
    struct cvfio_write_job *job = (struct cvfio_write_job *)region;
    job->result = EIO;
    job->length = length;
    job->path = region + sizeof *job;
    memcpy(job->path, path, pathLength + 1);
    job->value = job->path + pathLength + 1;
    memcpy(job->value, value, length);
    // The stack: everything above the texts, its top 16-byte aligned.
    char *top = (char *)(((unsigned long)(region + JOB_REGION)) & ~15UL);
    int pid = clone(write_child, top, CLONE_VM | SIGCHLD, job);
    if (pid < 0) {
        int e = errno;
        munmap(region, JOB_REGION);
        return -e;
    }
    *out = job;
    return pid;
}
#else
int cvfio_write_start(const char *path, const char *value, size_t length, struct cvfio_write_job **out) {
    (void)path; (void)value; (void)length; (void)out;
    return -ENOSYS;
}
#endif

int cvfio_write_result(const struct cvfio_write_job *job) { return job->result; }

void cvfio_write_free(struct cvfio_write_job *job) { munmap(job, JOB_REGION); }
