/**
 * In-kernel accesses to an IOAS (device.c): pinning pages through its areas
 * (iommufd_access_pin_pages / unpin_pages) and the internal access the core makes for itself
 * (iommufd_access_create_internal, used by HW queues). An internal access also locks the areas
 * it pins: IOAS unmap answers EBUSY instead of asking it to let go. The selftest's access
 * objects (selftest.ts) pin through the same functions.
 */
import { ERRNO } from '../../../ioasid/errors.js';
import { kerr } from '../kernel/errno.js';
import { shouldFailSlab } from '../kernel/fault_inject.js';
import { IOMMU_READ, IOMMU_WRITE, areaPage, areaPageOffset, type Area } from './io_pagetable.js';
import type { IoasObject } from './ioas.js';
import type { IommufdCtx, SimObject } from './main.js';
import type { PhysAddr } from '../iommu/iommu.js';
import { PAGE_SIZE, type PageStore } from '../kernel/mm.js';

const MAX = 0xffff_ffff_ffff_ffffn;
const PAGE = BigInt(PAGE_SIZE);

export type { PhysAddr };

/** iopt_for_each_contig_area: the [area, from, to] pieces covering [iova, last]; ENOENT on a gap. */
export function contig(ioas: IoasObject, iova: bigint, last: bigint, strict = true): [Area, bigint, bigint][] {
  const out: [Area, bigint, bigint][] = [];
  let cur = iova;
  let area = ioas.iopt.areas.first(cur, cur);
  while (area && area.start <= cur) {
    const end = last < area.last ? last : area.last;
    out.push([area, cur, end]);
    if (end === last) return out;
    cur = area.last + 1n;
    area = ioas.iopt.areas.first(cur, cur);
  }
  if (strict) kerr(ERRNO.ENOENT);
  return out;
}

/**
 * iommufd_access_pin_pages: all or nothing. `lock` (an internal access) locks each area too;
 * `out` receives each pinned page's physical address.
 */
export function accessPinPages(ioas: IoasObject | null, iova: bigint, length: bigint, write: boolean, lock: boolean, out?: PhysAddr[]): void {
  if (!length) kerr(ERRNO.EINVAL);
  const last = iova + length - 1n;
  if (last > MAX) kerr(ERRNO.EOVERFLOW);
  if (!ioas) kerr(ERRNO.ENOENT);
  const done: [Area, number, number][] = [];
  try {
    for (const [area, cur, end] of contig(ioas, iova, last)) {
      if (areaPageOffset(area, cur) || (end !== last && areaPageOffset(area, end) !== PAGE_SIZE - 1)) kerr(ERRNO.EINVAL);
      if (!(area.prot & (write ? IOMMU_WRITE : IOMMU_READ))) kerr(ERRNO.EPERM);
      const first = areaPage(area, cur);
      const lastIdx = areaPage(area, end);
      if (shouldFailSlab()) kerr(ERRNO.ENOMEM); // iopt_area_add_access's iopt_pages_access (fault injection)
      area.pages.pin(first, lastIdx, write);
      area.numAccesses++;
      if (lock) area.numLocks++;
      done.push([area, first, lastIdx]);
    }
  } catch (e) {
    for (const [area, f, l] of done) {
      area.pages.unpin(f, l);
      area.numAccesses--;
      if (lock) area.numLocks--;
    }
    throw e;
  }
  if (out) {
    for (const [area, f, l] of done) {
      for (let i = f; i <= l; i++) out.push({ store: area.pages.storeOf(i)!, offset: area.pages.pageIndexOf(i) * PAGE_SIZE });
    }
  }
}

/** iommufd_access_unpin_pages: the exact range pinned before. */
export function accessUnpinPages(ioas: IoasObject, iova: bigint, length: bigint, unlock: boolean): void {
  for (const [area, cur, end] of contig(ioas, iova, iova + length - 1n, false)) {
    area.pages.unpin(areaPage(area, cur), areaPage(area, end));
    area.numAccesses--;
    if (unlock) area.numLocks--;
  }
}

/**
 * iommufd_access_create_internal: an ACCESS object (it takes an id) that its kernel user holds,
 * so userspace cannot DESTROY it (EBUSY); page-aligned, never told about unmaps.
 */
export class InternalAccess implements SimObject {
  id = 0;
  ioas: IoasObject | null = null;

  private constructor(readonly ctx: IommufdCtx) {}

  static create(ctx: IommufdCtx): InternalAccess {
    const a = new InternalAccess(ctx);
    a.id = ctx.add('ACCESS', a);
    ctx.ref(a.id, 1); // the calling driver is a user until it destroys the access
    return a;
  }

  /** iommufd_access_attach_internal: the IOAS's alignment rises to PAGE_SIZE (EADDRINUSE if an area breaks it). */
  attach(ioas: IoasObject): void {
    if (shouldFailSlab()) kerr(ERRNO.ENOMEM); // iopt_add_access's xa_alloc (fault injection)
    ioas.iopt.accessAlignments.set(this, PAGE);
    try {
      ioas.iopt.recalculateAlignment();
    } catch (e) {
      ioas.iopt.accessAlignments.delete(this);
      throw e;
    }
    this.ctx.ref(ioas.id, 1);
    this.ioas = ioas;
  }

  /** iommufd_access_detach_internal */
  detach(): void {
    const ioas = this.ioas;
    if (!ioas) return;
    this.ioas = null;
    ioas.iopt.accessAlignments.delete(this);
    ioas.iopt.recalculateAlignment();
    this.ctx.ref(ioas.id, -1);
  }

  pinPages(iova: bigint, length: bigint, out: PhysAddr[]): void {
    accessPinPages(this.ioas, iova, length, false, true, out);
  }

  unpinPages(iova: bigint, length: bigint): void {
    if (this.ioas) accessUnpinPages(this.ioas, iova, length, true);
  }

  /** iommufd_access_destroy_internal: drop the driver's hold and remove the object. */
  destroyInternal(): void {
    this.ctx.ref(this.id, -1);
    this.ctx.remove(this.id);
  }

  destroy(): void {
    this.detach();
  }
}
