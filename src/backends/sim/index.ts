/**
 * The sim backend: a software kernel that answers the same syscalls as Linux. A SimKernel holds
 * users and machine-wide settings; each SimBinding is one process's view of it.
 */
import { ERRNO, IommuError } from '../../ioasid/errors.js';
import { EFD_NONBLOCK, POLLIN, POLLOUT, type Binding } from '../types.js';
import { KernelErrno, kerr } from './kernel/errno.js';
import { SimMemfdFile } from './iommufd/ioas.js';
import { IommufdCtx } from './iommufd/main.js';
import { AccountMode } from './iommufd/pages.js';
import { PAGE_SIZE, SimMemfd } from './kernel/mm.js';
import { SimVfs } from './kernel/vfs.js';
import { enterSyscall, leaveSyscall } from './kernel/fault_inject.js';
import { ALL_CAPS, ProcFailNthFile, SimProcess, SimUser, type SimFile } from './kernel/process.js';
import { VfioContainer } from './vfio/container.js';
import { Machine, type MachineDesc } from './machine/machine.js';
import { q35Edu } from './machine/presets.js';

export * as presets from './machine/presets.js';

export interface SimOptions {
  /** Offer IOMMU_TEST_CMD, as a kernel built with CONFIG_IOMMUFD_TEST does (default true). */
  selftest?: boolean;
  /** The simulated hardware (default: presets.q35Edu(), the test VM's machine). */
  machine?: MachineDesc;
  /** Capabilities of the process (default: all, like root). */
  caps?: Iterable<number>;
  /** RLIMIT_MEMLOCK in bytes (default 8 MiB). */
  rlimitMemlock?: number;
}

export class SimKernel {
  private readonly users = new Map<number, SimUser>();
  /** sysfs and /dev: what the simulated machine publishes and open() finds. */
  readonly vfs = new SimVfs();
  /** The hardware: IOMMU units, PCI functions and their groups, drivers. */
  readonly machine: Machine;
  constructor(
    readonly selftest = true,
    machine: MachineDesc = q35Edu(),
  ) {
    this.vfs.addCharDev('/dev/iommu', (proc) => new IommufdCtx(proc, this.selftest, this.machine));
    // Each process has one thread: its thread-self and its own entry are the same task's file.
    const failNth = (proc: SimProcess) => new ProcFailNthFile(proc);
    this.vfs.addCharDev('/proc/thread-self/fail-nth', failNth);
    this.vfs.addCharDev('/proc/self/fail-nth', failNth);
    this.machine = new Machine(machine, this.vfs, { selftest });
    // /dev/vfio/vfio: VFIO's legacy container (vfio_container_init), or iommufd's misc device
    // (CONFIG_IOMMUFD_VFIO_CONTAINER), which accounts pins to the mm as VFIO does.
    const vfio = this.machine.vfio;
    if (vfio.container === 'vfio') {
      this.vfs.addCharDev('/dev/vfio/vfio', (proc) => new VfioContainer(proc, vfio.type1));
    } else if (vfio.container === 'iommufd') {
      this.vfs.addCharDev('/dev/vfio/vfio', (proc) => {
        const ctx = new IommufdCtx(proc, this.selftest, this.machine);
        ctx.accountMode = AccountMode.MM;
        return ctx;
      });
    }
  }

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

export class SimBinding implements Binding {
  readonly name = 'sim' as const;
  readonly pageSize = PAGE_SIZE;

  constructor(
    readonly kernel: SimKernel,
    readonly proc: SimProcess,
  ) {}

  /** One syscall: this process is the current task (fault injection counts against it); a KernelErrno becomes an IommuError. */
  private sys<T>(name: string, fn: () => T): T {
    const prev = enterSyscall(this.proc);
    try {
      return fn();
    } catch (e) {
      if (e instanceof KernelErrno) throw new IommuError(e.errno, name);
      throw e;
    } finally {
      leaveSyscall(prev);
    }
  }

  open(path: string, flags = 0): number {
    return this.sys('open', () => this.proc.installFd(this.kernel.vfs.open(path, this.proc, flags)));
  }

  close(fd: number): void {
    this.sys('close', () => this.proc.close(fd));
  }

  ioctl(fd: number, request: number, arg: Uint8Array | null): number {
    const file = this.proc.fileOrNull(fd);
    if (!file) throw new IommuError(ERRNO.EBADF, 'ioctl');
    if (!file.ioctl) throw new IommuError(ERRNO.ENOTTY, `ioctl(0x${request.toString(16)})`);
    const prev = enterSyscall(this.proc); // no closure: the hot path allocates nothing
    try {
      return file.ioctl(request, arg);
    } finally {
      leaveSyscall(prev);
    }
  }

  ioctlInt(fd: number, request: number, value: number): number {
    const file = this.proc.fileOrNull(fd);
    if (!file) throw new IommuError(ERRNO.EBADF, 'ioctl');
    if (!file.ioctlInt) throw new IommuError(ERRNO.ENOTTY, `ioctl(0x${request.toString(16)})`);
    const prev = enterSyscall(this.proc);
    try {
      return file.ioctlInt(request, value);
    } finally {
      leaveSyscall(prev);
    }
  }

  mmap(addr: bigint, length: number, prot: number, flags: number, fd: number, offset: number): bigint {
    return this.sys('mmap', () => {
      let memfd: SimMemfd | null = null;
      if (fd >= 0) {
        const f = this.proc.file(fd);
        if (f.mmap) return BigInt(f.mmap(this.proc.mm, Number(addr), length, prot, flags, offset));
        if (!(f instanceof SimMemfdFile)) kerr(ERRNO.ENODEV);
        memfd = f.memfd;
      }
      return BigInt(this.proc.mm.mmap(Number(addr), length, prot, flags, memfd, offset));
    });
  }

  munmap(addr: bigint, length: number): void {
    this.sys('munmap', () => this.proc.mm.munmap(Number(addr), length));
  }

  memfdCreate(name: string): number {
    return this.sys('memfd_create', () => this.proc.installFd(new SimMemfdFile(new SimMemfd(name))));
  }

  ftruncate(fd: number, length: number): void {
    this.sys('ftruncate', () => {
      const f = this.proc.file(fd);
      if (!(f instanceof SimMemfdFile)) kerr(ERRNO.EINVAL);
      f.memfd.truncate(length);
    });
  }

  view(addr: bigint, length: number): Uint8Array {
    return this.sys('view', () => this.proc.mm.view(Number(addr), length));
  }

  hasCapability(cap: number): boolean {
    return this.proc.hasCapability(cap);
  }

  read(fd: number, buf: Uint8Array): number {
    return this.sys('read', () => fileOp(this.proc.file(fd), 'read', ERRNO.EINVAL)(buf));
  }

  write(fd: number, buf: Uint8Array): number {
    return this.sys('write', () => fileOp(this.proc.file(fd), 'write', ERRNO.EINVAL)(buf));
  }

  pread(fd: number, buf: Uint8Array, offset: number): number {
    return this.sys('pread', () => fileOp(this.proc.file(fd), 'pread', ERRNO.ESPIPE)(buf, offset));
  }

  pwrite(fd: number, buf: Uint8Array, offset: number): number {
    return this.sys('pwrite', () => fileOp(this.proc.file(fd), 'pwrite', ERRNO.ESPIPE)(buf, offset));
  }

  eventfd(initval: number, flags: number): number {
    return this.sys('eventfd', () => this.proc.installFd(new SimEventfd(initval, !!(flags & EFD_NONBLOCK))));
  }

  poll(fd: number, events: number): number {
    return this.sys('poll', () => {
      const f = this.proc.file(fd);
      return f.poll ? f.poll.call(f, events) : events & (POLLIN | POLLOUT);
    });
  }

  readText(path: string): string {
    return this.sys('read', () => this.kernel.vfs.readText(path));
  }

  writeText(path: string, text: string): void {
    this.sys('write', () => this.kernel.vfs.writeText(path, text));
  }

  readlink(path: string): string {
    return this.sys('readlink', () => this.kernel.vfs.readlink(path));
  }

  readdir(path: string): string[] {
    return this.sys('readdir', () => this.kernel.vfs.readdir(path));
  }
}

/** A file's read/write/pread/pwrite bound to it, or the errno a file without that op answers. */
function fileOp<K extends 'read' | 'write' | 'pread' | 'pwrite'>(f: SimFile, name: K, errno: number): NonNullable<SimFile[K]> {
  const fn = f[name];
  if (!fn) return kerr(errno);
  return fn.bind(f) as NonNullable<SimFile[K]>;
}

/**
 * eventfd(2): a 64-bit counter. A read takes the whole count (EAGAIN at 0: the sim never blocks,
 * so a blocking eventfd behaves as a non-blocking one); a write adds to it.
 */
export class SimEventfd implements SimFile {
  readonly kind = 'eventfd';
  /** Called with the new count whenever a write (or a device interrupt) raises it. */
  onSignal: (() => void) | null = null;
  constructor(
    public count: number,
    readonly nonblock: boolean,
  ) {}

  read(buf: Uint8Array): number {
    if (buf.length < 8) kerr(ERRNO.EINVAL);
    if (this.count === 0) kerr(ERRNO.EAGAIN);
    new DataView(buf.buffer, buf.byteOffset, 8).setBigUint64(0, BigInt(this.count), true);
    this.count = 0;
    return 8;
  }

  write(buf: Uint8Array): number {
    if (buf.length < 8) kerr(ERRNO.EINVAL);
    const v = new DataView(buf.buffer, buf.byteOffset, 8).getBigUint64(0, true);
    if (v === 0xffff_ffff_ffff_ffffn) kerr(ERRNO.EINVAL);
    this.signal(Number(v));
    return 8;
  }

  /** eventfd_signal: what an interrupt does. */
  signal(n = 1): void {
    this.count += n;
    this.onSignal?.();
  }

  poll(events: number): number {
    return (this.count > 0 ? POLLIN : 0) | POLLOUT;
  }

  release(): void {}
}

/** A fresh simulated machine with one process, as the embedded default backend. */
export function sim(opts: SimOptions = {}): SimBinding {
  const kernel = new SimKernel(opts.selftest ?? true, opts.machine);
  return new SimBinding(kernel, kernel.spawn(opts));
}
