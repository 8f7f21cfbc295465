/*
 * What a program sees of itself while it is traced: the kernel's answers (a bad pointer, a short
 * struct), the descriptor numbers it gets, and every descriptor it holds. test/trace_cmd.test.ts
 * runs it traced and untraced and compares: only the trace file's descriptor may differ.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/iommufd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "vfio_util.h"

int main(void)
{
	int fd = open("/dev/iommu", O_RDWR);
	printf("open /dev/iommu: %s\n", err(fd));
	if (fd >= 0) {
		struct iommu_ioas_alloc shortarg = { .size = 4 };
		printf("IOAS_ALLOC at a bad pointer: %s\n", err(ioctl(fd, IOMMU_IOAS_ALLOC, (void *)8)));
		printf("IOAS_ALLOC of size 4: %s\n", err(ioctl(fd, IOMMU_IOAS_ALLOC, &shortarg)));
	}
	printf("next fd: %d\n", open("/dev/null", O_RDONLY));

	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	while ((e = readdir(d))) {
		int f = atoi(e->d_name);
		char link[64], target[4096];
		ssize_t n;

		if (e->d_name[0] == '.' || f == dirfd(d))
			continue;
		snprintf(link, sizeof(link), "/proc/self/fd/%d", f);
		n = readlink(link, target, sizeof(target) - 1);
		target[n > 0 ? n : 0] = 0;
		if (f >= 1000)
			printf("fd >= 1000: close-on-exec %s\n", fcntl(f, F_GETFD) & FD_CLOEXEC ? "yes" : "no");
		else
			printf("fd %d: %s\n", f, target);
	}
	closedir(d);
	return 0;
}
