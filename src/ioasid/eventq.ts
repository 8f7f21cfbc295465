/**
 * What fault queues and vEVENTQs share (the kernel's struct iommufd_eventq, eventq.c): an object
 * id and the fd it is read through, with waits that do not block the event loop. Closing the fd
 * ends every pending wait; DESTROY is EBUSY while the fd is open.
 */
import type { Iommufd } from './iommufd.js';
import { eachEvent, nextEvent, type WaitOptions } from './wait.js';

export abstract class EventQueue<T> implements Disposable, AsyncIterable<T[]> {
  private closed = false;

  constructor(
    readonly ctx: Iommufd,
    readonly id: number,
    readonly fd: number,
  ) {}

  /** What is queued now, oldest first (empty if nothing); never blocks. */
  abstract read(): T[];

  /**
   * The next batch (at least one entry). Rejects with `signal.reason` on abort, with EBADF if the
   * queue's fd is closed meanwhile.
   */
  wait(opts: WaitOptions = {}): Promise<T[]> {
    return nextEvent(this.ctx.binding, this.fd, this.readSome, opts);
  }

  /** Batches as they arrive, until the queue's fd is closed; an abort throws its reason. */
  events(opts: WaitOptions = {}): AsyncGenerator<T[], void, undefined> {
    return eachEvent(this.ctx.binding, this.fd, this.readSome, () => this.closed, opts);
  }

  [Symbol.asyncIterator](): AsyncGenerator<T[], void, undefined> {
    return this.events();
  }

  private readonly readSome = (): T[] | undefined => {
    const got = this.read();
    return got.length ? got : undefined;
  };

  /** Close the fd (the object stays until destroy(); DESTROY is EBUSY while the fd is open). */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.ctx.binding.close(this.fd);
  }

  destroy(): void {
    this.close();
    this.ctx.destroy(this.id);
  }

  [Symbol.dispose](): void {
    this.close();
  }
}
