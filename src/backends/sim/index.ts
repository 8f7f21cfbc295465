/**
 * The sim backend: a software kernel that answers the same syscalls as Linux. A SimKernel holds
 * users and machine-wide settings; each SimBinding is one process's view of it.
 */
import { ERRNO, IommuError } from '../../ioasid/errors.js';
import { U64_MAX } from '../../ioasid/uapi.js';
import {
  EFD_CLOEXEC, EFD_NONBLOCK, MAP_ANONYMOUS, MFD_CLOEXEC, POLLERR, POLLHUP, POLLIN, POLLNVAL, POLLOUT, type Binding,
} from '../types.js';
import { PollWaits } from '../poll_waits.js';
import {
  checkEventfd, checkFtruncate, checkIoctl, checkIoctlInt, checkMmap, checkMunmap, checkPoll, checkPositioned,
  checkView, fdArg, intArg, uintArg,
} from '../syscall_args.js';
import { KernelErrno, kerr } from './kernel/errno.js';
import { SimMemfdFile } from './iommufd/ioas.js';
import { IommufdCtx } from './iommufd/main.js';
import { AccountMode } from './iommufd/pages.js';
import { PAGE_SIZE, SimMemfd } from './kernel/mm.js';
import { SimVfs } from './kernel/vfs.js';
import { WaitQueueHead } from './kernel/wait.js';
import { enterSyscall, leaveSyscall, publishFaultDebugfs } from './kernel/fault_inject.js';
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
    // iommufd's miscdevice: .mode = 0660 (drivers/iommu/iommufd/main.c)
    this.vfs.addCharDev('/dev/iommu', (proc) => new IommufdCtx(proc, this.selftest, this.machine), 0o660);
    // Each process has one thread: its thread-self and its own entry are the same task's file.
    const failNth = (proc: SimProcess) => new ProcFailNthFile(proc);
    this.vfs.addCharDev('/proc/thread-self/fail-nth', failNth);
    this.vfs.addCharDev('/proc/self/fail-nth', failNth);
    publishFaultDebugfs(this.vfs);
    this.machine = new Machine(machine, this.vfs, { selftest });
    // /dev/vfio/vfio: VFIO's legacy container (vfio_container_init), or iommufd's misc device
    // (CONFIG_IOMMUFD_VFIO_CONTAINER), which accounts pins to the mm as VFIO does.
    const vfio = this.machine.vfio;
    if (vfio.container === 'vfio') {
      // container.c's vfio_dev: .mode = S_IRUGO | S_IWUGO
      this.vfs.addCharDev('/dev/vfio/vfio', (proc) => new VfioContainer(proc, vfio.type1), 0o666);
    } else if (vfio.container === 'iommufd') {
      this.vfs.addCharDev('/dev/vfio/vfio', (proc) => {
        const ctx = new IommufdCtx(proc, this.selftest, this.machine);
        ctx.accountMode = AccountMode.MM;
        return ctx;
      }, 0o666); // iommufd's vfio_misc_dev: .mode = 0666
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

  /** pollAsync's pending waits. */
  private readonly waits = new PollWaits();

  constructor(
    readonly kernel: SimKernel,
    readonly proc: SimProcess,
  ) {}

  /**
   * One syscall: this process is the current task (fault injection counts against it); a
   * KernelErrno becomes an IommuError, naming the path of a path call.
   */
  private sys<T>(name: string, fn: () => T, path?: string): T {
    const prev = enterSyscall(this.proc);
    try {
      return fn();
    } catch (e) {
      if (e instanceof KernelErrno) throw new IommuError(e.errno, name, { path });
      throw e;
    } finally {
      leaveSyscall(prev);
    }
  }

  open(path: string, flags = 0): number {
    intArg('open', 'flags', flags);
    return this.sys('open', () => this.proc.installFd(this.kernel.vfs.open(path, this.proc, flags)), path);
  }

  close(fd: number): void {
    fdArg('close', fd);
    this.waits.closing(fd);
    this.sys('close', () => this.proc.close(fd));
  }

  ioctl(fd: number, request: number, arg: Uint8Array | null): number {
    checkIoctl(fd, request);
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
    checkIoctlInt(fd, request, value);
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

  /** sys_mmap: an unaligned offset EINVAL, then (unless MAP_ANONYMOUS) the descriptor, then do_mmap. */
  mmap(addr: bigint, length: number, prot: number, flags: number, fd: number, offset: number): bigint {
    checkMmap(addr, length, prot, flags, fd, offset);
    return this.sys('mmap', () => {
      if (offset % PAGE_SIZE) kerr(ERRNO.EINVAL);
      const mm = this.proc.mm;
      const at = Number(addr);
      if (flags & MAP_ANONYMOUS) return BigInt(mm.mmap(at, length, prot, flags, null, offset));
      const f = this.proc.file(fd);
      if (f instanceof SimMemfdFile) return BigInt(mm.mmap(at, length, prot, flags, f.memfd, offset));
      if (f.mmap) return BigInt(f.mmap(mm, at, length, prot, flags, offset));
      return BigInt(mm.mmapDevice(at, length, prot, flags, offset, () => kerr(ERRNO.ENODEV)));
    });
  }

  munmap(addr: bigint, length: number): void {
    checkMunmap(addr, length);
    this.sys('munmap', () => this.proc.mm.munmap(Number(addr), length));
  }

  /** memfd_create: unknown flags, or EXEC with NOEXEC_SEAL, EINVAL; a name over 249 bytes EINVAL. */
  memfdCreate(name: string, flags = MFD_CLOEXEC): number {
    uintArg('memfd_create', 'flags', flags);
    return this.sys('memfd_create', () => {
      const known = MFD_ALL_FLAGS | (flags & MFD_HUGETLB ? MFD_HUGE_MASK : 0);
      if (flags & ~known || (flags & MFD_EXEC && flags & MFD_NOEXEC_SEAL)) kerr(ERRNO.EINVAL);
      if (Buffer.byteLength(name) > MFD_NAME_MAX_LEN) kerr(ERRNO.EINVAL);
      return this.proc.installFd(new SimMemfdFile(new SimMemfd(name)));
    });
  }

  /** ksys_ftruncate: a negative length EINVAL before the descriptor is looked up; only memfds truncate. */
  ftruncate(fd: number, length: number): void {
    checkFtruncate(fd, length);
    this.sys('ftruncate', () => {
      if (length < 0) kerr(ERRNO.EINVAL);
      const f = this.proc.file(fd);
      if (!(f instanceof SimMemfdFile)) kerr(ERRNO.EINVAL);
      f.memfd.truncate(length);
    });
  }

  view(addr: bigint, length: number): Uint8Array {
    checkView(addr, length);
    return this.sys('view', () => this.proc.mm.view(Number(addr), length));
  }

  hasCapability(cap: number): boolean {
    return this.proc.hasCapability(cap);
  }

  read(fd: number, buf: Uint8Array): number {
    fdArg('read', fd);
    return this.sys('read', () => fileOp(this.proc.file(fd), 'read', ERRNO.EINVAL)(buf));
  }

  write(fd: number, buf: Uint8Array): number {
    fdArg('write', fd);
    return this.sys('write', () => fileOp(this.proc.file(fd), 'write', ERRNO.EINVAL)(buf));
  }

  /**
   * ksys_pread64: a negative offset EINVAL before the descriptor; a file opened without
   * FMODE_PREAD (anon-inode files: eventfds, queues, accesses) ESPIPE; one that has it but no
   * read op (the iommufd) EINVAL, as vfs_read answers.
   */
  pread(fd: number, buf: Uint8Array, offset: number): number {
    checkPositioned('pread', fd, offset);
    return this.sys('pread', () => this.positioned(fd, 'pread', offset)(buf, offset));
  }

  pwrite(fd: number, buf: Uint8Array, offset: number): number {
    checkPositioned('pwrite', fd, offset);
    return this.sys('pwrite', () => this.positioned(fd, 'pwrite', offset)(buf, offset));
  }

  private positioned<K extends 'pread' | 'pwrite'>(fd: number, op: K, offset: number): NonNullable<SimFile[K]> {
    if (offset < 0) kerr(ERRNO.EINVAL);
    const f = this.proc.file(fd);
    return fileOp(f, op, f.fmodePread ? ERRNO.EINVAL : ERRNO.ESPIPE);
  }

  /** eventfd2: flags other than EFD_SEMAPHORE, EFD_CLOEXEC and EFD_NONBLOCK are EINVAL. */
  eventfd(initval: number, flags: number): number {
    checkEventfd(initval, flags);
    return this.sys('eventfd', () => {
      if (flags & ~(EFD_SEMAPHORE | EFD_CLOEXEC | EFD_NONBLOCK)) kerr(ERRNO.EINVAL);
      return this.proc.installFd(new SimEventfd(BigInt(initval), !!(flags & EFD_NONBLOCK), !!(flags & EFD_SEMAPHORE)));
    });
  }

  /**
   * poll(2) of one descriptor: a negative fd is skipped (0), a closed one reports POLLNVAL; the
   * file's mask (DEFAULT_POLLMASK without a poll op) is filtered to the events asked plus
   * POLLERR and POLLHUP. The sim never waits: the timeout is not used.
   */
  poll(fd: number, events: number, timeoutMs: number): number {
    checkPoll(fd, events, timeoutMs);
    if (fd < 0) return 0;
    const f = this.proc.fileOrNull(fd);
    if (!f) return POLLNVAL;
    const mask = f.poll ? f.poll(events) : DEFAULT_POLLMASK;
    return mask & ((events & 0xffff) | POLLERR | POLLHUP);
  }

  /**
   * poll(2) without blocking: ready now, it resolves at once; otherwise an entry on the file's
   * wait queue re-polls at each wake-up (the write or interrupt that signals an eventfd, the fault
   * or vEVENT that lands in a queue) and resolves there and then. No timer runs; a file without a
   * wait queue never becomes ready by itself, so only an abort or a close ends the wait.
   */
  async pollAsync(fd: number, events: number, signal?: AbortSignal): Promise<number> {
    checkPoll(fd, events, -1);
    signal?.throwIfAborted();
    const now = this.poll(fd, events, 0);
    if (now) return now;
    const wq = fd < 0 ? undefined : this.proc.file(fd).wq; // a negative fd is skipped: nothing wakes it
    const entry = () => {
      const revents = this.poll(fd, events, 0);
      if (revents) wait?.resolve(revents);
    };
    const { wait, promise } = this.waits.start(fd, events, signal, () => wq?.remove(entry));
    wq?.add(entry);
    return promise;
  }

  readText(path: string): string {
    return this.sys('read', () => this.kernel.vfs.readText(path), path);
  }

  writeText(path: string, text: string): void {
    this.sys('write', () => this.kernel.vfs.writeText(path, text), path);
  }

  readlink(path: string): string {
    return this.sys('readlink', () => this.kernel.vfs.readlink(path), path);
  }

  readdir(path: string): string[] {
    return this.sys('readdir', () => this.kernel.vfs.readdir(path), path);
  }
}

/** DEFAULT_POLLMASK: EPOLLIN | EPOLLOUT | EPOLLRDNORM | EPOLLWRNORM. */
const DEFAULT_POLLMASK = POLLIN | POLLOUT | 0x40 | 0x100;
const EFD_SEMAPHORE = 1;
/** memfd_create's flags: CLOEXEC ALLOW_SEALING HUGETLB NOEXEC_SEAL EXEC, and with HUGETLB the size bits. */
const MFD_ALL_FLAGS = 0x1f;
const MFD_HUGETLB = 0x4;
const MFD_NOEXEC_SEAL = 0x8;
const MFD_EXEC = 0x10;
const MFD_HUGE_MASK = 0x3f << 26;
/** NAME_MAX less the "memfd:" prefix. */
const MFD_NAME_MAX_LEN = 249;

/** A file's read/write/pread/pwrite bound to it, or the errno a file without that op answers. */
function fileOp<K extends 'read' | 'write' | 'pread' | 'pwrite'>(f: SimFile, name: K, errno: number): NonNullable<SimFile[K]> {
  const fn = f[name];
  if (!fn) return kerr(errno);
  return fn.bind(f) as NonNullable<SimFile[K]>;
}

/**
 * eventfd(2): a 64-bit counter. A read takes the whole count, or 1 with EFD_SEMAPHORE (EAGAIN at
 * 0: the sim never blocks, so a blocking eventfd behaves as a non-blocking one); a write of
 * exactly 8 bytes adds to it, EAGAIN where the sum would reach 2^64 - 1.
 */
export class SimEventfd implements SimFile {
  readonly kind = 'eventfd';
  /** ctx->wqh: woken whenever the count changes (a write, a device interrupt, a read). */
  readonly wq = new WaitQueueHead();
  constructor(
    public count: bigint,
    readonly nonblock: boolean,
    readonly semaphore = false,
  ) {}

  read(buf: Uint8Array): number {
    if (buf.length < 8) kerr(ERRNO.EINVAL);
    if (this.count === 0n) kerr(ERRNO.EAGAIN);
    const n = this.semaphore ? 1n : this.count;
    new DataView(buf.buffer, buf.byteOffset, 8).setBigUint64(0, n, true);
    this.count -= n;
    this.wq.wakeUp(); // room to write again (EPOLLOUT)
    return 8;
  }

  write(buf: Uint8Array): number {
    if (buf.length !== 8) kerr(ERRNO.EINVAL);
    const v = new DataView(buf.buffer, buf.byteOffset, 8).getBigUint64(0, true);
    if (v === U64_MAX) kerr(ERRNO.EINVAL);
    if (U64_MAX - this.count <= v) kerr(ERRNO.EAGAIN);
    this.count += v;
    this.wq.wakeUp();
    return 8;
  }

  /** eventfd_signal: what an interrupt does. */
  signal(): void {
    if (this.count === U64_MAX) return;
    this.count++;
    this.wq.wakeUp();
  }

  poll(): number {
    return (this.count > 0n ? POLLIN : 0) | (this.count === U64_MAX ? POLLERR : 0) | (U64_MAX - 1n > this.count ? POLLOUT : 0);
  }

  release(): void {}
}

/** A fresh simulated machine with one process, as the embedded default backend. */
export function sim(opts: SimOptions = {}): SimBinding {
  const kernel = new SimKernel(opts.selftest ?? true, opts.machine);
  return new SimBinding(kernel, kernel.spawn(opts));
}
