/**
 * vEVENTQs (IOMMU_VEVENTQ_ALLOC): events a vIOMMU reports for its vDEVICEs, one queue per event
 * type per vIOMMU. Each event is a struct iommufd_vevent_header { flags; sequence; } and the
 * type's record; when the queue overflowed a header alone with IOMMU_VEVENTQ_FLAG_LOST_EVENTS
 * stands where events went missing. Reading never blocks: `read()` returns what is queued;
 * `wait()` and the async iterator wait for more without blocking the event loop
 * (Binding.pollAsync) and take an AbortSignal.
 */
import { isErrno } from './errors.js';
import type { Iommufd } from './iommufd.js';
import { IOCTLS, IOMMU_VEVENTQ_TYPE_SELFTEST } from './uapi.js';
import { EventQueue } from './eventq.js';

export const IOMMU_VEVENTQ_TYPE_ARM_SMMUV3 = 1;
export const IOMMU_VEVENTQ_TYPE_TEGRA241_CMDQV = 2;
export const IOMMU_VEVENTQ_FLAG_LOST_EVENTS = 1 << 0;
/** sizeof(struct iommufd_vevent_header) */
const HEADER = 8;
/**
 * The record each type carries: struct iommu_vevent_arm_smmuv3 (a 256-bit event record),
 * iommu_vevent_tegra241_cmdqv (a 128-bit error map), iommu_viommu_event_selftest (the virt_id).
 */
const RECORD_SIZE: ReadonlyMap<number, number> = new Map([
  [IOMMU_VEVENTQ_TYPE_ARM_SMMUV3, 32],
  [IOMMU_VEVENTQ_TYPE_TEGRA241_CMDQV, 16],
  [IOMMU_VEVENTQ_TYPE_SELFTEST, 4],
]);

/** One vEVENT: its sequence number and record, or (lostEvents) the mark where events were lost. */
export interface Vevent {
  lostEvents: boolean;
  /** 0..INT_MAX, one per event reported, wrapping; a gap means lost events. */
  sequence: number;
  /** The type's record (a copy); empty for a LOST_EVENTS header. */
  data: Uint8Array;
}

export interface VeventQueueOptions {
  viommuId: number;
  /** IOMMU_VEVENTQ_TYPE_* */
  type: number;
  /** At most this many events wait in the queue (1..2^19). */
  depth: number;
  /** The record's size, for a type this library does not know. */
  recordSize?: number;
}

export class VeventQueue extends EventQueue<Vevent> {
  private readonly buf: Uint8Array;

  constructor(
    ctx: Iommufd,
    id: number,
    fd: number,
    /** The size of one event's record (after its header). */
    readonly recordSize: number,
  ) {
    super(ctx, id, fd);
    this.buf = new Uint8Array(16 * (HEADER + recordSize));
  }

  static alloc(ctx: Iommufd, opts: VeventQueueOptions): VeventQueue {
    const recordSize = opts.recordSize ?? RECORD_SIZE.get(opts.type);
    if (recordSize === undefined) throw new TypeError(`vEVENTQ type 0x${opts.type.toString(16)}: pass its recordSize`);
    const c = ctx.cmd(IOCTLS.VEVENTQ_ALLOC).u32('viommu_id', opts.viommuId).u32('type', opts.type).u32('veventq_depth', opts.depth);
    ctx.ioctl(c);
    return new VeventQueue(ctx, c.get32('out_veventq_id'), c.get32('out_veventq_fd'), recordSize);
  }

  /** The events queued now, oldest first (empty if none); never blocks. */
  override read(): Vevent[] {
    let n: number;
    try {
      n = this.ctx.binding.read(this.fd, this.buf);
    } catch (e) {
      if (isErrno(e, 'EAGAIN')) return [];
      throw e;
    }
    const dv = new DataView(this.buf.buffer, 0, n);
    const out: Vevent[] = [];
    for (let off = 0; off < n; ) {
      const lostEvents = (dv.getUint32(off, true) & IOMMU_VEVENTQ_FLAG_LOST_EVENTS) !== 0;
      const sequence = dv.getUint32(off + 4, true);
      off += HEADER;
      const size = lostEvents ? 0 : this.recordSize;
      out.push({ lostEvents, sequence, data: this.buf.slice(off, off + size) });
      off += size;
    }
    return out;
  }
}
