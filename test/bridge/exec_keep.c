// SPDX-License-Identifier: MIT
/*
 * Descriptors across exec, as a launcher hands them to a VMM (libvirt opens /dev/vfio/N and
 * /dev/iommu and passes them to QEMU): the one without close-on-exec survives in the new image
 * with its objects, the close-on-exec one is gone, and closing every other descriptor (as daemons
 * do) leaves the survivors working. The output must be the same on the sim through the bridge and
 * natively on the kernel (test/bridge.test.ts). argv[1]: the device's address.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/iommufd.h>
#include <linux/vfio.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "vfio_util.h"

static char group[64];

/* The new image: argv = self, bdf, "after", group fd, iommufd, IOAS id, close-on-exec iommufd. */
static int after(char **argv)
{
	int g = atoi(argv[3]), ictx = atoi(argv[4]), gone = atoi(argv[6]);
	unsigned int ioas = (unsigned int)atoi(argv[5]);
	struct vfio_group_status st = { .argsz = sizeof(st) };

	printf("after exec: the close-on-exec iommufd: %s\n", fcntl(gone, F_GETFD) < 0 && errno == EBADF ? "closed" : "open");
	/* a daemon closes what it does not know */
	for (int fd = 3; fd < 256; fd++)
		if (fd != g && fd != ictx)
			close(fd);
	int r = ioctl(g, VFIO_GROUP_GET_STATUS, &st);
	printf("the group's descriptor: GET_STATUS %d, viable %d\n", r, !!(st.flags & VFIO_GROUP_FLAGS_VIABLE));
	printf("the group is still held: %s\n", vfio_group_opens(group));

	struct iommu_iova_range ranges[4];
	struct iommu_ioas_iova_ranges cmd = {
		.size = sizeof(cmd), .ioas_id = ioas, .num_iovas = 4, .allowed_iovas = (uintptr_t)ranges,
	};
	r = ioctl(ictx, IOMMU_IOAS_IOVA_RANGES, &cmd);
	printf("the IOAS made before exec: IOVA_RANGES %d, %u range(s)\n", r, cmd.num_iovas);
	close(g);
	printf("after closing the group's descriptor: %s\n", vfio_group_opens(group));
	return 0;
}

int main(int argc, char **argv)
{
	const char *bdf = argc > 1 ? argv[1] : "0000:00:01.0";
	char a[4][16];

	vfio_group_path(bdf, group, sizeof(group));
	if (argc > 2 && !strcmp(argv[2], "after"))
		return after(argv);

	int g = open(group, O_RDWR);
	int ictx = open("/dev/iommu", O_RDWR);
	int gone = open("/dev/iommu", O_RDWR | O_CLOEXEC);
	struct iommu_ioas_alloc alloc = { .size = sizeof(alloc) };
	if (g < 0 || ictx < 0 || gone < 0 || ioctl(ictx, IOMMU_IOAS_ALLOC, &alloc)) {
		perror("setup");
		return 1;
	}
	printf("before exec: group %s, IOAS allocated\n", vfio_group_opens(group));
	fflush(stdout);
	snprintf(a[0], sizeof(a[0]), "%d", g);
	snprintf(a[1], sizeof(a[1]), "%d", ictx);
	snprintf(a[2], sizeof(a[2]), "%u", alloc.out_ioas_id);
	snprintf(a[3], sizeof(a[3]), "%d", gone);
	execl("/proc/self/exe", argv[0], bdf, "after", a[0], a[1], a[2], a[3], (char *)NULL);
	perror("execl");
	return 1;
}
