/**
 * `ioasid serve`: a sim machine behind a unix socket, for unmodified programs running with the
 * preload library (native/bridge/ioasid_preload.c). Each connected process is one sim process whose
 * memory is the real program's; its calls on sim descriptors arrive as requests (protocol.ts) and
 * run as the sim's syscalls.
 *
 * Safety: the socket lives in a fresh directory of mode 0700, and every connection's peer
 * credentials (SO_PEERCRED) must carry the server's uid. A malformed message gets EPROTO and its
 * connection is closed; a process that goes away mid-call loses only its own sim process, whose
 * descriptors are closed (which releases its pins and DMA ownership).
 */
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ERRNO, IommuError } from '../ioasid/errors.js';
import { KernelErrno } from '../backends/sim/kernel/errno.js';
import { libc } from '../backends/linux/libc.js';
import { SimBinding, SimKernel } from '../backends/sim/index.js';
import type { MachineDesc } from '../backends/sim/machine/machine.js';
import { BridgeProcess, FileRefs } from './process.js';
import type { SimFile } from '../backends/sim/kernel/process.js';
import { BRIDGE_VERSION, encodeResponse, OP, parseRequests, type Answer, type Changed, type Request } from './protocol.js';
import { Channel } from './channel.js';
import { StoreRegistry, type SimMapping } from './remote_mm.js';
import { bridgeIoctl } from './ioctl.js';
import { accessPath, AT_EMPTY_PATH, getdents, lseekFile, openedPaths, simPath, statFile, statPath } from './fs.js';

const EMPTY = new Uint8Array(0);
const NO_FDS: readonly number[] = [];
/** An answer of -errno. */
const refused = (errno: number): Answer => ({ ret: -errno, fds: NO_FDS });
const SOL_SOCKET = 1;
const SO_PEERCRED = 17;
/** The most one read(2)/write(2) moves through the bridge in one call. */
const MAX_IO = 1 << 24;

export interface ServeOptions {
  /** The simulated hardware (default: the sim's default machine, presets.q35Edu()). */
  machine?: MachineDesc;
  /** Where the private socket directory is made (default: $XDG_RUNTIME_DIR or the OS temp dir). */
  dir?: string;
  /** Offer IOMMU_TEST_CMD (default true, as the kernel's selftests need). */
  selftest?: boolean;
}

/** A connection before and after its HELLO: the bytes not yet parsed, and the session once made. */
export interface Connection {
  readonly pid: number;
  readonly end: () => void;
  pending: Uint8Array;
  session?: Session;
  /** Where requests and answers travel once the program has offered a channel (protocol.ts): no longer the socket. */
  channel?: Channel;
}

/** One connected program process. */
interface Session {
  pid: number;
  proc: BridgeProcess;
  binding: SimBinding;
  /** Close the transport (the program's connection). */
  end: () => void;
}

export class BridgeServer {
  readonly kernel: SimKernel;
  /** The socket's path: give it to programs as IOASID_BRIDGE_SOCKET. */
  readonly socketPath: string;
  private readonly dir: string;
  private server: Server | undefined;
  private readonly sessions = new Map<number, Session>();
  private readonly registry = new StoreRegistry();
  private readonly refs = new FileRefs();
  private nextToken = 1;
  /**
   * Descriptor tables and sim mappings kept for children about to be forked, by token. They
   * outlive the parent (a daemon's parent exits before its child connects); unclaimed ones go
   * when the server closes.
   */
  private readonly forks = new Map<number, { fds: [number, SimFile][]; maps: SimMapping[] }>();
  /** OP.MMIO's value: a store's from the request, a load's for the reply. */
  private readonly mmioValue = new Uint8Array(8);
  private readonly mmioView = new DataView(this.mmioValue.buffer);
  private readonly uid = process.getuid?.() ?? 0;
  /** What IOCTL_ARG's handler changed, for the answer (one call at a time). */
  private readonly ioctlOut: { changed: Changed | null } = { changed: null };

  private constructor(opts: ServeOptions) {
    this.kernel = new SimKernel(opts.selftest ?? true, opts.machine);
    this.dir = mkdtempSync(join(opts.dir ?? process.env.XDG_RUNTIME_DIR ?? tmpdir(), 'ioasid-bridge-'));
    // mkdtemp makes it 0700; check rather than trust, since the directory is the access control.
    if ((statSync(this.dir).mode & 0o777) !== 0o700) throw new Error(`bridge: ${this.dir} is not private (mode 0700)`);
    this.socketPath = join(this.dir, 'sock');
  }

  /** Start serving on Node's event loop: resolves once the socket listens. */
  static async listen(opts: ServeOptions = {}): Promise<BridgeServer> {
    const b = new BridgeServer(opts);
    const server = (b.server = createServer((s) => b.accept(s)));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(b.socketPath, () => resolve());
    });
    return b;
  }

  /**
   * A server whose transport the caller drives (blocking.ts's loop, which `ioasid serve -- CMD`
   * uses: a dedicated process that does nothing else answers faster than the event loop).
   */
  static create(opts: ServeOptions = {}): BridgeServer {
    return new BridgeServer(opts);
  }

  /** The environment a program needs to run against this server with the preload library at `preload`. */
  env(preload: string, base: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
    const prior = base.LD_PRELOAD ? ` ${base.LD_PRELOAD}` : '';
    return { ...base, IOASID_BRIDGE_SOCKET: this.socketPath, LD_PRELOAD: `${preload}${prior}` };
  }

  /** How many sim files the connected programs hold open (0 once every one has gone). */
  get openFiles(): number {
    return this.refs.size;
  }

  /** How many program processes are connected now. */
  get clients(): number {
    return this.sessions.size;
  }

  async close(): Promise<void> {
    for (const s of [...this.sessions.values()]) s.end();
    for (const kept of this.forks.values()) {
      for (const m of kept.maps) m.ops.close();
      for (const [, f] of kept.fds) this.refs.put(f);
    }
    this.forks.clear();
    const server = this.server;
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
    rmSync(this.dir, { recursive: true, force: true });
  }

  /** A new connection from `peer` (SO_PEERCRED): null when its uid is not the server's. */
  connect(peer: { pid: number; uid: number } | null, end: () => void): Connection | null {
    // pid 0: a peer in a PID namespace the server cannot see, whose memory it cannot reach either
    if (!peer || peer.uid !== this.uid || peer.pid <= 0) return null;
    return { pid: peer.pid, end, pending: new Uint8Array(0) };
  }

  /**
   * Bytes from a connection's socket: the replies to send, in order, and whether to close it after
   * them (a protocol error). A request that comes on the socket is answered there; one in the
   * channel is the transport's to serve (serveChannel), when a WAKE arrives here or it sees the
   * channel's count move. Never throws.
   */
  feed(c: Connection, chunk: Uint8Array): { replies: Uint8Array[]; close: boolean } {
    const buf = c.pending.length ? concat(c.pending, chunk) : chunk;
    const { requests, used, bad } = parseRequests(buf);
    const replies: Uint8Array[] = [];
    for (const r of requests) {
      const { answer, close } = this.dispatch(c, r);
      if (answer) replies.push(encodeResponse(answer));
      if (close) return { replies, close };
    }
    if (bad) {
      replies.push(encodeResponse(refused(ERRNO.EPROTO)));
      return { replies, close: true };
    }
    c.pending = used === buf.length ? EMPTY : buf.slice(used);
    return { replies, close: false };
  }

  /**
   * The program's request in its channel, if one is pending, answered there. False when the
   * connection must close (a malformed request, an answer that does not fit: never, protocol.ts
   * sizes it). Never throws.
   */
  serveChannel(c: Connection): boolean {
    const ch = c.channel;
    const r = ch?.take();
    if (!ch || !r) return true;
    const { answer, close } = r === 'bad' ? { answer: refused(ERRNO.EPROTO), close: true } : this.dispatch(c, r);
    return !close && (!answer || ch.deliver(answer));
  }

  /** One request: its answer (none for WAKE), and whether the connection closes after it. */
  private dispatch(c: Connection, r: Request): { answer: Answer | null; close: boolean } {
    if (r.op === OP.HELLO) {
      if (c.session) return { answer: refused(ERRNO.EPROTO), close: false };
      const made = this.hello(c.pid, r, c.end);
      if (typeof made === 'number') return { answer: refused(-made), close: true };
      c.session = made;
      return { answer: { ret: process.pid, fds: NO_FDS }, close: false };
    }
    if (!c.session) return { answer: refused(ERRNO.EPROTO), close: true };
    switch (r.op) {
      case OP.WAKE:
        return { answer: null, close: false };
      case OP.EXEC:
        // only the process itself, in its new image: not a child that inherited the connection
        if (r.a0 !== c.session.pid) return { answer: refused(ERRNO.EPERM), close: false };
        c.session = this.exec(c.session);
        // the channel was the old image's memory
        c.channel?.close();
        c.channel = undefined;
        return { answer: { ret: 0, fds: c.session.proc.entries().map(([fd]) => fd) }, close: false };
      case OP.CHANNEL:
        if (!c.channel) return { answer: { ret: this.openChannel(c, r), fds: NO_FDS }, close: false };
    }
    return { answer: this.handle(c.session, r), close: false };
  }

  /** OP.CHANNEL: map the program's memfd for requests and answers. 0, or -errno (the socket carries them on). */
  private openChannel(c: Connection, r: Request): number {
    try {
      c.channel = Channel.open(c.pid, r.a0, r.a1);
      return 0;
    } catch (e) {
      return e instanceof IommuError ? -e.errno : -ERRNO.EIO;
    }
  }

  /** The connection is gone: its process's sim process goes with it. */
  disconnect(c: Connection): void {
    if (c.session && this.sessions.get(c.session.pid) === c.session) this.exit(c.session);
    c.session = undefined;
    c.channel?.close();
    c.channel = undefined;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  private accept(socket: Socket): void {
    const c = this.connect(peerCred(socketFd(socket)), () => socket.destroy());
    if (!c) {
      socket.destroy();
      return;
    }
    socket.on('data', (chunk: Buffer) => {
      const { replies, close } = this.feed(c, new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.length));
      for (const r of replies) socket.write(r);
      if (close) return void socket.end();
      // This transport only ever waits in the event loop: asleep for the program, which therefore
      // sends WAKE with each request it puts in its channel.
      if (c.channel) {
        c.channel.sleeping(true);
        if (!this.serveChannel(c)) socket.end();
      }
    });
    socket.on('error', () => {});
    socket.on('close', () => this.disconnect(c));
  }

  /** A process connects: a new sim process, or a forked child that inherits its parent's descriptors. */
  private hello(pid: number, r: Request, end: () => void): Session | number {
    if (r.a1 !== BRIDGE_VERSION) return -ERRNO.EPROTO;
    // one live connection per process: a new one (after exec, or after a broken one) ends the old
    const old = this.sessions.get(pid);
    if (old) {
      old.end();
      if (this.sessions.get(pid) === old) this.exit(old);
    }
    const kept = r.a0 ? this.forks.get(r.a2) : undefined;
    if (kept) this.forks.delete(r.a2);
    return this.start(pid, end, kept?.fds ?? [], kept?.maps);
  }

  /**
   * A new sim process for `pid`, holding `kept` (files whose references the caller took for it)
   * and, after a fork, the parent's sim mappings.
   */
  private start(pid: number, end: () => void, kept: [number, SimFile][], maps?: SimMapping[]): Session {
    const proc = new BridgeProcess(this.kernel.user(this.uid), pid, this.registry, this.refs);
    const session: Session = { pid, proc, binding: new SimBinding(this.kernel, proc), end };
    // the kept references move to the new process, and the mappings fork(2) copies with them
    if (maps) proc.mm.inherit(maps);
    for (const [fd, f] of kept) {
      proc.installAt(fd, f);
      this.refs.put(f);
    }
    this.sessions.set(pid, session);
    return session;
  }

  /**
   * exec(2) in the program: the process keeps its files (the program closes those exec closed)
   * and gets a new memory, so the old image's mappings and the driver holds on them go, as
   * exec_mmap drops the old mm. Pins stay with the IOAS areas that hold them.
   */
  private exec(old: Session): Session {
    const kept = this.heldFiles(old);
    this.exit(old);
    return this.start(old.pid, old.end, kept);
  }

  /** A process's files, each with a reference for the process that takes them over (exec, fork). */
  private heldFiles(s: Session): ReturnType<Session['proc']['entries']> {
    const files = s.proc.entries();
    for (const [, f] of files) this.refs.get(f);
    return files;
  }

  private exit(s: Session): void {
    this.sessions.delete(s.pid);
    s.proc.exit();
    this.registry.forgetProcess(s.pid);
  }

  /** One call; never throws (a sim bug answers EIO and is reported on stderr). */
  private handle(s: Session, r: Request): Answer {
    const proc = s.proc;
    // OPEN and the ioctls that install a descriptor: a3 is the number the program reserved + 1
    proc.begin(r.a3 && (r.op === OP.OPEN || r.op === OP.IOCTL || r.op === OP.IOCTL_ARG) ? r.a3 - 1 : undefined);
    this.ioctlOut.changed = null;
    let ret: number;
    try {
      if (r.op === OP.MMAP) return this.mmap(s, r);
      if (r.op === OP.STAT) return this.stat(s, r);
      if (r.op === OP.MMIO) return this.mmio(s, r);
      ret = this.call(s, r);
    } catch (e) {
      if (e instanceof IommuError || e instanceof KernelErrno) ret = -e.errno;
      else {
        process.stderr.write(`ioasid serve: ${(e as Error).stack ?? e}\n`);
        ret = -ERRNO.EIO;
      }
    }
    // a failed call leaves no descriptor behind it
    if (ret < 0) proc.dropInstalled();
    proc.end();
    return { ret, fds: proc.installed, changed: this.ioctlOut.changed };
  }

  /** OP.MMAP: the values the program needs travel in the descriptor list (protocol.ts). */
  private mmap(s: Session, r: Request): Answer {
    const prot = r.a2 % 2 ** 32;
    const flags = Math.floor(r.a2 / 2 ** 32);
    s.proc.simFile(r.a0); // EBADF unless a sim descriptor
    const token = Number(s.binding.mmap(0n, r.a1, prot, flags, r.a0, r.a3));
    const m = s.proc.mm.pendingMapping(token)!;
    return { ret: 0, fds: [m.memfd, m.pgoff, token] };
  }

  /** OP.STAT: the values travel in the descriptor list (protocol.ts). */
  private stat(s: Session, r: Request): Answer {
    const vfs = this.kernel.vfs;
    const path = new TextDecoder().decode(r.payload);
    const v = path === '' && r.a1 & AT_EMPTY_PATH ? statFile(vfs, s.proc, r.a0 - 1) : statPath(vfs, simPath(s.proc, r.a0 - 1, path), r.a1);
    return v ? { ret: 1, fds: v } : { ret: 0, fds: NO_FDS };
  }

  /** OP.MMIO: a load's value travels in the descriptor list, as two u32 halves (protocol.ts). */
  private mmio(s: Session, r: Request): Answer {
    if (r.a1 > 0x1ff) return refused(ERRNO.EINVAL);
    const write = r.a1 >= 0x100;
    const v = this.mmioView;
    v.setUint32(0, r.a2 % 2 ** 32, true);
    v.setUint32(4, r.a3 % 2 ** 32, true);
    try {
      s.proc.mm.mmio(r.a0, r.a1 & 0xff, write, this.mmioValue);
    } catch (e) {
      if (e instanceof KernelErrno) return refused(e.errno);
      throw e;
    }
    return { ret: 0, fds: write ? NO_FDS : [v.getInt32(0, true), v.getInt32(4, true)] };
  }

  private call(s: Session, r: Request): number {
    const b = s.binding;
    const mm = s.proc.mm;
    const vfs = this.kernel.vfs;
    switch (r.op) {
      case OP.OPEN: {
        const path = simPath(s.proc, r.a2 - 1, new TextDecoder().decode(r.payload));
        const fd = b.open(path, r.a0 | 0);
        openedPaths.set(s.proc.simFile(fd), path);
        return fd;
      }
      case OP.READLINK: {
        const target = new TextEncoder().encode(vfs.readlink(simPath(s.proc, r.a0 - 1, new TextDecoder().decode(r.payload))));
        if (r.a2 <= 0 || r.a2 > 2 ** 31) return -ERRNO.EINVAL;
        const n = Math.min(target.length, r.a2);
        if (!mm.writeRaw(r.a1, target.subarray(0, n))) return -ERRNO.EFAULT;
        return n;
      }
      case OP.GETDENTS: {
        const out = getdents(s.proc, r.a0, Math.min(r.a2, MAX_IO));
        if (out.length && !mm.writeRaw(r.a1, out)) return -ERRNO.EFAULT;
        return out.length;
      }
      case OP.LSEEK:
        return lseekFile(s.proc, r.a0, r.a1 >= 2 ** 63 ? r.a1 - 2 ** 64 : r.a1, r.a2);
      case OP.ACCESS:
        accessPath(vfs, s.proc, simPath(s.proc, r.a0 - 1, new TextDecoder().decode(r.payload)), r.a1);
        return 0;
      case OP.CLOSE:
        b.close(r.a0);
        return 0;
      case OP.DUP: {
        const f = s.proc.simFile(r.a0);
        s.proc.installAt(r.a1, f);
        return r.a1;
      }
      case OP.IOCTL:
        return bridgeIoctl(b, mm, r.a0, r.a1, r.a2);
      case OP.IOCTL_ARG:
        return bridgeIoctl(b, mm, r.a0, r.a1, r.a2, r.payload, this.ioctlOut);
      case OP.READ:
      case OP.PREAD: {
        const buf = new Uint8Array(Math.min(r.a2, MAX_IO));
        const n = r.op === OP.READ ? b.read(r.a0, buf) : b.pread(r.a0, buf, r.a3);
        if (n > 0 && !mm.writeRaw(r.a1, buf.subarray(0, n))) throw new IommuError(ERRNO.EFAULT, 'read');
        return n;
      }
      case OP.WRITE:
      case OP.PWRITE: {
        const buf = new Uint8Array(Math.min(r.a2, MAX_IO));
        if (mm.readPrefix(r.a1, buf) < buf.length) throw new IommuError(ERRNO.EFAULT, 'write');
        return r.op === OP.WRITE ? b.write(r.a0, buf) : b.pwrite(r.a0, buf, r.a3);
      }
      case OP.FORK: {
        const token = this.nextToken++;
        this.forks.set(token, { fds: this.heldFiles(s), maps: mm.forkMappings() });
        return token;
      }
      case OP.MMAP_PLACED:
        mm.placed(r.a0, r.a1, r.a2);
        return 0;
      case OP.MUNMAP:
        mm.munmap(r.a0, r.a1);
        return 0;
      case OP.VMSTAT: {
        const mmOf = this.sessions.get(r.a0)?.proc.mm;
        return mmOf ? mmOf.lockedVm * 2 ** 32 + mmOf.pinnedVm : 0;
      }
      default:
        return -ERRNO.EPROTO;
    }
  }
}

/** The descriptor under a net.Socket (libuv's pipe handle), or -1. */
function socketFd(socket: Socket): number {
  const fd = (socket as unknown as { _handle?: { fd?: number } })._handle?.fd;
  return typeof fd === 'number' ? fd : -1;
}

/** SO_PEERCRED of a unix socket: the peer's pid and uid as the kernel recorded them at connect. */
export function peerCred(fd: number): { pid: number; uid: number } | null {
  if (fd < 0) return null;
  const cred = new Uint8Array(12);
  const len = new Uint8Array(4);
  new DataView(len.buffer).setUint32(0, 12, true);
  if (libc().getsockopt(fd, SOL_SOCKET, SO_PEERCRED, cred, len) !== 0) return null;
  const v = new DataView(cred.buffer);
  return { pid: v.getInt32(0, true), uid: v.getUint32(4, true) };
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}
