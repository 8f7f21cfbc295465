/**
 * The libc calls the linux backend needs, bound once through koffi. Each function returns what libc
 * returns (-1 on failure); callers read `errno()` immediately after a failing call, before anything
 * else can run a syscall and overwrite it.
 *
 * koffi 3: `void *` results are BigInt addresses. `void *` arguments accept a Buffer/TypedArray (koffi
 * passes its data pointer), a BigInt address, or null.
 */
import { readFileSync } from 'node:fs';
import koffi from 'koffi';

const lib = koffi.load('libc.so.6');

/** (void *)-1, what mmap returns on failure. */
export const MAP_FAILED = 0xffff_ffff_ffff_ffffn;
const _SC_PAGESIZE = 30;

type Ptr = Uint8Array | bigint | null;

// open(2) is variadic; the mode argument is passed explicitly, which is what the ABI does anyway.
export const open = lib.func('int open(const char *path, int flags, unsigned int mode)') as
  (path: string, flags: number, mode: number) => number;
export const close = lib.func('int close(int fd)') as (fd: number) => number;

/** ioctl(fd, request, struct *): the hot path. The argument is the struct's bytes, or NULL. */
export const ioctl = lib.func('int ioctl(int fd, unsigned long request, void *arg)') as
  (fd: number, request: number, arg: Ptr) => number;
/** ioctl(fd, request, value) for commands whose argument is an integer. */
export const ioctl_int = lib.func('int ioctl(int fd, unsigned long request, unsigned long value)') as
  (fd: number, request: number, value: number) => number;

export const mmap = lib.func(
  'void *mmap(void *addr, size_t length, int prot, int flags, int fd, int64_t offset)',
) as (addr: bigint | null, length: number, prot: number, flags: number, fd: number, offset: number) => bigint | null;
export const munmap = lib.func('int munmap(void *addr, size_t length)') as (addr: bigint, length: number) => number;

export const memfd_create = lib.func('int memfd_create(const char *name, unsigned int flags)') as
  (name: string, flags: number) => number;
export const ftruncate = lib.func('int ftruncate(int fd, int64_t length)') as (fd: number, length: number) => number;
export const pread = lib.func('intptr_t pread(int fd, void *buf, size_t count, int64_t offset)') as
  (fd: number, buf: Uint8Array, count: number, offset: number) => number;

export const pwrite = lib.func('intptr_t pwrite(int fd, const void *buf, size_t count, int64_t offset)') as
  (fd: number, buf: Uint8Array, count: number, offset: number) => number;
export const read = lib.func('intptr_t read(int fd, void *buf, size_t count)') as
  (fd: number, buf: Uint8Array, count: number) => number;
export const write = lib.func('intptr_t write(int fd, const void *buf, size_t count)') as
  (fd: number, buf: Uint8Array, count: number) => number;
export const eventfd = lib.func('int eventfd(unsigned int initval, int flags)') as
  (initval: number, flags: number) => number;
/** poll(struct pollfd *fds, nfds_t n, int timeout); a pollfd is { int fd; short events; short revents; }. */
export const poll = lib.func('int poll(void *fds, unsigned long nfds, int timeout)') as
  (fds: Uint8Array, nfds: number, timeout: number) => number;

const sysconf = lib.func('long sysconf(int name)') as (name: number) => number;

/** An ArrayBuffer over mapped memory at [addr, addr+length); no copy. */
export const view = (addr: bigint, length: number): ArrayBuffer => koffi.view(addr, length);

/** The live C errno of this thread. */
export const errno = (): number => koffi.errno();

/** sysconf(_SC_PAGESIZE), or 4096 if libc cannot say. */
export function page_size(): number {
  const n = sysconf(_SC_PAGESIZE);
  return n > 0 ? n : 4096;
}

/** The effective capability set, from the `CapEff:` line of /proc/self/status. */
export function cap_effective(): bigint {
  const status = readFileSync('/proc/self/status', 'utf8');
  const m = /^CapEff:\s*([0-9a-f]+)$/m.exec(status);
  return m?.[1] ? BigInt(`0x${m[1]}`) : 0n;
}
