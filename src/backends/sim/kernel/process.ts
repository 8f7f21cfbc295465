/**
 * A simulated process: address space, file descriptor table, credentials, RLIMIT_MEMLOCK, and the
 * task's fault-injection counter (task->fail_nth) with its /proc file. Defaults model what the
 * test suites run as: root with every capability.
 */
import { ERRNO } from '../../../ioasid/errors.js';
import { CAP_DAC_OVERRIDE } from '../../types.js';
import { kerr } from './errno.js';
import { currentTask, shouldFail } from './fault_inject.js';
import { kstrtouint } from './kstrtox.js';
import { SimMm } from './mm.js';
import type { WaitQueueHead } from './wait.js';

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
  /** What poll_wait() waits on: woken whenever poll()'s answer may have changed. Absent = it never changes by itself. */
  readonly wq?: WaitQueueHead;
  /** mmap(2) of the file into `mm` (f_op->mmap): the address. Absent: memfds map, others ENODEV. */
  mmap?(mm: SimMm, addr: number, length: number, prot: number, flags: number, offset: number): number;
  /**
   * FMODE_PREAD | FMODE_PWRITE: set by open(2) of a path (do_dentry_open). Files made without a
   * path (anon inodes: eventfds, queues, accesses) lack it and pread answers ESPIPE; with it and
   * no pread op, EINVAL.
   */
  fmodePread?: boolean;
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
  protected readonly fds = new Map<number, SimFile>();
  caps: Set<number>;
  /** RLIMIT_MEMLOCK in bytes (8 MiB, the kernel's default). */
  rlimitMemlock = 8 * 1024 * 1024;
  /**
   * task->fail_nth, written through /proc/thread-self/fail-nth: while non-zero, every injection
   * point the task's syscalls pass counts it down and the one that brings it to 0 fails.
   */
  failNth = 0;

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

  /**
   * generic_permission for `mask` (MAY_READ 4 | MAY_WRITE 2) on a file of mode `mode` owned by
   * uid `owner` (group root): the owner's bits for the owner, else the other bits (the sim's users
   * have no groups); CAP_DAC_OVERRIDE passes.
   */
  mayAccess(mode: number, owner: number, mask: number): boolean {
    if (this.hasCapability(CAP_DAC_OVERRIDE)) return true;
    const bits = this.user.uid === owner ? mode >> 6 : mode;
    return (bits & mask) === mask;
  }

  /** get_unused_fd_flags: the lowest free descriptor (0-2 are the standard streams), not taken yet. */
  unusedFd(): number {
    let fd = 3;
    while (this.fds.has(fd)) fd++;
    return fd;
  }

  /** Install a file at the lowest free descriptor. */
  installFd(file: SimFile): number {
    const fd = this.unusedFd();
    this.fds.set(fd, file);
    return fd;
  }

  /** The open descriptors, ascending (what /proc/self/fd lists). */
  openFds(): number[] {
    return [...this.fds.keys()].sort((a, b) => a - b);
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

// ---- fs/proc/base.c: the task's fail-nth file (the counting is in fault_inject.ts) ---------------

/**
 * /proc/<pid>/task/<tid>/fail-nth (proc_fail_nth_write / proc_fail_nth_read): writing N arms the
 * task (0 disarms; kstrtouint rules: EINVAL for anything but one unsigned number, ERANGE above
 * 2^32-1); reading gives the count left, "0" once the failure was injected. Both copy through
 * user memory, so on an armed task they count it down like any user copy (EFAULT when that brings
 * it to 0), as a kernel with CONFIG_FAULT_INJECTION_USERCOPY does; the selftest's harness copes.
 */
export class ProcFailNthFile implements SimFile {
  readonly kind = 'proc';
  constructor(readonly task: SimProcess) {}

  pwrite(buf: Uint8Array): number {
    if (shouldFail()) kerr(ERRNO.EFAULT); // kstrtouint_from_user's copy_from_user
    this.task.failNth = kstrtouint(new TextDecoder().decode(buf.subarray(0, 64)));
    return buf.length;
  }

  pread(buf: Uint8Array, offset: number): number {
    const text = new TextEncoder().encode(`${this.task.failNth}\n`);
    if (offset >= text.length) return 0;
    const n = Math.min(buf.length, text.length - offset);
    if (n && shouldFail()) kerr(ERRNO.EFAULT); // simple_read_from_buffer's copy_to_user
    buf.set(text.subarray(offset, offset + n));
    return n;
  }

  /** proc_fail_nth_write ignores the file position: write(2) is pwrite(2). */
  write(buf: Uint8Array): number {
    return this.pwrite(buf);
  }

  release(): void {}
}

/**
 * The kernel's `current` as a process: the one whose syscall is running (a forked child calling
 * on its parent's file maps its own memory); outside a syscall (a release, an async wake-up),
 * `opener`, the process that opened the file.
 */
export function currentProcess(opener: SimProcess): SimProcess {
  const task = currentTask();
  return task instanceof SimProcess ? task : opener;
}
