// SPDX-License-Identifier: MIT
/*
 * ioasid's preload bridge: LD_PRELOAD this library into an unmodified program and its calls on the
 * sim's paths (/dev/iommu, /dev/vfio/...) go to an `ioasid serve` sim machine over a unix socket.
 * Everything else passes through to libc untouched.
 *
 * A sim descriptor is a real descriptor in the program (an eventfd placeholder at the same number
 * the sim installed it at), so close, dup, fork and exec's close-on-exec see a real fd. Calls on
 * it travel to the server. An ioctl's argument travels with the request (the bytes its handler
 * reads first, sized by ioctl_arg.h's rules) and the bytes the handler changed come back with the
 * answer; the server reads and writes the program's memory itself (process_vm_readv/writev) for
 * the rest: user pointers inside structs, larger arguments, read/write buffers. Requests and
 * answers travel through shared memory (the channel), each side waiting for the other awake
 * before it sleeps; the socket then only wakes a sleeping server (OP_WAKE).
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
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <linux/close_range.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "ioctl_arg.h"
#include "mmio.h"
#include "trace.h"

#define BRIDGE_VERSION 2
#define MAX_FDS 65536
#define MAX_PATH 4096
/* The longest payload: a path, or an ioctl argument's first read. */
#define MAX_PAYLOAD 4096
/* How much of a struct sized by its first u32 the server's handler reads first (ioctl.ts's MIN_READ). */
#define FIRST_READ_SIZED 256
/* The channel (protocol.ts): its size, its u32 counters (indices), and where the request and the answer start. */
#define CHANNEL_SIZE 12288
#define CHANNEL_ANSWERS 0
#define CHANNEL_PROGRAM_SLEEPS 1
#define CHANNEL_REQUESTS 2
#define CHANNEL_SERVER_SLEEPS 3
#define CHANNEL_REQUEST 64
#define CHANNEL_ANSWER 4224
/* How long to wait awake for an answer before sleeping (ns; protocol.ts's SPIN_MS). */
#define SPIN_NS 50000
/* call_locked's answer when the connection itself failed (never a sim result). */
#define BROKEN INT64_MIN
/* call_locked's answer when the payload could not be read (nothing sent): EFAULT for the program. */
#define UNREADABLE (INT64_MIN + 1)

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
	OP_STAT = 15,
	OP_READLINK = 16,
	OP_GETDENTS = 17,
	OP_LSEEK = 18,
	OP_ACCESS = 19,
	OP_EXEC = 20,
	OP_MMIO = 21,
	OP_CHANNEL = 23,
	OP_IOCTL_ARG = 24,
	OP_WAKE = 25,
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
static off_t (*real_lseek)(int, off_t, int);
static int (*real_fcntl)(int, int, ...);
static DIR *(*real_opendir)(const char *);
static DIR *(*real_fdopendir)(int);
static struct dirent *(*real_readdir)(DIR *);
static struct dirent64 *(*real_readdir64)(DIR *);
static int (*real_closedir)(DIR *);
static int (*real_dirfd)(DIR *);
static void (*real_rewinddir)(DIR *);
static long (*real_telldir)(DIR *);
static void (*real_seekdir)(DIR *, long);


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
/* OP_MMAP, OP_STAT and OP_MMIO answer values, not descriptors: call_locked leaves them here (lock held). */
static int32_t vals[8];
/* OP_EXEC's answer: the descriptors the sim process held when the process called exec. */
#define MAX_EXEC_FDS 4096
static int32_t exec_fds[MAX_EXEC_FDS];
static uint32_t n_exec_fds;
/* Whether this process has mapped a sim file (then munmap tells the server). */
static int sim_mapped;
/* The channel of the connection (NULL: requests and answers go on the socket), and its counters. */
static unsigned char *chan;
#define COUNTER(i) ((uint32_t *)chan + (i))
/* An answer's data (after its descriptors), left by call_locked (lock held). */
static const unsigned char *data;
static uint32_t data_len;
/* Where an answer's data read from the socket lands (IOCTL_ARG's: an offset and the bytes from there). */
static unsigned char answer_buf[4 + MAX_PAYLOAD];
/* Whether this process can copy into its own memory without faulting (ioctl arguments travel then). */
static int inline_ok;

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
	real_lseek = dlsym(RTLD_NEXT, "lseek");
	real_fcntl = dlsym(RTLD_NEXT, "fcntl");
	real_opendir = dlsym(RTLD_NEXT, "opendir");
	real_fdopendir = dlsym(RTLD_NEXT, "fdopendir");
	real_readdir = dlsym(RTLD_NEXT, "readdir");
	real_readdir64 = dlsym(RTLD_NEXT, "readdir64");
	real_closedir = dlsym(RTLD_NEXT, "closedir");
	real_dirfd = dlsym(RTLD_NEXT, "dirfd");
	real_rewinddir = dlsym(RTLD_NEXT, "rewinddir");
	real_telldir = dlsym(RTLD_NEXT, "telldir");
	real_seekdir = dlsym(RTLD_NEXT, "seekdir");
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

static void after_exec(void);

__attribute__((constructor)) static void init(void)
{
	resolve();
	sock_path = getenv("IOASID_BRIDGE_SOCKET");
	pthread_atfork(before_fork, NULL, after_fork_child);
	if (sock_path)
		after_exec();
}

static int is_sim(int fd)
{
	return sock_path && fd >= 0 && fd < MAX_FDS && simfd[fd];
}

/* `path` is `dir` or below it. */
static int under(const char *path, const char *dir)
{
	size_t n = strlen(dir);
	return !strncmp(path, dir, n) && (path[n] == 0 || path[n] == '/');
}

/* /proc/{self,thread-self,PID}[/task/TID]/fail-nth of this process: the sim's fault injection. */
static int own_fail_nth(const char *path)
{
	const char *p;
	char *end;

	if (strncmp(path, "/proc/", 6))
		return 0;
	p = path + 6;
	if (!strncmp(p, "self/", 5))
		p += 5;
	else if (!strncmp(p, "thread-self/", 12))
		p += 12;
	else if (strtol(p, &end, 10) == getpid() && *end == '/')
		p = end + 1;
	else
		return 0;
	if (!strncmp(p, "task/", 5)) {
		strtol(p + 5, &end, 10);
		if (end == p + 5 || *end != '/')
			return 0;
		p = end + 1;
	}
	return !strcmp(p, "fail-nth");
}

/*
 * The sim's paths: the device nodes it serves, the sysfs and debugfs of its machine (PCI devices,
 * IOMMU groups and units, VFIO devices, the modules' parameters, fault injection, the IOMMU
 * driver's debugfs), and this process's fail-nth. The program sees the sim machine's, not the host's.
 */
static int sim_path(const char *path)
{
	static const char *const dirs[] = {
		"/dev/iommu", "/dev/vfio", "/sys/bus/pci", "/sys/kernel/iommu_groups", "/sys/class/vfio-dev",
		"/sys/class/iommu", "/sys/devices/virtual/iommu", "/sys/kernel/debug",
		"/sys/module/vfio", "/sys/module/vfio_iommu_type1", "/sys/module/vfio_pci",
	};

	if (!sock_path || !path || path[0] != '/')
		return 0;
	for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++)
		if (under(path, dirs[i]))
			return 1;
	/* the PCI host bridges' device trees the bus links point into */
	if (!strncmp(path, "/sys/devices/pci", 16))
		return 1;
	return own_fail_nth(path);
}

/*
 * Whether a path call goes to the sim, and the directory it is relative to there: 0 for none, or a
 * sim directory descriptor + 1 (a relative path under a directory the program opened on the sim).
 */
static int routed(int dirfd, const char *path, uint64_t *dir)
{
	*dir = 0;
	if (!path)
		return 0;
	if (path[0] != '/' && is_sim(dirfd)) {
		*dir = (uint64_t)dirfd + 1;
		return 1;
	}
	return sim_path(path);
}

/* All n bytes from the server's connection; -1 when it breaks. */
static int read_all(int fd, void *buf, size_t n)
{
	char *p = buf;
	while (n) {
		ssize_t k = real_read(fd, p, n);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			return -1;
		p += k;
		n -= k;
	}
	return 0;
}

static int64_t call_locked(uint32_t op, uint64_t a0, uint64_t a1, uint64_t a2, uint64_t a3,
			   const void *payload, uint32_t plen, int cloexec);

/*
 * Offer the server a channel (OP_CHANNEL): a memfd sealed against shrinking, which the server maps
 * too, so each side can wait for the other awake without a system call. Without it (the server
 * refused, no memfd) requests and answers keep going on the socket.
 */
static void open_channel(void)
{
	uint32_t probe = 0;
	void *p = MAP_FAILED;
	int fd;

	inline_ok = self_poke(conn_pid, (uintptr_t)&probe, &probe, sizeof(probe)) == sizeof(probe);
	fd = memfd_create("ioasid-bridge-channel", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (fd < 0)
		return;
	if (!ftruncate(fd, CHANNEL_SIZE) && !real_fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL))
		p = real_mmap(NULL, CHANNEL_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (p != MAP_FAILED) {
		if (call_locked(OP_CHANNEL, fd, CHANNEL_SIZE, 0, 0, NULL, 0, 0) == 0)
			chan = p;
		else
			real_munmap(p, CHANNEL_SIZE);
	}
	real_close(fd);
}

/* Connect this process (called with the lock held). */
static int connect_locked(void)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd;

	if (conn >= 0 && conn_pid == getpid())
		return 0;
	if (chan) {
		/* the channel of a broken connection, or the parent's (a forked child) */
		real_munmap(chan, CHANNEL_SIZE);
		chan = NULL;
	}
	if (strlen(sock_path) >= sizeof(sa.sun_path)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	strcpy(sa.sun_path, sock_path);
	/* a high number, so the program's first descriptor is the one it gets on the kernel */
	fd = high_fd(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
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
	open_channel();
	return 0;
}

/*
 * The number reserved for the descriptor the current call may install (-1: none): its placeholder
 * is made before the request, so another thread of the program cannot take that number meanwhile.
 */
static int reserved = -1;

/* Make the placeholder for a descriptor the sim installed at `fd`. */
static void place(int fd, int cloexec)
{
	if (fd == reserved) {
		/* the number reserved for it: its placeholder is there already */
		reserved = -1;
		if (!cloexec)
			real_fcntl(fd, F_SETFD, 0);
		simfd[fd] = 1;
		return;
	}
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

/*
 * Send a request: its header and payload in one sendmsg. The kernel copies the payload, which may
 * be the program's own memory (an ioctl argument), the way a user copy does: a byte that cannot
 * be read fails it with EFAULT before anything is sent (UNREADABLE), never with a fault here.
 */
static int64_t send_request(const struct req *r, const void *payload, uint32_t plen)
{
	struct iovec iov[2] = { { (void *)r, sizeof(*r) }, { (void *)payload, plen } };
	struct msghdr m = { .msg_iov = iov, .msg_iovlen = plen ? 2 : 1 };
	size_t left = r->len;

	while (left) {
		/* MSG_NOSIGNAL: a server that went away is EIO for the call, not SIGPIPE for the program */
		ssize_t k = sendmsg(conn, &m, MSG_NOSIGNAL);
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0 && errno == EFAULT && left == r->len)
			return UNREADABLE;
		if (k <= 0)
			return BROKEN;
		left -= (size_t)k;
		/* a send cut short (a signal): go on from where it stopped */
		for (size_t done = (size_t)k; done && m.msg_iovlen;) {
			size_t step = done < m.msg_iov->iov_len ? done : m.msg_iov->iov_len;
			m.msg_iov->iov_base = (char *)m.msg_iov->iov_base + step;
			m.msg_iov->iov_len -= step;
			done -= step;
			if (!m.msg_iov->iov_len) {
				m.msg_iov++;
				m.msg_iovlen--;
			}
		}
	}
	return 0;
}

static uint64_t now_ns(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

/*
 * Wait until the server has counted an answer past `seen` in the channel: awake for SPIN_NS,
 * yielding the CPU to whatever else wants it (waking a sleeping process costs this kind of VM
 * more than most calls take), then asleep on the count (a futex) with `sleeping` set so the
 * server wakes us. The server writes nothing on the socket once there is a channel, so while
 * asleep, anything readable there (EOF) means it has gone: -1.
 */
static int wait_answer(uint32_t seen)
{
	uint32_t *count = COUNTER(CHANNEL_ANSWERS), *sleeping = COUNTER(CHANNEL_PROGRAM_SLEEPS);
	struct timespec tick = { 0, 100 * 1000 * 1000 };
	uint64_t end = now_ns() + SPIN_NS;
	char b;

	while (__atomic_load_n(count, __ATOMIC_ACQUIRE) == seen) {
		if (now_ns() > end)
			break;
		sched_yield();
	}
	while (__atomic_load_n(count, __ATOMIC_SEQ_CST) == seen) {
		/* seq_cst both: either the server sees us asleep, or we see its count move */
		__atomic_store_n(sleeping, 1, __ATOMIC_SEQ_CST);
		if (__atomic_load_n(count, __ATOMIC_SEQ_CST) != seen)
			break;
		if (syscall(SYS_futex, count, FUTEX_WAIT, seen, &tick, NULL, 0) == 0 || errno != ETIMEDOUT)
			continue;
		ssize_t k = recv(conn, &b, 1, MSG_PEEK | MSG_DONTWAIT);
		if (k >= 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
			__atomic_store_n(sleeping, 0, __ATOMIC_RELAXED);
			return -1;
		}
	}
	__atomic_store_n(sleeping, 0, __ATOMIC_RELAXED);
	return 0;
}

/*
 * Put a request in the channel: the payload, which may be the program's own memory (an ioctl
 * argument), is copied as a user copy is, so an unreadable byte leaves it unsent (UNREADABLE).
 * Then count it, and wake the server if it sleeps: either it sees the count move, or we see it
 * asleep (seq_cst both).
 */
static int64_t post_request(const struct req *r, const void *payload, uint32_t plen)
{
	unsigned char *at = chan + CHANNEL_REQUEST;
	struct req wake = { .len = sizeof(wake), .op = OP_WAKE };
	ssize_t k;

	/* connect_locked has just checked that this process is conn_pid */
	if (plen && self_peek(conn_pid, (uintptr_t)payload, at + sizeof(*r), plen) != plen)
		return UNREADABLE;
	memcpy(at, r, sizeof(*r));
	__atomic_fetch_add(COUNTER(CHANNEL_REQUESTS), 1, __ATOMIC_SEQ_CST);
	if (!__atomic_load_n(COUNTER(CHANNEL_SERVER_SLEEPS), __ATOMIC_SEQ_CST))
		return 0;
	do
		k = send(conn, &wake, sizeof(wake), MSG_NOSIGNAL);
	while (k < 0 && errno == EINTR);
	return k == sizeof(wake) ? 0 : BROKEN;
}

/* The ioctls that install a descriptor, the number of which the sim writes into the answer. */
static int installs_fd(unsigned long request)
{
	switch (request) {
	case VFIO_GROUP_GET_DEVICE_FD:
	case VFIO_DEVICE_FEATURE: /* a dma-buf */
	case IOMMU_FAULT_QUEUE_ALLOC:
	case IOMMU_VEVENTQ_ALLOC:
	case IOMMU_TEST_CMD: /* an access, a dma-buf */
		return 1;
	}
	return 0;
}

/* One request and its answer (lock held, connected). Returns ret, which is -errno on failure; the answer's data is left in data/data_len. */
static int64_t exchange_locked(uint32_t op, uint64_t a0, uint64_t a1, uint64_t a2, uint64_t a3,
			       const void *payload, uint32_t plen, int cloexec);

/* One request and its answer (lock held, connected), with a number reserved for a new descriptor. */
static int64_t call_locked(uint32_t op, uint64_t a0, uint64_t a1, uint64_t a2, uint64_t a3,
			   const void *payload, uint32_t plen, int cloexec)
{
	int64_t ret;

	if (a3 || !(op == OP_OPEN || ((op == OP_IOCTL || op == OP_IOCTL_ARG) && installs_fd(a1))))
		return exchange_locked(op, a0, a1, a2, a3, payload, plen, cloexec);
	reserved = eventfd(0, EFD_CLOEXEC);
	if (reserved >= MAX_FDS) {
		real_close(reserved);
		reserved = -1;
	}
	ret = exchange_locked(op, a0, a1, a2, reserved >= 0 ? (uint64_t)reserved + 1 : 0, payload, plen, cloexec);
	if (reserved >= 0)
		real_close(reserved); /* not taken */
	reserved = -1;
	return ret;
}

static int64_t exchange_locked(uint32_t op, uint64_t a0, uint64_t a1, uint64_t a2, uint64_t a3,
			       const void *payload, uint32_t plen, int cloexec)
{
	struct req r = { .len = sizeof(r) + plen, .op = op, .a = { a0, a1, a2, a3 } };
	uint32_t seen = chan ? __atomic_load_n(COUNTER(CHANNEL_ANSWERS), __ATOMIC_ACQUIRE) : 0;
	const unsigned char *body = NULL;
	struct resp s;
	int64_t sent;
	uint32_t i;

	data_len = 0;
	if (plen > MAX_PAYLOAD)
		return -E2BIG;
	sent = chan ? post_request(&r, payload, plen) : send_request(&r, payload, plen);
	if (sent)
		return sent;
	if (chan) {
		if (wait_answer(seen))
			return BROKEN;
		memcpy(&s, chan + CHANNEL_ANSWER, sizeof(s));
		if (s.len > CHANNEL_SIZE - CHANNEL_ANSWER)
			return BROKEN;
		body = chan + CHANNEL_ANSWER + sizeof(s);
	} else if (read_all(conn, &s, sizeof(s))) {
		return BROKEN;
	}
	if (s.len < sizeof(s) + 4 * (uint64_t)s.nfds)
		return BROKEN;
	for (i = 0; i < s.nfds; i++) {
		int32_t fd;
		if (body)
			memcpy(&fd, body + 4 * i, 4);
		else if (read_all(conn, &fd, 4))
			return BROKEN;
		if (op == OP_MMAP || op == OP_STAT || op == OP_MMIO)
			vals[i < 8 ? i : 7] = fd;
		else if (op == OP_EXEC)
			exec_fds[n_exec_fds < MAX_EXEC_FDS ? n_exec_fds++ : MAX_EXEC_FDS - 1] = fd;
		else
			place(fd, cloexec);
	}
	data_len = s.len - sizeof(s) - 4 * s.nfds;
	if (body) {
		data = body + 4 * s.nfds;
	} else {
		if (data_len > sizeof(answer_buf) || read_all(conn, answer_buf, data_len))
			return BROKEN;
		data = answer_buf;
	}
	return s.ret;
}

/* After a call (lock held): a broken connection takes the sim process with it. */
static int64_t settle_locked(int64_t ret)
{
	if (ret == UNREADABLE)
		return -EFAULT;
	if (ret != BROKEN)
		return ret;
	real_close(conn);
	conn = -1;
	return -EIO;
}

static int64_t call(uint32_t op, uint64_t a0, uint64_t a1, uint64_t a2, uint64_t a3,
		    const void *payload, uint32_t plen, int cloexec)
{
	int64_t ret;
	int err = errno;

	pthread_mutex_lock(&lock);
	ret = connect_locked() ? -errno : settle_locked(call_locked(op, a0, a1, a2, a3, payload, plen, cloexec));
	pthread_mutex_unlock(&lock);
	errno = err;
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

static int sim_open(uint64_t dir, const char *path, int flags, mode_t mode)
{
	size_t n = strnlen(path, MAX_PATH);
	return (int)result(call(OP_OPEN, flags, mode, dir, 0, path, n, !!(flags & O_CLOEXEC)));
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
	uint64_t dir;
	int fd = routed(AT_FDCWD, path, &dir) ? sim_open(dir, path, flags, mode) : real_open(path, flags, mode);
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
	uint64_t dir;
	int fd = routed(dirfd, path, &dir) ? sim_open(dir, path, flags, mode) : real_openat(dirfd, path, flags, mode);
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

	/* the library's own connection: a program closing every descriptor it did not open leaves it */
	if (fd == conn && conn >= 0 && conn_pid == getpid())
		return 0;

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

/* do_vfs_ioctl's descriptor ioctls: the VFS answers them before any driver, on the descriptor itself. */
static int vfs_ioctl(unsigned long request)
{
	return request == FIOCLEX || request == FIONCLEX || request == FIONBIO || request == FIOASYNC;
}

/*
 * An ioctl on a sim descriptor. When this process can read the argument, the bytes its handler
 * reads first travel with the request (OP_IOCTL_ARG), and the bytes the handler changed come back
 * to be copied in, a fault there being the handler's EFAULT. Otherwise (an argument not all
 * readable, a string, an integer) the server reads what the handler would itself (OP_IOCTL).
 */
static long sim_ioctl(int fd, unsigned long request, unsigned long arg)
{
	struct ioctl_arg a = ioctl_arg_of(request);
	size_t n = a.kind == IOCTL_ARG_SIZED ? FIRST_READ_SIZED : a.len;
	int64_t ret;
	int err = errno;

	if (a.kind == IOCTL_ARG_VALUE || a.kind == IOCTL_ARG_STRING || n > MAX_PAYLOAD)
		return result(call(OP_IOCTL, fd, request, arg, 0, NULL, 0, 1));
	pthread_mutex_lock(&lock);
	if (connect_locked()) {
		ret = -errno;
	} else {
		ret = inline_ok ? call_locked(OP_IOCTL_ARG, fd, request, arg, 0, (const void *)arg, (uint32_t)n, 1) : UNREADABLE;
		if (ret == UNREADABLE) {
			ret = call_locked(OP_IOCTL, fd, request, arg, 0, NULL, 0, 1);
		} else if (ret != BROKEN && data_len) {
			uint32_t off = 0;
			if (data_len >= 4)
				memcpy(&off, data, 4);
			if (data_len < 4 || off > n || data_len - 4 > n - off)
				ret = BROKEN;
			else if (self_poke(conn_pid, arg + off, data + 4, data_len - 4) != data_len - 4)
				ret = -EFAULT; /* copy_to_user */
		}
		ret = settle_locked(ret);
	}
	pthread_mutex_unlock(&lock);
	errno = err;
	return result(ret);
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
	int r = is_sim(fd) && !vfs_ioctl(request) ? (int)sim_ioctl(fd, request, arg) : real_ioctl(fd, request, arg);
	trace_ioctl_end(&t, r);
	return r;
}

/*
 * fcntl: F_DUPFD and F_DUPFD_CLOEXEC of a sim descriptor are dups (the sim's new number names the
 * same file); the rest act on the descriptor itself (the placeholder: its flags and locks).
 */
int fcntl(int fd, int cmd, ...)
{
	resolve();

	va_list ap;
	va_start(ap, cmd);
	void *arg = va_arg(ap, void *);
	va_end(ap);
	int r = real_fcntl(fd, cmd, arg);
	if ((cmd == F_DUPFD || cmd == F_DUPFD_CLOEXEC) && r >= 0) {
		r = dup_done(fd, r);
		trace_dup(fd, r);
	}
	return r;
}

int fcntl64(int fd, int cmd, ...) __attribute__((alias("fcntl")));

/* The sim descriptors in [first, last] are closed: the sim closes its files there too. */
static void closed_range(unsigned int first, unsigned int last)
{
	for (unsigned int fd = first; fd <= last && fd < MAX_FDS; fd++) {
		if (is_sim((int)fd)) {
			simfd[fd] = 0;
			call(OP_CLOSE, fd, 0, 0, 0, NULL, 0, 0);
		}
	}
}

int close_range(unsigned int first, unsigned int last, int flags)
{
	resolve();

	int r;
	unsigned int c = (unsigned int)conn;
	/* around the library's own connection (as close() leaves it) */
	if (conn >= 0 && conn_pid == getpid() && first <= c && c <= last) {
		r = c > first ? (int)syscall(SYS_close_range, first, c - 1, flags) : 0;
		if (r == 0 && c < last)
			r = (int)syscall(SYS_close_range, c + 1, last, flags);
	} else {
		r = (int)syscall(SYS_close_range, first, last, flags);
	}
	/* CLOSE_RANGE_CLOEXEC only marks them; the placeholders close at exec */
	if (r == 0 && !(flags & CLOSE_RANGE_CLOEXEC))
		closed_range(first, last);
	return r;
}

void closefrom(int lowfd)
{
	resolve();

	unsigned int first = lowfd < 0 ? 0 : (unsigned int)lowfd;
	if (close_range(first, ~0U, 0) == 0)
		return;
	/* no close_range (before 5.9): one by one, through close() */
	for (int fd = (int)first; fd < MAX_FDS; fd++)
		close(fd);
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

off_t lseek(int fd, off_t offset, int whence)
{
	resolve();

	if (is_sim(fd))
		return (off_t)result(call(OP_LSEEK, fd, (uint64_t)offset, whence, 0, NULL, 0, 1));
	return real_lseek(fd, offset, whence);
}

off_t lseek64(int fd, off_t offset, int whence) __attribute__((alias("lseek")));

/* ---- path calls on the sim's sysfs, debugfs and procfs: stat, access, readlink, directories ---- */

/* OP_STAT into `st`: 1 filled, 0 for a descriptor without a path (pass through), -1 with errno. */
static int sim_stat(uint64_t dir, const char *path, int flags, struct stat *st)
{
	int64_t ret;
	int32_t v[6];

	pthread_mutex_lock(&lock);
	ret = connect_locked() ? -errno : settle_locked(call_locked(OP_STAT, dir, (uint64_t)flags, 0, 0, path, strnlen(path, MAX_PATH), 0));
	memcpy(v, vals, sizeof(v));
	pthread_mutex_unlock(&lock);
	if (ret < 0) {
		errno = (int)-ret;
		return -1;
	}
	if (ret == 0)
		return 0;
	memset(st, 0, sizeof(*st));
	st->st_mode = (mode_t)v[0];
	st->st_uid = (uid_t)v[1];
	st->st_gid = (gid_t)v[2];
	st->st_size = (off_t)(uint32_t)v[3];
	st->st_nlink = (nlink_t)v[4];
	st->st_ino = (ino_t)(uint32_t)v[5];
	st->st_blksize = 4096;
	st->st_dev = 0x1b; /* one device for the sim's file systems */
	return 1;
}

/* The sim's stat of a sim path or descriptor into `st`: 1 done, 0 not the sim's (or a descriptor without a path), -1 with errno. */
static int stat_routed(int dirfd, const char *path, int flags, struct stat *st)
{
	uint64_t dir = 0;

	resolve();
	if (path && !path[0] && (flags & AT_EMPTY_PATH) && is_sim(dirfd))
		return sim_stat((uint64_t)dirfd + 1, "", flags, st);
	if (routed(dirfd, path, &dir))
		return sim_stat(dir, path, flags, st);
	return 0;
}

/* fstatat(2) and everything built on it: the sim's paths and descriptors, else the real call. */
static int any_stat(int dirfd, const char *path, struct stat *st, int flags)
{
	int r = stat_routed(dirfd, path, flags, st);

	if (r != 0)
		return r < 0 ? -1 : 0;
	return (int)syscall(SYS_newfstatat, dirfd, path, st, flags);
}

int stat(const char *path, struct stat *st)
{
	return any_stat(AT_FDCWD, path, st, 0);
}

int lstat(const char *path, struct stat *st)
{
	return any_stat(AT_FDCWD, path, st, AT_SYMLINK_NOFOLLOW);
}

int fstat(int fd, struct stat *st)
{
	return any_stat(fd, "", st, AT_EMPTY_PATH);
}

int fstatat(int dirfd, const char *path, struct stat *st, int flags)
{
	return any_stat(dirfd, path, st, flags);
}

/* struct stat64 is struct stat on LP64. */
int stat64(const char *path, struct stat64 *st)
{
	return any_stat(AT_FDCWD, path, (struct stat *)st, 0);
}

int lstat64(const char *path, struct stat64 *st)
{
	return any_stat(AT_FDCWD, path, (struct stat *)st, AT_SYMLINK_NOFOLLOW);
}

int fstat64(int fd, struct stat64 *st)
{
	return any_stat(fd, "", (struct stat *)st, AT_EMPTY_PATH);
}

int fstatat64(int dirfd, const char *path, struct stat64 *st, int flags)
{
	return any_stat(dirfd, path, (struct stat *)st, flags);
}

/* Programs built against glibc before 2.33 call these. */
int __xstat(int ver, const char *path, struct stat *st)
{
	(void)ver;
	return any_stat(AT_FDCWD, path, st, 0);
}

int __lxstat(int ver, const char *path, struct stat *st)
{
	(void)ver;
	return any_stat(AT_FDCWD, path, st, AT_SYMLINK_NOFOLLOW);
}

int __fxstat(int ver, int fd, struct stat *st)
{
	(void)ver;
	return any_stat(fd, "", st, AT_EMPTY_PATH);
}

int __fxstatat(int ver, int dirfd, const char *path, struct stat *st, int flags)
{
	(void)ver;
	return any_stat(dirfd, path, st, flags);
}

int __xstat64(int ver, const char *path, struct stat64 *st)
{
	return __xstat(ver, path, (struct stat *)st);
}

int __lxstat64(int ver, const char *path, struct stat64 *st)
{
	return __lxstat(ver, path, (struct stat *)st);
}

int __fxstat64(int ver, int fd, struct stat64 *st)
{
	return __fxstat(ver, fd, (struct stat *)st);
}

int __fxstatat64(int ver, int dirfd, const char *path, struct stat64 *st, int flags)
{
	return __fxstatat(ver, dirfd, path, (struct stat *)st, flags);
}

int statx(int dirfd, const char *path, int flags, unsigned int mask, struct statx *stx)
{
	struct stat st;
	int r = stat_routed(dirfd, path, flags, &st);

	if (r < 0)
		return -1;
	if (r == 0)
		return (int)syscall(SYS_statx, dirfd, path, flags, mask, stx);
	memset(stx, 0, sizeof(*stx));
	stx->stx_mask = STATX_BASIC_STATS & ~(unsigned)STATX_BLOCKS;
	stx->stx_blksize = 4096;
	stx->stx_nlink = (uint32_t)st.st_nlink;
	stx->stx_uid = st.st_uid;
	stx->stx_gid = st.st_gid;
	stx->stx_mode = (uint16_t)st.st_mode;
	stx->stx_ino = st.st_ino;
	stx->stx_size = (uint64_t)st.st_size;
	stx->stx_dev_minor = 0x1b;
	return 0;
}

int faccessat(int dirfd, const char *path, int mode, int flags)
{
	uint64_t dir;

	resolve();
	if (routed(dirfd, path, &dir))
		return (int)result(call(OP_ACCESS, dir, (uint64_t)mode, (uint64_t)flags, 0, path, strnlen(path, MAX_PATH), 0));
	return (int)syscall(SYS_faccessat, dirfd, path, mode, flags);
}

int access(const char *path, int mode)
{
	return faccessat(AT_FDCWD, path, mode, 0);
}

ssize_t readlinkat(int dirfd, const char *path, char *buf, size_t size)
{
	uint64_t dir;

	resolve();
	if (routed(dirfd, path, &dir))
		return result(call(OP_READLINK, dir, (uintptr_t)buf, size, 0, path, strnlen(path, MAX_PATH), 0));
	return syscall(SYS_readlinkat, dirfd, path, buf, size);
}

ssize_t readlink(const char *path, char *buf, size_t size)
{
	return readlinkat(AT_FDCWD, path, buf, size);
}

/*
 * A directory of the sim: a DIR of this library's own (glibc's is opaque), over a sim directory
 * descriptor whose entries OP_GETDENTS fills in. Every DIR call checks whether the DIR is one of
 * these before passing it on.
 */
struct sim_dir {
	int fd;
	long index; /* entries read so far: telldir's answer, seekdir's argument */
	size_t len, at;
	struct dirent64 ent;
	struct sim_dir *next;
	char buf[32768];
};

static struct sim_dir *sim_dirs;

static struct sim_dir *sim_dir_of(void *d)
{
	struct sim_dir *p;

	pthread_mutex_lock(&lock);
	for (p = sim_dirs; p && (void *)p != d; p = p->next)
		;
	pthread_mutex_unlock(&lock);
	return p;
}

static DIR *sim_dir_new(int fd)
{
	struct sim_dir *d = calloc(1, sizeof(*d));

	if (!d) {
		close(fd);
		errno = ENOMEM;
		return NULL;
	}
	d->fd = fd;
	pthread_mutex_lock(&lock);
	d->next = sim_dirs;
	sim_dirs = d;
	pthread_mutex_unlock(&lock);
	return (DIR *)d;
}

DIR *opendir(const char *path)
{
	uint64_t dir;

	resolve();
	if (!routed(AT_FDCWD, path, &dir))
		return real_opendir(path);
	int fd = sim_open(dir, path, O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);
	return fd < 0 ? NULL : sim_dir_new(fd);
}

DIR *fdopendir(int fd)
{
	struct stat st;

	resolve();
	if (!is_sim(fd))
		return real_fdopendir(fd);
	if (fstat(fd, &st))
		return NULL;
	if (!S_ISDIR(st.st_mode)) {
		errno = ENOTDIR;
		return NULL;
	}
	return sim_dir_new(fd);
}

/* The next entry of a sim directory (NULL at the end, errno untouched, as readdir does). */
static struct dirent64 *sim_readdir(struct sim_dir *d)
{
	if (d->at >= d->len) {
		int64_t n = call(OP_GETDENTS, d->fd, (uintptr_t)d->buf, sizeof(d->buf), 0, NULL, 0, 0);
		if (n < 0) {
			errno = (int)-n;
			return NULL;
		}
		if (n == 0)
			return NULL;
		d->len = (size_t)n;
		d->at = 0;
	}
	uint64_t ino;
	memcpy(&ino, d->buf + d->at, 8);
	d->ent.d_ino = ino;
	d->ent.d_type = (unsigned char)d->buf[d->at + 8];
	size_t nlen = strnlen(d->buf + d->at + 9, d->len - d->at - 9);
	if (nlen >= sizeof(d->ent.d_name))
		nlen = sizeof(d->ent.d_name) - 1;
	memcpy(d->ent.d_name, d->buf + d->at + 9, nlen);
	d->ent.d_name[nlen] = 0;
	d->at += 9 + strlen(d->buf + d->at + 9) + 1;
	d->index++;
	d->ent.d_off = d->index;
	d->ent.d_reclen = sizeof(d->ent);
	return &d->ent;
}

struct dirent64 *readdir64(DIR *dirp)
{
	struct sim_dir *d = sim_dir_of(dirp);

	resolve();
	return d ? sim_readdir(d) : real_readdir64(dirp);
}

/* struct dirent and struct dirent64 are one layout on LP64. */
struct dirent *readdir(DIR *dirp)
{
	struct sim_dir *d = sim_dir_of(dirp);

	resolve();
	return d ? (struct dirent *)sim_readdir(d) : real_readdir(dirp);
}

int closedir(DIR *dirp)
{
	struct sim_dir *d = sim_dir_of(dirp), **pp;

	resolve();
	if (!d)
		return real_closedir(dirp);
	pthread_mutex_lock(&lock);
	for (pp = &sim_dirs; *pp != d; pp = &(*pp)->next)
		;
	*pp = d->next;
	pthread_mutex_unlock(&lock);
	int r = close(d->fd);
	free(d);
	return r;
}

int dirfd(DIR *dirp)
{
	struct sim_dir *d = sim_dir_of(dirp);

	resolve();
	return d ? d->fd : real_dirfd(dirp);
}

void seekdir(DIR *dirp, long loc)
{
	struct sim_dir *d = sim_dir_of(dirp);

	resolve();
	if (!d) {
		real_seekdir(dirp, loc);
		return;
	}
	if (lseek(d->fd, loc, SEEK_SET) == loc) {
		d->index = loc;
		d->len = d->at = 0;
	}
}

void rewinddir(DIR *dirp)
{
	resolve();
	if (sim_dir_of(dirp))
		seekdir(dirp, 0);
	else
		real_rewinddir(dirp);
}

long telldir(DIR *dirp)
{
	struct sim_dir *d = sim_dir_of(dirp);

	resolve();
	return d ? d->index : real_telldir(dirp);
}

/* fopen of a sim path: a stdio stream whose reads, writes and seeks are the bridged calls. */
static ssize_t cookie_read(void *c, char *buf, size_t n)
{
	return read((int)(intptr_t)c, buf, n);
}

static ssize_t cookie_write(void *c, const char *buf, size_t n)
{
	ssize_t r = write((int)(intptr_t)c, buf, n);
	return r < 0 ? 0 : r;
}

static int cookie_seek(void *c, off64_t *pos, int whence)
{
	off_t r = lseek((int)(intptr_t)c, *pos, whence);
	if (r < 0)
		return -1;
	*pos = r;
	return 0;
}

static int cookie_close(void *c)
{
	return close((int)(intptr_t)c);
}

static FILE *sim_fopen(uint64_t dir, const char *path, const char *mode)
{
	int flags = strchr(mode, '+') ? O_RDWR : mode[0] == 'r' ? O_RDONLY : O_WRONLY;
	FILE *f;

	if (mode[0] == 'w')
		flags |= O_CREAT | O_TRUNC;
	else if (mode[0] == 'a')
		flags |= O_CREAT | O_APPEND;
	if (strchr(mode, 'e'))
		flags |= O_CLOEXEC;
	if (strchr(mode, 'x'))
		flags |= O_EXCL;
	int fd = sim_open(dir, path, flags, 0666);
	if (fd < 0)
		return NULL;
	cookie_io_functions_t io = { cookie_read, cookie_write, cookie_seek, cookie_close };
	f = fopencookie((void *)(intptr_t)fd, mode, io);
	if (!f)
		close(fd);
	return f;
}

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

	uint64_t dir;

	if (sock_path && path && mode && mode[0] == 'r' && status_pid(path, &pid))
		return sim_status(path, mode, pid);
	if (mode && routed(AT_FDCWD, path, &dir))
		return sim_fopen(dir, path, mode);
	return real_fopen(path, mode);
}

FILE *fopen64(const char *path, const char *mode) __attribute__((alias("fopen")));

/* A call answering values (OP_MMAP, OP_MMIO): the first n go to out. */
static int64_t call_values(uint32_t op, uint64_t a0, uint64_t a1, uint64_t a2, uint64_t a3, int32_t *out, int n)
{
	int64_t ret;

	pthread_mutex_lock(&lock);
	ret = connect_locked() ? -errno : settle_locked(call_locked(op, a0, a1, a2, a3, NULL, 0, 0));
	memcpy(out, vals, n * sizeof(*out));
	pthread_mutex_unlock(&lock);
	return ret;
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
		/* the sim's pages now stand where a BAR of ours may have been mapped */
		if (p != MAP_FAILED && (flags & MAP_FIXED))
			mmio_forget((uintptr_t)p, len);
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

/* ---- exec: the sim descriptors without close-on-exec survive it, as real ones do ---- */

/*
 * The new image of a process that called exec with a connection: the exec interposers below let
 * the connection through, so find it (the socket connected to the server), and tell the server the
 * process runs a new image. Its sim process keeps the descriptors that are still open here (the
 * kernel closed the close-on-exec placeholders) and closes the others; its memory is the new
 * image's.
 */
static void after_exec(void)
{
	char path[64], link[64];
	struct sockaddr_un peer;
	DIR *d = real_opendir ? real_opendir("/proc/self/fd") : NULL;
	struct dirent *e;
	int found = -1;

	if (!d)
		return;
	while ((e = real_readdir(d))) {
		int fd = atoi(e->d_name);
		socklen_t len = sizeof(peer);
		if (e->d_name[0] == '.' || fd == real_dirfd(d))
			continue;
		if (getpeername(fd, (struct sockaddr *)&peer, &len) == 0 && peer.sun_family == AF_UNIX &&
		    len > offsetof(struct sockaddr_un, sun_path) && !strcmp(peer.sun_path, sock_path)) {
			found = fd;
			break;
		}
	}
	real_closedir(d);
	if (found < 0)
		return;
	fcntl(found, F_SETFD, FD_CLOEXEC);
	pthread_mutex_lock(&lock);
	conn = found;
	conn_pid = getpid();
	/* the server's pid, which HELLO told the old image: the peer's credentials tell it again */
	struct ucred cred;
	socklen_t clen = sizeof(cred);
	if (getsockopt(found, SOL_SOCKET, SO_PEERCRED, &cred, &clen) == 0)
		server_pid = cred.pid;
	n_exec_fds = 0;
	int64_t ret = call_locked(OP_EXEC, (uint64_t)getpid(), 0, 0, 0, NULL, 0, 0);
	if (ret < 0) {
		/* not this process's connection: leave it and connect anew when needed */
		conn = -1;
		real_close(found);
		pthread_mutex_unlock(&lock);
		return;
	}
	for (uint32_t i = 0; i < n_exec_fds; i++) {
		int fd = exec_fds[i];
		ssize_t n;
		snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
		n = readlink(path, link, sizeof(link) - 1);
		if (n > 0)
			link[n] = 0;
		if (n > 0 && !strcmp(link, "anon_inode:[eventfd]") && fd < MAX_FDS)
			simfd[fd] = 1;
		else if (call_locked(OP_CLOSE, fd, 0, 0, 0, NULL, 0, 0) == BROKEN)
			break;
	}
	/* the old image's channel went with its memory (and EXEC ended it in the server) */
	open_channel();
	pthread_mutex_unlock(&lock);
}

/* Let the connection through an exec of this process (not of a vfork child sharing our memory). */
static void exec_keep(int keep)
{
	if (conn >= 0 && conn_pid == getpid())
		real_fcntl(conn, F_SETFD, keep ? 0 : FD_CLOEXEC);
}

#define EXEC_THROUGH(call)                 \
	do {                               \
		resolve();                 \
		exec_keep(1);              \
		int r_ = (call);           \
		int e_ = errno;            \
		exec_keep(0);              \
		errno = e_;                \
		return r_;                 \
	} while (0)

typedef int (*execve_fn)(const char *, char *const[], char *const[]);
typedef int (*execv_fn)(const char *, char *const[]);
typedef int (*fexecve_fn)(int, char *const[], char *const[]);

int execve(const char *path, char *const argv[], char *const envp[])
{
	EXEC_THROUGH(((execve_fn)dlsym(RTLD_NEXT, "execve"))(path, argv, envp));
}

int execv(const char *path, char *const argv[])
{
	EXEC_THROUGH(((execv_fn)dlsym(RTLD_NEXT, "execv"))(path, argv));
}

int execvp(const char *file, char *const argv[])
{
	EXEC_THROUGH(((execv_fn)dlsym(RTLD_NEXT, "execvp"))(file, argv));
}

int execvpe(const char *file, char *const argv[], char *const envp[])
{
	EXEC_THROUGH(((execve_fn)dlsym(RTLD_NEXT, "execvpe"))(file, argv, envp));
}

int fexecve(int fd, char *const argv[], char *const envp[])
{
	EXEC_THROUGH(((fexecve_fn)dlsym(RTLD_NEXT, "fexecve"))(fd, argv, envp));
}

/* execl, execlp and execle: the arguments up to the NULL as an array. */
#define LIST_ARGS(arg, argv)                                             \
	va_list ap;                                                      \
	size_t n_ = 1;                                                   \
	va_start(ap, arg);                                               \
	while (va_arg(ap, char *))                                       \
		n_++;                                                    \
	va_end(ap);                                                      \
	char *argv[n_ + 1];                                              \
	argv[0] = (char *)arg;                                           \
	va_start(ap, arg);                                               \
	for (size_t i_ = 1; i_ <= n_; i_++)                              \
		argv[i_] = va_arg(ap, char *)

int execl(const char *path, const char *arg, ...)
{
	LIST_ARGS(arg, argv);
	va_end(ap);
	return execv(path, argv);
}

int execlp(const char *file, const char *arg, ...)
{
	LIST_ARGS(arg, argv);
	va_end(ap);
	return execvp(file, argv);
}

/* execle's environment follows the NULL that ends the arguments. */
int execle(const char *path, const char *arg, ...)
{
	LIST_ARGS(arg, argv);
	char *const *envp = va_arg(ap, char *const *);
	va_end(ap);
	return execve(path, argv, envp);
}
