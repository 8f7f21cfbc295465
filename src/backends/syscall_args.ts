/**
 * The numbers of every Binding call, checked the same way by both backends before anything runs,
 * so that a JS number is never silently truncated into a C argument (koffi would turn NaN into 0
 * and 4096.5 into 4096) and both backends answer alike:
 *
 * - every number must be a safe integer (|n| <= 2^53 - 1), and a non-negative one where Linux
 *   takes an unsigned type (size_t lengths, unsigned flags and counts); a bigint address must be
 *   a u64;
 * - a descriptor that is not an int answers EBADF (there is no such descriptor), any other bad
 *   number EINVAL.
 *
 * A value that passes is exact, and what Linux does with it is then the kernel's (or the sim's)
 * business: mmap of 0 bytes EINVAL, of more than the address space ENOMEM, pread at -1 EINVAL.
 * Each check names the syscall, as the IommuError of a failing call does.
 */
import { ERRNO, IommuError } from '../ioasid/errors.js';

const U64_LIMIT = 1n << 64n;
const INT_MIN = -(2 ** 31);
const INT_MAX = 2 ** 31 - 1;

function bad(errno: number, syscall: string, what: string, v: unknown): never {
  throw new IommuError(errno, syscall, `${what} ${String(v)}`);
}

/** An `int` descriptor. */
export function fdArg(syscall: string, fd: number): void {
  if (!(Number.isInteger(fd) && fd >= INT_MIN && fd <= INT_MAX)) bad(ERRNO.EBADF, syscall, 'fd', fd);
}

/** An `int` (flags, prot, events, timeout). */
export function intArg(syscall: string, what: string, v: number): void {
  if (!(Number.isInteger(v) && v >= INT_MIN && v <= INT_MAX)) bad(ERRNO.EINVAL, syscall, what, v);
}

/** An `unsigned int` (memfd/ioctl flags, an eventfd's initial count, an ioctl request). */
export function uintArg(syscall: string, what: string, v: number): void {
  if (v >>> 0 !== v) bad(ERRNO.EINVAL, syscall, what, v);
}

/** A `size_t` / `unsigned long`: a safe non-negative integer. */
export function sizeArg(syscall: string, what: string, v: number): void {
  if (!(Number.isSafeInteger(v) && v >= 0)) bad(ERRNO.EINVAL, syscall, what, v);
}

/** An `off_t` / `loff_t`: a safe integer (the kernel judges the sign). */
export function offArg(syscall: string, what: string, v: number): void {
  if (!Number.isSafeInteger(v)) bad(ERRNO.EINVAL, syscall, what, v);
}

/** A user address (`void *`, `unsigned long`): a u64. */
export function addrArg(syscall: string, v: bigint): void {
  if (typeof v !== 'bigint' || v < 0n || v >= U64_LIMIT) bad(ERRNO.EINVAL, syscall, 'addr', v);
}

// ---- one check per Binding call, in the order of its C arguments --------------------------------

export function checkIoctl(fd: number, request: number): void {
  fdArg('ioctl', fd);
  uintArg('ioctl', 'request', request);
}

export function checkIoctlInt(fd: number, request: number, value: number): void {
  checkIoctl(fd, request);
  sizeArg('ioctl', 'value', value);
}

export function checkMmap(addr: bigint, length: number, prot: number, flags: number, fd: number, offset: number): void {
  addrArg('mmap', addr);
  sizeArg('mmap', 'length', length);
  intArg('mmap', 'prot', prot);
  intArg('mmap', 'flags', flags);
  fdArg('mmap', fd);
  offArg('mmap', 'offset', offset);
}

export function checkMunmap(addr: bigint, length: number): void {
  addrArg('munmap', addr);
  sizeArg('munmap', 'length', length);
}

export function checkFtruncate(fd: number, length: number): void {
  fdArg('ftruncate', fd);
  offArg('ftruncate', 'length', length);
}

/** pread/pwrite: the descriptor and the offset (the count is the buffer's length). */
export function checkPositioned(syscall: 'pread' | 'pwrite', fd: number, offset: number): void {
  fdArg(syscall, fd);
  offArg(syscall, 'offset', offset);
}

export function checkEventfd(initval: number, flags: number): void {
  uintArg('eventfd', 'initval', initval);
  intArg('eventfd', 'flags', flags);
}

export function checkPoll(fd: number, events: number, timeoutMs: number): void {
  fdArg('poll', fd);
  // struct pollfd's `short events`: any 16 bits
  if (!(Number.isInteger(events) && events >= -0x8000 && events <= 0xffff)) bad(ERRNO.EINVAL, 'poll', 'events', events);
  intArg('poll', 'timeout', timeoutMs);
}

export function checkView(addr: bigint, length: number): void {
  addrArg('view', addr);
  sizeArg('view', 'length', length);
}
