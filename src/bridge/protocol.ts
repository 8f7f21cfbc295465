/**
 * The bridge's wire format, shared with native/bridge/ioasid_preload.c (keep the two in step).
 * One connection per program process; every message is native byte order (little-endian here):
 *
 *   request:  u32 len; u32 op; u64 a[4]; then len - 40 bytes of payload (OPEN: the path;
 *             IOCTL_ARG: the argument's bytes)
 *   answer:   u32 len; u32 nfds; i64 ret; then nfds i32 descriptors the sim installed; then the
 *             rest of len, the answer's data (IOCTL_ARG: u32 offset, then the bytes the handler
 *             changed from there)
 *
 * `ret` is the call's result, or -errno. Messages travel on the unix socket until the program
 * offers a channel (CHANNEL, answered on the socket): shared memory holding four u32 counters,
 * one request (at CHANNEL_REQUEST) and one answer (at CHANNEL_ANSWER).
 *
 *   u32 answers          the server adds one after writing each answer: the futex word the program waits on
 *   u32 program_sleeps   1 while the program sleeps on `answers` (then the server wakes it: FUTEX_WAKE)
 *   u32 requests         the program adds one after writing each request
 *   u32 server_sleeps    1 while the server sleeps in poll (then the program sends WAKE on the socket)
 *
 * Both ends wait for the other awake for SPIN_MS, yielding the CPU, before they sleep: waking a
 * sleeping process costs this kind of VM more than most calls take. A request is answered where
 * it came: once there is a channel, the socket carries only WAKE, and EXEC from the process's new
 * image (which has no channel yet: EXEC ends the old one). Either end sees the other gone at EOF
 * on the socket.
 *
 * Memory: an ioctl's argument travels with IOCTL_ARG when the program could read it (the bytes the
 * handler reads first, ioctl.ts's firstRead), and the program copies the changed bytes back. The
 * server reads and writes the program's memory itself for the rest: an argument larger than the
 * first read, IOCTL (the program could not read it), user pointers inside structs, read/write
 * buffers.
 */

export const BRIDGE_VERSION = 2;
export const REQ_HEADER = 40;
export const RESP_HEADER = 16;
/** The longest payload: a path of PATH_MAX bytes, or an ioctl argument's first read. */
export const MAX_PAYLOAD = 4096;
/** The channel: its size, its u32 counters (indices), and where the request and the answer start. */
export const CHANNEL_SIZE = 12288;
export const CHANNEL_ANSWERS = 0;
export const CHANNEL_PROGRAM_SLEEPS = 1;
export const CHANNEL_REQUESTS = 2;
export const CHANNEL_SERVER_SLEEPS = 3;
export const CHANNEL_REQUEST = 64;
export const CHANNEL_ANSWER = 4224;
/** How long either end waits awake for the other before it sleeps (ms). */
export const SPIN_MS = 0.05;

export const OP = {
  /** a0: the parent's pid when a forked child connects (0 otherwise), a1: BRIDGE_VERSION. Answers the server's pid. */
  HELLO: 1,
  /**
   * a0: flags, a1: mode, a2: a sim directory descriptor + 1 for a relative path (0: none), a3: the
   * descriptor number the program reserved for the new file + 1 (0: none; IOCTL and IOCTL_ARG
   * carry one too for the ioctls that install a descriptor); payload: the path.
   */
  OPEN: 2,
  /** a0: fd. */
  CLOSE: 3,
  /** a0: oldfd, a1: newfd (the program's dup already made newfd). */
  DUP: 4,
  /** a0: fd, a1: request, a2: the argument (a pointer or a value). The server reads and writes the argument in the program. */
  IOCTL: 5,
  /** a0: fd, a1: buffer address, a2: count (PREAD/PWRITE: a3 offset). */
  READ: 6,
  WRITE: 7,
  PREAD: 8,
  PWRITE: 9,
  /** Sent by a process about to fork: the sim keeps its descriptors for the child. Answers a token for the child's HELLO (a2). */
  FORK: 10,
  /** a0: a pid. Answers that sim process's locked_vm * 2^32 + pinned_vm (pages), 0 when the pid is not bridged. */
  VMSTAT: 11,
  /**
   * a0: fd, a1: length, a2: prot | flags << 32, a3: offset. The driver's mmap; answers 0 with three
   * values in the descriptor list: the server's memfd holding the pages, the page offset in it, and
   * a token for MMAP_PLACED.
   */
  MMAP: 12,
  /** a0: the token, a1: where the program mapped it (0: its mmap failed), a2: the length. */
  MMAP_PLACED: 13,
  /** a0: address, a1: length the program unmapped. */
  MUNMAP: 14,
  /**
   * a0: a sim directory descriptor + 1 for a relative path (0: none), a1: AT_* flags; payload: the
   * path (empty with AT_EMPTY_PATH: a0's own file). Answers 1 with st_mode, st_uid, st_gid,
   * st_size, st_nlink and st_ino in the descriptor list, or 0 for a descriptor without a path (an
   * anon inode: the placeholder's own fstat is the answer).
   */
  STAT: 15,
  /** a0: directory descriptor + 1 (0: none), a1: buffer address, a2: its size; payload: the path. Answers the length written. */
  READLINK: 16,
  /** a0: a sim directory descriptor, a1: buffer address, a2: its size. Writes entries (u64 d_ino, u8 d_type, name, NUL); answers the bytes written, 0 at the end. */
  GETDENTS: 17,
  /** a0: fd, a1: offset (an i64), a2: whence. Answers the new position. */
  LSEEK: 18,
  /** a0: directory descriptor + 1 (0: none), a1: mode (F_OK, R_OK, W_OK, X_OK), a2: AT_* flags; payload: the path. */
  ACCESS: 19,
  /**
   * a0: the caller's pid. Sent by a process's new image on the connection its exec kept: the sim
   * process goes on with a new memory (the old image's mappings are gone) and answers, in the
   * descriptor list, the descriptors it holds; the program closes those exec closed (OP.CLOSE).
   */
  EXEC: 20,
  /**
   * A load or store the program made in a BAR it mapped (the preload's fault handler, mmio.c).
   * a0: the address, a1: the size (1, 2, 4, 8) | 0x100 for a store, a2 and a3: a store's value,
   * low and high 32 bits. Answers 0, and a load's value as two values (low, high) in the
   * descriptor list; EIO when the device refuses it (memory decode off: SIGBUS), EFAULT where
   * no BAR is mapped.
   */
  MMIO: 21,
  // 22: reserved
  /**
   * a0: a memfd of the program's, sealed against shrinking, a1: its size (CHANNEL_SIZE). The server
   * takes a copy (pidfd_getfd) and maps it; every later request and answer goes there. Answered on the socket.
   */
  CHANNEL: 23,
  /**
   * IOCTL with the argument's bytes as the payload: exactly what the handler reads first (ioctl.ts's
   * firstRead), read by the program. The answer's data is the span the handler changed, which
   * the program copies back (none when nothing changed, or when the server wrote it itself).
   */
  IOCTL_ARG: 24,
  /** No answer: a request is waiting in the channel, and the server was asleep (protocol.ts's server_sleeps). */
  WAKE: 25,
} as const;

const NO_PAYLOAD = new Uint8Array(0);

export interface Request {
  op: number;
  a0: number;
  a1: number;
  a2: number;
  a3: number;
  payload: Uint8Array;
}

/** A u64 as a JS number: exact below 2^53, which every address, size and offset here is (beyond it, a fault either way). No BigInt. */
export function u64(v: DataView, at: number): number {
  return v.getUint32(at, true) + v.getUint32(at + 4, true) * 2 ** 32;
}

/** Store a JS number as a u64 (the other way of u64()); a negative one as its i64 two's complement. */
export function setU64(v: DataView, at: number, n: number): void {
  const high = Math.floor(n / 2 ** 32);
  v.setUint32(at, n - high * 2 ** 32, true);
  v.setInt32(at + 4, high, true);
}

/**
 * Split whole requests off the front of `buf`. Returns the requests and the bytes consumed; a
 * length outside [REQ_HEADER, REQ_HEADER + MAX_PAYLOAD] is a protocol error (`bad`). Payloads are
 * views of `buf`, valid until it is reused (an ioctl's handler writes into its own).
 */
/** The request of `len` bytes (its stated length, already checked) at `at` in `buf`; `v` is a view of `buf`. */
export function readRequest(buf: Uint8Array, v: DataView, at: number, len: number): Request {
  return {
    op: v.getUint32(at + 4, true),
    a0: u64(v, at + 8),
    a1: u64(v, at + 16),
    a2: u64(v, at + 24),
    a3: u64(v, at + 32),
    payload: len > REQ_HEADER ? buf.subarray(at + REQ_HEADER, at + len) : NO_PAYLOAD,
  };
}

export function parseRequests(buf: Uint8Array): { requests: Request[]; used: number; bad: boolean } {
  const v = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const requests: Request[] = [];
  let at = 0;
  while (buf.length - at >= 4) {
    const len = v.getUint32(at, true);
    if (len < REQ_HEADER || len > REQ_HEADER + MAX_PAYLOAD) return { requests, used: at, bad: true };
    if (buf.length - at < len) break;
    requests.push(readRequest(buf, v, at, len));
    at += len;
  }
  return { requests, used: at, bad: false };
}

/** The bytes of an argument the handler changed, from `offset` on: IOCTL_ARG's answer data. */
export interface Changed {
  offset: number;
  bytes: Uint8Array;
}

/** An answer: the result (or -errno), the descriptors the sim installed for the call, and what the program copies back. */
export interface Answer {
  ret: number;
  fds: readonly number[];
  changed?: Changed | null;
}

/** An answer's length in bytes. */
export function answerSize(a: Answer): number {
  return RESP_HEADER + 4 * a.fds.length + (a.changed ? 4 + a.changed.bytes.length : 0);
}

/** Write answer `a` (of `size` bytes, answerSize(a)) at `at` in `out`; `v` is a view of `out`. */
export function writeAnswer(out: Uint8Array, v: DataView, at: number, a: Answer, size = answerSize(a)): void {
  const fds = a.fds;
  v.setUint32(at, size, true);
  v.setUint32(at + 4, fds.length, true);
  setU64(v, at + 8, a.ret); // an i64: every result fits 53 bits
  for (let i = 0; i < fds.length; i++) v.setInt32(at + RESP_HEADER + 4 * i, fds[i]!, true);
  if (a.changed) {
    const d = at + RESP_HEADER + 4 * fds.length;
    v.setUint32(d, a.changed.offset, true);
    out.set(a.changed.bytes, d + 4);
  }
}

/** An answer as bytes of its own (for the socket). */
export function encodeResponse(a: Answer): Uint8Array {
  const out = new Uint8Array(answerSize(a));
  writeAnswer(out, new DataView(out.buffer), 0, a);
  return out;
}
