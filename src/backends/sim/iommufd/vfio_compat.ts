/**
 * VFIO type1 container ioctls on an iommufd (vfio_compat.c): the IOAS chosen with IOMMU_VFIO_IOAS
 * plays the container's address space. Same checks, same order, same errno as the kernel; maps
 * and unmaps go through io_pagetable like their native counterparts, with type1's differences
 * (fixed IOVAs only, unmap of nothing succeeds, TYPE1 may unmap inside a mapping).
 */
import { ERRNO } from '../../../ioasid/errors.js';
import {
  GET_INFO_MINSZ, MAP_DMA_MINSZ, UNMAP_DMA_MINSZ, VFIO_API_VERSION, VFIO_CHECK_EXTENSION, VFIO_DMA_CC_IOMMU,
  VFIO_DMA_MAP_FLAG_READ, VFIO_DMA_MAP_FLAG_WRITE, VFIO_DMA_UNMAP_FLAG_ALL, VFIO_GET_API_VERSION,
  VFIO_IOMMU_GET_INFO, VFIO_IOMMU_INFO_CAPS, VFIO_IOMMU_INFO_PGSIZES, VFIO_IOMMU_MAP_DMA,
  VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE, VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL, VFIO_IOMMU_UNMAP_DMA,
  VFIO_NOIOMMU_IOMMU, VFIO_SET_IOMMU, VFIO_TYPE1_IOMMU, VFIO_TYPE1v2_IOMMU, VFIO_UNMAP_ALL,
  vfio_iommu_type1_info,
} from '../../../ioasid/vfio_uapi.js';
import { kerr, KernelErrno } from '../kernel/errno.js';
import { shouldFail } from '../kernel/fault_inject.js';
import { IOMMU_READ, IOMMU_WRITE } from './io_pagetable.js';
import { IoasObject, mapUserRange, putAreaPages } from './ioas.js';
import type { IommufdCtx } from './main.js';
import { PAGE_SIZE } from '../kernel/mm.js';

const MAX = 0xffff_ffff_ffff_ffffn;
const INFO_SIZE = vfio_iommu_type1_info.size;

/** get_compat_ioas: ENODEV until IOMMU_VFIO_IOAS (or a VFIO group) chose one. */
function compatIoas(ctx: IommufdCtx): IoasObject {
  if (!ctx.vfioIoasId) kerr(ERRNO.ENODEV);
  return ctx.get<IoasObject>(ctx.vfioIoasId, 'IOAS');
}

/** iommufd_vfio_compat_ioas_get_id: the compat IOAS's id for a VFIO group's device (ENODEV if none). */
export function compatIoasGetId(ctx: IommufdCtx): number {
  return compatIoas(ctx).id;
}

/**
 * iommufd_vfio_compat_ioas_create: VFIO_GROUP_SET_CONTAINER with an iommufd makes the compat IOAS,
 * a normal user-visible IOAS, unless one is already set (then nothing changes).
 */
export function compatIoasCreate(ctx: IommufdCtx): void {
  if (ctx.vfioIoasId) return;
  const ioas = new IoasObject();
  ioas.id = ctx.add('IOAS', ioas);
  ctx.vfioIoasId = ioas.id;
}

/** Commands whose argument is an integer (VFIO_CHECK_EXTENSION, VFIO_SET_IOMMU). */
export function vfioIoctlInt(ctx: IommufdCtx, request: number, value: number): number {
  switch (request) {
    case VFIO_GET_API_VERSION:
      return VFIO_API_VERSION;
    case VFIO_CHECK_EXTENSION:
      return checkExtension(ctx, value);
    case VFIO_SET_IOMMU:
      return setIommu(ctx, value);
    case VFIO_IOMMU_GET_INFO:
    case VFIO_IOMMU_MAP_DMA:
    case VFIO_IOMMU_UNMAP_DMA:
      return kerr(ERRNO.EFAULT); // an integer is no pointer to a struct
    default:
      return kerr(ERRNO.ENOTTY);
  }
}

/** Commands whose argument points to a struct (null = NULL). */
export function vfioIoctl(ctx: IommufdCtx, request: number, arg: Uint8Array | null): number {
  switch (request) {
    case VFIO_IOMMU_GET_INFO:
      return getInfo(ctx, arg);
    case VFIO_IOMMU_MAP_DMA:
      return mapDma(ctx, arg);
    case VFIO_IOMMU_UNMAP_DMA:
      return unmapDma(ctx, arg);
    case VFIO_GET_API_VERSION:
    case VFIO_CHECK_EXTENSION:
    case VFIO_SET_IOMMU:
      // The pointer's value is the integer argument: never a type or extension number.
      return vfioIoctlInt(ctx, request, -1);
    default:
      return kerr(ERRNO.ENOTTY);
  }
}

function checkExtension(ctx: IommufdCtx, type: number): number {
  switch (type) {
    case VFIO_TYPE1_IOMMU:
    case VFIO_TYPE1v2_IOMMU:
    case VFIO_UNMAP_ALL:
      return 1;
    case VFIO_NOIOMMU_IOMMU:
      return 0; // CONFIG_VFIO_NOIOMMU is off
    case VFIO_DMA_CC_IOMMU:
      // iommufd_vfio_cc_iommu: 1 unless a paging HWPT of the compat IOAS does not enforce coherency
      return compatIoas(ctx).hwpts.every((h) => h.enforceCc) ? 1 : 0;
    default:
      return 0;
  }
}

function setIommu(ctx: IommufdCtx, type: number): number {
  if (type !== VFIO_TYPE1_IOMMU && type !== VFIO_TYPE1v2_IOMMU) kerr(ERRNO.EINVAL);
  const ioas = compatIoas(ctx);
  // TYPE1 may unmap inside a mapping: large IOPTEs, which cannot be split, are turned off.
  if (type === VFIO_TYPE1_IOMMU) ioas.iopt.setLargePages(false);
  return 0;
}

/** copy_from_user of the first `minsz` bytes (EFAULT: too short, or fault injection). */
function view(arg: Uint8Array | null, minsz: number): DataView {
  if (!arg || arg.length < minsz || shouldFail()) kerr(ERRNO.EFAULT);
  return new DataView(arg.buffer, arg.byteOffset, arg.length);
}

function mapDma(ctx: IommufdCtx, arg: Uint8Array | null): number {
  const d = view(arg, MAP_DMA_MINSZ);
  const flags = d.getUint32(4, true);
  if (d.getUint32(0, true) < MAP_DMA_MINSZ || flags & ~(VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE)) kerr(ERRNO.EINVAL);
  const prot = (flags & VFIO_DMA_MAP_FLAG_READ ? IOMMU_READ : 0) | (flags & VFIO_DMA_MAP_FLAG_WRITE ? IOMMU_WRITE : 0);
  const ioas = compatIoas(ctx);
  const vaddr = d.getBigUint64(8, true);
  const iova = d.getBigUint64(16, true);
  const size = d.getBigUint64(24, true);
  mapUserRange(ctx, ioas.iopt, vaddr, size, iova, prot);
  return 0;
}

function unmapDma(ctx: IommufdCtx, arg: Uint8Array | null): number {
  const d = view(arg, UNMAP_DMA_MINSZ);
  const flags = d.getUint32(4, true);
  if (d.getUint32(0, true) < UNMAP_DMA_MINSZ || flags & ~VFIO_DMA_UNMAP_FLAG_ALL) kerr(ERRNO.EINVAL);
  const ioas = compatIoas(ctx);
  const iova = d.getBigUint64(8, true);
  const size = d.getBigUint64(16, true);
  const progress = { unmapped: 0n };
  let failed: unknown = null;
  if (flags & VFIO_DMA_UNMAP_FLAG_ALL) {
    if (iova !== 0n || size !== 0n) kerr(ERRNO.EINVAL);
    ioas.iopt.unmapRange(0n, MAX, putAreaPages, progress);
  } else {
    if (ioas.iopt.disableLargePages) {
      const end = BigInt.asUintN(64, iova + size - 1n);
      ioas.iopt.cutIova(iova ? [end, iova - 1n] : [end]);
    }
    try {
      if (!size) kerr(ERRNO.EINVAL);
      if (iova + size - 1n > MAX) kerr(ERRNO.EOVERFLOW);
      ioas.iopt.unmapRange(iova, iova + size - 1n, putAreaPages, progress);
    } catch (e) {
      failed = e;
    }
  }
  // The kernel writes back the bytes unmapped even when the unmap itself failed part way; a
  // failed copy back (fault injection) answers EFAULT, the unmap stays done.
  if (shouldFail()) throw new KernelErrno(ERRNO.EFAULT);
  d.setBigUint64(16, progress.unmapped, true);
  if (failed) throw failed;
  return 0;
}

/** VFIO_IOMMU_GET_INFO with its capability chain: DMA_AVAIL, then IOVA_RANGE (the usable ranges). */
function getInfo(ctx: IommufdCtx, arg: Uint8Array | null): number {
  const d = view(arg, GET_INFO_MINSZ);
  const argsz = d.getUint32(0, true);
  if (argsz < GET_INFO_MINSZ) kerr(ERRNO.EINVAL);
  const minsz = Math.min(argsz, INFO_SIZE);
  const ioas = compatIoas(ctx);
  const put = (off: number, bytes: number, fill: (v: DataView) => void) => {
    if (off + bytes > arg!.length) kerr(ERRNO.EFAULT);
    fill(new DataView(arg!.buffer, arg!.byteOffset + off, bytes));
  };
  const header = (v: DataView, id: number) => {
    v.setUint16(0, id, true);
    v.setUint16(2, 1, true);
    v.setUint32(4, 0, true);
  };
  const dmaAvail = (off: number, avail: number): number => {
    if (avail >= 12) put(off, 12, (v) => (header(v, VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL), v.setUint32(8, 0xffff_ffff, true)));
    return 12;
  };
  const iovaRange = (off: number, avail: number): number => {
    const holes = ioas.iopt.usableRanges();
    holes.forEach((h, n) => {
      if (avail >= 16 + 16 * (n + 1)) put(off + 16 + 16 * n, 16, (v) => (v.setBigUint64(0, h.start, true), v.setBigUint64(8, h.last, true)));
    });
    const n = holes.length;
    if (avail >= 16 + 16 * n) put(off, 16, (v) => (header(v, VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE), v.setUint32(8, n, true), v.setUint32(12, 0, true)));
    return 16 + 16 * n;
  };
  let total = INFO_SIZE;
  let lastCap = -1;
  for (const fill of [dmaAvail, iovaRange]) {
    const size = argsz > total ? fill(total, argsz - total) : fill(-1, 0);
    if (lastCap >= 0 && argsz >= total) put(lastCap + 4, 4, (v) => v.setUint32(0, total, true));
    lastCap = total;
    total += Math.ceil(size / 8) * 8;
  }
  const info = new DataView(new ArrayBuffer(INFO_SIZE));
  info.setUint32(0, total, true);
  info.setUint32(4, VFIO_IOMMU_INFO_PGSIZES | VFIO_IOMMU_INFO_CAPS, true);
  info.setBigUint64(8, pageSizes(ioas), true);
  info.setUint32(16, argsz >= total ? INFO_SIZE : 0, true);
  if (shouldFail()) kerr(ERRNO.EFAULT); // copy_to_user (fault injection)
  if (minsz > arg!.length) kerr(ERRNO.EFAULT); // copy_to_user of min(argsz, sizeof(info)) bytes
  arg!.set(new Uint8Array(info.buffer, 0, minsz));
  return 0;
}

/**
 * iommufd_get_pagesizes: the page sizes every domain of the IOAS shares (all from PAGE_SIZE up
 * with none), sub-page sizes folded into PAGE_SIZE, at least the IOAS alignment.
 */
function pageSizes(ioas: IoasObject): bigint {
  let bitmap = MAX;
  for (const d of ioas.iopt.domains) bitmap &= d.pgsizeBitmap;
  const PAGE_MASK = ~BigInt(PAGE_SIZE - 1);
  if (bitmap & ~PAGE_MASK) bitmap = (bitmap & PAGE_MASK) | BigInt(PAGE_SIZE);
  return bitmap > ioas.iopt.iovaAlignment ? bitmap : ioas.iopt.iovaAlignment;
}
