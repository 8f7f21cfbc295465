/*
 * The bridge's cost per call, for `npm run bench` (bench/bridge.ts):
 *   roundtrip N           N IOMMU_IOAS_IOVA_RANGES round trips (run it under `ioasid serve`)
 *   roundtrip --socket N  the floor under it: N round trips between two C processes over a unix
 *                         socket, 40 bytes there (a request's header) and 16 back (an answer's)
 * Each prints the mean and the median of a round trip, in ns. The mean counts the calls that
 * waited for a CPU other processes held; the median is what a call costs when none did.
 */
#include <fcntl.h>
#include <linux/iommufd.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1e9 + t.tv_nsec;
}

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

/* Print the mean and the median of n times (sorts them). */
static void report(double *t, long n)
{
	double sum = 0;
	for (long i = 0; i < n; i++)
		sum += t[i];
	qsort(t, n, sizeof(*t), cmp);
	printf("%.0f %.0f\n", sum / n, t[n / 2]);
}

static int socket_floor(long n)
{
	char buf[40] = { 0 };
	double *t = malloc(n * sizeof(*t));
	int sv[2];
	pid_t child;

	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv))
		return 1;
	child = fork();
	if (child == 0) {
		/* the echoing end: read a request, answer it */
		for (long i = 0; i < n; i++)
			if (read(sv[1], buf, 40) != 40 || write(sv[1], buf, 16) != 16)
				_exit(1);
		_exit(0);
	}
	for (long i = 0; i < n; i++) {
		double a = now();
		if (write(sv[0], buf, 40) != 40 || read(sv[0], buf, 16) != 16)
			return 2;
		t[i] = now() - a;
	}
	report(t, n);
	waitpid(child, NULL, 0);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc > 2 && !strcmp(argv[1], "--socket"))
		return socket_floor(atol(argv[2]));

	long n = argc > 1 ? atol(argv[1]) : 20000;
	int fd = open("/dev/iommu", O_RDWR);
	struct iommu_ioas_alloc alloc = { .size = sizeof(alloc) };
	struct iommu_iova_range r[4];
	struct iommu_ioas_iova_ranges q = { .size = sizeof(q), .num_iovas = 4, .allowed_iovas = (uintptr_t)r };
	double *t = malloc(n * sizeof(*t));

	if (fd < 0 || ioctl(fd, IOMMU_IOAS_ALLOC, &alloc))
		return 1;
	q.ioas_id = alloc.out_ioas_id;
	for (long i = 0; i < n; i++) {
		double a = now();
		q.num_iovas = 4;
		if (ioctl(fd, IOMMU_IOAS_IOVA_RANGES, &q))
			return 2;
		t[i] = now() - a;
	}
	report(t, n);
	return 0;
}
