/**
 * An eventfd: the counter the kernel signals a device interrupt through (VFIO_DEVICE_SET_IRQS with
 * DATA_EVENTFD). Non-blocking: `read()` returns the count and resets it, or 0n when nothing fired.
 */
import { isErrno } from '../ioasid/errors.js';
import { EFD_CLOEXEC, EFD_NONBLOCK, POLLIN, type Binding } from '../backends/types.js';

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

  /** Wait up to `timeoutMs` for the counter to become non-zero; true if it did. */
  wait(timeoutMs: number): boolean {
    return (this.binding.poll(this.fd, POLLIN, timeoutMs) & POLLIN) !== 0;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.binding.close(this.fd);
  }

  [Symbol.dispose](): void {
    this.close();
  }
}
