// SPDX-License-Identifier: MIT
/*
 * Two threads take descriptor numbers at once: one opens and closes /dev/null in a loop, checking
 * that each descriptor it holds is still /dev/null; the other opens /dev/iommu, allocates an IOAS
 * on it and closes it. A new sim descriptor must never take (or replace) a number the first
 * thread holds. Prints the counts; the output must be the same on the sim through the bridge and
 * natively on the kernel (test/bridge.test.ts).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/iommufd.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#define ROUNDS 3000

static dev_t null_rdev;
static volatile int done;
static int clobbered;

static void *opener(void *unused)
{
	(void)unused;
	while (!done) {
		int fd = open("/dev/null", O_RDONLY);
		struct stat st;
		for (int i = 0; i < 20; i++) {
			if (fstat(fd, &st) || !S_ISCHR(st.st_mode) || st.st_rdev != null_rdev) {
				clobbered++;
				break;
			}
		}
		close(fd);
	}
	return NULL;
}

int main(void)
{
	struct stat st;
	pthread_t t;
	int ok = 0;

	stat("/dev/null", &st);
	null_rdev = st.st_rdev;
	pthread_create(&t, NULL, opener, NULL);
	for (int i = 0; i < ROUNDS; i++) {
		int fd = open("/dev/iommu", O_RDWR);
		struct iommu_ioas_alloc alloc = { .size = sizeof(alloc) };
		if (fd >= 0 && !ioctl(fd, IOMMU_IOAS_ALLOC, &alloc))
			ok++;
		close(fd);
	}
	done = 1;
	pthread_join(t, NULL);
	printf("IOAS allocated on %d of %d descriptors; another thread's descriptor replaced %d times\n", ok, ROUNDS, clobbered);
	return 0;
}
