/**
 * The linux backend: the real kernel uAPI through koffi. Thin by design: encode (done by the
 * caller into a preallocated buffer), ioctl, read errno immediately, throw IommuError.
 */
import { createRequire } from 'node:module';
import { IommuError } from '../../ioasid/errors.js';
import { IOCTL_BY_REQUEST, IOMMU_TEST_CMD } from '../../ioasid/uapi.js';
import type { Binding } from '../types.js';

const require = createRequire(import.meta.url);
type Koffi = typeof import('koffi');

interface Libc {
  koffi: Koffi;
  open: (path: string, flags: number) => number;
  close: (fd: number) => number;
  ioctl: (fd: number, req: number, arg: Uint8Array | null) => number;
  ioctlInt: (fd: number, req: number, arg: number) => number;
  mmap: (addr: bigint | null, len: number, prot: number, flags: number, fd: number, off: number) => bigint;
  munmap: (addr: bigint, len: number) => number;
  memfd_create: (name: string, flags: number) => number;
  ftruncate: (fd: number, len: number) => number;
  sysconf: (name: number) => number;
}

let libc: Libc | null = null;

/** Load koffi and libc on first use, so importing the library never needs them. */
function load(): Libc {
  if (libc) return libc;
  const koffi = require('koffi') as Koffi;
  const lib = koffi.load('libc.so.6');
  libc = {
    koffi,
    open: lib.func('int open(const char *path, int flags)'),
    close: lib.func('int close(int fd)'),
    ioctl: lib.func('int ioctl(int fd, unsigned long req, void *arg)'),
    ioctlInt: lib.func('int ioctl(int fd, unsigned long req, unsigned long arg)'),
    mmap: lib.func('void *mmap(void *addr, size_t len, int prot, int flags, int fd, long off)'),
    munmap: lib.func('int munmap(void *addr, size_t len)'),
    memfd_create: lib.func('int memfd_create(const char *name, unsigned int flags)'),
    ftruncate: lib.func('int ftruncate(int fd, long len)'),
    sysconf: lib.func('long sysconf(int name)'),
  };
  return libc;
}

function requestName(request: number): string {
  const d = IOCTL_BY_REQUEST.get(request) ?? (request === IOMMU_TEST_CMD.request ? IOMMU_TEST_CMD : undefined);
  return d ? d.name : `ioctl(0x${request.toString(16)})`;
}

const MAP_FAILED = 0xffff_ffff_ffff_ffffn;

export class LinuxBinding implements Binding {
  readonly name = 'linux' as const;
  readonly pageSize: number;
  private readonly c: Libc;

  constructor() {
    this.c = load();
    this.pageSize = this.c.sysconf(30 /* _SC_PAGESIZE */) || 4096;
  }

  private fail(name: string): never {
    throw new IommuError(this.c.koffi.errno(), name);
  }

  open(path: string, flags = 2 | 0o2000000): number {
    const fd = this.c.open(path, flags);
    if (fd < 0) this.fail('open');
    return fd;
  }

  close(fd: number): void {
    if (this.c.close(fd) < 0) this.fail('close');
  }

  ioctl(fd: number, request: number, arg: Uint8Array | null): number {
    const rc = this.c.ioctl(fd, request, arg);
    if (rc < 0) this.fail(requestName(request));
    return rc;
  }

  ioctlInt(fd: number, request: number, value: number): number {
    const rc = this.c.ioctlInt(fd, request, value);
    if (rc < 0) this.fail(requestName(request));
    return rc;
  }

  mmap(addr: bigint, length: number, prot: number, flags: number, fd: number, offset: number): bigint {
    const p = this.c.mmap(addr === 0n ? null : addr, length, prot, flags, fd, offset);
    const a = typeof p === 'bigint' ? p : BigInt(this.c.koffi.address(p));
    if (a === MAP_FAILED) this.fail('mmap');
    return a;
  }

  munmap(addr: bigint, length: number): void {
    if (this.c.munmap(addr, length) < 0) this.fail('munmap');
  }

  memfdCreate(name: string, flags = 1): number {
    const fd = this.c.memfd_create(name, flags);
    if (fd < 0) this.fail('memfd_create');
    return fd;
  }

  ftruncate(fd: number, length: number): void {
    if (this.c.ftruncate(fd, length) < 0) this.fail('ftruncate');
  }

  view(addr: bigint, length: number): Uint8Array {
    return new Uint8Array(this.c.koffi.view(addr, length));
  }

  hasCapability(cap: number): boolean {
    const status = require('node:fs').readFileSync('/proc/self/status', 'utf8') as string;
    const m = /CapEff:\s*([0-9a-f]+)/.exec(status);
    return !!m && ((BigInt('0x' + m[1]) >> BigInt(cap)) & 1n) === 1n;
  }
}

export function linux(): LinuxBinding {
  return new LinuxBinding();
}
