// SPDX-License-Identifier: MIT
/*
 * How an ioctl's argument is read (ioctl_arg.c), shared by the bridge (ioasid_preload.c), which
 * sends the argument's bytes with the request, and the recorder (trace.c), which records them. The
 * rules are the server's (src/bridge/ioctl.ts) and the kernel's: keep the three in step.
 *
 * The process's own memory is read and written here without ever faulting: an unmapped or
 * protected byte ends the copy as a user copy in the kernel would (process_vm_readv/writev on our
 * own pid; /proc/self/mem on a kernel without CROSS_MEMORY_ATTACH).
 */
#ifndef IOASID_IOCTL_ARG_H
#define IOASID_IOCTL_ARG_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* The uAPI numbers the rules and the bridge need (';' is both VFIO's and iommufd's ioctl type). */
#define IOCTL_TYPE ';'
#define VFIO_GET_API_VERSION 0x3b64
#define VFIO_CHECK_EXTENSION 0x3b65
#define VFIO_SET_IOMMU 0x3b66
#define VFIO_GROUP_SET_CONTAINER 0x3b68
#define VFIO_GROUP_UNSET_CONTAINER 0x3b69
#define VFIO_GROUP_GET_DEVICE_FD 0x3b6a
#define VFIO_DEVICE_RESET 0x3b6f
#define VFIO_IOMMU_SPAPR_ENABLE 0x3b73
#define VFIO_IOMMU_SPAPR_DISABLE 0x3b74
#define VFIO_DEVICE_FEATURE 0x3b75
#define IOMMU_FAULT_QUEUE_ALLOC 0x3b8e
#define IOMMU_VEVENTQ_ALLOC 0x3b93
/* drivers/iommu/iommufd/iommufd_test.h */
#define IOMMU_TEST_CMD 0x3ba0

enum ioctl_arg_kind {
	/* The argument is a value, not a pointer (the integer-argument VFIO commands). */
	IOCTL_ARG_VALUE,
	/* A NUL-terminated string of at most a page (VFIO_GROUP_GET_DEVICE_FD: strndup_user). */
	IOCTL_ARG_STRING,
	/* A struct whose first u32 is its size (iommufd's size, VFIO's argsz). */
	IOCTL_ARG_SIZED,
	/* `len` bytes (VFIO_GROUP_SET_CONTAINER's int; any other request's _IOC_SIZE). */
	IOCTL_ARG_FIXED,
};

struct ioctl_arg {
	enum ioctl_arg_kind kind;
	/* IOCTL_ARG_FIXED: how many bytes. */
	size_t len;
};

/* How the kernel reads the argument of `request`. */
__attribute__((visibility("hidden"))) struct ioctl_arg ioctl_arg_of(unsigned long request);

/*
 * Bytes of [addr, addr+n) readable from the start, copied into buf (a fault ends the copy). `self`
 * is this process's pid, getpid(), which a caller on a hot path may know already.
 */
__attribute__((visibility("hidden"))) size_t self_peek(pid_t self, uintptr_t addr, void *buf, size_t n);
/* Bytes of buf written to [addr, addr+n) from the start (a fault or a read-only page ends the copy). */
__attribute__((visibility("hidden"))) size_t self_poke(pid_t self, uintptr_t addr, const void *buf, size_t n);

/* Move `fd` to a number >= 1000 (or as high as RLIMIT_NOFILE allows), close-on-exec, so the numbers the program is handed do not move. */
__attribute__((visibility("hidden"))) int high_fd(int fd);

#endif
