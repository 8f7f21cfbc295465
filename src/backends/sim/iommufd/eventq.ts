/**
 * Fault queues (eventq.c, IOMMUFD_OBJ_FAULT): I/O page faults on HWPTs allocated with a fault id
 * are delivered here as groups; userspace read()s struct iommu_hwpt_pgfault records (a whole
 * group per read or nothing) and write()s struct iommu_hwpt_page_response by cookie. A group
 * whose attachment goes away (detach, replace) is answered INVALID automatically.
 */
import { ERRNO } from '../../../ioasid/errors.js';
import { IOCTLS } from '../../../ioasid/uapi.js';
import { POLLIN, POLLOUT } from '../../types.js';
import { kerr } from '../kernel/errno.js';
import { shouldFailSlab } from '../kernel/fault_inject.js';
import { WaitQueueHead } from '../kernel/wait.js';
import type { IommufdCtx, SimObject } from './main.js';
import type { SimFile } from '../kernel/process.js';
import type { Ucmd } from './ucmd.js';
import type { Viommu } from './viommu.js';

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
  /** eventq->wait_queue */
  readonly wq = new WaitQueueHead();

  constructor(readonly ctx: IommufdCtx) {}

  /** iommufd_fault_iopf_handler */
  enqueue(g: FaultGroup): void {
    this.deliver.push(g);
    this.wq.wakeUp();
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
  ctx.abortOnError(fault.id, () => eventqFile(ctx, u, fault, Q.out_fault_id!, Q.out_fault_fd!));
}

/**
 * iommufd_eventq_init, the response and fd_install: the queue's file (anon_inode_getfile, ENOMEM
 * by fault injection) holds the object and the context; the descriptor is chosen first but
 * installed only once the response reached the user. If the response fails the file is put
 * (its release drops both holds) and the caller aborts the object.
 */
function eventqFile(ctx: IommufdCtx, u: Ucmd, q: FaultQueue | VeventQueue, idOff: number, fdOff: number): void {
  if (shouldFailSlab()) kerr(ERRNO.ENOMEM);
  ctx.ref(q.id, 1);
  ctx.hold();
  u.setU32(idOff, q.id);
  u.setU32(fdOff, ctx.proc.unusedFd());
  try {
    u.respond();
  } catch (e) {
    q.release();
    throw e;
  }
  ctx.proc.installFd(q);
}

// ---- vEVENTQ: a vIOMMU's event queue (IOMMUFD_OBJ_VEVENTQ) ---------------------------------------

export const IOMMU_VEVENTQ_FLAG_LOST_EVENTS = 1 << 0;
const VEVENT_HEADER = 8; // struct iommufd_vevent_header { flags; sequence; }
const INT_MAX = 0x7fff_ffff;

interface Vevent {
  lost: boolean;
  sequence: number;
  data: Uint8Array;
}

/**
 * A vEVENTQ: events a vIOMMU reports for its vDEVICEs (a header with a sequence number, then the
 * driver's record). At most `depth` events wait; beyond that a single LOST_EVENTS header stands
 * at the tail (re-sequenced as more are lost) until a read drains the queue.
 */
export class VeventQueue implements SimObject, SimFile {
  readonly kind = 'veventq';
  id = 0;
  private readonly deliver: Vevent[] = [];
  private readonly lostHeader: Vevent = { lost: true, sequence: 0, data: new Uint8Array(0) };
  private numEvents = 0;
  private sequence = 0;
  /** eventq->wait_queue */
  readonly wq = new WaitQueueHead();

  constructor(
    readonly ctx: IommufdCtx,
    readonly viommu: Viommu,
    readonly type: number,
    readonly depth: number,
  ) {}

  /** iommufd_viommu_report_event: queue an event, or mark events lost when full. */
  report(data: Uint8Array): void {
    let v: Vevent;
    if (this.numEvents === this.depth) {
      v = this.lostHeader;
    } else {
      v = { lost: false, sequence: 0, data: data.slice() };
      this.numEvents++;
    }
    // iommufd_vevent_handler: a lost header at the tail moves (or is re-sequenced)
    if (this.deliver[this.deliver.length - 1] === this.lostHeader) this.deliver.pop();
    this.deliver.push(v);
    v.sequence = this.sequence;
    this.sequence = (this.sequence + 1) & INT_MAX;
    this.wq.wakeUp();
  }

  /** iommufd_veventq_fops_read */
  read(buf: Uint8Array): number {
    if (buf.length < VEVENT_HEADER) kerr(ERRNO.EINVAL);
    const dv = new DataView(buf.buffer, buf.byteOffset, buf.length);
    let done = 0;
    while (this.deliver.length) {
      const cur = this.deliver[0]!;
      if (done >= buf.length || VEVENT_HEADER > buf.length - done) break;
      if (!cur.lost && VEVENT_HEADER + cur.data.length > buf.length - done) {
        if (done === 0) kerr(ERRNO.EINVAL);
        break;
      }
      this.deliver.shift();
      dv.setUint32(done, cur.lost ? IOMMU_VEVENTQ_FLAG_LOST_EVENTS : 0, true);
      dv.setUint32(done + 4, cur.sequence, true);
      done += VEVENT_HEADER;
      buf.set(cur.data, done);
      done += cur.data.length;
      if (!cur.lost) this.numEvents--;
    }
    return done;
  }

  poll(): number {
    return this.deliver.length ? POLLIN : 0;
  }

  release(): void {
    this.ctx.ref(this.id, -1);
    this.ctx.release();
  }

  /** iommufd_veventq_destroy */
  destroy(): void {
    this.deliver.length = 0;
    const i = this.viommu.veventqs.indexOf(this);
    if (i >= 0) this.viommu.veventqs.splice(i, 1);
    this.ctx.ref(this.viommu.id, -1);
  }
}

const E = IOCTLS.VEVENTQ_ALLOC.struct.off;
/** IOMMU_VEVENTQ_ALLOC (iommufd_veventq_alloc): one queue per type per vIOMMU; the fd holds it. */
function veventqAlloc(ctx: IommufdCtx, u: Ucmd): void {
  const type = u.u32(E.type!);
  if (u.u32(E.flags!) || u.u32(E.__reserved!) || type === 0) kerr(ERRNO.EOPNOTSUPP);
  const depth = u.u32(E.veventq_depth!);
  if (!depth || depth > 1 << 19) kerr(ERRNO.EINVAL);
  const viommu = ctx.get<Viommu>(u.u32(E.viommu_id!), 'VIOMMU');
  if (viommu.veventqs.some((q) => q.type === type)) kerr(ERRNO.EEXIST);
  const q = new VeventQueue(ctx, viommu, type, depth);
  q.id = ctx.add('VEVENTQ', q);
  ctx.ref(viommu.id, 1);
  viommu.veventqs.push(q);
  ctx.abortOnError(q.id, () => eventqFile(ctx, u, q, E.out_veventq_id!, E.out_veventq_fd!));
}

export const eventqHandlers = {
  IOMMU_FAULT_QUEUE_ALLOC: faultQueueAlloc,
  IOMMU_VEVENTQ_ALLOC: veventqAlloc,
};
