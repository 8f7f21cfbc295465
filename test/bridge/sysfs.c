// SPDX-License-Identifier: MIT
/*
 * The machine's file system as a VFIO tool sees it: an edu device's sysfs directory, its IOMMU
 * group link, its VFIO cdev, intel-iommu's debugfs, fault injection's debugfs and fail-nth. Prints
 * what it finds and each call's errno; the output must be the same on the sim through the bridge
 * and natively on the kernel (test/bridge.test.ts). argv[1]: the device's address.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char path[512];

static const char *at(const char *fmt, const char *bdf)
{
	snprintf(path, sizeof(path), fmt, bdf);
	return path;
}

/* The result of a call returning -1 on error: "ok" or the errno's name. */
static const char *res(long r)
{
	static char buf[32];
	if (r >= 0)
		return "ok";
	switch (errno) {
	case ENOENT: return "ENOENT";
	case EACCES: return "EACCES";
	case EISDIR: return "EISDIR";
	case ENOTDIR: return "ENOTDIR";
	case EINVAL: return "EINVAL";
	case EBADF: return "EBADF";
	case ESPIPE: return "ESPIPE";
	}
	snprintf(buf, sizeof(buf), "errno %d", errno);
	return buf;
}

static void read_attr(const char *name, const char *p)
{
	char buf[64] = "";
	int fd = open(p, O_RDONLY);
	ssize_t n = fd < 0 ? -1 : read(fd, buf, sizeof(buf) - 1);
	if (n > 0)
		buf[n] = 0;
	printf("%s: %s", name, n > 0 ? buf : "(none)\n");
	if (fd >= 0) {
		/* a second read from the start gives the same text */
		char again[64] = "";
		printf("  lseek to 0: %s", res(lseek(fd, 0, SEEK_SET)));
		n = read(fd, again, sizeof(again) - 1);
		printf(", read again: %s\n", n > 0 && !strcmp(buf, again) ? "same" : "different");
		close(fd);
	}
}

int main(int argc, char **argv)
{
	const char *bdf = argc > 1 ? argv[1] : "0000:00:01.0";
	char buf[256];
	struct stat st;
	ssize_t n;
	int fd;

	read_attr("vendor", at("/sys/bus/pci/devices/%s/vendor", bdf));
	read_attr("device", at("/sys/bus/pci/devices/%s/device", bdf));

	n = readlink(at("/sys/bus/pci/devices/%s/iommu_group", bdf), buf, sizeof(buf) - 1);
	if (n > 0)
		buf[n] = 0;
	printf("iommu_group link: %s\n", n > 0 ? (strstr(buf, "kernel/iommu_groups/") ? "into /sys/kernel/iommu_groups" : buf) : res(n));
	n = readlink(at("/sys/bus/pci/devices/%s/driver", bdf), buf, sizeof(buf) - 1);
	if (n > 0)
		buf[n] = 0;
	printf("driver: %s\n", n > 0 ? strrchr(buf, '/') + 1 : res(n));

	DIR *d = opendir(at("/sys/bus/pci/devices/%s/vfio-dev/", bdf));
	printf("opendir vfio-dev: %s\n", d ? "ok" : res(-1));
	for (struct dirent *e; d && (e = readdir(d));)
		if (e->d_name[0] != '.')
			printf("  entry %s%s\n", e->d_name, e->d_type == DT_DIR ? " (dir)" : "");
	if (d) {
		rewinddir(d);
		struct dirent *e = readdir(d);
		printf("  after rewinddir, first entry is a dot: %s\n", e && e->d_name[0] == '.' ? "yes" : "no");
		closedir(d);
	}

	const char *r = res(stat(at("/sys/bus/pci/devices/%s/vendor", bdf), &st));
	printf("stat vendor: %s, regular %d, mode %o, size %ld\n", r, S_ISREG(st.st_mode), st.st_mode & 07777, (long)st.st_size);
	r = res(lstat(at("/sys/bus/pci/devices/%s/iommu_group", bdf), &st));
	printf("lstat iommu_group: %s, link %d\n", r, S_ISLNK(st.st_mode));
	r = res(stat(path, &st));
	printf("stat iommu_group: %s, dir %d\n", r, S_ISDIR(st.st_mode));
	r = res(stat("/dev/vfio/vfio", &st));
	printf("stat /dev/vfio/vfio: %s, chr %d, mode %o\n", r, S_ISCHR(st.st_mode), st.st_mode & 07777);

	printf("open vendor to write: %s\n", res(open(at("/sys/bus/pci/devices/%s/vendor", bdf), O_WRONLY)));
	printf("open the device's directory to write: %s\n", res(open(at("/sys/bus/pci/devices/%s", bdf), O_RDWR)));
	printf("open vendor as a directory: %s\n", res(open(at("/sys/bus/pci/devices/%s/vendor", bdf), O_RDONLY | O_DIRECTORY)));
	printf("readlink of vendor: %s\n", res(readlink(at("/sys/bus/pci/devices/%s/vendor", bdf), buf, sizeof(buf))));
	printf("open a missing attribute: %s\n", res(open(at("/sys/bus/pci/devices/%s/no_such_attribute", bdf), O_RDONLY)));
	printf("access of a missing attribute: %s\n", res(access(at("/sys/bus/pci/devices/%s/no_such_attribute", bdf), F_OK)));

	printf("access intel-iommu debugfs: %s\n", res(access("/sys/kernel/debug/iommu/intel", F_OK)));
	FILE *f = fopen(at("/sys/kernel/debug/iommu/intel/%s/domain_translation_struct", bdf), "r");
	printf("fopen domain_translation_struct: %s\n", f ? "ok" : res(-1));
	if (f)
		fclose(f);

	DIR *dbg = opendir("/sys/kernel/debug/");
	printf("opendir debugfs: %s\n", dbg ? "ok" : res(-1));
	fd = dbg ? openat(dirfd(dbg), "failslab/ignore-gfp-wait", O_WRONLY) : -1;
	printf("openat failslab/ignore-gfp-wait: %s\n", res(fd));
	if (fd >= 0) {
		/* debugfs_write_file_bool takes what kstrtobool does not know and changes nothing */
		printf("  write \"maybe\": %s\n", res(write(fd, "maybe", 5)));
		close(fd);
	}
	int fail = 0;
	for (struct dirent *e; dbg && (e = readdir(dbg));)
		fail += !strcmp(e->d_name, "failslab") || !strcmp(e->d_name, "fail_page_alloc");
	printf("  failslab and fail_page_alloc listed: %d\n", fail);
	if (dbg)
		closedir(dbg);

	snprintf(path, sizeof(path), "/proc/self/task/%d/fail-nth", getpid());
	fd = open(path, O_RDWR);
	printf("open fail-nth: %s\n", res(fd));
	if (fd >= 0) {
		printf("  write 5: %s\n", res(pwrite(fd, "5", 1, 0)));
		n = pread(fd, buf, sizeof(buf) - 1, 0);
		buf[n > 0 ? n : 0] = 0;
		printf("  reads %s", n > 0 ? buf : "(nothing)\n");
		printf("  write 0: %s\n", res(pwrite(fd, "0", 1, 0)));
		close(fd);
	}
	return 0;
}
