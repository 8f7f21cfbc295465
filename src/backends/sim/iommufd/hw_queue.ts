/**
 * HW queues (viommu.c's iommufd_hw_queue_alloc_ioctl / iommufd_hw_queue_destroy): a guest queue
 * in the vIOMMU's nesting-parent IOAS that the IOMMU reads by physical address. An internal
 * access pins the queue's pages and locks their areas (IOAS unmap answers EBUSY while the queue
 * lives); the pages must be physically contiguous; the driver's init may make the queue depend
 * on another queue, which then cannot be destroyed first.
 */
import { ERRNO } from '../../../ioasid/errors.js';
import { IOCTLS } from '../../../ioasid/uapi.js';
import { InternalAccess, type PhysAddr } from './access.js';
import { kerr } from '../kernel/errno.js';
import { shouldFailSlab } from '../kernel/fault_inject.js';
import type { Handler, IommufdCtx, SimObject } from './main.js';
import { PAGE_SIZE } from '../kernel/mm.js';
import type { Ucmd } from './ucmd.js';
import type { Viommu } from './viommu.js';

const MAX = 0xffff_ffff_ffff_ffffn;
const PAGE = BigInt(PAGE_SIZE);
const INT_MAX = 0x7fff_ffff;

export class HwQueue implements SimObject {
  id = 0;
  /** Set once its pages are pinned (hw_queue->viommu, ->access). */
  viommu: Viommu | null = null;
  access: InternalAccess | null = null;
  /** The driver's hw_queue->destroy, set by a successful init. */
  destroyOp: (() => void) | null = null;

  constructor(
    readonly ctx: IommufdCtx,
    readonly type: number,
    /** nesting_parent_iova */
    readonly baseAddr: bigint,
    readonly length: bigint,
  ) {}

  /** iommufd_hw_queue_depend: `on` stays until this queue is gone (EINVAL on itself). */
  depend(on: HwQueue): void {
    if (on === this) kerr(ERRNO.EINVAL);
    this.ctx.ref(on.id, 1);
  }

  /** iommufd_hw_queue_undepend */
  undepend(on: HwQueue): void {
    this.ctx.ref(on.id, -1);
  }

  /** iommufd_hw_queue_destroy: the driver's part, then the pinning access, then the vIOMMU. */
  destroy(): void {
    this.destroyOp?.();
    if (this.access) {
      const [aligned, length] = pinnedRange(this.baseAddr, this.length);
      this.access.unpinPages(aligned, length);
      this.access.detach();
      this.access.destroyInternal();
    }
    if (this.viommu) this.ctx.ref(this.viommu.id, -1);
  }
}

/** The page-aligned range a queue pins: [PAGE_ALIGN_DOWN(iova), +PAGE_ALIGN(offset + length)); ERANGE on overflow. */
function pinnedRange(iova: bigint, length: bigint): [bigint, bigint] {
  const aligned = iova & ~(PAGE - 1n);
  const end = iova - aligned + length + PAGE - 1n;
  if (end > MAX) kerr(ERRNO.ERANGE);
  return [aligned, end & ~(PAGE - 1n)];
}

/**
 * iommufd_hw_queue_alloc_phys: an internal access on the vIOMMU's parent IOAS pins the queue's
 * pages (ENOENT where nothing is mapped); they must be physically contiguous (EFAULT).
 * Returns the access and the queue's physical address.
 */
function allocPhys(q: HwQueue, viommu: Viommu): [InternalAccess, PhysAddr] {
  const [aligned, length] = pinnedRange(q.baseAddr, q.length);
  const npages = Number(length / PAGE);
  if (npages * 8 > INT_MAX) kerr(ERRNO.ENOMEM); // kvzalloc of the page array refuses > INT_MAX bytes
  if (shouldFailSlab()) kerr(ERRNO.ENOMEM); // ... or fails (fault injection)
  const access = InternalAccess.create(q.ctx);
  const pages: PhysAddr[] = [];
  try {
    access.attach(viommu.hwpt.ioas);
    access.pinPages(aligned, length, pages);
  } catch (e) {
    access.detach();
    access.destroyInternal();
    throw e;
  }
  for (let i = 1; i < pages.length; i++) {
    if (pages[i]!.store === pages[i - 1]!.store && pages[i]!.offset === pages[i - 1]!.offset + PAGE_SIZE) continue;
    access.unpinPages(aligned, length);
    access.detach();
    access.destroyInternal();
    kerr(ERRNO.EFAULT);
  }
  return [access, { store: pages[0]!.store, offset: pages[0]!.offset + Number(q.baseAddr - aligned) }];
}

const W = IOCTLS.HW_QUEUE_ALLOC.struct.off;
/** IOMMU_HW_QUEUE_ALLOC (iommufd_hw_queue_alloc_ioctl) */
function hwQueueAlloc(ctx: IommufdCtx, u: Ucmd): void {
  const type = u.u32(W.type!);
  if (u.u32(W.flags!) || type === 0) kerr(ERRNO.EOPNOTSUPP); // IOMMU_HW_QUEUE_TYPE_DEFAULT
  const length = u.u64(W.length!);
  if (!length) kerr(ERRNO.EINVAL);
  const iova = u.u64(W.nesting_parent_iova!);
  if (iova + length - 1n > MAX) kerr(ERRNO.EOVERFLOW);
  const viommu = ctx.get<Viommu>(u.u32(W.viommu_id!), 'VIOMMU');
  const ops = viommu.viommuOps;
  const initPhys = ops?.hwQueueInitPhys;
  if (!ops?.hwQueueSize || !initPhys || !ops.hwQueueSize(type)) kerr(ERRNO.EOPNOTSUPP);
  const q = new HwQueue(ctx, type, iova, length);
  q.id = ctx.add('HW_QUEUE', q);
  ctx.abortOnError(q.id, () => {
    const [access, basePa] = allocPhys(q, viommu);
    q.access = access;
    q.viommu = viommu;
    ctx.ref(viommu.id, 1);
    initPhys.call(ops, q, u.u32(W.index!), basePa);
    u.setU32(W.out_hw_queue_id!, q.id);
    u.respond();
  });
}

export const hwQueueHandlers: Record<string, Handler> = {
  IOMMU_HW_QUEUE_ALLOC: hwQueueAlloc,
};
