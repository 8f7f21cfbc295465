/**
 * Hardware page tables (HWPT): IOMMU_HWPT_ALLOC and the commands on a HWPT. A paging HWPT is an
 * IOMMU domain filled from one IOAS (attaching a device to an IOAS makes an automatic one; a
 * manual one lets the caller choose NEST_PARENT, DIRTY_TRACKING, PASID); a nested HWPT is a
 * stage-1 table on a NEST_PARENT HWPT, described by driver-specific data.
 */
import { u64 } from './codec.js';
import type { Iommufd } from './iommufd.js';
import {
  IOCTLS, IOMMU_HWPT_ALLOC_DIRTY_TRACKING, IOMMU_HWPT_ALLOC_NEST_PARENT, IOMMU_HWPT_ALLOC_PASID,
  IOMMU_HWPT_FAULT_ID_VALID,
} from './uapi.js';

/** Driver-specific data (struct iommu_hwpt_selftest, iommu_hwpt_vtd_s1, ...) and its type. */
export interface HwptData {
  type: number;
  bytes: Uint8Array;
}

export interface HwptAllocOptions {
  /** A bound device the domain must suit (its IOMMU makes the domain). */
  devId: number;
  /** An IOAS (paging HWPT) or a NEST_PARENT paging HWPT (nested HWPT). */
  ptId: number;
  nestParent?: boolean;
  dirtyTracking?: boolean;
  /** The HWPT may be attached to PASIDs (IOMMU_HWPT_ALLOC_PASID). */
  pasid?: boolean;
  /** Raw IOMMU_HWPT_ALLOC_* flags, OR-ed with the booleans (for testing refusals). */
  flags?: number;
  data?: HwptData;
  /** Report I/O page faults to this fault queue (IOMMU_HWPT_FAULT_ID_VALID). */
  faultId?: number;
}

export interface DirtyBitmapOptions {
  iova: bigint;
  length: bigint;
  /** Bytes per bit. */
  pageSize: bigint;
  /** Read without clearing (IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR). */
  noClear?: boolean;
  /** Where the kernel writes the bitmap; default: fresh user memory of the right size. */
  bitmapAddr?: bigint;
}

export class Hwpt {
  constructor(
    readonly ctx: Iommufd,
    readonly id: number,
  ) {}

  /** IOMMU_HWPT_ALLOC */
  static alloc(ctx: Iommufd, o: HwptAllocOptions): Hwpt {
    const flags = (o.flags ?? 0) | (o.nestParent ? IOMMU_HWPT_ALLOC_NEST_PARENT : 0)
      | (o.dirtyTracking ? IOMMU_HWPT_ALLOC_DIRTY_TRACKING : 0) | (o.pasid ? IOMMU_HWPT_ALLOC_PASID : 0)
      | (o.faultId !== undefined ? IOMMU_HWPT_FAULT_ID_VALID : 0);
    const data = o.data ? ctx.userScratch(o.data.bytes.length) : null;
    if (data && o.data) data.bytes.set(o.data.bytes);
    const c = ctx.cmd(IOCTLS.HWPT_ALLOC)
      .u32('flags', flags).u32('dev_id', o.devId).u32('pt_id', o.ptId)
      .u32('data_type', o.data?.type ?? 0).u32('data_len', o.data?.bytes.length ?? 0)
      .u64('data_uptr', data?.addr ?? 0n).u32('fault_id', o.faultId ?? 0);
    ctx.ioctl(c);
    return new Hwpt(ctx, c.get32('out_hwpt_id'));
  }

  /** IOMMU_HWPT_SET_DIRTY_TRACKING: enabling starts from a clean slate. */
  setDirtyTracking(enable: boolean): void {
    this.ctx.ioctl(this.ctx.cmd(IOCTLS.HWPT_SET_DIRTY_TRACKING).u32('hwpt_id', this.id).u32('flags', enable ? 1 : 0));
  }

  /**
   * IOMMU_HWPT_GET_DIRTY_BITMAP: one bit per `pageSize` bytes of [iova, iova+length), bit i of
   * byte i>>3 (the kernel's little-endian unsigned long bitmap). Clears what it reports unless noClear.
   */
  getDirtyBitmap(o: DirtyBitmapOptions): Uint8Array {
    const nbits = Number(o.length / o.pageSize);
    const bytes = Math.ceil(nbits / 8);
    const mem = o.bitmapAddr === undefined ? this.ctx.userScratch(Math.max(8, bytes)) : null;
    if (mem) mem.bytes.fill(0, 0, bytes);
    const addr = o.bitmapAddr ?? mem!.addr;
    const c = this.ctx.cmd(IOCTLS.HWPT_GET_DIRTY_BITMAP)
      .u32('hwpt_id', this.id).u32('flags', o.noClear ? 1 : 0)
      .u64('iova', u64(o.iova, 'iova')).u64('length', u64(o.length, 'length')).u64('page_size', o.pageSize).u64('data', addr);
    this.ctx.ioctl(c);
    return mem ? mem.bytes.slice(0, bytes) : this.ctx.binding.view(addr, bytes).slice();
  }

  /**
   * IOMMU_HWPT_INVALIDATE with `entries` of one driver data type. Returns how many entries the
   * kernel handled; on failure the IommuError carries `handled` too.
   */
  invalidate(dataType: number, entries: readonly Uint8Array[], entryLen = entries[0]?.length ?? 0): number {
    const mem = entries.length ? this.ctx.userScratch(entries.length * entryLen) : null;
    entries.forEach((e, i) => mem!.bytes.set(e.subarray(0, entryLen), i * entryLen));
    const c = this.ctx.cmd(IOCTLS.HWPT_INVALIDATE)
      .u32('hwpt_id', this.id).u64('data_uptr', mem?.addr ?? 0n).u32('data_type', dataType)
      .u32('entry_len', entryLen).u32('entry_num', entries.length);
    try {
      this.ctx.ioctl(c);
    } catch (e) {
      (e as { handled?: number }).handled = c.get32('entry_num');
      throw e;
    }
    return c.get32('entry_num');
  }

  destroy(): void {
    this.ctx.destroy(this.id);
  }
}
