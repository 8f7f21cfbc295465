// SPDX-License-Identifier: MIT
/*
 * The preload library's recorder (trace.c): with IOASID_TRACE=PREFIX set, every call a program
 * makes on a VFIO or iommufd descriptor is written to PREFIX.PID as a JSON Lines v1 trace
 * (docs/trace.md), raw bytes included, whether the call went to the real kernel or to the sim.
 *
 * The hooks in ioasid_preload.c call these around the call they route; each one keeps errno as
 * it found it, and does nothing when tracing is off or the descriptor is not a traced one.
 */
#ifndef IOASID_TRACE_H
#define IOASID_TRACE_H

#include <stddef.h>
#include <sys/types.h>

/* Whether `path` is one the recorder follows (/dev/iommu, /dev/vfio/...): open()s of it are recorded. */
__attribute__((visibility("hidden"))) int trace_path(const char *path);
/* Whether `fd` is a traced descriptor (tracing on, and the fd came from a traced open or ioctl). */
__attribute__((visibility("hidden"))) int trace_fd(int fd);

__attribute__((visibility("hidden"))) void trace_open(const char *path, int flags, int ret);
__attribute__((visibility("hidden"))) void trace_close(int fd, int ret);
/* dup/dup2/dup3 of a traced fd: newfd refers to the same file. */
__attribute__((visibility("hidden"))) void trace_dup(int oldfd, int newfd);

/* An ioctl on a traced fd: trace_ioctl_begin copies the argument's bytes, trace_ioctl_end records the call. */
struct trace_ioctl {
	int fd;
	unsigned int request;
	unsigned long arg;
	/* The argument's bytes before the call (NULL: an integer argument, or none could be read). */
	unsigned char *in;
	size_t len;
	/* Whether the argument is a pointer whose bytes are recorded (else `arg` is). */
	int bytes;
};
__attribute__((visibility("hidden"))) void trace_ioctl_begin(struct trace_ioctl *t, int fd, unsigned long request, unsigned long arg);
__attribute__((visibility("hidden"))) void trace_ioctl_end(struct trace_ioctl *t, long ret);

/* read/write/pread/pwrite: `offset` < 0 for read and write. */
__attribute__((visibility("hidden"))) void trace_io(const char *syscall, int fd, const void *buf, size_t count, off_t offset, ssize_t ret);
__attribute__((visibility("hidden"))) void trace_mmap(void *addr, size_t length, int prot, int flags, int fd, off_t offset, void *ret);
/* munmap: recorded when the range overlaps a recorded mmap of a traced fd. */
__attribute__((visibility("hidden"))) void trace_munmap(void *addr, size_t length, int ret);

#endif
