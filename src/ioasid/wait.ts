/**
 * Waiting for what a descriptor delivers (an eventfd's count, a fault queue's groups, a vEVENTQ's
 * events) without blocking the event loop: Binding.pollAsync says when the descriptor is readable
 * (a worker thread's poll(2) on linux, the file's own wake-up on the sim), then the caller's
 * `read` takes what is there, non-blocking, on the main thread. Every wait takes an AbortSignal.
 */
import type { Binding } from '../backends/types.js';
import { POLLIN } from '../backends/types.js';
import { ERRNO, IommuError, isErrno } from './errors.js';

export interface WaitOptions {
  /** Ends the wait: the promise rejects with `signal.reason` (an AbortError, or a TimeoutError from AbortSignal.timeout). */
  signal?: AbortSignal;
}

/**
 * What `read` gives (undefined: nothing yet) once there is something. A wake-up that finds
 * nothing (another reader was first) waits again. Rejects with the signal's reason on abort, and
 * with EBADF when the descriptor is closed meanwhile.
 */
export async function nextEvent<T>(binding: Binding, fd: number, read: () => T | undefined, opts: WaitOptions = {}): Promise<T> {
  opts.signal?.throwIfAborted();
  for (let revents = POLLIN; ; ) {
    const got = read();
    if (got !== undefined) return got;
    // POLLERR or POLLHUP alone, and nothing to read: polling again would answer the same at once
    if (!(revents & POLLIN)) throw new IommuError(ERRNO.EIO, 'poll', `revents 0x${revents.toString(16)} with nothing to read`);
    revents = await binding.pollAsync(fd, POLLIN, opts.signal);
  }
}

/**
 * Each thing `read` gives, as it arrives, until the descriptor is closed (`isClosed()` then says
 * so and the iteration ends). An abort throws the signal's reason out of the loop.
 */
export async function* eachEvent<T>(
  binding: Binding, fd: number, read: () => T | undefined, isClosed: () => boolean, opts: WaitOptions = {},
): AsyncGenerator<T, void, undefined> {
  for (;;) {
    let got: T;
    try {
      got = await nextEvent(binding, fd, read, opts);
    } catch (e) {
      if (isClosed() && isErrno(e, 'EBADF')) return;
      throw e;
    }
    yield got;
  }
}
