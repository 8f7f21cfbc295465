// SPDX-License-Identifier: MIT
/*
 * What the bridge test programs share: failing with the step's name, a call's result as the errno's
 * name, the legacy VFIO setup of a group in a type1v2 container, and finding a device's group
 * through sysfs.
 */
#ifndef VFIO_UTIL_H
#define VFIO_UTIL_H

#include <errno.h>
#include <fcntl.h>
#include <linux/vfio.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

static inline void die(const char *what)
{
	printf("%s: %s\n", what, strerror(errno));
	exit(1);
}

/* A call's result: "ok", or the name of its errno (EFAULT) when it failed. */
static inline const char *err(int r)
{
	return r < 0 ? strerrorname_np(errno) : "ok";
}

/* The group at `path` in a new type1v2 container (its descriptors in *group and *container), and the device `bdf` from it. */
static inline int vfio_group_device(const char *path, const char *bdf, int *group, int *container)
{
	struct vfio_group_status st = { .argsz = sizeof(st) };
	int dev;

	*container = open("/dev/vfio/vfio", O_RDWR);
	*group = open(path, O_RDWR);
	if (*container < 0 || *group < 0)
		die("open the group and the container");
	if (ioctl(*group, VFIO_GROUP_GET_STATUS, &st) || !(st.flags & VFIO_GROUP_FLAGS_VIABLE))
		die("VFIO_GROUP_GET_STATUS");
	if (ioctl(*group, VFIO_GROUP_SET_CONTAINER, container))
		die("VFIO_GROUP_SET_CONTAINER");
	if (ioctl(*container, VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU))
		die("VFIO_SET_IOMMU");
	dev = ioctl(*group, VFIO_GROUP_GET_DEVICE_FD, bdf);
	if (dev < 0)
		die("VFIO_GROUP_GET_DEVICE_FD");
	return dev;
}

/* The path of the VFIO group of device `bdf` (/dev/vfio/N), from its iommu_group link in sysfs. */
static inline void vfio_group_path(const char *bdf, char *out, size_t size)
{
	char path[256], link[256];
	snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/iommu_group", bdf);
	ssize_t n = readlink(path, link, sizeof(link) - 1);
	if (n < 0)
		die("readlink iommu_group");
	link[n] = 0;
	snprintf(out, size, "/dev/vfio/%s", strrchr(link, '/') + 1);
}

/* Whether the group at `path` opens now (then it closes it again): "opens", or EBUSY while held. */
static inline const char *vfio_group_opens(const char *path)
{
	int fd = open(path, O_RDWR);
	if (fd >= 0) {
		close(fd);
		return "opens";
	}
	return errno == EBUSY ? "EBUSY" : strerror(errno);
}

#endif
