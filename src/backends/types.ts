/**
 * The backend seam. Like serialport's binding interface, one abstract binding with a real
 * implementation (`linux`: koffi syscalls) and a software one (`sim`: a simulated kernel and
 * process) behind the same calls, so user code and tests switch backends with one argument.
 *
 * The seam sits at the syscall level: file descriptors, ioctl with a struct buffer, mmap/munmap,
 * memfd. The sim therefore decodes the same bytes the kernel decodes, and every uAPI rule
 * (struct size, reserved fields, user pointers) is exercised identically on both backends.
 *
 * Every failing call throws IommuError carrying the errno, with `syscall` naming the call or ioctl.
 *
 * Numbers are checked before anything runs, identically on both backends (syscall_args.ts): each
 * must be a safe integer, non-negative where Linux takes an unsigned type; a descriptor that is
 * not an int is EBADF, any other bad number EINVAL. Nothing is truncated (NaN is not 0, 4096.5
 * is not 4096); what passes gets Linux's answer (mmap of 0 bytes EINVAL, of 2^48 ENOMEM).
 */

export type BackendName = 'sim' | 'linux';

export const PROT_READ = 0x1;
export const PROT_WRITE = 0x2;
export const MAP_SHARED = 0x01;
export const MAP_PRIVATE = 0x02;
export const MAP_FIXED = 0x10;
export const MAP_ANONYMOUS = 0x20;
export const MAP_NORESERVE = 0x4000;
export const MAP_POPULATE = 0x8000;
export const MAP_HUGETLB = 0x40000;
export const O_ACCMODE = 3;
export const O_RDONLY = 0;
export const O_WRONLY = 1;
export const O_RDWR = 2;
export const O_CLOEXEC = 0o2000000;
export const MFD_CLOEXEC = 1;

export interface Binding {
  readonly name: BackendName;
  /** The process's page size (sysconf(_SC_PAGESIZE)). */
  readonly pageSize: number;
  /** A wrapper's (traceBinding's) binding that runs its calls: the same process. */
  readonly wraps?: Binding;

  open(path: string, flags?: number): number;
  close(fd: number): void;
  /** ioctl(fd, request, arg): `arg` is the struct's bytes (null passes a NULL pointer). */
  ioctl(fd: number, request: number, arg: Uint8Array | null): number;
  /** ioctl(fd, request, value) for commands that take an integer argument (VFIO_CHECK_EXTENSION). */
  ioctlInt(fd: number, request: number, value: number): number;

  /** mmap(addr, length, prot, flags, fd, offset); `addr` is a hint unless MAP_FIXED. Returns the address. */
  mmap(addr: bigint, length: number, prot: number, flags: number, fd: number, offset: number): bigint;
  munmap(addr: bigint, length: number): void;
  memfdCreate(name: string, flags?: number): number;
  ftruncate(fd: number, length: number): void;
  /**
   * A byte view of mapped memory at [addr, addr+length). The view is only valid while the range
   * stays mapped; callers that own the mapping must drop it at munmap (see ioasid/memory.ts).
   */
  view(addr: bigint, length: number): Uint8Array;

  /** Whether the calling process holds a capability (CAP_SYS_RESOURCE=24, CAP_IPC_LOCK=14). */
  hasCapability(cap: number): boolean;

  // ---- file I/O on descriptors: eventfds, fault and event queues, VFIO device regions ----------

  /** read(2): bytes read (EAGAIN on an empty non-blocking queue or eventfd). */
  read(fd: number, buf: Uint8Array): number;
  /** write(2): bytes written. */
  write(fd: number, buf: Uint8Array): number;
  /** pread(2) at `offset` (a VFIO region offset is `index << 40 | offset`): bytes read. */
  pread(fd: number, buf: Uint8Array, offset: number): number;
  /** pwrite(2) at `offset`: bytes written. */
  pwrite(fd: number, buf: Uint8Array, offset: number): number;
  /** eventfd(2) (EFD_NONBLOCK=0o4000, EFD_CLOEXEC=0o2000000). */
  eventfd(initval: number, flags: number): number;
  /** poll(2) on one descriptor: the returned revents, 0 on timeout. */
  poll(fd: number, events: number, timeoutMs: number): number;
  /**
   * poll(2) on one descriptor without blocking the caller: resolves with the revents once one of
   * `events` (or POLLERR, POLLHUP, POLLNVAL) holds. linux polls on a worker thread (koffi's
   * asynchronous call path), the sim is told by the file the moment its state changes; neither
   * uses the main thread or a timer. Rejects with `signal.reason` on abort, and with EBADF when
   * `fd` is closed through this binding meanwhile; either way nothing of the wait is left.
   */
  pollAsync(fd: number, events: number, signal?: AbortSignal): Promise<number>;

  // ---- the file system the device layer discovers devices through (sysfs, /dev) ----------------

  /** The text of a (sysfs) file. */
  readText(path: string): string;
  /** Write text to a (sysfs) file such as driver_override or drivers_probe. */
  writeText(path: string, text: string): void;
  /** The target of a symlink, as readlink(2) gives it (relative targets stay relative). */
  readlink(path: string): string;
  /** Directory entries, sorted, without '.' and '..'. */
  readdir(path: string): string[];
}

/** The binding that really runs `b`'s calls (through any wrappers): what identifies its process. */
export function innermostBinding(b: Binding): Binding {
  while (b.wraps) b = b.wraps;
  return b;
}

export const POLLIN = 0x1;
export const POLLOUT = 0x4;
export const POLLERR = 0x8;
export const POLLHUP = 0x10;
export const POLLNVAL = 0x20;
export const EFD_NONBLOCK = 0o4000;
export const EFD_CLOEXEC = 0o2000000;
/** VFIO_PCI_OFFSET_SHIFT: region `index` starts at file offset index << 40. */
export const VFIO_REGION_OFFSET_SHIFT = 40;

export const CAP_IPC_LOCK = 14;
/** CAP_DAC_OVERRIDE: file permission checks pass (generic_permission). */
export const CAP_DAC_OVERRIDE = 1;
export const CAP_SYS_RESOURCE = 24;
