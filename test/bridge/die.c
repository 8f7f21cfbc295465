/* Opens /dev/iommu, allocates an IOAS and maps memory, then dies by SIGKILL mid-session. */
#include <fcntl.h>
#include <linux/iommufd.h>
#include <signal.h>
#include <stdint.h>
#include <sys/ioctl.h>
#include <sys/mman.h>

int main(void)
{
	int fd = open("/dev/iommu", O_RDWR);
	struct iommu_ioas_alloc alloc = { .size = sizeof(alloc) };
	void *buf = mmap(0, 1 << 16, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	struct iommu_ioas_map map = { .size = sizeof(map), .flags = IOMMU_IOAS_MAP_READABLE };

	if (fd < 0 || ioctl(fd, IOMMU_IOAS_ALLOC, &alloc))
		return 1;
	map.ioas_id = alloc.out_ioas_id;
	map.user_va = (uintptr_t)buf;
	map.length = 1 << 16;
	if (ioctl(fd, IOMMU_IOAS_MAP, &map))
		return 2;
	raise(SIGKILL);
	return 3;
}
