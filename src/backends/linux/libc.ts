/**
 * The libc calls the linux backend needs, bound through koffi on first use: nothing here loads
 * koffi or libc.so.6 at import, so the sim (and everything else) runs where neither exists
 * (macOS, musl). Each function returns what libc returns (-1 on failure); callers read `errno()`
 * immediately after a failing call, before anything else can run a syscall and overwrite it.
 *
 * koffi 3: `void *` results are BigInt addresses. `void *` arguments accept a Buffer/TypedArray (koffi
 * passes its data pointer), a BigInt address, or null.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';

/** (void *)-1, what mmap returns on failure. */
export const MAP_FAILED = 0xffff_ffff_ffff_ffffn;
const _SC_PAGESIZE = 30;
/** x86-64 and the generic table agree on these (glibc 2.36 has wrappers; older ones do not). */
const SYS_pidfd_open = 434;
const SYS_pidfd_getfd = 438;
const SYS_futex = 202;
const FUTEX_WAKE = 1;

type Ptr = Uint8Array | bigint | null;

export interface Libc {
  open(path: string, flags: number, mode: number): number;
  close(fd: number): number;
  /** ioctl(fd, request, struct *): the hot path. The argument is the struct's bytes, or NULL. */
  ioctl(fd: number, request: number, arg: Ptr): number;
  /** ioctl(fd, request, value) for commands whose argument is an integer. */
  ioctl_int(fd: number, request: number, value: number): number;
  mmap(addr: bigint | null, length: number, prot: number, flags: number, fd: number, offset: number): bigint | null;
  munmap(addr: bigint, length: number): number;
  memfd_create(name: string, flags: number): number;
  ftruncate(fd: number, length: number): number;
  pread(fd: number, buf: Uint8Array, count: number, offset: number): number;
  pwrite(fd: number, buf: Uint8Array, count: number, offset: number): number;
  read(fd: number, buf: Uint8Array, count: number): number;
  write(fd: number, buf: Uint8Array, count: number): number;
  eventfd(initval: number, flags: number): number;
  /** poll(struct pollfd *fds, nfds_t n, int timeout); a pollfd is { int fd; short events; short revents; }. */
  poll(fds: Uint8Array, nfds: number, timeout: number): number;
  /** The same poll(2) on a worker thread (koffi's asynchronous call); `done` runs on the main thread. */
  poll_async(fds: Uint8Array, nfds: number, timeout: number, done: (err: unknown, ret: number) => void): void;
  /** sysconf(_SC_PAGESIZE), or 4096 if libc cannot say. */
  page_size(): number;
  /** An ArrayBuffer over mapped memory at [addr, addr+length); no copy. */
  view(addr: bigint, length: number): ArrayBuffer;
  /** The live C errno of this thread. */
  errno(): number;
  /**
   * process_vm_readv/process_vm_writev with iovec arrays the caller laid out ({ u64 base; u64 len }
   * each): the bytes moved, which stop at the first fault (-1 if none moved).
   */
  process_vm_readv(pid: number, local: Uint8Array, liovcnt: number, remote: Uint8Array, riovcnt: number, flags: number): number;
  process_vm_writev(pid: number, local: Uint8Array, liovcnt: number, remote: Uint8Array, riovcnt: number, flags: number): number;
  getsockopt(fd: number, level: number, name: number, value: Uint8Array, len: Uint8Array): number;
  pidfd_open(pid: number, flags: number): number;
  flock(fd: number, operation: number): number;
  socket(domain: number, type: number, protocol: number): number;
  bind(fd: number, addr: Uint8Array, len: number): number;
  listen(fd: number, backlog: number): number;
  accept4(fd: number, addr: Uint8Array | null, len: Uint8Array | null, flags: number): number;
  pidfd_getfd(pidfd: number, targetfd: number, flags: number): number;
  /** fcntl(fd, cmd, int arg). */
  fcntl(fd: number, cmd: number, arg: number): number;
  sched_yield(): number;
  /** FUTEX_WAKE of up to `n` waiters on the u32 at `addr` (shared, not FUTEX_PRIVATE_FLAG: other processes wait there). */
  futex_wake(addr: bigint, n: number): number;
  /** getrusage(who, struct rusage *): bench/cli.ts reads its children's CPU time with it. */
  getrusage(who: number, usage: Uint8Array): number;
}

let loaded: Libc | undefined;

/** libc through koffi, loaded on the first call; a clear Error when koffi or libc.so.6 cannot load. */
export function libc(): Libc {
  return (loaded ??= load());
}

function load(): Libc {
  let koffi: typeof import('koffi');
  try {
    koffi = createRequire(import.meta.url)('koffi') as typeof import('koffi');
  } catch (e) {
    throw new Error(`the linux backend needs koffi, which did not load (${(e as Error).message}); the sim backend does not`, { cause: e });
  }
  let lib: ReturnType<typeof koffi.load>;
  try {
    lib = koffi.load('libc.so.6');
  } catch (e) {
    throw new Error(`the linux backend needs Linux and glibc's libc.so.6, which did not load (${(e as Error).message}); the sim backend does not`, { cause: e });
  }
  const sysconf = lib.func('long sysconf(int name)') as (name: number) => number;
  const poll = lib.func('int poll(void *fds, unsigned long nfds, int timeout)');
  const futex = lib.func('long syscall(long nr, uint64_t addr, int op, int n)') as (nr: number, addr: bigint, op: number, n: number) => number;
  return {
    // open(2) is variadic; the mode argument is passed explicitly, which is what the ABI does anyway.
    open: lib.func('int open(const char *path, int flags, unsigned int mode)'),
    close: lib.func('int close(int fd)'),
    ioctl: lib.func('int ioctl(int fd, unsigned long request, void *arg)'),
    ioctl_int: lib.func('int ioctl(int fd, unsigned long request, unsigned long value)'),
    mmap: lib.func('void *mmap(void *addr, size_t length, int prot, int flags, int fd, int64_t offset)'),
    munmap: lib.func('int munmap(void *addr, size_t length)'),
    memfd_create: lib.func('int memfd_create(const char *name, unsigned int flags)'),
    ftruncate: lib.func('int ftruncate(int fd, int64_t length)'),
    pread: lib.func('intptr_t pread(int fd, void *buf, size_t count, int64_t offset)'),
    pwrite: lib.func('intptr_t pwrite(int fd, const void *buf, size_t count, int64_t offset)'),
    read: lib.func('intptr_t read(int fd, void *buf, size_t count)'),
    write: lib.func('intptr_t write(int fd, const void *buf, size_t count)'),
    eventfd: lib.func('int eventfd(unsigned int initval, int flags)'),
    poll,
    poll_async: (fds, nfds, timeout, done) => poll.async(fds, nfds, timeout, done),
    page_size: () => {
      const n = sysconf(_SC_PAGESIZE);
      return n > 0 ? n : 4096;
    },
    view: (addr, length) => koffi.view(addr, length),
    errno: () => koffi.errno(),
    process_vm_readv: lib.func('intptr_t process_vm_readv(int pid, void *local, unsigned long liovcnt, void *remote, unsigned long riovcnt, unsigned long flags)'),
    process_vm_writev: lib.func('intptr_t process_vm_writev(int pid, void *local, unsigned long liovcnt, void *remote, unsigned long riovcnt, unsigned long flags)'),
    socket: lib.func('int socket(int domain, int type, int protocol)'),
    flock: lib.func('int flock(int fd, int operation)'),
    bind: lib.func('int bind(int fd, void *addr, unsigned int len)'),
    listen: lib.func('int listen(int fd, int backlog)'),
    accept4: lib.func('int accept4(int fd, void *addr, void *len, int flags)'),
    getsockopt: lib.func('int getsockopt(int fd, int level, int name, void *value, void *len)'),
    pidfd_open: lib.func('int syscall(long nr, int pid, unsigned int flags)').bind(null, SYS_pidfd_open) as (pid: number, flags: number) => number,
    pidfd_getfd: lib.func('int syscall(long nr, int pidfd, int targetfd, unsigned int flags)').bind(null, SYS_pidfd_getfd) as (pidfd: number, fd: number, flags: number) => number,
    fcntl: lib.func('int fcntl(int fd, int cmd, int arg)'),
    sched_yield: lib.func('int sched_yield()'),
    futex_wake: (addr, n) => futex(SYS_futex, addr, FUTEX_WAKE, n),
    getrusage: lib.func('int getrusage(int who, void *usage)'),
  };
}

/** The effective capability set of a process (default this one), from the `CapEff:` line of its /proc status (no libc needed). */
export function cap_effective(pid: number | 'self' = 'self'): bigint {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const m = /^CapEff:\s*([0-9a-f]+)$/m.exec(status);
  return m?.[1] ? BigInt(`0x${m[1]}`) : 0n;
}
