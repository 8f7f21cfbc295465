/*
 * A plain iommufd program: it knows nothing of ioasid. Run it against a sim machine with
 *   ioasid serve -- ./ioas_map
 * It allocates an IOAS, maps a buffer at a fixed IOVA, reads the IOVA ranges back, makes two
 * requests the kernel refuses, unmaps, and prints what it saw.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/iommufd.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

int main(void)
{
	int fd = open("/dev/iommu", O_RDWR | O_CLOEXEC);
	if (fd < 0) {
		perror("open /dev/iommu");
		return 1;
	}

	struct iommu_ioas_alloc alloc = { .size = sizeof(alloc) };
	if (ioctl(fd, IOMMU_IOAS_ALLOC, &alloc)) {
		perror("IOMMU_IOAS_ALLOC");
		return 1;
	}

	size_t len = 1 << 20;
	void *buf = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	struct iommu_ioas_map map = {
		.size = sizeof(map),
		.flags = IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE,
		.ioas_id = alloc.out_ioas_id,
		.user_va = (uintptr_t)buf,
		.length = len,
		.iova = 0x10000000,
	};
	if (ioctl(fd, IOMMU_IOAS_MAP, &map)) {
		perror("IOMMU_IOAS_MAP");
		return 1;
	}
	printf("ioas %u: mapped %zu bytes at iova 0x%llx\n", alloc.out_ioas_id, len, (unsigned long long)map.iova);

	struct iommu_iova_range ranges[8];
	struct iommu_ioas_iova_ranges get = {
		.size = sizeof(get),
		.ioas_id = alloc.out_ioas_id,
		.num_iovas = 8,
		.allowed_iovas = (uintptr_t)ranges,
	};
	if (ioctl(fd, IOMMU_IOAS_IOVA_RANGES, &get)) {
		perror("IOMMU_IOAS_IOVA_RANGES");
		return 1;
	}
	for (unsigned int i = 0; i < get.num_iovas; i++)
		printf("allowed: 0x%llx-0x%llx\n", (unsigned long long)ranges[i].start, (unsigned long long)ranges[i].last);

	/* Bad requests get the kernel's errno, as they would on real hardware. */
	map.iova += len / 2;
	if (ioctl(fd, IOMMU_IOAS_MAP, &map))
		printf("map over the mapping: %s\n", strerror(errno));
	map.iova -= len / 2;
	struct iommu_ioas_unmap unmap = { .size = sizeof(unmap), .ioas_id = alloc.out_ioas_id, .iova = map.iova + 4096, .length = len };
	if (ioctl(fd, IOMMU_IOAS_UNMAP, &unmap))
		printf("unmap of part of it: %s\n", strerror(errno));
	unmap.iova = map.iova;
	if (ioctl(fd, IOMMU_IOAS_UNMAP, &unmap)) {
		perror("IOMMU_IOAS_UNMAP");
		return 1;
	}
	printf("unmapped %llu bytes\n", (unsigned long long)unmap.length);
	close(fd);
	return 0;
}
