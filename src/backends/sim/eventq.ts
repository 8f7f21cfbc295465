/**
 * Fault queues (eventq.c, IOMMUFD_OBJ_FAULT): I/O page faults on HWPTs allocated with a fault id
 * are delivered here as groups; userspace read()s struct iommu_hwpt_pgfault records (a whole
 * group per read or nothing) and write()s struct iommu_hwpt_page_response by cookie. A group
 * whose attachment goes away (detach, replace) is answered INVALID automatically.
 */
import { ERRNO } from '../../ioasid/errors.js';
import { IOCTLS } from '../../ioasid/uapi.js';
import { POLLIN, POLLOUT } from '../types.js';
import { kerr } from './errno.js';
import type { IommufdCtx, SimObject } from './main.js';
import type { SimFile } from './process.js';
import type { Ucmd } from './ucmd.js';

export const IOMMU_PGFAULT_FLAGS_PASID_VALID = 1 << 0;
export const IOMMU_PGFAULT_FLAGS_LAST_PAGE = 1 << 1;
export const IOMMUFD_PAGE_RESP_SUCCESS = 0;
export const IOMMUFD_PAGE_RESP_INVALID = 1;
/** sizeof(struct iommu_hwpt_pgfault), sizeof(struct iommu_hwpt_page_response) */
const FAULT_SIZE = 40;
const RESPONSE_SIZE = 8;

export interface PageFault {
  flags: number;
  pasid: number;
  grpid: number;
  perm: number;
  addr: bigint;
}

/** An iopf_group: the faults of one page request group, from one attachment. */
export interface FaultGroup {
  readonly faults: PageFault[];
  readonly devId: number;
  /** The attachment the group came through (iommufd_attach_handle). */
  readonly handle: object;
  cookie: number;
  /** The answer the device got (iopf_group_response), for tests and the hardware model. */
  response: number | null;
}

export class FaultQueue implements SimObject, SimFile {
  readonly kind = 'fault';
  id = 0;
  private readonly deliver: FaultGroup[] = [];
  private readonly awaiting = new Map<number, FaultGroup>();
  /** Every group answered so far, oldest first. */
  readonly answered: FaultGroup[] = [];

  constructor(readonly ctx: IommufdCtx) {}

  /** iommufd_fault_iopf_handler */
  enqueue(g: FaultGroup): void {
    this.deliver.push(g);
  }

  private respond(g: FaultGroup, code: number): void {
    g.response = code;
    this.answered.push(g);
  }

  /** iommufd_auto_response_faults: the attachment is gone; its groups are answered INVALID. */
  autoRespond(handle: object): void {
    for (let i = this.deliver.length - 1; i >= 0; i--) {
      if (this.deliver[i]!.handle === handle) this.respond(this.deliver.splice(i, 1)[0]!, IOMMUFD_PAGE_RESP_INVALID);
    }
    for (const [cookie, g] of this.awaiting) {
      if (g.handle !== handle) continue;
      this.awaiting.delete(cookie);
      this.respond(g, IOMMUFD_PAGE_RESP_INVALID);
    }
  }

  /** iommufd_fault_fops_read: whole groups that fit; EINVAL if not even the first fits; 0 when empty. */
  read(buf: Uint8Array): number {
    if (buf.length % FAULT_SIZE) kerr(ERRNO.ESPIPE);
    let done = 0;
    while (this.deliver.length) {
      const g = this.deliver[0]!;
      if (done >= buf.length || g.faults.length * FAULT_SIZE > buf.length - done) {
        if (done === 0) kerr(ERRNO.EINVAL);
        break;
      }
      this.deliver.shift();
      let cookie = 1; // xa_alloc on an XA_FLAGS_ALLOC1 array: the lowest free id from 1
      while (this.awaiting.has(cookie)) cookie++;
      g.cookie = cookie;
      this.awaiting.set(cookie, g);
      const dv = new DataView(buf.buffer, buf.byteOffset, buf.length);
      for (const f of g.faults) {
        buf.fill(0, done, done + FAULT_SIZE);
        dv.setUint32(done, f.flags, true);
        dv.setUint32(done + 4, g.devId, true);
        dv.setUint32(done + 8, f.pasid, true);
        dv.setUint32(done + 12, f.grpid, true);
        dv.setUint32(done + 16, f.perm, true);
        dv.setBigUint64(done + 24, f.addr, true);
        dv.setUint32(done + 32, 0, true); // length
        dv.setUint32(done + 36, cookie, true);
        done += FAULT_SIZE;
      }
    }
    return done;
  }

  /** iommufd_fault_fops_write: responses by cookie; stops at the first bad one. */
  write(buf: Uint8Array): number {
    if (buf.length % RESPONSE_SIZE) kerr(ERRNO.ESPIPE);
    const dv = new DataView(buf.buffer, buf.byteOffset, buf.length);
    let done = 0;
    try {
      while (done < buf.length) {
        const cookie = dv.getUint32(done, true);
        const code = dv.getUint32(done + 4, true);
        if (code !== IOMMUFD_PAGE_RESP_SUCCESS && code !== IOMMUFD_PAGE_RESP_INVALID) kerr(ERRNO.EINVAL);
        const g = this.awaiting.get(cookie);
        if (!g) kerr(ERRNO.EINVAL);
        this.awaiting.delete(cookie);
        this.respond(g, code);
        done += RESPONSE_SIZE;
      }
    } catch (e) {
      if (done === 0) throw e;
    }
    return done;
  }

  poll(): number {
    return (this.deliver.length ? POLLIN : 0) | POLLOUT;
  }

  /** Closing the fd drops its reference on the object and on the context. */
  release(): void {
    this.ctx.ref(this.id, -1);
    this.ctx.release();
  }

  /** iommufd_fault_destroy: everything pending is answered INVALID. */
  destroy(): void {
    for (const g of this.deliver.splice(0)) this.respond(g, IOMMUFD_PAGE_RESP_INVALID);
    for (const g of this.awaiting.values()) this.respond(g, IOMMUFD_PAGE_RESP_INVALID);
    this.awaiting.clear();
  }
}

const Q = IOCTLS.FAULT_QUEUE_ALLOC.struct.off;
/** IOMMU_FAULT_QUEUE_ALLOC: the object plus an fd that holds it (and the context). */
function faultQueueAlloc(ctx: IommufdCtx, u: Ucmd): void {
  if (u.u32(Q.flags!)) kerr(ERRNO.EOPNOTSUPP);
  const fault = new FaultQueue(ctx);
  fault.id = ctx.add('FAULT', fault);
  ctx.ref(fault.id, 1);
  ctx.hold();
  const fd = ctx.proc.installFd(fault);
  u.setU32(Q.out_fault_id!, fault.id);
  u.setU32(Q.out_fault_fd!, fd);
  u.respond();
}

export const eventqHandlers = {
  IOMMU_FAULT_QUEUE_ALLOC: faultQueueAlloc,
};
