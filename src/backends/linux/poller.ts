/**
 * Binding.pollAsync for the linux backend: poll(2) on a worker thread, through koffi's
 * asynchronous call path (`fn.async`, a libuv pool thread), never on the main thread and never on
 * a timer. One poll runs at a time, over every pending wait's descriptor plus an internal eventfd;
 * a wait that starts or ends (resolved, aborted, its descriptor closed) writes that eventfd, the
 * poll returns, and the next one covers the new set. So however many waits are pending, they hold
 * one of libuv's four pool threads (which fs, dns and zlib share), and once none is left the poll
 * has returned and the eventfd is closed: no thread stays blocked, nothing keeps the process
 * alive.
 *
 * Readiness is all it reports: the caller reads the descriptor (non-blocking) on the main thread.
 * Descriptors belong to the process, so there is one poller per process.
 */
import { ERRNO, IommuError } from '../../ioasid/errors.js';
import { EFD_CLOEXEC, EFD_NONBLOCK, POLLIN } from '../types.js';
import { PollWaits, type PollWait } from '../poll_waits.js';
import { libc } from './libc.js';

/** sizeof(struct pollfd): { int fd; short events; short revents; } */
const POLLFD = 8;

class Poller {
  private readonly waits = new PollWaits();
  /** The internal eventfd that ends a running poll; -1 while no wait is pending. */
  private wakeFd = -1;
  /** A poll(2) is running on a worker thread. */
  private polling = false;
  /** The eventfd was written since the running poll started. */
  private kicked = false;
  /** The poll's callback is settling waits; it re-arms once, afterwards. */
  private settling = false;
  private readonly counter = new Uint8Array(8);

  wait(fd: number, events: number, signal?: AbortSignal): Promise<number> {
    const { wait, promise } = this.waits.start(fd, events, signal, () => this.changed());
    if (wait) this.changed();
    return promise;
  }

  /** `fd` is being closed: its waits end (EBADF) before the descriptor number can be reused. */
  closing(fd: number): void {
    this.waits.closing(fd);
  }

  /** The wait set changed: end the running poll (its callback re-arms), or start one. */
  private changed(): void {
    if (this.settling) return;
    if (this.polling) this.kick();
    else this.arm();
  }

  private kick(): void {
    if (this.kicked) return;
    this.kicked = true;
    new DataView(this.counter.buffer).setBigUint64(0, 1n, true);
    // an eventfd write fails only when the count would reach 2^64 - 1
    libc().write(this.wakeFd, this.counter, 8);
  }

  private arm(): void {
    const list = this.waits.list();
    if (list.length === 0) return this.idle();
    try {
      if (this.wakeFd < 0) {
        this.wakeFd = libc().eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        if (this.wakeFd < 0) throw new IommuError(libc().errno(), 'eventfd');
      }
      // An ArrayBuffer's bytes live outside the JS heap and never move while the worker writes revents.
      const fds = new Uint8Array(new ArrayBuffer(POLLFD * (list.length + 1)));
      const dv = new DataView(fds.buffer);
      dv.setInt32(0, this.wakeFd, true);
      dv.setInt16(4, POLLIN, true);
      list.forEach((w, i) => {
        dv.setInt32(POLLFD * (i + 1), w.fd, true);
        dv.setInt16(POLLFD * (i + 1) + 4, w.events, true);
      });
      this.polling = true;
      libc().poll_async(fds, list.length + 1, -1, (err, ret) => this.polled(list, dv, err, ret));
    } catch (e) {
      this.polling = false;
      this.settle(() => this.waits.failAll(e));
      this.idle();
    }
  }

  /** Settle waits without re-arming for each one. */
  private settle(fn: () => void): void {
    this.settling = true;
    try {
      fn();
    } finally {
      this.settling = false;
    }
  }

  private polled(list: PollWait[], dv: DataView, err: unknown, ret: number): void {
    const errno = ret < 0 ? libc().errno() : 0;
    this.polling = false;
    if (this.kicked) {
      this.kicked = false;
      libc().read(this.wakeFd, this.counter, 8); // drain (EAGAIN if the poll ended first)
    }
    this.settle(() => {
      if (err) this.waits.failAll(err);
      else if (ret < 0 && errno !== ERRNO.EINTR) this.waits.failAll(new IommuError(errno, 'poll'));
      else if (ret > 0) {
        list.forEach((w, i) => {
          const revents = dv.getUint16(POLLFD * (i + 1) + 6, true);
          if (revents && w.pending) w.resolve(revents);
        });
      }
    });
    this.arm();
  }

  private idle(): void {
    if (this.wakeFd < 0) return;
    libc().close(this.wakeFd);
    this.wakeFd = -1;
  }
}

/** The process's poller. */
export const poller = new Poller();
