/**
 * A bridged program as a sim process: its memory is the real process's (RemoteMm), and its sim
 * descriptors sit at numbers free in the real process too, so the placeholder the preload library
 * makes there is the same number the sim's structs carry (no descriptor is ever translated).
 * A forked child shares its parent's open files, as fork(2) does, so a file is released when the
 * last descriptor in any bridged process closes.
 */
import { closeSync, readdirSync, readSync, writeSync } from 'node:fs';
import { POLLIN } from '../backends/types.js';
import { cap_effective, libc } from '../backends/linux/libc.js';
import { ERRNO } from '../ioasid/errors.js';
import { kerr } from '../backends/sim/kernel/errno.js';
import { ALL_CAPS, SimProcess, type SimFile, type SimUser } from '../backends/sim/kernel/process.js';
import { RemoteMm, type StoreRegistry } from './remote_mm.js';
import { remoteFile } from './remote_files.js';

/** A copy of the program's descriptor `fd` in the server (pidfd_getfd), or -1. */
export function programFd(pid: number, fd: number): number {
  const c = libc();
  const pidfd = c.pidfd_open(pid, 0);
  if (pidfd < 0) return -1;
  try {
    return c.pidfd_getfd(pidfd, fd, 0);
  } finally {
    closeSync(pidfd);
  }
}

/** The effective capabilities of a real process (CapEff in /proc/PID/status); none if it is gone. */
function realCaps(pid: number): Set<number> {
  let eff = 0n;
  try {
    eff = cap_effective(pid);
  } catch {
    // gone
  }
  const caps = new Set<number>();
  for (let c = 0; c < 64; c++) if ((eff >> BigInt(c)) & 1n) caps.add(c);
  return caps;
}

/** Descriptors per open file across every bridged process (the file's f_count). */
export class FileRefs {
  private readonly counts = new Map<SimFile, number>();

  /** How many sim files some bridged process holds. */
  get size(): number {
    return this.counts.size;
  }

  get(f: SimFile): void {
    this.counts.set(f, (this.counts.get(f) ?? 0) + 1);
  }

  /** One descriptor less; the last one releases the file. */
  put(f: SimFile): void {
    const n = (this.counts.get(f) ?? 1) - 1;
    if (n > 0) {
      this.counts.set(f, n);
      return;
    }
    this.counts.delete(f);
    this.mirrors.get(f)?.close();
    this.mirrors.delete(f);
    f.release();
  }

  /**
   * The readiness mirror of a pollable file. Every placeholder of one sim file is the same
   * eventfd (dup and fork share it), so one mirror per file keeps its counter exact.
   */
  private readonly mirrors = new Map<SimFile, ReadyMirror>();

  mirror(f: SimFile, copy: () => number): ReadyMirror | undefined {
    let m = this.mirrors.get(f);
    if (!m) {
      const fd = copy();
      if (fd < 0) return undefined;
      this.mirrors.set(f, (m = new ReadyMirror(f, fd)));
    }
    return m;
  }
}

/**
 * poll(2) and epoll on a sim descriptor: the program polls its placeholder eventfd, so the server
 * keeps that eventfd's counter non-zero exactly while the sim file is readable (its wait queue
 * tells when that may have changed). Reads still come to the sim; only readiness is mirrored.
 */
class ReadyMirror {
  private signalled = false;
  private readonly wake = (): void => this.sync();
  private static readonly one = new Uint8Array([1, 0, 0, 0, 0, 0, 0, 0]);

  constructor(
    private readonly file: SimFile,
    private readonly copy: number,
  ) {
    file.wq!.add(this.wake);
    this.sync();
  }

  sync(): void {
    const ready = (this.file.poll!(POLLIN) & POLLIN) !== 0;
    try {
      if (ready && !this.signalled) writeSync(this.copy, ReadyMirror.one);
      else if (!ready && this.signalled) readSync(this.copy, new Uint8Array(8));
      this.signalled = ready;
    } catch {
      // the placeholder is gone with its process
    }
  }

  close(): void {
    this.file.wq!.remove(this.wake);
    closeSync(this.copy);
  }
}

export class BridgeProcess extends SimProcess {
  declare readonly mm: RemoteMm;
  /** Descriptors installed during the current request: the preload makes their placeholders. */
  readonly installed: number[] = [];

  constructor(
    user: SimUser,
    readonly pid: number,
    private readonly registry: StoreRegistry,
    private readonly refs: FileRefs,
  ) {
    super(user, ALL_CAPS);
    Object.defineProperty(this, 'mm', { value: new RemoteMm(pid, registry) });
    // capable() asks the real task: a program that drops CAP_IPC_LOCK is charged for its pins.
    Object.defineProperty(this, 'caps', { get: () => (this.capsNow ??= realCaps(pid)) });
  }

  private capsNow: Set<number> | undefined;
  /** The pollable descriptors whose placeholder was not made yet when they were installed. */
  private unmirrored: number[] = [];

  /** A new call (`reserved`: the number the program reserved for a new descriptor, if any): the program may have mapped memory or changed its capabilities since the last. */
  begin(reserved?: number): void {
    this.reserved = reserved;
    this.installed.length = 0;
    this.capsNow = undefined;
    this.mm.invalidate();
    // placeholders of the descriptors the last call installed exist now
    for (const fd of this.unmirrored.splice(0)) this.mirror(fd);
  }

  /** After a call: a read may have emptied a queue without waking its wait queue. */
  end(): void {
    if (!this.pollable) return;
    for (const f of new Set(this.fds.values())) if (f.wq && f.poll) this.refs.mirror(f, () => -1)?.sync();
  }

  /** How many of this process's descriptors name a pollable file. */
  private pollable = 0;

  private mirror(fd: number): void {
    const f = this.fds.get(fd);
    if (f?.wq && f.poll) this.refs.mirror(f, () => programFd(this.pid, fd));
  }

  /**
   * The number the program reserved for this call's new descriptor (its placeholder is already
   * there, so no thread of the program can take the number meanwhile), while it is not installed.
   */
  reserved: number | undefined;

  /**
   * The reserved number, else the lowest number free both here and in the real process (whose
   * /proc/PID/fd lists its own). get_unused_fd_flags then fd_install: asking twice before the
   * install gives the same number.
   */
  override unusedFd(): number {
    if (this.reserved !== undefined && !this.fds.has(this.reserved)) return this.reserved;
    let real: Set<number>;
    try {
      real = new Set(readdirSync(`/proc/${this.pid}/fd`).map(Number));
    } catch {
      real = new Set();
    }
    let fd = 0;
    while (this.fds.has(fd) || real.has(fd)) fd++;
    return fd;
  }

  /** A sim descriptor, or else the program's own file at that number (fdget finds any file). */
  override fileOrNull(fd: number): SimFile | undefined {
    return this.fds.get(fd) ?? (Number.isInteger(fd) && fd >= 0 ? remoteFile(this.pid, fd, this.registry) ?? undefined : undefined);
  }

  override file(fd: number): SimFile {
    const f = this.fileOrNull(fd);
    if (!f) kerr(ERRNO.EBADF);
    return f;
  }

  override installFd(file: SimFile): number {
    const fd = this.unusedFd();
    this.installAt(fd, file);
    this.installed.push(fd);
    return fd;
  }

  /** Put `file` at `fd` (dup2's target, or a descriptor inherited over fork). */
  installAt(fd: number, file: SimFile): void {
    if (this.fds.has(fd)) this.close(fd);
    this.fds.set(fd, file);
    this.refs.get(file);
    if (file.wq && file.poll) {
      this.unmirrored.push(fd);
      this.pollable++;
    }
  }

  override close(fd: number): void {
    const f = this.fds.get(fd);
    if (!f) kerr(ERRNO.EBADF);
    if (f.wq && f.poll) this.pollable--;
    this.fds.delete(fd);
    this.refs.put(f);
  }

  /** A sim descriptor only (dup's source): the program's other files are not the sim's to share. */
  simFile(fd: number): SimFile {
    const f = this.fds.get(fd);
    if (!f) kerr(ERRNO.EBADF);
    return f;
  }

  /** A failed call leaves no descriptor behind: close what it installed. */
  dropInstalled(): void {
    for (const fd of this.installed.splice(0)) if (this.fds.has(fd)) this.close(fd);
  }

  /** Every descriptor, for a forked child to inherit. */
  entries(): [number, SimFile][] {
    return [...this.fds];
  }

  /** The process is gone: close everything it held. */
  exit(): void {
    for (const fd of [...this.fds.keys()]) this.close(fd);
    this.mm.release();
  }
}
