// SPDX-License-Identifier: MIT
/*
 * The C baseline for the map/unmap hot path: what the koffi binding is measured against.
 *
 *   map_unmap [N] [auto|fixed] [none|mock|/dev/vfio/devices/vfioN]
 *
 * Opens /dev/iommu, allocates an IOAS, mmaps one page (sysconf(_SC_PAGESIZE), 4 KiB on x86_64) and
 * touches it, then N times (default 100000) does IOMMU_IOAS_MAP of that page (READABLE|WRITEABLE)
 * followed by IOMMU_IOAS_UNMAP of the same IOVA range.
 *
 *   auto   the kernel picks the IOVA (no IOMMU_IOAS_MAP_FIXED_IOVA); the output iova is unmapped.
 *   fixed  IOMMU_IOAS_MAP_FIXED_IOVA at FIXED_IOVA = 1 << 24: 16 MiB is page aligned, above the
 *          low reserved ranges of common IOMMUs, inside every IOVA range an empty IOAS reports and
 *          equal to MOCK_APERTURE_START, so it also works with a selftest mock domain attached.
 *
 * The third argument says what is attached to the IOAS while it is timed:
 *
 *   none   nothing (default): the IOAS has no domain, so MAP records the area without pinning; the
 *          numbers are the ioctl path (copy in, checks, interval tree) rather than page-table work.
 *   mock   the kernel's selftest mock domain (IOMMU_TEST_CMD / IOMMU_TEST_OP_MOCK_DOMAIN, needs
 *          CONFIG_IOMMUFD_TEST): every MAP pins the page and fills a mock page table, every UNMAP
 *          clears it and unpins.
 *   a VFIO cdev path: that device is bound (VFIO_DEVICE_BIND_IOMMUFD) and attached
 *          (VFIO_DEVICE_ATTACH_IOMMUFD_PT) to the IOAS, so MAP/UNMAP also program the real
 *          IOMMU's page table (VT-d in the test VM) and UNMAP flushes its IOTLB.
 *
 * Two timed passes after a warm-up: the first times whole map+unmap pairs with one clock read at
 * each end (ns_per_pair); the second reads CLOCK_MONOTONIC around each call (ns_map, ns_unmap, each
 * including one clock read, ~20 ns through the vDSO). Prints one JSON line:
 *   {"n":N,"mode":"auto","attach":"none","page_size":4096,"ns_per_pair":X,"ns_map":Y,"ns_unmap":Z}
 * ("attach" is "none", "mock" or "vfio").
 *
 * Exit status: 0 ok, 1 a syscall failed, 2 bad arguments, 77 (automake's "skip") no /dev/iommu.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <linux/iommufd.h>
#include <linux/vfio.h>
#include "iommufd_test.h"

#define FIXED_IOVA (1ULL << 24)
#define EXIT_SKIP 77

static int iommufd;
static struct iommu_ioas_map map;
static struct iommu_ioas_unmap unmap;

static void die(const char *what)
{
	fprintf(stderr, "map_unmap: %s: %s\n", what, strerror(errno));
	exit(1);
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + ts.tv_nsec;
}

static uint32_t ioas_alloc(void)
{
	struct iommu_ioas_alloc cmd = { .size = sizeof(cmd) };

	if (ioctl(iommufd, IOMMU_IOAS_ALLOC, &cmd))
		die("IOMMU_IOAS_ALLOC");
	return cmd.out_ioas_id;
}

/* IOMMU_TEST_OP_MOCK_DOMAIN: a mock device attached to the IOAS (its domain then mirrors every map). */
static void attach_mock(uint32_t ioas_id)
{
	struct iommu_test_cmd cmd = { .size = sizeof(cmd), .op = IOMMU_TEST_OP_MOCK_DOMAIN, .id = ioas_id };

	if (ioctl(iommufd, IOMMU_TEST_CMD, &cmd))
		die("IOMMU_TEST_CMD(MOCK_DOMAIN)");
}

/* Bind a VFIO cdev to the iommufd and attach it to the IOAS; returns the device fd (close unbinds). */
static int attach_vfio(const char *path, uint32_t ioas_id)
{
	struct vfio_device_bind_iommufd bind = { .argsz = sizeof(bind) };
	struct vfio_device_attach_iommufd_pt attach = { .argsz = sizeof(attach), .pt_id = ioas_id };
	int fd = open(path, O_RDWR | O_CLOEXEC);

	if (fd < 0)
		die(path);
	bind.iommufd = iommufd;
	if (ioctl(fd, VFIO_DEVICE_BIND_IOMMUFD, &bind))
		die("VFIO_DEVICE_BIND_IOMMUFD");
	if (ioctl(fd, VFIO_DEVICE_ATTACH_IOMMUFD_PT, &attach))
		die("VFIO_DEVICE_ATTACH_IOMMUFD_PT");
	return fd;
}

static void destroy(uint32_t id)
{
	struct iommu_destroy cmd = { .size = sizeof(cmd), .id = id };

	if (ioctl(iommufd, IOMMU_DESTROY, &cmd))
		die("IOMMU_DESTROY");
}

/* One map of the page; in auto mode the kernel overwrites map.iova, so reset it each time. */
static inline void ioas_map(uint64_t iova)
{
	map.iova = iova;
	if (ioctl(iommufd, IOMMU_IOAS_MAP, &map))
		die("IOMMU_IOAS_MAP");
}

static inline void ioas_unmap(void)
{
	unmap.iova = map.iova;
	unmap.length = map.length;
	if (ioctl(iommufd, IOMMU_IOAS_UNMAP, &unmap))
		die("IOMMU_IOAS_UNMAP");
}

int main(int argc, char **argv)
{
	long n = argc > 1 ? strtol(argv[1], NULL, 0) : 100000;
	const char *mode = argc > 2 ? argv[2] : "auto";
	const char *attach = argc > 3 ? argv[3] : "none";
	int device_fd = -1;
	long page = sysconf(_SC_PAGESIZE);
	uint64_t iova = 0, t0, t1, t2, map_ns = 0, unmap_ns = 0, pair_ns;
	uint32_t flags = IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE;
	uint32_t ioas_id;
	void *buf;
	long i;

	if (n <= 0) {
		fprintf(stderr, "usage: map_unmap [N > 0] [auto|fixed] [none|mock|/dev/vfio/devices/vfioN]\n");
		return 2;
	}
	if (!strcmp(mode, "fixed")) {
		flags |= IOMMU_IOAS_MAP_FIXED_IOVA;
		iova = FIXED_IOVA;
	} else if (strcmp(mode, "auto")) {
		fprintf(stderr, "map_unmap: mode must be auto or fixed, not %s\n", mode);
		return 2;
	}

	iommufd = open("/dev/iommu", O_RDWR | O_CLOEXEC);
	if (iommufd < 0) {
		if (errno == ENOENT) {
			fprintf(stderr, "map_unmap: /dev/iommu is missing: this kernel has no iommufd "
					"(CONFIG_IOMMUFD); run it in the test VM\n");
			return EXIT_SKIP;
		}
		die("open /dev/iommu");
	}
	ioas_id = ioas_alloc();
	if (!strcmp(attach, "mock"))
		attach_mock(ioas_id);
	else if (attach[0] == '/')
		device_fd = attach_vfio(attach, ioas_id);
	else if (strcmp(attach, "none")) {
		fprintf(stderr, "map_unmap: attach must be none, mock or a VFIO cdev path, not %s\n", attach);
		return 2;
	}

	buf = mmap(NULL, page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (buf == MAP_FAILED)
		die("mmap");
	memset(buf, 0x5a, page);

	map = (struct iommu_ioas_map){ .size = sizeof(map), .flags = flags, .ioas_id = ioas_id,
				       .user_va = (uintptr_t)buf, .length = page };
	unmap = (struct iommu_ioas_unmap){ .size = sizeof(unmap), .ioas_id = ioas_id };

	for (i = 0; i < n / 10 + 1; i++) {
		ioas_map(iova);
		ioas_unmap();
	}

	t0 = now_ns();
	for (i = 0; i < n; i++) {
		ioas_map(iova);
		ioas_unmap();
	}
	pair_ns = now_ns() - t0;

	for (i = 0; i < n; i++) {
		t0 = now_ns();
		ioas_map(iova);
		t1 = now_ns();
		ioas_unmap();
		t2 = now_ns();
		map_ns += t1 - t0;
		unmap_ns += t2 - t1;
	}

	printf("{\"n\":%ld,\"mode\":\"%s\",\"attach\":\"%s\",\"page_size\":%ld,\"ns_per_pair\":%.1f,\"ns_map\":%.1f,\"ns_unmap\":%.1f}\n",
	       n, mode, device_fd >= 0 ? "vfio" : attach, page, (double)pair_ns / n, (double)map_ns / n,
	       (double)unmap_ns / n);

	if (device_fd >= 0)
		close(device_fd); /* detaches and unbinds, freeing the automatic HWPT */
	/* The mock device holds the IOAS until the iommufd is closed (DESTROY would be EBUSY). */
	if (strcmp(attach, "mock"))
		destroy(ioas_id);
	munmap(buf, page);
	close(iommufd);
	return 0;
}
