// SPDX-License-Identifier: MIT
/*
 * ioasid's preload bridge: LD_PRELOAD this library into an unmodified program and its calls on the
 * sim's paths (/dev/iommu, /dev/vfio/...) go to an `ioasid serve` sim machine over a unix socket.
 * Everything else passes through to libc untouched.
 *
 * A sim descriptor is a real descriptor in the program (an eventfd placeholder at the same number
 * the sim installed it at), so close, dup, fork and exec's close-on-exec see a real fd. Calls on
 * it travel to the server; the server reads and writes the program's memory itself
 * (process_vm_readv/writev) for ioctl structs, user pointers and read/write buffers, so this
 * library never interprets a struct.
 *
 * Environment: IOASID_BRIDGE_SOCKET, the server's socket path. Without it every call passes through.
 * IOASID_TRACE=PREFIX: record every VFIO/iommufd call, routed or passed through, to PREFIX.PID (trace.c).
 *
 * The wire format (native byte order; both ends run on one machine) is in src/bridge/protocol.ts.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/un.h>
#include <unistd.h>

#include "mmio.h"
#include "trace.h"

#define BRIDGE_VERSION 1
#define MAX_FDS 65536
#define MAX_PATH 4096
/* call_locked's answer when the connection itself failed (never a sim result). */
#define BROKEN INT64_MIN

enum op {
	OP_HELLO = 1,
	OP_OPEN = 2,
	OP_CLOSE = 3,
	OP_DUP = 4,
	OP_IOCTL = 5,
	OP_READ = 6,
	OP_WRITE = 7,
	OP_PREAD = 8,
	OP_PWRITE = 9,
	OP_FORK = 10,
	OP_VMSTAT = 11,
	OP_MMAP = 12,
	OP_MMAP_PLACED = 13,
	OP_MUNMAP = 14,
	OP_MMIO = 21,
};

struct req {
	uint32_t len; /* whole message, header included */
	uint32_t op;
	uint64_t a[4];
};

struct resp {
	uint32_t len; /* whole message, header included */
	uint32_t nfds; /* descriptors the sim installed, an int32 each after the header */
	int64_t ret; /* >= 0: the result; < 0: -errno */
};

/* The real libc functions, found once. */
static int (*real_open)(const char *, int, ...);
static int (*real_openat)(int, const char *, int, ...);
static int (*real_close)(int);
static int (*real_dup)(int);
static int (*real_dup2)(int, int);
static int (*real_dup3)(int, int, int);
static int (*real_ioctl)(int, unsigned long, ...);
static ssize_t (*real_read)(int, void *, size_t);
static ssize_t (*real_write)(int, const void *, size_t);
static ssize_t (*real_pread)(int, void *, size_t, off_t);
static ssize_t (*real_pwrite)(int, const void *, size_t, off_t);
static FILE *(*real_fopen)(const char *, const char *);
static void *(*real_mmap)(void *, size_t, int, int, int, off_t);
static int (*real_munmap)(void *, size_t);

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static const char *sock_path;
/* The connection of this process (-1: none yet), and the process it was made for. */
static int conn = -1;
static pid_t conn_pid;
/* Set in a forked child whose parent had a connection: the sim clones the parent's descriptors. */
static pid_t forked_from;
/* The server's name for the descriptors the parent kept for this child (OP_FORK's answer). */
static int64_t fork_token;
/* Which descriptors are the sim's. */
static unsigned char simfd[MAX_FDS];
/* The server's pid (HELLO's answer): its /proc/PID/fd holds the memfds sim mappings share. */
static pid_t server_pid;
/* OP_MMAP and OP_MMIO answer values, not descriptors: call_locked leaves them here (lock held). */
static int32_t vals[4];
/* Whether this process has mapped a sim file (then munmap tells the server). */
static int sim_mapped;

/* Find the real functions (idempotent: another library's constructor may call in before ours runs). */
static void resolve(void)
{
	if (real_mmap)
		return;
	real_open = dlsym(RTLD_NEXT, "open");
	real_openat = dlsym(RTLD_NEXT, "openat");
	real_close = dlsym(RTLD_NEXT, "close");
	real_dup = dlsym(RTLD_NEXT, "dup");
	real_dup2 = dlsym(RTLD_NEXT, "dup2");
	real_dup3 = dlsym(RTLD_NEXT, "dup3");
	real_ioctl = dlsym(RTLD_NEXT, "ioctl");
	real_read = dlsym(RTLD_NEXT, "read");
	real_write = dlsym(RTLD_NEXT, "write");
	real_pread = dlsym(RTLD_NEXT, "pread");
	real_pwrite = dlsym(RTLD_NEXT, "pwrite");
	real_fopen = dlsym(RTLD_NEXT, "fopen");
	real_munmap = dlsym(RTLD_NEXT, "munmap");
	real_mmap = dlsym(RTLD_NEXT, "mmap");
}

static int64_t call(uint32_t op, uint64_t a0, uint64_t a1, uint64_t a2, uint64_t a3,
		    const void *payload, uint32_t plen, int cloexec);
static int connect_locked(void);

/* Before fork: the server keeps this process's sim descriptors for the child, as fork(2) shares files. */
static void before_fork(void)
{
	fork_token = 0;
	if (conn >= 0 && conn_pid == getpid()) {
		int64_t t = call(OP_FORK, 0, 0, 0, 0, NULL, 0, 0);
		fork_token = t > 0 ? t : 0;
	}
}

static void after_fork_child(void)
{
	pthread_mutex_init(&lock, NULL);
	if (conn < 0)
		return;
	/* The parent's connection is the parent's: the child connects now and claims its descriptors. */
	real_close(conn);
	forked_from = conn_pid;
	conn = -1;
	if (fork_token)
		connect_locked();
}

__attribute__((constructor)) static void init(void)
{
	resolve();
	sock_path = getenv("IOASID_BRIDGE_SOCKET");
	pthread_atfork(before_fork, NULL, after_fork_child);
}

static int is_sim(int fd)
{
	return sock_path && fd >= 0 && fd < MAX_FDS && simfd[fd];
}

/* The sim's paths: the device nodes it serves. */
static int sim_path(const char *path)
{
	if (!sock_path || !path)
		return 0;
	return !strcmp(path, "/dev/iommu") || !strncmp(path, "/dev/vfio/", 10);
}

/* All n bytes to (write) or from the server's connection; -1 when it breaks. */
static int xfer_all(int fd, void *buf, size_t n, int write)
{
	char *p = buf;
	while (n) {
		/* send(MSG_NOSIGNAL): a server that went away is EIO for the call, not SIGPIPE for the program */
		ssize_t k = write ? send(fd, p, n, MSG_NOSIGNAL) : real_read(fd, p, n);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			return -1;
		p += k;
		n -= k;
	}
	return 0;
}

#define write_all(fd, buf, n) xfer_all(fd, (void *)(buf), n, 1)
#define read_all(fd, buf, n) xfer_all(fd, buf, n, 0)

static int64_t call_locked(uint32_t op, uint64_t a0, uint64_t a1, uint64_t a2, uint64_t a3,
			   const void *payload, uint32_t plen, int cloexec);

/* Connect this process (called with the lock held). */
static int connect_locked(void)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd;

	if (conn >= 0 && conn_pid == getpid())
		return 0;
	if (strlen(sock_path) >= sizeof(sa.sun_path)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	strcpy(sa.sun_path, sock_path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa))) {
		int e = errno;
		real_close(fd);
		errno = e;
		return -1;
	}
	conn = fd;
	conn_pid = getpid();
	int64_t server = call_locked(OP_HELLO, forked_from, BRIDGE_VERSION, fork_token, 0, NULL, 0, 0);
	if (server < 0) {
		real_close(fd);
		conn = -1;
		errno = server == BROKEN ? ECONNREFUSED : (int)-server;
		return -1;
	}
	forked_from = 0;
	fork_token = 0;
	server_pid = (pid_t)server;
	/* Let the server read and write this process's memory under Yama's ptrace_scope = 1. */
	prctl(PR_SET_PTRACER, (unsigned long)server, 0, 0, 0);
	return 0;
}

/* Make the placeholder for a descriptor the sim installed at `fd`. */
static void place(int fd, int cloexec)
{
	int e = eventfd(0, EFD_CLOEXEC);
	if (e != fd) {
		real_dup3(e, fd, cloexec ? O_CLOEXEC : 0);
		real_close(e);
	} else if (!cloexec) {
		fcntl(fd, F_SETFD, 0);
	}
	if (fd >= 0 && fd < MAX_FDS)
		simfd[fd] = 1;
}

/* One request and its answer (lock held, connected). Returns ret, which is -errno on failure. */
static int64_t call_locked(uint32_t op, uint64_t a0, uint64_t a1, uint64_t a2, uint64_t a3,
			   const void *payload, uint32_t plen, int cloexec)
{
	struct req r = { .len = sizeof(r) + plen, .op = op, .a = { a0, a1, a2, a3 } };
	struct resp s;
	char msg[sizeof(r) + MAX_PATH];

	memcpy(msg, &r, sizeof(r));
	if (plen)
		memcpy(msg + sizeof(r), payload, plen);
	if (write_all(conn, msg, r.len))
		return BROKEN;
	if (read_all(conn, &s, sizeof(s)) || s.len != sizeof(s) + 4 * (uint64_t)s.nfds)
		return BROKEN;
	for (uint32_t i = 0; i < s.nfds; i++) {
		int32_t fd;
		if (read_all(conn, &fd, 4))
			return BROKEN;
		if (op == OP_MMAP || op == OP_MMIO)
			vals[i < 4 ? i : 3] = fd;
		else
			place(fd, cloexec);
	}
	return s.ret;
}

static int64_t call(uint32_t op, uint64_t a0, uint64_t a1, uint64_t a2, uint64_t a3,
		    const void *payload, uint32_t plen, int cloexec)
{
	int64_t ret;

	pthread_mutex_lock(&lock);
	if (connect_locked()) {
		ret = -errno;
	} else {
		ret = call_locked(op, a0, a1, a2, a3, payload, plen, cloexec);
		if (ret == BROKEN) {
			/* A broken connection: the sim process is gone with it. */
			real_close(conn);
			conn = -1;
			ret = -EIO;
		}
	}
	pthread_mutex_unlock(&lock);
	return ret;
}

static long result(int64_t ret)
{
	if (ret < 0) {
		errno = (int)-ret;
		return -1;
	}
	return (long)ret;
}

static int sim_open(const char *path, int flags, mode_t mode)
{
	size_t n = strnlen(path, MAX_PATH);
	return (int)result(call(OP_OPEN, flags, mode, 0, 0, path, n, !!(flags & O_CLOEXEC)));
}

static mode_t mode_arg(int flags, va_list ap)
{
	return (flags & O_CREAT) || (flags & O_TMPFILE) == O_TMPFILE ? va_arg(ap, mode_t) : 0;
}

int open(const char *path, int flags, ...)
{
	resolve();

	va_list ap;
	va_start(ap, flags);
	mode_t mode = mode_arg(flags, ap);
	va_end(ap);
	int fd = sim_path(path) ? sim_open(path, flags, mode) : real_open(path, flags, mode);
	trace_open(path, flags, fd);
	return fd;
}

int open64(const char *path, int flags, ...) __attribute__((alias("open")));

int openat(int dirfd, const char *path, int flags, ...)
{
	resolve();

	va_list ap;
	va_start(ap, flags);
	mode_t mode = mode_arg(flags, ap);
	va_end(ap);
	/* absolute paths: dirfd does not matter */
	int fd = sim_path(path) ? sim_open(path, flags, mode) : real_openat(dirfd, path, flags, mode);
	trace_open(path, flags, fd);
	return fd;
}

int openat64(int dirfd, const char *path, int flags, ...) __attribute__((alias("openat")));

/* _FORTIFY_SOURCE's checked variants. */
int __open_2(const char *path, int flags)
{
	return open(path, flags);
}

int __open64_2(const char *path, int flags) __attribute__((alias("__open_2")));

int __openat_2(int dirfd, const char *path, int flags)
{
	return openat(dirfd, path, flags);
}

int __openat64_2(int dirfd, const char *path, int flags) __attribute__((alias("__openat_2")));

int close(int fd)
{
	resolve();

	if (is_sim(fd)) {
		simfd[fd] = 0;
		call(OP_CLOSE, fd, 0, 0, 0, NULL, 0, 0);
	}
	int r = real_close(fd);
	trace_close(fd, r);
	return r;
}

/* After a real dup of `oldfd` to `newfd`: the sim's newfd names oldfd's file too. */
static int dup_done(int oldfd, int newfd)
{
	if (newfd < 0 || !is_sim(oldfd))
		return newfd;
	int64_t ret = call(OP_DUP, oldfd, newfd, 0, 0, NULL, 0, 0);
	if (ret < 0) {
		real_close(newfd);
		errno = (int)-ret;
		return -1;
	}
	simfd[newfd] = 1;
	return newfd;
}

/* dup2/dup3 onto a sim descriptor closes the sim's file there first, as the kernel does. */
static void replaced(int oldfd, int newfd)
{
	if (newfd != oldfd && is_sim(newfd)) {
		simfd[newfd] = 0;
		call(OP_CLOSE, newfd, 0, 0, 0, NULL, 0, 0);
	}
}

int dup(int oldfd)
{
	resolve();

	int r = dup_done(oldfd, real_dup(oldfd));
	trace_dup(oldfd, r);
	return r;
}

int dup2(int oldfd, int newfd)
{
	resolve();

	int r = real_dup2(oldfd, newfd);
	if (r < 0 || oldfd == newfd)
		return r;
	replaced(oldfd, newfd);
	r = dup_done(oldfd, r);
	trace_dup(oldfd, r);
	return r;
}

int dup3(int oldfd, int newfd, int flags)
{
	resolve();

	int r = real_dup3(oldfd, newfd, flags);
	if (r < 0)
		return r;
	replaced(oldfd, newfd);
	r = dup_done(oldfd, r);
	trace_dup(oldfd, r);
	return r;
}

int ioctl(int fd, unsigned long request, ...)
{
	resolve();

	va_list ap;
	va_start(ap, request);
	unsigned long arg = va_arg(ap, unsigned long);
	va_end(ap);
	struct trace_ioctl t;
	trace_ioctl_begin(&t, fd, request, arg);
	int r = is_sim(fd) ? (int)result(call(OP_IOCTL, fd, request, arg, 0, NULL, 0, 1)) : real_ioctl(fd, request, arg);
	trace_ioctl_end(&t, r);
	return r;
}

ssize_t read(int fd, void *buf, size_t count)
{
	resolve();

	ssize_t r = is_sim(fd) ? result(call(OP_READ, fd, (uintptr_t)buf, count, 0, NULL, 0, 1)) : real_read(fd, buf, count);
	trace_io("read", fd, buf, count, -1, r);
	return r;
}

ssize_t write(int fd, const void *buf, size_t count)
{
	resolve();

	ssize_t r = is_sim(fd) ? result(call(OP_WRITE, fd, (uintptr_t)buf, count, 0, NULL, 0, 1)) : real_write(fd, buf, count);
	trace_io("write", fd, buf, count, -1, r);
	return r;
}

ssize_t pread(int fd, void *buf, size_t count, off_t offset)
{
	resolve();

	ssize_t r = is_sim(fd) ? result(call(OP_PREAD, fd, (uintptr_t)buf, count, offset, NULL, 0, 1)) : real_pread(fd, buf, count, offset);
	trace_io("pread", fd, buf, count, offset, r);
	return r;
}

ssize_t pread64(int fd, void *buf, size_t count, off_t offset) __attribute__((alias("pread")));

ssize_t pwrite(int fd, const void *buf, size_t count, off_t offset)
{
	resolve();

	ssize_t r = is_sim(fd) ? result(call(OP_PWRITE, fd, (uintptr_t)buf, count, offset, NULL, 0, 1)) : real_pwrite(fd, buf, count, offset);
	trace_io("pwrite", fd, buf, count, offset, r);
	return r;
}

ssize_t pwrite64(int fd, const void *buf, size_t count, off_t offset) __attribute__((alias("pwrite")));

/*
 * /proc/PID/status of a bridged process: the sim's pins are not the real kernel's, so VmLck and
 * VmPin add what the sim charged to that process (mm->locked_vm and mm->pinned_vm), the values a
 * program such as the iommufd selftest reads to check accounting.
 */
static int status_pid(const char *path, pid_t *pid)
{
	char *end;
	long n;

	if (!strcmp(path, "/proc/self/status")) {
		*pid = getpid();
		return 1;
	}
	if (strncmp(path, "/proc/", 6))
		return 0;
	n = strtol(path + 6, &end, 10);
	if (end == path + 6 || strcmp(end, "/status") || n <= 0)
		return 0;
	*pid = (pid_t)n;
	return 1;
}

/* Rewrite one "Tag:\t   N kB" line in place (the number grows by `add` kB). */
static size_t patch_line(char *text, size_t len, size_t cap, const char *tag, unsigned long add)
{
	char *line = strstr(text, tag);
	char repl[64];
	unsigned long kb;
	char *eol;
	size_t old, new;

	if (!line || !add)
		return len;
	eol = strchr(line, '\n');
	if (!eol || sscanf(line + strlen(tag), "%lu", &kb) != 1)
		return len;
	new = (size_t)snprintf(repl, sizeof(repl), "%s\t%8lu kB", tag, kb + add);
	old = (size_t)(eol - line);
	if (len - old + new >= cap)
		return len;
	memmove(line + new, eol, len - (size_t)(eol - text) + 1);
	memcpy(line, repl, new);
	return len - old + new;
}

static FILE *sim_status(const char *path, const char *mode, pid_t pid)
{
	static char text[16384];
	FILE *real = real_fopen(path, mode);
	int64_t vm;
	size_t len;
	int fd;

	if (!real)
		return NULL;
	vm = call(OP_VMSTAT, pid, 0, 0, 0, NULL, 0, 0);
	if (vm <= 0)
		return real;
	pthread_mutex_lock(&lock);
	len = fread(text, 1, sizeof(text) - 1, real);
	fclose(real);
	text[len] = 0;
	len = patch_line(text, len, sizeof(text), "VmLck:", (unsigned long)(vm >> 32) * (getpagesize() / 1024));
	len = patch_line(text, len, sizeof(text), "VmPin:", (unsigned long)(vm & 0xffffffff) * (getpagesize() / 1024));
	fd = memfd_create("ioasid-status", MFD_CLOEXEC);
	if (fd >= 0 && real_write(fd, text, len) == (ssize_t)len && lseek(fd, 0, SEEK_SET) == 0) {
		pthread_mutex_unlock(&lock);
		return fdopen(fd, mode);
	}
	pthread_mutex_unlock(&lock);
	if (fd >= 0)
		real_close(fd);
	return real_fopen(path, mode);
}

FILE *fopen(const char *path, const char *mode)
{
	resolve();

	pid_t pid;

	if (sock_path && path && mode && mode[0] == 'r' && status_pid(path, &pid))
		return sim_status(path, mode, pid);
	return real_fopen(path, mode);
}

FILE *fopen64(const char *path, const char *mode) __attribute__((alias("fopen")));

/* A call answering values (OP_MMAP, OP_MMIO): the first n go to out. */
static int64_t call_values(uint32_t op, uint64_t a0, uint64_t a1, uint64_t a2, uint64_t a3, int32_t *out, int n)
{
	int64_t ret;

	pthread_mutex_lock(&lock);
	ret = connect_locked() ? -errno : call_locked(op, a0, a1, a2, a3, NULL, 0, 0);
	memcpy(out, vals, n * sizeof(*out));
	if (ret == BROKEN && conn >= 0) {
		/* as in call(): the sim process is gone with the connection */
		real_close(conn);
		conn = -1;
	}
	pthread_mutex_unlock(&lock);
	return ret == BROKEN ? -EIO : ret;
}

/* mmio.c's access to a BAR: a read's value comes back as two u32 halves. */
int64_t bridge_mmio(uintptr_t addr, unsigned size, int write, uint64_t *val)
{
	int32_t v[2];
	int64_t ret = call_values(OP_MMIO, addr, size | (write ? 0x100 : 0), (uint32_t)*val, *val >> 32, v, 2);

	if (ret == 0 && !write)
		*val = (uint32_t)v[0] | (uint64_t)(uint32_t)v[1] << 32;
	return ret;
}

/*
 * mmap of a sim file: the sim's driver decides (its checks, its errno) and puts the pages it maps
 * in a memfd of the server's, which the program maps through /proc/SERVER/fd/N, so the program and
 * the sim see the same bytes. A BAR has no such pages (memfd -1): mmio.c maps it so that each
 * access reaches the device. The server holds the driver's VMA reference until munmap or exit.
 */
static void *sim_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
	char path[64];
	int32_t v[3]; /* the memfd (-1: a BAR), the page offset in it, the token */
	int64_t ret;
	int f, e;
	void *p;

	ret = call_values(OP_MMAP, fd, len, ((uint64_t)(uint32_t)flags << 32) | (uint32_t)prot, off, v, 3);
	if (ret < 0) {
		errno = (int)-ret;
		return MAP_FAILED;
	}
	if (v[0] < 0) {
		p = mmio_map(addr, len, prot, flags, off);
		e = errno;
	} else {
		snprintf(path, sizeof(path), "/proc/%d/fd/%d", (int)server_pid, v[0]);
		f = real_open(path, ((prot & PROT_WRITE) ? O_RDWR : O_RDONLY) | O_CLOEXEC);
		p = f < 0 ? MAP_FAILED : real_mmap(addr, len, prot, flags, f, (off_t)v[1] * getpagesize());
		e = errno;
		if (f >= 0)
			real_close(f);
	}
	call(OP_MMAP_PLACED, v[2], p == MAP_FAILED ? 0 : (uintptr_t)p, len, 0, NULL, 0, 0);
	if (p == MAP_FAILED)
		errno = e;
	else
		sim_mapped = 1;
	return p;
}

/* [addr, addr + len) maps nothing of the sim's any more: munmap, or a MAP_FIXED mapping over it. */
static void unmapped(void *addr, size_t len)
{
	mmio_forget((uintptr_t)addr, len);
	if (sim_mapped && sock_path)
		call(OP_MUNMAP, (uintptr_t)addr, len, 0, 0, NULL, 0, 0);
}

/* Other mmaps pass through; the recorder looks at those of traced descriptors. */
void *mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
	resolve();

	void *r = is_sim(fd) ? sim_mmap(addr, len, prot, flags, fd, off) : real_mmap(addr, len, prot, flags, fd, off);
	if (r != MAP_FAILED && (flags & MAP_FIXED) && !is_sim(fd))
		unmapped(r, len);
	trace_mmap(addr, len, prot, flags, fd, off, r);
	return r;
}

void *mmap64(void *addr, size_t len, int prot, int flags, int fd, off_t off) __attribute__((alias("mmap")));

int munmap(void *addr, size_t len)
{
	resolve();

	int r = real_munmap(addr, len);
	if (r == 0)
		unmapped(addr, len);
	trace_munmap(addr, len, r);
	return r;
}
