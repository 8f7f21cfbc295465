// SPDX-License-Identifier: MIT
/* How an ioctl's argument is read, and fault-free copies of the process's own memory (ioctl_arg.h). */
#define _GNU_SOURCE
#include "ioctl_arg.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

/* The lowest descriptor number high_fd() moves to. */
#define HIGH_FD_MIN 1000

/* process_vm_readv/writev is missing (a kernel without CROSS_MEMORY_ATTACH): /proc/self/mem instead. */
static int no_vm;
static int self_mem = -1;

static void after_fork_child(void)
{
	/* /proc/self/mem named the parent's memory when it was opened */
	if (self_mem >= 0)
		syscall(SYS_close, self_mem);
	self_mem = -1;
}

__attribute__((constructor)) static void ioctl_arg_init(void)
{
	pthread_atfork(NULL, NULL, after_fork_child);
}

static int int_arg(unsigned int request)
{
	switch (request) {
	case VFIO_GET_API_VERSION:
	case VFIO_CHECK_EXTENSION:
	case VFIO_SET_IOMMU:
	case VFIO_GROUP_UNSET_CONTAINER:
	case VFIO_DEVICE_RESET:
	case VFIO_IOMMU_SPAPR_ENABLE:
	case VFIO_IOMMU_SPAPR_DISABLE:
		return 1;
	}
	return 0;
}

struct ioctl_arg ioctl_arg_of(unsigned long request)
{
	unsigned int req = (unsigned int)request;

	if (((req >> 8) & 0xff) != IOCTL_TYPE)
		return (struct ioctl_arg){ IOCTL_ARG_FIXED, (req >> 16) & 0x3fff }; /* _IOC_SIZE */
	if (int_arg(req))
		return (struct ioctl_arg){ IOCTL_ARG_VALUE, 0 };
	if (req == VFIO_GROUP_GET_DEVICE_FD)
		return (struct ioctl_arg){ IOCTL_ARG_STRING, 0 };
	if (req == VFIO_GROUP_SET_CONTAINER)
		return (struct ioctl_arg){ IOCTL_ARG_FIXED, 4 };
	return (struct ioctl_arg){ IOCTL_ARG_SIZED, 0 };
}

int high_fd(int fd)
{
	struct rlimit rl;
	long min = HIGH_FD_MIN;
	int hi;

	if (fd < 0)
		return fd;
	if (!getrlimit(RLIMIT_NOFILE, &rl) && rl.rlim_cur != RLIM_INFINITY && (long)rl.rlim_cur <= min)
		min = (long)rl.rlim_cur / 2;
	hi = (int)syscall(SYS_fcntl, fd, F_DUPFD_CLOEXEC, min);
	if (hi < 0)
		return fd;
	syscall(SYS_close, fd);
	return hi;
}

/* One page's worth (or less) of [addr, addr+n) moved: bytes moved, <= 0 at a fault. */
static ssize_t move_chunk(pid_t self, int write, uintptr_t addr, void *buf, size_t n)
{
	ssize_t got = -1;

	if (!no_vm) {
		struct iovec local = { buf, n }, remote = { (void *)addr, n };
		got = write ? process_vm_writev(self, &local, 1, &remote, 1, 0) : process_vm_readv(self, &local, 1, &remote, 1, 0);
		if (got < 0 && errno == ENOSYS)
			no_vm = 1;
	}
	if (no_vm) {
		/* /proc/self/mem ignores page protections: reads only (the recorder's), never the bridge's writes */
		if (write)
			return -1;
		if (self_mem < 0)
			self_mem = high_fd((int)syscall(SYS_openat, AT_FDCWD, "/proc/self/mem", O_RDONLY | O_CLOEXEC));
		got = self_mem < 0 ? -1 : (ssize_t)syscall(SYS_pread64, self_mem, buf, n, (off_t)addr);
	}
	return got;
}

/* Page by page: process_vm_* never splits one iovec element, so a fault inside it would lose the bytes before it. */
static size_t move(pid_t self, int write, uintptr_t addr, void *buf, size_t n)
{
	size_t done = 0;
	long page = sysconf(_SC_PAGESIZE);
	int err = errno;

	while (done < n) {
		uintptr_t a = addr + done;
		size_t chunk = page - (a & (page - 1));
		ssize_t got;

		if (chunk > n - done)
			chunk = n - done;
		got = move_chunk(self, write, a, (char *)buf + done, chunk);
		if (got <= 0)
			break;
		done += (size_t)got;
		if ((size_t)got < chunk)
			break;
	}
	errno = err;
	return done;
}

size_t self_peek(pid_t self, uintptr_t addr, void *buf, size_t n)
{
	return move(self, 0, addr, buf, n);
}

size_t self_poke(pid_t self, uintptr_t addr, const void *buf, size_t n)
{
	return move(self, 1, addr, (void *)buf, n);
}
