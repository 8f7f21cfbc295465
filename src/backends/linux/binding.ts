/**
 * The linux backend: the Binding seam implemented with real syscalls (koffi → libc). Each method is
 * one syscall; a failing one throws IommuError with the errno read straight after the call and the
 * uAPI name of the ioctl (IOMMU_IOAS_MAP, IOMMU_TEST_CMD) or the syscall's name.
 *
 * Every number is checked first (syscall_args.ts), the same way the sim checks it, so koffi never
 * truncates a NaN or a fraction into a C argument.
 *
 * ioctl() is the hot path: it passes the caller's preallocated struct bytes through unchanged and
 * allocates nothing unless the call fails.
 *
 * koffi and libc load at the first syscall, not at construction: the file system calls (sysfs,
 * what `ioasid ls` and `ioasid doctor` read) need neither.
 */
import { readFileSync, readdirSync, readlinkSync, writeFileSync } from 'node:fs';
import { IommuError } from '../../ioasid/errors.js';
import { IOCTL_BY_REQUEST, IOMMU_TEST_CMD } from '../../ioasid/uapi.js';
import {
  MFD_CLOEXEC, O_CLOEXEC, O_RDWR, type BackendName, type Binding,
} from '../types.js';
import {
  checkEventfd, checkFtruncate, checkIoctl, checkIoctlInt, checkMmap, checkMunmap, checkPoll, checkPositioned,
  checkView, fdArg, intArg, uintArg,
} from '../syscall_args.js';
import { MAP_FAILED, cap_effective, libc } from './libc.js';
import { poller } from './poller.js';

/** The name an ioctl request goes by in errors: its uAPI macro name, else `ioctl(0x3b7f)`. */
export function ioctl_name(request: number): string {
  if (request === IOMMU_TEST_CMD.request) return IOMMU_TEST_CMD.name;
  return IOCTL_BY_REQUEST.get(request)?.name ?? `ioctl(0x${request.toString(16)})`;
}

/** Throw for a libc call that returned -1; `errno` must be read before anything else runs. */
function fail(errno: number, syscall: string, path?: string): never {
  throw new IommuError(errno, syscall, { path });
}

export class LinuxBinding implements Binding {
  readonly name: BackendName = 'linux';
  private _pageSize = 0;

  get pageSize(): number {
    return (this._pageSize ||= libc().page_size());
  }

  open(path: string, flags: number = O_RDWR | O_CLOEXEC): number {
    intArg('open', 'flags', flags);
    const fd = libc().open(path, flags, 0);
    if (fd < 0) fail(libc().errno(), 'open', path);
    return fd;
  }

  close(fd: number): void {
    fdArg('close', fd);
    poller.closing(fd);
    if (libc().close(fd) < 0) fail(libc().errno(), 'close');
  }

  ioctl(fd: number, request: number, arg: Uint8Array | null): number {
    checkIoctl(fd, request);
    const ret = libc().ioctl(fd, request, arg);
    if (ret < 0) fail(libc().errno(), ioctl_name(request));
    return ret;
  }

  ioctlInt(fd: number, request: number, value: number): number {
    checkIoctlInt(fd, request, value);
    const ret = libc().ioctl_int(fd, request, value);
    if (ret < 0) fail(libc().errno(), ioctl_name(request));
    return ret;
  }

  mmap(addr: bigint, length: number, prot: number, flags: number, fd: number, offset: number): bigint {
    checkMmap(addr, length, prot, flags, fd, offset);
    const ptr = libc().mmap(addr === 0n ? null : addr, length, prot, flags, fd, offset);
    if (ptr === null || ptr === MAP_FAILED) fail(libc().errno(), 'mmap');
    return ptr;
  }

  munmap(addr: bigint, length: number): void {
    checkMunmap(addr, length);
    if (libc().munmap(addr, length) < 0) fail(libc().errno(), 'munmap');
  }

  memfdCreate(name: string, flags: number = MFD_CLOEXEC): number {
    uintArg('memfd_create', 'flags', flags);
    const fd = libc().memfd_create(name, flags);
    if (fd < 0) fail(libc().errno(), 'memfd_create');
    return fd;
  }

  ftruncate(fd: number, length: number): void {
    checkFtruncate(fd, length);
    if (libc().ftruncate(fd, length) < 0) fail(libc().errno(), 'ftruncate');
  }

  pread(fd: number, buf: Uint8Array, offset: number): number {
    checkPositioned('pread', fd, offset);
    const n = libc().pread(fd, buf, buf.byteLength, offset);
    if (n < 0) fail(libc().errno(), 'pread');
    return n;
  }

  pwrite(fd: number, buf: Uint8Array, offset: number): number {
    checkPositioned('pwrite', fd, offset);
    const n = libc().pwrite(fd, buf, buf.byteLength, offset);
    if (n < 0) fail(libc().errno(), 'pwrite');
    return n;
  }

  read(fd: number, buf: Uint8Array): number {
    fdArg('read', fd);
    const n = libc().read(fd, buf, buf.byteLength);
    if (n < 0) fail(libc().errno(), 'read');
    return n;
  }

  write(fd: number, buf: Uint8Array): number {
    fdArg('write', fd);
    const n = libc().write(fd, buf, buf.byteLength);
    if (n < 0) fail(libc().errno(), 'write');
    return n;
  }

  eventfd(initval: number, flags: number): number {
    checkEventfd(initval, flags);
    const fd = libc().eventfd(initval, flags);
    if (fd < 0) fail(libc().errno(), 'eventfd');
    return fd;
  }

  private readonly pollfd = new Uint8Array(8);
  poll(fd: number, events: number, timeoutMs: number): number {
    checkPoll(fd, events, timeoutMs);
    const dv = new DataView(this.pollfd.buffer);
    dv.setInt32(0, fd, true);
    dv.setInt16(4, events, true);
    dv.setInt16(6, 0, true);
    const n = libc().poll(this.pollfd, 1, timeoutMs);
    if (n < 0) fail(libc().errno(), 'poll');
    return n === 0 ? 0 : dv.getUint16(6, true);
  }

  /** poll(2) on a worker thread (linux/poller.ts); the main thread never blocks. */
  async pollAsync(fd: number, events: number, signal?: AbortSignal): Promise<number> {
    checkPoll(fd, events, -1);
    return poller.wait(fd, events, signal);
  }

  readText(path: string): string {
    return fsCall('read', path, () => readFileSync(path, 'utf8'));
  }

  writeText(path: string, text: string): void {
    fsCall('write', path, () => writeFileSync(path, text));
  }

  readlink(path: string): string {
    return fsCall('readlink', path, () => readlinkSync(path));
  }

  readdir(path: string): string[] {
    return fsCall('readdir', path, () => readdirSync(path).sort());
  }

  view(addr: bigint, length: number): Uint8Array {
    checkView(addr, length);
    if (length === 0) return new Uint8Array(0);
    return new Uint8Array(libc().view(addr, length));
  }

  hasCapability(cap: number): boolean {
    return ((cap_effective() >> BigInt(cap)) & 1n) === 1n;
  }
}

/** node:fs errors carry the errno as a negative number; re-throw them as IommuError naming the path. */
export function fsCall<T>(syscall: string, path: string, fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    const errno = (e as NodeJS.ErrnoException).errno;
    if (typeof errno === 'number') throw new IommuError(-errno, syscall, { path });
    throw e;
  }
}
