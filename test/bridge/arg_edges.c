/*
 * ioctl arguments at the edges of the program's memory, where what the kernel reads and writes is
 * decided by the page tables: a struct ending where the mapping ends, a size larger than the
 * struct, a struct or a user pointer the kernel cannot write. test/bridge.test.ts runs it through
 * the bridge and, in the VM, on the real kernel: both must print the same. The last call comes
 * after a pause long enough for a bridge server to fall asleep: the program must wake it.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/iommufd.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "vfio_util.h"

static int fd;

/* An IOAS_ALLOC whose struct starts `at` bytes into `page` and claims `size` bytes. */
static void alloc_at(const char *what, char *page, size_t at, uint32_t size)
{
	struct iommu_ioas_alloc *a = (void *)(page + at);

	a->size = size;
	a->flags = 0;
	a->out_ioas_id = 0;
	int r = ioctl(fd, IOMMU_IOAS_ALLOC, a);
	printf("%s: %s%s\n", what, err(r), r == 0 && a->out_ioas_id ? ", out_ioas_id set" : "");
}

int main(void)
{
	long page = sysconf(_SC_PAGESIZE);
	struct iommu_ioas_alloc alloc = { .size = sizeof(alloc) };
	struct iommu_iova_range range;
	struct iommu_ioas_iova_ranges get = { .size = sizeof(get) };
	char *mem;

	fd = open("/dev/iommu", O_RDWR);
	if (fd < 0 || ioctl(fd, IOMMU_IOAS_ALLOC, &alloc)) {
		perror("/dev/iommu");
		return 1;
	}
	/* two pages, the second unmapped: the first ends where the mapping ends */
	mem = mmap(NULL, 2 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (mem == MAP_FAILED)
		die("mmap");
	munmap(mem + page, page);
	alloc_at("IOAS_ALLOC ending where the mapping ends", mem, page - sizeof(alloc), sizeof(alloc));
	alloc_at("IOAS_ALLOC of size 300, zeros past the struct", mem, 0, 300);
	mem[299] = 1;
	alloc_at("IOAS_ALLOC of size 300, byte 299 not zero", mem, 0, 300);
	alloc_at("IOAS_ALLOC of size 300 running past the mapping", mem, page - sizeof(alloc), 300);

	/* a struct the kernel cannot write back */
	struct iommu_ioas_alloc *ro = (void *)mem;
	*ro = (struct iommu_ioas_alloc){ .size = sizeof(*ro) };
	mprotect(mem, page, PROT_READ);
	printf("IOAS_ALLOC in a read-only page: %s\n", err(ioctl(fd, IOMMU_IOAS_ALLOC, ro)));

	/* IOVA_RANGES: the count comes back on EMSGSIZE; the ranges go through a user pointer */
	const char *e;
	get.ioas_id = alloc.out_ioas_id;
	get.num_iovas = 0;
	e = err(ioctl(fd, IOMMU_IOAS_IOVA_RANGES, &get));
	printf("IOVA_RANGES with room for none: %s, num_iovas %u\n", e, get.num_iovas);
	get.num_iovas = 1;
	get.allowed_iovas = (uintptr_t)mem;
	printf("IOVA_RANGES into a read-only page: %s\n", err(ioctl(fd, IOMMU_IOAS_IOVA_RANGES, &get)));
	get.allowed_iovas = (uintptr_t)&range;
	usleep(20000);
	e = err(ioctl(fd, IOMMU_IOAS_IOVA_RANGES, &get));
	printf("IOVA_RANGES: %s, num_iovas %u, [0x%llx, 0x%llx]\n", e, get.num_iovas, (unsigned long long)range.start, (unsigned long long)range.last);
	return 0;
}
