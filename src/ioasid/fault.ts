/**
 * Fault queues (IOMMU_FAULT_QUEUE_ALLOC): I/O page faults on HWPTs allocated with a `faultId`
 * arrive here as page-request groups; each is answered by cookie (success or invalid). Reading
 * never blocks: `read()` returns what is queued; `wait()` and the async iterator wait for more
 * without blocking the event loop (Binding.pollAsync: a worker thread's poll(2) on linux, the
 * queue's own wake-up on the sim) and take an AbortSignal.
 */
import { POLLIN } from '../backends/types.js';
import { isErrno } from './errors.js';
import type { Iommufd } from './iommufd.js';
import { IOCTLS } from './uapi.js';
import { EventQueue } from './eventq.js';

/** struct iommu_hwpt_pgfault */
export interface PageFault {
  /** IOMMU_PGFAULT_FLAGS_PASID_VALID (1), _LAST_PAGE (2) */
  flags: number;
  devId: number;
  pasid: number;
  grpid: number;
  /** IOMMU_PGFAULT_PERM_READ (1), _WRITE (2), _EXEC (4), _PRIV (8) */
  perm: number;
  addr: bigint;
  length: number;
  /** Answer the group with this cookie. */
  cookie: number;
}

export const IOMMU_PGFAULT_FLAGS_PASID_VALID = 1 << 0;
export const IOMMU_PGFAULT_FLAGS_LAST_PAGE = 1 << 1;
export const IOMMUFD_PAGE_RESP_SUCCESS = 0;
export const IOMMUFD_PAGE_RESP_INVALID = 1;
const FAULT_SIZE = 40;

export class FaultQueue extends EventQueue<PageFault> {
  private buf = new Uint8Array(FAULT_SIZE * 16);
  private readonly resp = new Uint8Array(8);

  static alloc(ctx: Iommufd): FaultQueue {
    const c = ctx.cmd(IOCTLS.FAULT_QUEUE_ALLOC);
    ctx.ioctl(c);
    return new FaultQueue(ctx, c.get32('out_fault_id'), c.get32('out_fault_fd'));
  }

  /** Whole fault groups queued now (empty if none); never blocks. */
  override read(): PageFault[] {
    for (;;) {
      let n: number;
      try {
        n = this.ctx.binding.read(this.fd, this.buf);
      } catch (e) {
        if (isErrno(e, 'EINVAL')) {
          // the first group does not fit: grow and read again
          this.buf = new Uint8Array(this.buf.length * 2);
          continue;
        }
        if (isErrno(e, 'EAGAIN')) return [];
        throw e;
      }
      const dv = new DataView(this.buf.buffer, 0, n);
      const out: PageFault[] = [];
      for (let off = 0; off < n; off += FAULT_SIZE) {
        out.push({
          flags: dv.getUint32(off, true),
          devId: dv.getUint32(off + 4, true),
          pasid: dv.getUint32(off + 8, true),
          grpid: dv.getUint32(off + 12, true),
          perm: dv.getUint32(off + 16, true),
          addr: dv.getBigUint64(off + 24, true),
          length: dv.getUint32(off + 32, true),
          cookie: dv.getUint32(off + 36, true),
        });
      }
      return out;
    }
  }

  /** Answer a group: 'success' lets the device retry, 'invalid' fails the request. */
  respond(cookie: number, code: 'success' | 'invalid' | number = 'success'): void {
    const dv = new DataView(this.resp.buffer);
    dv.setUint32(0, cookie, true);
    dv.setUint32(4, code === 'success' ? IOMMUFD_PAGE_RESP_SUCCESS : code === 'invalid' ? IOMMUFD_PAGE_RESP_INVALID : code, true);
    this.ctx.binding.write(this.fd, this.resp);
  }

  /** Whether a read would return something now. */
  ready(): boolean {
    return (this.ctx.binding.poll(this.fd, POLLIN, 0) & POLLIN) !== 0;
  }
}
