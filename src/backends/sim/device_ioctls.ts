/**
 * The device-side ioctls (hw_pagetable.c, device.c, viommu.c, eventq.c) as far as this slice
 * reaches: each validates its fields in the kernel's order and then looks up its device, HWPT or
 * vIOMMU. The sim machine has no devices yet (they arrive with the device/HWPT work), so that
 * lookup fails exactly as the kernel's does for an unknown id. FAULT_QUEUE_ALLOC needs no device
 * and is complete.
 */
import { ERRNO } from '../../ioasid/errors.js';
import { IOCTLS } from '../../ioasid/uapi.js';
import { kerr } from './errno.js';
import type { Handler, IommufdCtx, SimObject } from './main.js';
import type { Ucmd } from './ucmd.js';

/**
 * Lookup of a DEVICE / HWPT / VIOMMU id: none can exist yet, and any other object (an IOAS) is
 * the wrong type, which the kernel's lookup also reports as ENOENT.
 */
function lookup(_id: number): never {
  return kerr(ERRNO.ENOENT);
}

const H = IOCTLS.HWPT_ALLOC.struct.off;
function hwptAlloc(ctx: IommufdCtx, u: Ucmd): void {
  if (u.u32(H.__reserved!)) kerr(ERRNO.EOPNOTSUPP);
  const type = u.u32(H.data_type!);
  const len = u.u32(H.data_len!);
  if ((type === 0 && len) || (type !== 0 && !len)) kerr(ERRNO.EINVAL);
  lookup(u.u32(H.dev_id!));
}

const I = IOCTLS.GET_HW_INFO.struct.off;
function getHwInfo(ctx: IommufdCtx, u: Ucmd): void {
  if (u.u32(I.flags!) & ~1) kerr(ERRNO.EOPNOTSUPP);
  for (let i = 0; i < 3; i++) if (u.k.getUint8(I.__reserved! + i)) kerr(ERRNO.EOPNOTSUPP);
  lookup(u.u32(I.dev_id!));
}

const S = IOCTLS.HWPT_SET_DIRTY_TRACKING.struct.off;
function setDirtyTracking(ctx: IommufdCtx, u: Ucmd): void {
  if (u.u32(S.flags!) & ~1) kerr(ERRNO.EOPNOTSUPP);
  lookup(u.u32(S.hwpt_id!));
}

const G = IOCTLS.HWPT_GET_DIRTY_BITMAP.struct.off;
function getDirtyBitmap(ctx: IommufdCtx, u: Ucmd): void {
  if (u.u32(G.flags!) & ~1 || u.u32(G.__reserved!)) kerr(ERRNO.EOPNOTSUPP);
  lookup(u.u32(G.hwpt_id!));
}

const V = IOCTLS.HWPT_INVALIDATE.struct.off;
function hwptInvalidate(ctx: IommufdCtx, u: Ucmd): void {
  try {
    if (u.u32(V.__reserved!)) kerr(ERRNO.EOPNOTSUPP);
    const num = u.u32(V.entry_num!);
    const len = u.u32(V.entry_len!);
    if (num && (!u.u64(V.data_uptr!) || !len || len > 4096 || num > 1 << 19)) kerr(ERRNO.EINVAL);
    const id = u.u32(V.hwpt_id!);
    // An IOAS (the only kind of object that can exist here) is neither nested HWPT nor vIOMMU.
    if (ctx.entry(id)) kerr(ERRNO.EINVAL);
    lookup(id);
  } finally {
    // entry_num is always written back with the number handled.
    u.setU32(V.entry_num!, 0);
    u.respond();
  }
}

const Q = IOCTLS.FAULT_QUEUE_ALLOC.struct.off;
class FaultObject implements SimObject {
  destroy(): void {}
}
function faultQueueAlloc(ctx: IommufdCtx, u: Ucmd): void {
  if (u.u32(Q.flags!)) kerr(ERRNO.EOPNOTSUPP);
  const fault = new FaultObject();
  const id = ctx.add('FAULT', fault);
  ctx.hold();
  const fd = ctx.proc.installFd({ kind: 'fault', release: () => ctx.release() });
  u.setU32(Q.out_fault_id!, id);
  u.setU32(Q.out_fault_fd!, fd);
  u.respond();
}

const A = IOCTLS.VIOMMU_ALLOC.struct.off;
function viommuAlloc(ctx: IommufdCtx, u: Ucmd): void {
  if (u.u32(A.flags!) || u.u32(A.type!) === 0) kerr(ERRNO.EOPNOTSUPP);
  lookup(u.u32(A.dev_id!));
}

const D = IOCTLS.VDEVICE_ALLOC.struct.off;
function vdeviceAlloc(ctx: IommufdCtx, u: Ucmd): void {
  lookup(u.u32(D.viommu_id!));
}

const E = IOCTLS.VEVENTQ_ALLOC.struct.off;
function veventqAlloc(ctx: IommufdCtx, u: Ucmd): void {
  if (u.u32(E.flags!) || u.u32(E.__reserved!) || u.u32(E.type!) === 0) kerr(ERRNO.EOPNOTSUPP);
  const depth = u.u32(E.veventq_depth!);
  if (!depth || depth > 1 << 19) kerr(ERRNO.EINVAL);
  lookup(u.u32(E.viommu_id!));
}

const W = IOCTLS.HW_QUEUE_ALLOC.struct.off;
function hwQueueAlloc(ctx: IommufdCtx, u: Ucmd): void {
  if (u.u32(W.flags!) || u.u32(W.type!) === 0) kerr(ERRNO.EOPNOTSUPP);
  const length = u.u64(W.length!);
  if (!length) kerr(ERRNO.EINVAL);
  if (u.u64(W.nesting_parent_iova!) + length - 1n > 0xffff_ffff_ffff_ffffn) kerr(ERRNO.EOVERFLOW);
  lookup(u.u32(W.viommu_id!));
}

/** CONFIG_IOMMUFD_NOIOMMU is off in the test kernel: the stub answers EOPNOTSUPP. */
function noiommuGetPa(): void {
  kerr(ERRNO.EOPNOTSUPP);
}

export const deviceHandlers: Record<string, Handler> = {
  IOMMU_HWPT_ALLOC: hwptAlloc,
  IOMMU_GET_HW_INFO: getHwInfo,
  IOMMU_HWPT_SET_DIRTY_TRACKING: setDirtyTracking,
  IOMMU_HWPT_GET_DIRTY_BITMAP: getDirtyBitmap,
  IOMMU_HWPT_INVALIDATE: hwptInvalidate,
  IOMMU_FAULT_QUEUE_ALLOC: faultQueueAlloc,
  IOMMU_VIOMMU_ALLOC: viommuAlloc,
  IOMMU_VDEVICE_ALLOC: vdeviceAlloc,
  IOMMU_VEVENTQ_ALLOC: veventqAlloc,
  IOMMU_HW_QUEUE_ALLOC: hwQueueAlloc,
  IOMMU_IOAS_NOIOMMU_GET_PA: noiommuGetPa,
};
