/*
 * edu's DMA engine into the program's own memory: a plain VFIO program (test/bridge_dma.test.ts
 * runs it on the sim through the bridge and natively on the kernel; both must print the same).
 *   edu_dma /dev/vfio/devices/vfioN     the cdev, bound to an iommufd, attached to an IOAS
 *   edu_dma /dev/vfio/GROUP BDF         the group in a type1 container (VFIO_TYPE1v2_IOMMU)
 * A memfd goes in by IOMMU_IOAS_MAP_FILE through the IOAS, by its MAP_SHARED mapping through type1.
 *
 * edu (QEMU hw/misc/edu.c) copies between an IOVA and its 4 KiB buffer at device address 0x40000,
 * one direction per command: DMA_CMD bit 1 clear is RAM -> device, set is device -> RAM; bit 0
 * starts it and clears when done. Registers are reached with pread/pwrite on BAR0's region.
 * Transfers stay at the start of the buffer and within 2 KiB (QEMU 7.2 aborts the VM on an
 * off-by-one otherwise) and below 2^28 (edu's DMA mask).
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
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "vfio_util.h"

#define EDU_ID 0x010000ed
#define EDU_BUF 0x40000ull
#define DMA_SRC 0x80
#define DMA_DST 0x88
#define DMA_CNT 0x90
#define DMA_CMD 0x98
#define CMD_RUN 1
#define CMD_TO_RAM 2
#define SZ 0x4000
#define LEN 1024

static int dev, iommufd, container = -1;
static uint32_t ioas;
static off_t bar0;

static void reg_write(uint32_t reg, uint64_t v)
{
	if (pwrite(dev, &v, 8, bar0 + reg) != 8)
		die("BAR0 write");
}

static uint64_t reg_read(uint32_t reg)
{
	uint64_t v = 0;

	if (pread(dev, &v, 8, bar0 + reg) != 8)
		die("BAR0 read");
	return v;
}

/* One transfer, polled until edu clears the run bit (QEMU runs it 100 ms later on a timer). */
static void dma(uint64_t src, uint64_t dst, uint64_t cmd)
{
	struct timespec ms = { 0, 1000000 };

	reg_write(DMA_SRC, src);
	reg_write(DMA_DST, dst);
	reg_write(DMA_CNT, LEN);
	reg_write(DMA_CMD, cmd | CMD_RUN);
	for (int i = 0; i < 10000; i++) {
		if (!(reg_read(DMA_CMD) & CMD_RUN))
			return;
		nanosleep(&ms, NULL);
	}
	printf("DMA 0x%llx -> 0x%llx never completed\n", (unsigned long long)src, (unsigned long long)dst);
	exit(1);
}

static void to_device(uint64_t iova)
{
	dma(iova, EDU_BUF, 0);
}

static void to_ram(uint64_t iova)
{
	dma(EDU_BUF, iova, CMD_TO_RAM);
}

static void map(void *va, uint64_t iova, uint32_t flags)
{
	if (container >= 0) {
		struct vfio_iommu_type1_dma_map d = {
			.argsz = sizeof(d),
			.flags = (flags & IOMMU_IOAS_MAP_READABLE ? VFIO_DMA_MAP_FLAG_READ : 0) |
				 (flags & IOMMU_IOAS_MAP_WRITEABLE ? VFIO_DMA_MAP_FLAG_WRITE : 0),
			.vaddr = (uintptr_t)va,
			.iova = iova,
			.size = SZ,
		};

		if (ioctl(container, VFIO_IOMMU_MAP_DMA, &d))
			die("VFIO_IOMMU_MAP_DMA");
		return;
	}
	struct iommu_ioas_map m = {
		.size = sizeof(m),
		.flags = IOMMU_IOAS_MAP_FIXED_IOVA | flags,
		.ioas_id = ioas,
		.user_va = (uintptr_t)va,
		.length = SZ,
		.iova = iova,
	};

	if (ioctl(iommufd, IOMMU_IOAS_MAP, &m))
		die("IOMMU_IOAS_MAP");
}

static void *anon(void)
{
	void *p = mmap(NULL, SZ, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED)
		die("mmap");
	return p;
}

/* Bytes that differ from offset to offset (xorshift), so a copy from the wrong place shows. */
static void fill(uint8_t *p, uint32_t seed)
{
	uint32_t x = seed * 2654435761u;

	for (unsigned int i = 0; i < SZ; i++) {
		x ^= x << 13;
		x ^= x >> 17;
		x ^= x << 5;
		p[i] = x >> 24;
	}
}

static void report(const char *what, int ok)
{
	printf("%s: %s\n", what, ok ? "yes" : "NO");
}

static uint64_t region(uint32_t index)
{
	struct vfio_region_info r = { .argsz = sizeof(r), .index = index };

	if (ioctl(dev, VFIO_DEVICE_GET_REGION_INFO, &r))
		die("VFIO_DEVICE_GET_REGION_INFO");
	return r.offset;
}

/* The cdev bound to a new iommufd, attached to a new IOAS. */
static void open_cdev(const char *path)
{
	iommufd = open("/dev/iommu", O_RDWR);
	if (iommufd < 0)
		die("open /dev/iommu");
	dev = open(path, O_RDWR);
	if (dev < 0)
		die("open the cdev");
	struct vfio_device_bind_iommufd bind = { .argsz = sizeof(bind), .iommufd = iommufd };
	if (ioctl(dev, VFIO_DEVICE_BIND_IOMMUFD, &bind))
		die("VFIO_DEVICE_BIND_IOMMUFD");
	struct iommu_ioas_alloc alloc = { .size = sizeof(alloc) };
	if (ioctl(iommufd, IOMMU_IOAS_ALLOC, &alloc))
		die("IOMMU_IOAS_ALLOC");
	ioas = alloc.out_ioas_id;
	struct vfio_device_attach_iommufd_pt attach = { .argsz = sizeof(attach), .pt_id = ioas };
	if (ioctl(dev, VFIO_DEVICE_ATTACH_IOMMUFD_PT, &attach))
		die("VFIO_DEVICE_ATTACH_IOMMUFD_PT");
}

int main(int argc, char **argv)
{
	int group;

	if (argc == 2) {
		open_cdev(argv[1]);
	} else if (argc == 3) {
		/* the group in a new type1 container, and the device from it */
		dev = vfio_group_device(argv[1], argv[2], &group, &container);
	} else {
		fprintf(stderr, "usage: %s /dev/vfio/devices/vfioN | /dev/vfio/GROUP BDF\n", argv[0]);
		return 2;
	}

	bar0 = region(VFIO_PCI_BAR0_REGION_INDEX);
	off_t config = region(VFIO_PCI_CONFIG_REGION_INDEX);
	uint16_t command;
	if (pread(dev, &command, 2, config + 4) != 2)
		die("config read");
	command |= 0x4; /* PCI_COMMAND_MASTER */
	if (pwrite(dev, &command, 2, config + 4) != 2)
		die("config write");
	uint32_t id = 0;
	if (pread(dev, &id, 4, bar0) != 4)
		die("BAR0 read");
	printf("edu id 0x%08x\n", id);

	/* Anonymous memory: RAM -> device -> RAM, each side spanning two pages. */
	uint8_t *a = anon(), *b = anon();
	fill(a, 7);
	map(a, 0x100000, IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE);
	to_device(0x100c00);
	to_ram(0x102e00);
	fill(b, 7);
	memcpy(b + 0x2e00, b + 0xc00, LEN);
	report("anonymous: iova 0x100c00 -> edu -> iova 0x102e00 landed in the program's buffer, and nothing else changed",
	       !memcmp(a, b, SZ));

	/* A memfd through IOMMU_IOAS_MAP_FILE: written by DMA, seen in the program's mapping and by read(). */
	int mfd = memfd_create("edu-dma", 0);
	if (mfd < 0 || ftruncate(mfd, SZ))
		die("memfd");
	uint8_t *m = mmap(NULL, SZ, PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0);
	if (m == MAP_FAILED)
		die("mmap memfd");
	fill(m, 13);
	struct iommu_ioas_map_file mf = {
		.size = sizeof(mf),
		.flags = IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE,
		.ioas_id = ioas,
		.fd = mfd,
		.length = SZ,
		.iova = 0x200000,
	};
	if (container >= 0)
		map(m, 0x200000, IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE);
	else if (ioctl(iommufd, IOMMU_IOAS_MAP_FILE, &mf))
		die("IOMMU_IOAS_MAP_FILE");
	fill(a, 7);
	to_device(0x100800);
	to_ram(0x202e00);
	uint8_t got[LEN];
	if (pread(mfd, got, LEN, 0x2e00) != LEN)
		die("pread memfd");
	report("memfd: iova 0x100800 -> edu -> iova 0x202e00 landed in the memfd's mapping",
	       !memcmp(m + 0x2e00, a + 0x800, LEN));
	report("memfd: and read() of the memfd shows it", !memcmp(got, a + 0x800, LEN));
	to_device(0x201800);
	to_ram(0x103800);
	report("memfd: iova 0x201800 -> edu -> iova 0x103800 (anonymous) carried the memfd's bytes",
	       !memcmp(a + 0x3800, m + 0x1800, LEN));

	/*
	 * Pages pinned by a process that has exited: a child maps a shared memfd mapping (which the
	 * parent maps too) and private memory of its own into the IOAS, then exits. The pins keep
	 * both: DMA reaches the shared pages in the parent's mapping, and the child's private pages
	 * go on holding what the device writes, although no process maps them any more.
	 */
	int sfd = memfd_create("edu-dma-shared", 0);
	if (sfd < 0 || ftruncate(sfd, SZ))
		die("memfd");
	uint8_t *s = mmap(NULL, SZ, PROT_READ | PROT_WRITE, MAP_SHARED, sfd, 0);
	if (s == MAP_FAILED)
		die("mmap memfd");
	fill(s, 29);
	fflush(stdout);
	pid_t child = fork();
	if (child < 0)
		die("fork");
	if (!child) {
		uint8_t *own = anon();
		fill(own, 31);
		map(s, 0x400000, IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE);
		map(own, 0x500000, IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE);
		_exit(0);
	}
	int status;
	if (waitpid(child, &status, 0) != child || !WIFEXITED(status) || WEXITSTATUS(status))
		die("child");
	fill(a, 7);
	to_device(0x100400);
	to_ram(0x401000);
	report("exited pinner: iova 0x100400 -> edu -> iova 0x401000 landed in the parent's mapping of the shared memfd",
	       !memcmp(s + 0x1000, a + 0x400, LEN));
	to_device(0x400000);
	to_ram(0x100000);
	report("exited pinner: iova 0x400000 -> edu -> iova 0x100000 carried the shared memfd's bytes",
	       !memcmp(a, s, LEN));
	fill(a, 7);
	to_device(0x101000);
	to_ram(0x500200);
	to_device(0x102080); /* other bytes in edu's buffer meanwhile */
	memset(a + 0x1c00, 0, LEN);
	to_device(0x500200);
	to_ram(0x101c00);
	report("exited pinner: the child's private pages hold what edu wrote there (iova 0x500200)",
	       !memcmp(a + 0x1c00, a + 0x1000, LEN));

	/* DMA the IOMMU refuses: an unmapped IOVA, and a write to a read-only one. */
	fill(a, 7);
	to_ram(0x600000);
	to_device(0x600000);
	memset(a, 0xff, LEN);
	to_ram(0x100000);
	int zeros = 1;
	for (int i = 0; i < LEN; i++)
		zeros &= a[i] == 0;
	report("unmapped iova 0x600000: both directions completed; the read left zeros in edu's buffer", zeros);
	fill(a, 7);
	map(a, 0x700000, IOMMU_IOAS_MAP_READABLE);
	to_device(0x101000);
	to_ram(0x700000);
	fill(b, 7);
	report("read-only iova 0x700000: a device write there changed nothing", !memcmp(a, b, SZ));

	struct iommu_ioas_unmap un = { .size = sizeof(un), .ioas_id = ioas, .length = UINT64_MAX };
	struct vfio_iommu_type1_dma_unmap all = { .argsz = sizeof(all), .flags = VFIO_DMA_UNMAP_FLAG_ALL };
	if (container >= 0) {
		if (ioctl(container, VFIO_IOMMU_UNMAP_DMA, &all))
			die("VFIO_IOMMU_UNMAP_DMA");
		un.length = all.size;
	} else if (ioctl(iommufd, IOMMU_IOAS_UNMAP, &un)) {
		die("IOMMU_IOAS_UNMAP");
	}
	printf("unmapped %llu bytes\n", (unsigned long long)un.length);
	return 0;
}
