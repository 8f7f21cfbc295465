/**
 * The sim backend: a software kernel that answers the same syscalls as Linux. A SimKernel holds
 * users and machine-wide settings; each SimBinding is one process's view of it.
 */
import { ERRNO, IommuError } from '../../ioasid/errors.js';
import type { Binding } from '../types.js';
import { KernelErrno, kerr } from './errno.js';
import { SimMemfdFile } from './ioas.js';
import { IommufdCtx } from './main.js';
import { PAGE_SIZE, SimMemfd } from './mm.js';
import { ALL_CAPS, SimProcess, SimUser } from './process.js';

export interface SimOptions {
  /** Offer IOMMU_TEST_CMD, as a kernel built with CONFIG_IOMMUFD_TEST does (default true). */
  selftest?: boolean;
  /** Capabilities of the process (default: all, like root). */
  caps?: Iterable<number>;
  /** RLIMIT_MEMLOCK in bytes (default 8 MiB). */
  rlimitMemlock?: number;
}

export class SimKernel {
  private readonly users = new Map<number, SimUser>();
  constructor(readonly selftest = true) {}

  user(uid: number): SimUser {
    let u = this.users.get(uid);
    if (!u) this.users.set(uid, (u = new SimUser(uid)));
    return u;
  }

  spawn(opts: SimOptions = {}): SimProcess {
    const p = new SimProcess(this.user(0), opts.caps ?? ALL_CAPS);
    if (opts.rlimitMemlock !== undefined) p.rlimitMemlock = opts.rlimitMemlock;
    return p;
  }
}

function sys<T>(name: string, fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    if (e instanceof KernelErrno) throw new IommuError(e.errno, name);
    throw e;
  }
}

export class SimBinding implements Binding {
  readonly name = 'sim' as const;
  readonly pageSize = PAGE_SIZE;

  constructor(
    readonly kernel: SimKernel,
    readonly proc: SimProcess,
  ) {}

  open(path: string): number {
    return sys('open', () => {
      if (path !== '/dev/iommu') kerr(ERRNO.ENOENT);
      return this.proc.installFd(new IommufdCtx(this.proc, this.kernel.selftest));
    });
  }

  close(fd: number): void {
    sys('close', () => this.proc.close(fd));
  }

  ioctl(fd: number, request: number, arg: Uint8Array | null): number {
    const file = this.proc.fileOrNull(fd);
    if (!file) throw new IommuError(ERRNO.EBADF, 'ioctl');
    if (!file.ioctl) throw new IommuError(ERRNO.ENOTTY, `ioctl(0x${request.toString(16)})`);
    return file.ioctl(request, arg);
  }

  ioctlInt(fd: number, request: number, value: number): number {
    const file = this.proc.fileOrNull(fd);
    if (!file) throw new IommuError(ERRNO.EBADF, 'ioctl');
    if (!file.ioctlInt) throw new IommuError(ERRNO.ENOTTY, `ioctl(0x${request.toString(16)})`);
    return file.ioctlInt(request, value);
  }

  mmap(addr: bigint, length: number, prot: number, flags: number, fd: number, offset: number): bigint {
    return sys('mmap', () => {
      let memfd: SimMemfd | null = null;
      if (fd >= 0) {
        const f = this.proc.file(fd);
        if (!(f instanceof SimMemfdFile)) kerr(ERRNO.ENODEV);
        memfd = f.memfd;
      }
      return BigInt(this.proc.mm.mmap(Number(addr), length, prot, flags, memfd, offset));
    });
  }

  munmap(addr: bigint, length: number): void {
    sys('munmap', () => this.proc.mm.munmap(Number(addr), length));
  }

  memfdCreate(name: string): number {
    return sys('memfd_create', () => this.proc.installFd(new SimMemfdFile(new SimMemfd(name))));
  }

  ftruncate(fd: number, length: number): void {
    sys('ftruncate', () => {
      const f = this.proc.file(fd);
      if (!(f instanceof SimMemfdFile)) kerr(ERRNO.EINVAL);
      f.memfd.truncate(length);
    });
  }

  view(addr: bigint, length: number): Uint8Array {
    return sys('view', () => this.proc.mm.view(Number(addr), length));
  }

  hasCapability(cap: number): boolean {
    return this.proc.hasCapability(cap);
  }
}

/** A fresh simulated machine with one process, as the embedded default backend. */
export function sim(opts: SimOptions = {}): SimBinding {
  const kernel = new SimKernel(opts.selftest ?? true);
  return new SimBinding(kernel, kernel.spawn(opts));
}
