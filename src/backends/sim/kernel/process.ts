/**
 * A simulated process: address space, file descriptor table, credentials and RLIMIT_MEMLOCK.
 * Defaults model what the test suites run as: root with every capability.
 */
import { ERRNO } from '../../../ioasid/errors.js';
import { kerr } from './errno.js';
import { SimMm } from './mm.js';

/** An open file: an iommufd, a memfd, a selftest access object, ... */
export interface SimFile {
  readonly kind: string;
  ioctl?(request: number, arg: Uint8Array | null): number;
  ioctlInt?(request: number, value: number): number;
  /** read(2)/write(2): queues and eventfds. Absent = EINVAL, as for a file without the op. */
  read?(buf: Uint8Array): number;
  write?(buf: Uint8Array): number;
  /** pread(2)/pwrite(2): VFIO device regions. Absent = ESPIPE/EINVAL. */
  pread?(buf: Uint8Array, offset: number): number;
  pwrite?(buf: Uint8Array, offset: number): number;
  /** poll(2): the ready events among `events`. Absent = always readable and writable. */
  poll?(events: number): number;
  /** mmap(2) of the file into `mm` (f_op->mmap): the address. Absent: memfds map, others ENODEV. */
  mmap?(mm: SimMm, addr: number, length: number, prot: number, flags: number, offset: number): number;
  /** Called when the last descriptor is closed. */
  release(): void;
}

/** A uid's user_struct: locked_vm charged by per-user accounting. */
export class SimUser {
  lockedVm = 0;
  constructor(readonly uid: number) {}
}

export const ALL_CAPS: ReadonlySet<number> = new Set(Array.from({ length: 41 }, (_, i) => i));

export class SimProcess {
  readonly mm = new SimMm();
  private readonly fds = new Map<number, SimFile>();
  caps: Set<number>;
  /** RLIMIT_MEMLOCK in bytes (8 MiB, the kernel's default). */
  rlimitMemlock = 8 * 1024 * 1024;

  constructor(
    readonly user: SimUser,
    caps: Iterable<number> = ALL_CAPS,
  ) {
    this.caps = new Set(caps);
  }

  /** CAP_IPC_LOCK, asked on every map. */
  get ipcLock(): boolean {
    return this.caps.has(14);
  }

  hasCapability(cap: number): boolean {
    return this.caps.has(cap);
  }

  /** Install a file at the lowest free descriptor (0-2 are the standard streams). */
  installFd(file: SimFile): number {
    let fd = 3;
    while (this.fds.has(fd)) fd++;
    this.fds.set(fd, file);
    return fd;
  }

  fileOrNull(fd: number): SimFile | undefined {
    return this.fds.get(fd);
  }

  file(fd: number): SimFile {
    const f = this.fds.get(fd);
    if (!f) kerr(ERRNO.EBADF);
    return f;
  }

  close(fd: number): void {
    const f = this.file(fd);
    this.fds.delete(fd);
    for (const other of this.fds.values()) if (other === f) return;
    f.release();
  }
}
