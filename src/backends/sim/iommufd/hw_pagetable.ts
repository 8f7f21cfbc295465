/**
 * HWPT objects and their ioctls (hw_pagetable.c): a paging HWPT is a domain filled from one IOAS
 * (automatic ones come and go with device attachment; manual ones from IOMMU_HWPT_ALLOC); a
 * nested HWPT is a stage-1 domain on a NEST_PARENT paging HWPT. Dirty tracking and cache
 * invalidation are commands on them.
 */
import { ERRNO } from '../../../ioasid/errors.js';
import { IOCTLS, IOMMU_HWPT_FAULT_ID_VALID } from '../../../ioasid/uapi.js';
import type { NestedDomain, PagingDomain } from '../iommu/domain.js';
import type { UserArray, UserData } from '../iommu/iommu.js';

export type { UserArray, UserData };
import type { FaultQueue } from './eventq.js';
import { viommuNestedAlloc, type Viommu } from './viommu.js';
import { kerr, KernelErrno } from '../kernel/errno.js';
import { shouldFailSlab } from '../kernel/fault_inject.js';
import type { IoasObject } from './ioas.js';
import { hwptNestedAlloc, hwptPagingAlloc, NO_PASID, type IommufdDevice } from './device.js';
import type { IommufdCtx, SimObject } from './main.js';
import { PAGE_SIZE } from '../kernel/mm.js';
import type { Ucmd } from './ucmd.js';

export function userData(ctx: IommufdCtx, type: number, uptr: bigint, len: number): UserData {
  return {
    type,
    len,
    read(want: number, size: number, minLen: number): Uint8Array {
      if (type !== want) kerr(ERRNO.EINVAL);
      if (len < minLen || size < len) kerr(ERRNO.EINVAL);
      return copyStructFromUser(ctx, uptr, len, size);
    },
    write(want: number, src: Uint8Array, minLen: number): void {
      if (type !== want) kerr(ERRNO.EINVAL);
      if (len < minLen || src.length < len) kerr(ERRNO.EINVAL);
      ctx.proc.mm.copyToUser(Number(uptr), src.subarray(0, len));
    },
  };
}

/** copy_struct_from_user(dst of `size`, user src of `usize`). */
export function copyStructFromUser(ctx: IommufdCtx, uptr: bigint, usize: number, size: number): Uint8Array {
  const out = new Uint8Array(size);
  if (usize > size) {
    const tail = new Uint8Array(usize - size);
    ctx.proc.mm.read(Number(uptr) + size, tail);
    if (tail.some((b) => b !== 0)) kerr(ERRNO.E2BIG);
  }
  const n = Math.min(size, usize);
  if (n) ctx.proc.mm.copyFromUser(Number(uptr), out.subarray(0, n));
  return out;
}

export class HwptPaging implements SimObject {
  id = 0;
  domain!: PagingDomain;
  autoDomain = false;
  enforceCc = false;
  /** The fault queue its I/O page faults go to (IOMMU_HWPT_FAULT_ID_VALID), if any. */
  fault: FaultQueue | null = null;
  constructor(
    readonly ctx: IommufdCtx,
    readonly ioas: IoasObject,
    readonly nestParent: boolean,
    readonly pasidCompat: boolean,
  ) {}

  get paging(): HwptPaging {
    return this;
  }

  /** iommufd_hwpt_paging_destroy */
  destroy(): void {
    const i = this.ioas.hwpts.indexOf(this);
    if (i >= 0) {
      this.ioas.hwpts.splice(i, 1);
      this.ioas.iopt.removeDomain(this.domain);
    }
    this.ctx.ref(this.ioas.id, -1);
    if (this.fault) this.ctx.ref(this.fault.id, -1);
  }
}

export class HwptNested implements SimObject {
  id = 0;
  domain!: NestedDomain;
  fault: FaultQueue | null = null;
  constructor(
    readonly ctx: IommufdCtx,
    readonly parent: HwptPaging,
    readonly pasidCompat: boolean,
    /** Allocated on a vIOMMU (which it holds instead of the parent). */
    readonly viommu: Viommu | null = null,
  ) {}

  get paging(): null {
    return null;
  }

  destroy(): void {
    this.ctx.ref(this.viommu ? this.viommu.id : this.parent.id, -1);
    if (this.fault) this.ctx.ref(this.fault.id, -1);
  }
}

export type Hwpt = HwptPaging | HwptNested;

// ---- ioctls ----------------------------------------------------------------------------------------

const H = IOCTLS.HWPT_ALLOC.struct.off;
/** IOMMU_HWPT_ALLOC */
function hwptAlloc(ctx: IommufdCtx, u: Ucmd): void {
  if (u.u32(H.__reserved!)) kerr(ERRNO.EOPNOTSUPP);
  const type = u.u32(H.data_type!);
  const len = u.u32(H.data_len!);
  if ((type === 0 && len) || (type !== 0 && !len)) kerr(ERRNO.EINVAL);
  const idev = ctx.get<IommufdDevice>(u.u32(H.dev_id!), 'DEVICE');
  const pt = ctx.entry(u.u32(H.pt_id!));
  if (!pt) kerr(ERRNO.EINVAL);
  const flags = u.u32(H.flags!);
  const data = userData(ctx, type, u.u64(H.data_uptr!), len);
  let hwpt: Hwpt;
  if (pt.type === 'IOAS') {
    hwpt = hwptPagingAlloc(idev, pt.obj as IoasObject, NO_PASID, flags, false, len ? data : null);
  } else if (pt.type === 'HWPT_PAGING') {
    hwpt = hwptNestedAlloc(idev, pt.obj as HwptPaging, flags, data);
  } else if (pt.type === 'VIOMMU') {
    hwpt = viommuNestedAlloc(idev, pt.obj as Viommu, flags, data);
  } else {
    return kerr(ERRNO.EINVAL);
  }
  ctx.abortOnError(hwpt.id, () => {
    if (flags & IOMMU_HWPT_FAULT_ID_VALID) {
      const fault = ctx.get<FaultQueue>(u.u32(H.fault_id!), 'FAULT');
      hwpt.fault = fault;
      ctx.ref(fault.id, 1);
    }
    u.setU32(H.out_hwpt_id!, hwpt.id);
    u.respond();
  });
}

const S = IOCTLS.HWPT_SET_DIRTY_TRACKING.struct.off;
/** IOMMU_HWPT_SET_DIRTY_TRACKING */
function setDirtyTracking(ctx: IommufdCtx, u: Ucmd): void {
  const flags = u.u32(S.flags!);
  if (flags & ~1) kerr(ERRNO.EOPNOTSUPP);
  const hwpt = ctx.get<HwptPaging>(u.u32(S.hwpt_id!), 'HWPT_PAGING');
  const enable = !!(flags & 1);
  if (!hwpt.domain.dirtyOps) kerr(ERRNO.EOPNOTSUPP);
  if (enable) clearDirty(hwpt); // a clean snapshot
  hwpt.domain.dirtyTracking = enable;
}

/** iopt_clear_dirty_data: enabling starts from a clean slate. */
function clearDirty(hwpt: HwptPaging): void {
  for (const a of hwpt.ioas.iopt.areas.range(0n, 0xffff_ffff_ffff_ffffn)) hwpt.domain.readAndClearDirty(a.start, a.last, false, () => {});
}

const G = IOCTLS.HWPT_GET_DIRTY_BITMAP.struct.off;
/**
 * IOMMU_HWPT_GET_DIRTY_BITMAP (iopt_read_and_clear_dirty_data): one bit per `page_size` of
 * [iova, iova+length) at `data`, set for each dirty IOPTE under it; bits already set stay set.
 */
function getDirtyBitmap(ctx: IommufdCtx, u: Ucmd): void {
  const flags = u.u32(G.flags!);
  if (flags & ~1 || u.u32(G.__reserved!)) kerr(ERRNO.EOPNOTSUPP);
  const hwpt = ctx.get<HwptPaging>(u.u32(G.hwpt_id!), 'HWPT_PAGING');
  const iova = u.u64(G.iova!);
  const length = u.u64(G.length!);
  const pageSize = u.u64(G.page_size!);
  const data = u.u64(G.data!);
  const domain = hwpt.domain;
  const iopt = hwpt.ioas.iopt;
  // iommufd_check_iova_range
  if (!length) kerr(ERRNO.EINVAL);
  const last = iova + length - 1n;
  if (last > 0xffff_ffff_ffff_ffffn) kerr(ERRNO.EOVERFLOW);
  const align = iopt.iovaAlignment;
  if (iova & (align - 1n) || (last + 1n) & (align - 1n)) kerr(ERRNO.EINVAL);
  if (!pageSize) kerr(ERRNO.EINVAL);
  if (iova % pageSize || (last + 1n) % pageSize) kerr(ERRNO.EINVAL);
  if (!domain.dirtyOps) kerr(ERRNO.EOPNOTSUPP);
  if (shouldFailSlab()) kerr(ERRNO.ENOMEM); // iova_bitmap_alloc (fault injection)
  // iommu_read_and_clear_dirty: walk the areas contiguous from iova; at a gap the walk stops with
  // EINVAL, which 7.3 drops (iova_bitmap_for_each's return is ignored): the ioctl succeeds.
  let cur = iova;
  for (const a of iopt.areas.range(iova, last)) {
    if (a.start > cur) break;
    cur = a.last + 1n;
    if (cur > last) break;
  }
  if (cur === iova) return;
  domain.readAndClearDirty(iova, cur > last ? last : cur - 1n, !!(flags & 1), (at, len) => {
    // iova_bitmap_set: every bit whose page_size chunk the dirty IOPTE touches, set in the user's
    // bitmap where it can be pinned; a bitmap that cannot be written loses the bits silently.
    const from = at < iova ? iova : at;
    const to = at + len - 1n > last ? last : at + len - 1n;
    const b0 = Number((from - iova) / pageSize);
    const b1 = Number((to - iova) / pageSize);
    for (let byte = b0 >> 3; byte <= b1 >> 3; byte++) {
      const cell = new Uint8Array(1);
      try {
        ctx.proc.mm.read(Number(data) + byte, cell);
        for (let bit = Math.max(b0, byte * 8); bit <= Math.min(b1, byte * 8 + 7); bit++) cell[0]! |= 1 << (bit & 7);
        ctx.proc.mm.write(Number(data) + byte, cell);
      } catch (e) {
        if (!(e instanceof KernelErrno)) throw e;
      }
    }
  });
}

const V = IOCTLS.HWPT_INVALIDATE.struct.off;
/** IOMMU_HWPT_INVALIDATE: entry_num is always written back with the count handled. */
function hwptInvalidate(ctx: IommufdCtx, u: Ucmd): void {
  let done = 0;
  try {
    if (u.u32(V.__reserved!)) kerr(ERRNO.EOPNOTSUPP);
    const num = u.u32(V.entry_num!);
    const len = u.u32(V.entry_len!);
    const uptr = u.u64(V.data_uptr!);
    if (num && (!uptr || !len || len > PAGE_SIZE || num > 1 << 19)) kerr(ERRNO.EINVAL);
    const e = ctx.entry(u.u32(V.hwpt_id!));
    if (!e) kerr(ERRNO.ENOENT);
    let inv: ((type: number, entries: UserArray) => number) | null | undefined;
    if (e.type === 'HWPT_NESTED') {
      inv = (e.obj as HwptNested).domain.invalidate;
    } else if (e.type === 'VIOMMU') {
      const viommu = e.obj as Viommu;
      const op = viommu.ops.viommuInvalidate;
      inv = op && ((type, entries) => op.call(viommu.ops, viommu, type, entries));
    } else {
      kerr(ERRNO.EINVAL);
    }
    if (!inv) kerr(ERRNO.EOPNOTSUPP);
    // the driver copies entries from user memory itself, when and in the order it wants
    const entries: UserArray = {
      length: num,
      entryLen: len,
      get(i: number): Uint8Array {
        const b = new Uint8Array(len);
        ctx.proc.mm.copyFromUser(Number(uptr) + i * len, b);
        return b;
      },
    };
    try {
      done = inv(u.u32(V.data_type!), entries);
    } catch (err) {
      if (err instanceof KernelErrno) done = (err as KernelErrno & { done?: number }).done ?? 0;
      throw err;
    }
  } finally {
    u.setU32(V.entry_num!, done);
    u.respond();
  }
}

export const hwptHandlers = {
  IOMMU_HWPT_ALLOC: hwptAlloc,
  IOMMU_HWPT_SET_DIRTY_TRACKING: setDirtyTracking,
  IOMMU_HWPT_GET_DIRTY_BITMAP: getDirtyBitmap,
  IOMMU_HWPT_INVALIDATE: hwptInvalidate,
};
