// SPDX-License-Identifier: MIT
/*
 * A VFIO group's descriptor through the descriptor-table calls a program may use besides close and
 * dup: fcntl(F_DUPFD_CLOEXEC), the VFS's own ioctls (FIOCLEX, FIONBIO), close_range and closefrom.
 * A group opens once at a time (EBUSY while a descriptor holds it), so each step shows whether the
 * file is still held. The output must be the same on the sim through the bridge and natively on
 * the kernel (test/bridge.test.ts). argv[1]: the device's address.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/close_range.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "vfio_util.h"

static char group[64];

int main(int argc, char **argv)
{
	const char *bdf = argc > 1 ? argv[1] : "0000:00:01.0";
	int on = 1;

	vfio_group_path(bdf, group, sizeof(group));

	int g = open(group, O_RDWR);
	printf("open group: %s\n", g >= 0 ? "ok" : strerror(errno));
	printf("again while held: %s\n", vfio_group_opens(group));

	int d = fcntl(g, F_DUPFD_CLOEXEC, 100);
	printf("F_DUPFD_CLOEXEC: %s, at or above 100: %d, close-on-exec: %d\n", d >= 0 ? "ok" : strerror(errno), d >= 100, (fcntl(d, F_GETFD) & FD_CLOEXEC) != 0);
	close(g);
	printf("after closing the first, the dup holds it: %s\n", vfio_group_opens(group));

	int r = ioctl(d, FIONCLEX);
	printf("FIONCLEX: %d, close-on-exec: %d\n", r, (fcntl(d, F_GETFD) & FD_CLOEXEC) != 0);
	r = ioctl(d, FIOCLEX);
	printf("FIOCLEX: %d, close-on-exec: %d\n", r, (fcntl(d, F_GETFD) & FD_CLOEXEC) != 0);
	r = ioctl(d, FIONBIO, &on);
	printf("FIONBIO: %d, O_NONBLOCK: %d\n", r, (fcntl(d, F_GETFL) & O_NONBLOCK) != 0);

	r = close_range(d, d, CLOSE_RANGE_CLOEXEC);
	printf("close_range CLOEXEC: %d, still held: %s\n", r, vfio_group_opens(group));
	r = close_range(d, d, 0);
	printf("close_range: %d, then: %s\n", r, vfio_group_opens(group));

	g = open(group, O_RDWR);
	int d2 = dup(g);
	printf("open and dup: %s\n", g >= 0 && d2 >= 0 ? "ok" : strerror(errno));
	closefrom(g < d2 ? g : d2);
	printf("closefrom: %s\n", vfio_group_opens(group));
	return 0;
}
