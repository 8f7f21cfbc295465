/* The bridge's cost per call: N IOMMU_IOAS_IOVA_RANGES round trips, printed as ns per call. */
#include <fcntl.h>
#include <linux/iommufd.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <time.h>

int main(int argc, char **argv)
{
	long n = argc > 1 ? atol(argv[1]) : 20000;
	int fd = open("/dev/iommu", O_RDWR);
	struct iommu_ioas_alloc alloc = { .size = sizeof(alloc) };
	struct iommu_iova_range r[4];
	struct iommu_ioas_iova_ranges q = { .size = sizeof(q), .num_iovas = 4, .allowed_iovas = (uintptr_t)r };
	struct timespec a, b;

	if (fd < 0 || ioctl(fd, IOMMU_IOAS_ALLOC, &alloc))
		return 1;
	q.ioas_id = alloc.out_ioas_id;
	clock_gettime(CLOCK_MONOTONIC, &a);
	for (long i = 0; i < n; i++) {
		q.num_iovas = 4;
		if (ioctl(fd, IOMMU_IOAS_IOVA_RANGES, &q))
			return 2;
	}
	clock_gettime(CLOCK_MONOTONIC, &b);
	printf("%.0f\n", ((b.tv_sec - a.tv_sec) * 1e9 + (b.tv_nsec - a.tv_nsec)) / n);
	return 0;
}
