// SPDX-License-Identifier: MIT
/*
 * The recorder of ioasid's preload library (trace.h): IOASID_TRACE=PREFIX writes each process's
 * VFIO and iommufd calls to PREFIX.PID in the JSON Lines v1 trace format (docs/trace.md). Records
 * are raw: an ioctl's request and its argument's bytes before and after the call, as hex; readers
 * (readTrace) name and decode them from the one uAPI description.
 *
 * Recording must not change the program: every hook keeps errno, the argument is read with
 * process_vm_readv on the program's own pid (a bad pointer reads short instead of faulting), and
 * the trace file is opened on the first record, O_CLOEXEC, at a descriptor number >= 1000 so the
 * numbers the program and the kernel hand out do not move. A file is written with raw syscalls,
 * one record per write, so a crash loses nothing already returned.
 *
 * How much of an ioctl argument is recorded follows the uAPI, by the rules the bridge uses too
 * (ioctl_arg.h): an iommufd command's u32 size; a VFIO struct's u32 argsz; VFIO_GROUP_GET_DEVICE_FD's
 * string; VFIO_GROUP_SET_CONTAINER's int; the integer-argument VFIO commands record `arg`; any
 * other request its _IOC_SIZE.
 */
#define _GNU_SOURCE
#include "trace.h"
#include "ioctl_arg.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#define MAX_FDS 65536
/* The most bytes one record copies from one buffer (a capability chain, a SET_IRQS array, a read). */
#define MAX_ARG (1u << 20)
#define MAX_MMAPS 256

/* The uAPI numbers the recorder needs besides ioctl_arg.h's. */
#define IOMMU_IOAS_IOVA_RANGES 0x3b84

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static const char *prefix;
/* The trace file of this process (-1: not opened yet), the process it is for, and its identity. */
static int out = -1;
static pid_t out_pid;
static dev_t out_dev;
static ino_t out_ino;
static char out_name[4096];
static unsigned long long seq;
/* The file each traced descriptor refers to (NULL: not traced). */
static char *paths[MAX_FDS];
/* The recorded mmaps of traced descriptors, for munmap. */
static struct { uintptr_t start, len; } mmaps[MAX_MMAPS];

static void after_fork_child(void)
{
	pthread_mutex_init(&lock, NULL);
	/* The parent's file is the parent's: the child opens its own on its first record. */
	if (out >= 0)
		syscall(SYS_close, out);
	out = -1;
	seq = 0;
}

__attribute__((constructor)) static void trace_init(void)
{
	const char *p = getenv("IOASID_TRACE");
	prefix = p && *p ? p : NULL;
	if (prefix)
		pthread_atfork(NULL, NULL, after_fork_child);
}

int trace_path(const char *path)
{
	return prefix && path && (!strcmp(path, "/dev/iommu") || !strncmp(path, "/dev/vfio/", 10));
}

int trace_fd(int fd)
{
	return prefix && fd >= 0 && fd < MAX_FDS && paths[fd];
}

/* Another thread may be naming the same slot in a record: paths change under the lock. */
static void set_path(int fd, const char *path)
{
	char *old, *copy = path ? strdup(path) : NULL;

	if (fd < 0 || fd >= MAX_FDS) {
		free(copy);
		return;
	}
	pthread_mutex_lock(&lock);
	old = paths[fd];
	paths[fd] = copy;
	pthread_mutex_unlock(&lock);
	free(old);
}

// ---- the program's memory ----------------------------------------------------------------------

/* A copy of what is readable of [addr, addr+n) (NULL when n is 0 or memory is short); *len its length. `self`: getpid(). */
static unsigned char *copy_in(pid_t self, uintptr_t addr, size_t n, size_t *len)
{
	unsigned char *b;

	*len = 0;
	if (n > MAX_ARG)
		n = MAX_ARG;
	b = malloc(n ? n : 1);
	if (b)
		*len = self_peek(self, addr, b, n);
	return b;
}

// ---- a record as text ---------------------------------------------------------------------------

struct text {
	char *p;
	size_t len, cap;
	int failed;
};

static void grow(struct text *t, size_t more)
{
	size_t cap;
	char *p;

	if (t->failed || t->len + more < t->cap)
		return;
	cap = t->cap ? t->cap : 256;
	while (cap <= t->len + more)
		cap *= 2;
	p = realloc(t->p, cap);
	if (!p) {
		t->failed = 1;
		return;
	}
	t->p = p;
	t->cap = cap;
}

__attribute__((format(printf, 2, 3))) static void put(struct text *t, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	grow(t, (size_t)n + 1);
	if (t->failed)
		return;
	va_start(ap, fmt);
	vsnprintf(t->p + t->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	t->len += (size_t)n;
}

/* A JSON string, or null. */
static void put_str(struct text *t, const char *s)
{
	if (!s) {
		put(t, "null");
		return;
	}
	put(t, "\"");
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\')
			put(t, "\\%c", c);
		else if (c < 0x20)
			put(t, "\\u%04x", c);
		else
			put(t, "%c", c);
	}
	put(t, "\"");
}

/* Bytes as a JSON hex string, or null. */
static void put_hex(struct text *t, const char *field, const unsigned char *b, size_t n)
{
	static const char digits[] = "0123456789abcdef";

	put(t, ",\"%s\":", field);
	if (!b) {
		put(t, "null");
		return;
	}
	grow(t, 2 * n + 3);
	if (t->failed)
		return;
	t->p[t->len++] = '"';
	for (size_t i = 0; i < n; i++) {
		t->p[t->len++] = digits[b[i] >> 4];
		t->p[t->len++] = digits[b[i] & 15];
	}
	t->p[t->len++] = '"';
	t->p[t->len] = 0;
}

/* `"result":R,"errno":E` for a call that returned `ret` (-1 with errno `err` on failure). */
static void put_result(struct text *t, long ret, int err)
{
	const char *name;

	if (ret >= 0) {
		put(t, ",\"result\":%ld,\"errno\":null}\n", ret);
		return;
	}
	name = strerrorname_np(err);
	if (name)
		put(t, ",\"result\":-1,\"errno\":\"%s\"}\n", name);
	else
		put(t, ",\"result\":-1,\"errno\":\"E%d\"}\n", err);
}

/* The header: what recorded, where the calls went, when. */
static void put_header(struct text *t)
{
	struct utsname u;
	struct timespec now;
	struct tm tm;
	char when[64], exe[4096];
	const char *sim = getenv("IOASID_BRIDGE_SOCKET");
	const char *machine = getenv("IOASID_TRACE_MACHINE");
	ssize_t n;

	uname(&u);
	clock_gettime(CLOCK_REALTIME, &now);
	gmtime_r(&now.tv_sec, &tm);
	strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);
	n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	exe[n > 0 ? n : 0] = 0;
	put(t, "{\"trace\":\"ioasid\",\"version\":1,\"backend\":\"%s\",\"machine\":", sim ? "sim" : "linux");
	put_str(t, sim ? (machine ? machine : "sim") : u.nodename);
	if (!sim) {
		put(t, ",\"kernel\":");
		put_str(t, u.release);
	}
	put(t, ",\"pid\":%d,\"ppid\":%d,\"start\":\"%s.%03ldZ\",\"page_size\":%ld,\"producer\":\"libioasid_preload\",\"exe\":",
	    (int)getpid(), (int)getppid(), when, now.tv_nsec / 1000000, sysconf(_SC_PAGESIZE));
	put_str(t, exe);
	put(t, "}\n");
}

// ---- the trace file ----------------------------------------------------------------------------

static int write_all(int fd, const char *p, size_t n)
{
	while (n) {
		ssize_t k = (ssize_t)syscall(SYS_write, fd, p, n);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			return -1;
		p += k;
		n -= (size_t)k;
	}
	return 0;
}

/* This process's trace file, opened (with its header) on the first record; -1 if it cannot be. */
static int trace_file(void)
{
	struct stat st;
	int fd;

	if (out >= 0 && out_pid == getpid()) {
		/* The program may have closed our number and reused it: never write into its file. */
		if (!syscall(SYS_fstat, out, &st) && st.st_dev == out_dev && st.st_ino == out_ino)
			return out;
		fd = high_fd((int)syscall(SYS_openat, AT_FDCWD, out_name, O_WRONLY | O_APPEND | O_CLOEXEC));
	} else {
		struct text h = { 0 };
		/* PREFIX.PID; an exec'd image in the same process gets PREFIX.PID-N. */
		snprintf(out_name, sizeof(out_name), "%s.%d", prefix, (int)getpid());
		for (int i = 1;; i++) {
			fd = (int)syscall(SYS_openat, AT_FDCWD, out_name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
			if (fd >= 0 || errno != EEXIST || i > 100)
				break;
			snprintf(out_name, sizeof(out_name), "%s.%d-%d", prefix, (int)getpid(), i);
		}
		fd = high_fd(fd);
		put_header(&h);
		if (fd >= 0 && (h.failed || write_all(fd, h.p, h.len))) {
			syscall(SYS_close, fd);
			fd = -1;
		}
		free(h.p);
		seq = 0;
	}
	out = fd;
	out_pid = getpid();
	if (fd >= 0 && !syscall(SYS_fstat, fd, &st)) {
		out_dev = st.st_dev;
		out_ino = st.st_ino;
	}
	return fd;
}

/* Write one record: `body` is everything after `{"seq":N,`. Frees body. */
static void emit(struct text *body)
{
	char head[48];
	int fd;

	if (body->failed) {
		free(body->p);
		return;
	}
	pthread_mutex_lock(&lock);
	fd = trace_file();
	if (fd >= 0) {
		int n = snprintf(head, sizeof(head), "{\"seq\":%llu,", seq++);
		if (write_all(fd, head, (size_t)n) || write_all(fd, body->p, body->len)) {
			/* a short write leaves a broken line: end the file there rather than go on */
			syscall(SYS_close, fd);
			out = -1;
			out_pid = -1;
			prefix = NULL;
		}
	}
	pthread_mutex_unlock(&lock);
	free(body->p);
}

/* The path of `fd` as a JSON string (null when not traced). */
static void put_path(struct text *t, int fd)
{
	pthread_mutex_lock(&lock);
	put_str(t, fd >= 0 && fd < MAX_FDS ? paths[fd] : NULL);
	pthread_mutex_unlock(&lock);
}

/* `"syscall":S,"fd":F,"path":P` */
static void put_call(struct text *t, const char *syscall_name, int fd)
{
	put(t, "\"syscall\":\"%s\",\"fd\":%d,\"path\":", syscall_name, fd);
	put_path(t, fd);
}

// ---- the calls ---------------------------------------------------------------------------------

void trace_open(const char *path, int flags, int ret)
{
	int err = errno;
	struct text t = { 0 };

	if (!prefix)
		return;
	if (!trace_path(path)) {
		/* a descriptor number reused by an untraced open is not traced any more */
		if (ret >= 0 && ret < MAX_FDS && paths[ret])
			set_path(ret, NULL);
		return;
	}
	put(&t, "\"syscall\":\"open\",\"path\":");
	put_str(&t, path);
	put(&t, ",\"flags\":%d", flags);
	put_result(&t, ret, err);
	emit(&t);
	set_path(ret, ret >= 0 ? path : NULL);
	errno = err;
}

void trace_close(int fd, int ret)
{
	int err = errno;
	struct text t = { 0 };

	if (!trace_fd(fd))
		return;
	put_call(&t, "close", fd);
	put_result(&t, ret, err);
	emit(&t);
	set_path(fd, NULL);
	errno = err;
}

void trace_dup(int oldfd, int newfd)
{
	int err = errno;
	struct text t = { 0 };

	if (!prefix || newfd < 0 || oldfd == newfd)
		return;
	if (!trace_fd(oldfd)) {
		/* dup2 over a traced descriptor closed it */
		set_path(newfd, NULL);
		return;
	}
	put_call(&t, "dup", oldfd);
	put_result(&t, newfd, err);
	emit(&t);
	pthread_mutex_lock(&lock);
	char *path = paths[oldfd] ? strdup(paths[oldfd]) : NULL;
	pthread_mutex_unlock(&lock);
	set_path(newfd, path);
	free(path);
	errno = err;
}

void trace_ioctl_begin(struct trace_ioctl *t, int fd, unsigned long request, unsigned long arg)
{
	int err = errno;
	struct ioctl_arg a = ioctl_arg_of(request);
	uint32_t size;
	pid_t self;

	*t = (struct trace_ioctl){ .fd = fd, .request = (unsigned int)request, .arg = arg };
	if (!trace_fd(fd) || a.kind == IOCTL_ARG_VALUE)
		return;
	t->bytes = 1;
	if (!arg)
		return;
	self = getpid();
	switch (a.kind) {
	case IOCTL_ARG_STRING: {
		/* strndup_user(arg, PAGE_SIZE): up to and including the NUL */
		t->in = copy_in(self, arg, (size_t)sysconf(_SC_PAGESIZE), &t->len);
		unsigned char *nul = t->in ? memchr(t->in, 0, t->len) : NULL;
		if (nul)
			t->len = (size_t)(nul - t->in) + 1;
		break;
	}
	case IOCTL_ARG_SIZED:
		/* iommufd's size and VFIO's argsz: the first u32 */
		t->in = copy_in(self, arg, self_peek(self, arg, &size, 4) < 4 ? 4 : size, &t->len);
		break;
	default:
		t->in = copy_in(self, arg, a.len, &t->len);
	}
	errno = err;
}

static uint32_t u32_at(const unsigned char *b, size_t len, size_t off)
{
	uint32_t v = 0;
	if (b && off + 4 <= len)
		memcpy(&v, b + off, 4);
	return v;
}

/* The fd a successful ioctl handed out, and what it refers to (-1: none). */
static int new_fd(const struct trace_ioctl *t, long ret, const unsigned char *after, size_t len, const char **path)
{
	if (ret < 0)
		return -1;
	switch (t->request) {
	case VFIO_GROUP_GET_DEVICE_FD:
		*path = "anon_inode:[vfio-device]";
		return (int)ret;
	case IOMMU_FAULT_QUEUE_ALLOC: /* struct iommu_fault_alloc's out_fault_fd */
		*path = "anon_inode:[iommufd-pgfault]";
		return len >= 16 ? (int)u32_at(after, len, 12) : -1;
	case IOMMU_VEVENTQ_ALLOC: /* struct iommu_veventq_alloc's out_veventq_fd */
		*path = "anon_inode:[iommufd-viommu-event]";
		return len >= 28 ? (int)u32_at(after, len, 24) : -1;
	}
	return -1;
}

void trace_ioctl_end(struct trace_ioctl *t, long ret)
{
	int err = errno;
	struct text r = { 0 };
	unsigned char *after = NULL, *mem = NULL;
	size_t alen = 0, mlen = 0;
	const char *path = NULL;
	int made;

	if (!trace_fd(t->fd))
		return;
	put_call(&r, "ioctl", t->fd);
	put(&r, ",\"request\":%u", t->request);
	if (!t->bytes) {
		if (t->arg < (1ul << 53))
			put(&r, ",\"arg\":%lu", t->arg);
		else
			put(&r, ",\"arg_hex\":\"0x%lx\"", t->arg);
	} else if (!t->arg) {
		put(&r, ",\"in_hex\":null,\"out_hex\":null");
	} else {
		pid_t self = getpid();
		/* what the kernel wrote back lies inside what it read */
		after = t->in ? copy_in(self, t->arg, t->len, &alen) : NULL;
		put_hex(&r, "in_hex", t->in ? t->in : (const unsigned char *)"", t->len);
		put_hex(&r, "out_hex", after ? after : (const unsigned char *)"", alen);
		if (t->request == IOMMU_IOAS_IOVA_RANGES && ret >= 0 && alen >= 24) {
			/* num_iovas ranges written at allowed_iovas: struct iommu_iova_range { start, last } */
			uint64_t ptr;
			memcpy(&ptr, after + 16, 8);
			mem = copy_in(self, (uintptr_t)ptr, (size_t)u32_at(after, alen, 8) * 16, &mlen);
			if (mem)
				put_hex(&r, "mem_hex", mem, mlen);
		}
	}
	put_result(&r, ret, err);
	emit(&r);
	made = new_fd(t, ret, after, alen, &path);
	if (made >= 0)
		set_path(made, path);
	free(t->in);
	free(after);
	free(mem);
	t->in = NULL;
	errno = err;
}

void trace_io(const char *syscall_name, int fd, const void *buf, size_t count, off_t offset, ssize_t ret)
{
	int err = errno;
	struct text t = { 0 };
	int is_read = strstr(syscall_name, "read") != NULL;
	unsigned char *bytes;
	size_t len;

	if (!trace_fd(fd))
		return;
	put_call(&t, syscall_name, fd);
	put(&t, ",\"count\":%zu", count);
	if (offset >= 0)
		put(&t, ",\"offset\":%lld", (long long)offset);
	if (is_read && ret < 0) {
		put_hex(&t, "out_hex", NULL, 0);
	} else {
		/* the bytes read, or the bytes given to write */
		bytes = copy_in(getpid(), (uintptr_t)buf, is_read ? (size_t)ret : count, &len);
		put_hex(&t, is_read ? "out_hex" : "in_hex", bytes ? bytes : (const unsigned char *)"", len);
		free(bytes);
	}
	put_result(&t, ret, err);
	emit(&t);
	errno = err;
}

void trace_mmap(void *addr, size_t length, int prot, int flags, int fd, off_t offset, void *ret)
{
	int err = errno;
	struct text t = { 0 };

	if (!trace_fd(fd))
		return;
	put(&t, "\"syscall\":\"mmap\",\"addr\":\"0x%lx\",\"length\":%zu,\"prot\":%d,\"flags\":%d,\"fd\":%d,\"path\":",
	    (unsigned long)(uintptr_t)addr, length, prot, flags, fd);
	put_path(&t, fd);
	put(&t, ",\"offset\":%lld", (long long)offset);
	if (ret == (void *)-1) {
		put_result(&t, -1, err);
	} else {
		put(&t, ",\"result\":\"0x%lx\",\"errno\":null}\n", (unsigned long)(uintptr_t)ret);
		pthread_mutex_lock(&lock);
		for (int i = 0; i < MAX_MMAPS; i++) {
			if (!mmaps[i].len) {
				mmaps[i].start = (uintptr_t)ret;
				mmaps[i].len = length;
				break;
			}
		}
		pthread_mutex_unlock(&lock);
	}
	emit(&t);
	errno = err;
}

void trace_munmap(void *addr, size_t length, int ret)
{
	int err = errno;
	uintptr_t a = (uintptr_t)addr;
	int hit = 0;
	struct text t = { 0 };

	if (!prefix)
		return;
	pthread_mutex_lock(&lock);
	for (int i = 0; i < MAX_MMAPS; i++) {
		if (mmaps[i].len && mmaps[i].start < a + length && a < mmaps[i].start + mmaps[i].len) {
			hit = 1;
			if (ret == 0)
				mmaps[i].len = 0;
		}
	}
	pthread_mutex_unlock(&lock);
	if (!hit)
		return;
	put(&t, "\"syscall\":\"munmap\",\"addr\":\"0x%lx\",\"length\":%zu", (unsigned long)a, length);
	put_result(&t, ret, err);
	emit(&t);
	errno = err;
}
