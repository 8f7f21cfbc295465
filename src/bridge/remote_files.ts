/**
 * A program's own descriptors that a sim call names (IOMMU_IOAS_MAP_FILE's memfd, SET_IRQS's
 * eventfds, SET_CONTAINER given a regular file): the server takes a copy of the real descriptor
 * with pidfd_getfd, as the kernel's fdget would find the real file, and wraps it as the sim file
 * kind the handler expects. A memfd's pages are the same pages its mappings show (RemoteMm keys
 * both by device and inode), its bytes are read and written through the copy; an eventfd is
 * signalled by writing to it, so the program's own eventfd sees the interrupt.
 */
import { closeSync, fstatSync, readlinkSync, readSync, writeSync } from 'node:fs';
import { ERRNO } from '../ioasid/errors.js';
import { kerr } from '../backends/sim/kernel/errno.js';
import { SimMemfd } from '../backends/sim/kernel/mm.js';
import type { SimFile } from '../backends/sim/kernel/process.js';
import { SimMemfdFile } from '../backends/sim/iommufd/ioas.js';
import { programFd } from './process.js';
import type { StoreRegistry } from './remote_mm.js';

/** Closes a descriptor copy once nothing in the sim refers to its file any more. */
const closer = new FinalizationRegistry<number>((fd) => {
  try {
    closeSync(fd);
  } catch {
    // already closed
  }
});

/** /proc/PID/maps's "%02x:%02x" of a device number. */
function devName(dev: number): string {
  const major = ((dev >>> 8) & 0xfff) | (Math.floor(dev / 2 ** 32) & ~0xfff);
  const minor = (dev & 0xff) | ((dev >>> 12) & 0xfff00);
  return `${major.toString(16).padStart(2, '0')}:${minor.toString(16).padStart(2, '0')}`;
}

/** The object a shared mapping of this file shows in /proc/PID/maps (RemoteMm's page identity). */
function fileObject(st: { dev: number; ino: number }): string {
  return `f:${devName(st.dev)}:${st.ino}`;
}

/** A program's memfd: size and bytes are the real file's, pages named as its mappings name them. */
export class RemoteMemfd extends SimMemfd {
  constructor(
    private readonly fd: number,
    registry: StoreRegistry,
  ) {
    const st = fstatSync(fd);
    super(`remote:${st.ino}`);
    Object.defineProperty(this, 'store', { value: registry.get(`${fileObject(st)}:0`) });
    Object.defineProperty(this, 'size', { get: () => fstatSync(fd).size, set: () => {} });
  }

  override read(buf: Uint8Array, pos: number): number {
    return readSync(this.fd, buf, 0, buf.length, pos);
  }

  override write(buf: Uint8Array, pos: number): number {
    return writeSync(this.fd, buf, 0, buf.length, pos);
  }

  override truncate(): void {
    kerr(ERRNO.EINVAL);
  }
}

/**
 * A program's eventfd: eventfd_signal adds one to the real counter. The copy closes when the sim
 * puts its reference (eventfd_ctx_put: the IRQ is disabled or given another eventfd), or, for a
 * lookup that kept no reference, when garbage collection finds it.
 */
export class RemoteEventfd implements SimFile {
  readonly kind = 'eventfd';
  private readonly one = new Uint8Array([1, 0, 0, 0, 0, 0, 0, 0]);
  private fd: number;
  constructor(fd: number) {
    this.fd = fd;
    closer.register(this, fd, this);
  }

  signal(): void {
    if (this.fd < 0) return;
    try {
      writeSync(this.fd, this.one);
    } catch {
      // a full counter (EAGAIN) drops the signal, as eventfd_signal does
    }
  }

  put(): void {
    if (this.fd < 0) return;
    closer.unregister(this);
    closeSync(this.fd);
    this.fd = -1;
  }

  release(): void {}
}

/** Any other file of the program: handlers that want a sim kind refuse it, as the kernel refuses a wrong file. */
class ForeignFile implements SimFile {
  readonly kind = 'foreign';
  release(): void {}
}

/** The program's descriptor `fd` as a sim file, or null when it has none there (EBADF). */
export function remoteFile(pid: number, fd: number, registry: StoreRegistry): SimFile | null {
  const copy = programFd(pid, fd);
  if (copy < 0) return null;
  let target = '';
  try {
    target = readlinkSync(`/proc/self/fd/${copy}`);
  } catch {
    // an unnamed file is a foreign one
  }
  if (target.startsWith('/memfd:')) {
    // one copy per memfd for the server's life: pages keep reading through it
    const key = fileObject(fstatSync(copy));
    let memfd = registry.memfds.get(key);
    if (memfd) closeSync(copy);
    else registry.memfds.set(key, (memfd = new RemoteMemfd(copy, registry)));
    return new SimMemfdFile(memfd);
  }
  if (target === 'anon_inode:[eventfd]') return new RemoteEventfd(copy);
  closeSync(copy);
  return new ForeignFile();
}
