/**
 * The channel of one bridged program (protocol.ts, OP.CHANNEL): a memfd of the program's, mapped
 * here too, where the program writes each request and the server each answer, each side counting
 * its messages in a u32 the other watches. A side waiting for the other looks at that count
 * awake for a while, then sleeps: the program on the answer count (a futex, which the server
 * wakes), the server in poll (where the program's WAKE on the socket wakes it).
 *
 * The program may write anything there at any time, so the server copies a request out before it
 * reads it, and nothing else it reads there (counts and flags it only compares) can mislead it.
 * The memfd must be sealed against shrinking: a file cut under the mapping would turn the
 * server's next access into SIGBUS.
 */
import { closeSync, fstatSync } from 'node:fs';
import { libc, MAP_FAILED } from '../backends/linux/libc.js';
import { MAP_SHARED, PROT_READ, PROT_WRITE } from '../backends/types.js';
import { ERRNO, IommuError } from '../ioasid/errors.js';
import {
  answerSize, CHANNEL_ANSWER, CHANNEL_ANSWERS, CHANNEL_PROGRAM_SLEEPS, CHANNEL_REQUEST, CHANNEL_REQUESTS, CHANNEL_SERVER_SLEEPS,
  CHANNEL_SIZE, MAX_PAYLOAD, readRequest, REQ_HEADER, writeAnswer, type Answer, type Request,
} from './protocol.js';
import { programFd } from './process.js';

const F_GET_SEALS = 1034;
const F_SEAL_SHRINK = 0x2;

export class Channel {
  private readonly bytes: Uint8Array;
  private readonly view: DataView;
  private readonly words: Int32Array;
  private closed = false;
  /** The program's request count when the server last took one. */
  private requests = 0;
  /** Where a request is copied before it is read (one at a time). */
  private static readonly request = new Uint8Array(REQ_HEADER + MAX_PAYLOAD);
  private static readonly requestView = new DataView(Channel.request.buffer);

  private constructor(private readonly addr: bigint) {
    const mem = libc().view(addr, CHANNEL_SIZE);
    this.bytes = new Uint8Array(mem);
    this.view = new DataView(mem);
    this.words = new Int32Array(mem, 0, 4);
  }

  /** Map the program's memfd `fd` (a copy through pidfd_getfd); EINVAL unless it is a memfd of `size` = CHANNEL_SIZE, sealed against shrinking. */
  static open(pid: number, fd: number, size: number): Channel {
    if (size !== CHANNEL_SIZE) throw new IommuError(ERRNO.EINVAL, 'channel');
    const copy = programFd(pid, fd);
    if (copy < 0) throw new IommuError(ERRNO.EBADF, 'channel');
    const c = libc();
    try {
      const seals = c.fcntl(copy, F_GET_SEALS, 0);
      if (seals < 0 || !(seals & F_SEAL_SHRINK) || fstatSync(copy).size < CHANNEL_SIZE) throw new IommuError(ERRNO.EINVAL, 'channel');
      const addr = c.mmap(null, CHANNEL_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, copy, 0);
      if (addr === null || addr === MAP_FAILED) throw new IommuError(ERRNO.EINVAL, 'channel');
      return new Channel(addr);
    } finally {
      closeSync(copy);
    }
  }

  /** Whether the program has counted a request the server has not taken (no system call). */
  pending(): boolean {
    return !this.closed && Atomics.load(this.words, CHANNEL_REQUESTS) !== this.requests;
  }

  /**
   * The program's pending request, copied out (its payload valid until the next take); 'bad' when
   * its stated length is outside the protocol's; null when none is pending.
   */
  take(): Request | 'bad' | null {
    if (!this.pending()) return null;
    this.requests = Atomics.load(this.words, CHANNEL_REQUESTS);
    const out = Channel.request;
    const len = this.view.getUint32(CHANNEL_REQUEST, true);
    if (len < REQ_HEADER || len > out.length) return 'bad';
    out.set(this.bytes.subarray(CHANNEL_REQUEST, CHANNEL_REQUEST + len));
    return readRequest(out, Channel.requestView, 0, len);
  }

  /**
   * The server is about to sleep in poll (true) or has woken (false). Going to sleep answers
   * whether a request came meanwhile (then the server should not sleep): seq_cst both, so either
   * the server sees the program's count move or the program sees the server asleep.
   */
  sleeping(asleep: boolean): boolean {
    if (this.closed) return false;
    Atomics.store(this.words, CHANNEL_SERVER_SLEEPS, asleep ? 1 : 0);
    return asleep && this.pending();
  }

  /** Put `answer` in the channel and wake the program if it sleeps; false when it does not fit (or the channel is closed). */
  deliver(answer: Answer): boolean {
    const size = answerSize(answer);
    if (this.closed || size > CHANNEL_SIZE - CHANNEL_ANSWER) return false;
    writeAnswer(this.bytes, this.view, CHANNEL_ANSWER, answer, size);
    // seq_cst both: the answer's bytes are in place before the program can see the count move, and
    // either the program sees the count move or the server sees it asleep
    Atomics.add(this.words, CHANNEL_ANSWERS, 1);
    if (Atomics.load(this.words, CHANNEL_PROGRAM_SLEEPS)) libc().futex_wake(this.addr, 1);
    return true;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    libc().munmap(this.addr, CHANNEL_SIZE);
  }
}
