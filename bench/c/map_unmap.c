/*
 * The baseline for `npm run bench`: N x (IOMMU_IOAS_MAP + IOMMU_IOAS_UNMAP) of one 4 KiB page on
 * an IOAS with nothing attached, auto IOVA (the same loop the linux backend and the sim run).
 * Built against the kernel's own uapi header. Prints one JSON line.
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>
#include <linux/iommufd.h>

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

int main(int argc, char **argv)
{
	long n = argc > 1 ? atol(argv[1]) : 100000;
	int fd = open("/dev/iommu", O_RDWR);
	if (fd < 0) {
		perror("open /dev/iommu");
		return 2;
	}
	struct iommu_ioas_alloc alloc = { .size = sizeof(alloc) };
	if (ioctl(fd, IOMMU_IOAS_ALLOC, &alloc)) return perror("IOAS_ALLOC"), 1;
	void *buf = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	struct iommu_ioas_map map = {
		.size = sizeof(map),
		.flags = IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE,
		.ioas_id = alloc.out_ioas_id,
		.user_va = (uintptr_t)buf,
		.length = 4096,
	};
	struct iommu_ioas_unmap unmap = { .size = sizeof(unmap), .ioas_id = alloc.out_ioas_id };
	uint64_t best = UINT64_MAX, m = 0, u = 0;
	/* End to end, as the JS loops are timed: best of 3. */
	for (int run = 0; run < 3; run++) {
		uint64_t t0 = now_ns();
		for (long i = 0; i < n; i++) {
			map.iova = 0;
			if (ioctl(fd, IOMMU_IOAS_MAP, &map)) return perror("MAP"), 1;
			unmap.iova = map.iova;
			unmap.length = 4096;
			if (ioctl(fd, IOMMU_IOAS_UNMAP, &unmap)) return perror("UNMAP"), 1;
		}
		uint64_t t = now_ns() - t0;
		if (t < best) best = t;
	}
	/* One more pass with a clock read around each call, for the map / unmap split. */
	for (long i = 0; i < n; i++) {
		uint64_t a = now_ns();
		map.iova = 0;
		if (ioctl(fd, IOMMU_IOAS_MAP, &map)) return perror("MAP"), 1;
		uint64_t b = now_ns();
		unmap.iova = map.iova;
		unmap.length = 4096;
		if (ioctl(fd, IOMMU_IOAS_UNMAP, &unmap)) return perror("UNMAP"), 1;
		m += b - a;
		u += now_ns() - b;
	}
	printf("{\"n\":%ld,\"ns_per_pair\":%.1f,\"ns_map\":%.1f,\"ns_unmap\":%.1f}\n", n,
	       (double)best / n, (double)m / n, (double)u / n);
	return 0;
}
