/**
 * The pending asynchronous polls of a backend (Binding.pollAsync), with the rules both backends
 * share: a wait settles once; an AbortSignal rejects it with the signal's reason; closing its
 * descriptor through the binding rejects it with EBADF (poll(2) in a thread would go on waiting on
 * the closed file, which nobody can read any more). However a wait ends, its `onEnd` runs once,
 * so the backend lets go of whatever it registered for it (a wait-queue entry, a slot in the
 * worker's poll set) and no listener stays on the signal.
 */
import { ERRNO, IommuError } from '../ioasid/errors.js';

export class PollWait {
  private settled = false;
  private readonly onAbort: () => void;

  constructor(
    readonly fd: number,
    readonly events: number,
    private readonly waits: PollWaits,
    private readonly signal: AbortSignal | undefined,
    private readonly settle: { resolve(revents: number): void; reject(e: unknown): void },
    private readonly onEnd: (w: PollWait) => void,
  ) {
    this.onAbort = () => this.reject(this.signal!.reason);
    signal?.addEventListener('abort', this.onAbort, { once: true });
  }

  get pending(): boolean {
    return !this.settled;
  }

  resolve(revents: number): void {
    if (this.end()) this.settle.resolve(revents);
  }

  reject(e: unknown): void {
    if (this.end()) this.settle.reject(e);
  }

  private end(): boolean {
    if (this.settled) return false;
    this.settled = true;
    this.signal?.removeEventListener('abort', this.onAbort);
    this.waits.delete(this);
    this.onEnd(this);
    return true;
  }
}

export class PollWaits {
  private readonly all = new Set<PollWait>();

  /**
   * A new wait on `fd` (a rejected promise if `signal` is already aborted: nothing is registered
   * then, and `onEnd` does not run).
   */
  start(fd: number, events: number, signal: AbortSignal | undefined, onEnd: (w: PollWait) => void): { wait: PollWait | null; promise: Promise<number> } {
    if (signal?.aborted) return { wait: null, promise: Promise.reject(signal.reason) };
    let wait!: PollWait;
    const promise = new Promise<number>((resolve, reject) => {
      wait = new PollWait(fd, events, this, signal, { resolve, reject }, onEnd);
    });
    this.all.add(wait);
    return { wait, promise };
  }

  delete(w: PollWait): void {
    this.all.delete(w);
  }

  get size(): number {
    return this.all.size;
  }

  /** The pending waits, oldest first (a copy: settling one while iterating is safe). */
  list(): PollWait[] {
    return [...this.all];
  }

  /** `fd` is being closed: its waits end with EBADF. */
  closing(fd: number): void {
    for (const w of this.all) if (w.fd === fd) w.reject(new IommuError(ERRNO.EBADF, 'poll', 'descriptor closed while waiting'));
  }

  /** Every wait ends with `e` (the poll itself failed). */
  failAll(e: unknown): void {
    for (const w of this.list()) w.reject(e);
  }
}
