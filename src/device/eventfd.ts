/**
 * An eventfd: the counter the kernel signals a device interrupt through (VFIO_DEVICE_SET_IRQS with
 * DATA_EVENTFD). Non-blocking: `read()` returns the count and resets it, or 0n when nothing fired.
 * `wait()` and `events()` wait for interrupts without blocking the event loop (Binding.pollAsync)
 * and take an AbortSignal.
 */
import { isErrno } from '../ioasid/errors.js';
import { eachEvent, nextEvent, type WaitOptions } from '../ioasid/wait.js';
import { EFD_CLOEXEC, EFD_NONBLOCK, type Binding } from '../backends/types.js';

export class EventFd implements Disposable {
  readonly fd: number;
  private readonly buf = new Uint8Array(8);
  private closed = false;

  constructor(
    readonly binding: Binding,
    initval = 0,
  ) {
    this.fd = binding.eventfd(initval, EFD_NONBLOCK | EFD_CLOEXEC);
  }

  /** The counter (and reset it to 0); 0n when it was 0 (the kernel's EAGAIN). */
  read(): bigint {
    try {
      this.binding.read(this.fd, this.buf);
    } catch (e) {
      if (isErrno(e, 'EAGAIN')) return 0n;
      throw e;
    }
    return new DataView(this.buf.buffer).getBigUint64(0, true);
  }

  /** Add `n` to the counter (what the kernel does when the interrupt fires). */
  signal(n = 1n): void {
    const b = new Uint8Array(8);
    new DataView(b.buffer).setBigUint64(0, n, true);
    this.binding.write(this.fd, b);
  }

  /**
   * The count once it is non-zero (and reset it to 0): the interrupts since the last read. Rejects
   * with `signal.reason` on abort (`AbortSignal.timeout(ms)` for a deadline), with EBADF if the
   * eventfd is closed meanwhile.
   */
  wait(opts: WaitOptions = {}): Promise<bigint> {
    return nextEvent(this.binding, this.fd, this.readSome, opts);
  }

  /** Each count as interrupts arrive (`for await`), until the eventfd is closed; an abort throws its reason. */
  events(opts: WaitOptions = {}): AsyncGenerator<bigint, void, undefined> {
    return eachEvent(this.binding, this.fd, this.readSome, () => this.closed, opts);
  }

  private readonly readSome = (): bigint | undefined => this.read() || undefined;

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.binding.close(this.fd);
  }

  [Symbol.dispose](): void {
    this.close();
  }
}
