/**
 * The device-side ioctls (hw_pagetable.c, device.c, viommu.c, eventq.c) as far as this slice
 * reaches: each validates its fields in the kernel's order and then looks up its device, HWPT or
 * vIOMMU. The sim machine has no devices yet (they arrive with the device/HWPT work), so that
 * lookup fails exactly as the kernel's does for an unknown id. FAULT_QUEUE_ALLOC needs no device
 * and is complete.
 */
import { ERRNO } from '../../ioasid/errors.js';
import { IOCTLS } from '../../ioasid/uapi.js';
import type { IommufdDevice } from './iommufd_device.js';

const IOMMU_HW_INFO_FLAG_INPUT_TYPE = 1;
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

const I = IOCTLS.GET_HW_INFO.struct.off;
/** IOMMU_GET_HW_INFO (iommufd_get_hw_info) */
function getHwInfo(ctx: IommufdCtx, u: Ucmd): void {
  const flags = u.u32(I.flags!);
  if (flags & ~IOMMU_HW_INFO_FLAG_INPUT_TYPE) kerr(ERRNO.EOPNOTSUPP);
  for (let i = 0; i < 3; i++) if (u.k.getUint8(I.__reserved! + i)) kerr(ERRNO.EOPNOTSUPP);
  const inType = flags & IOMMU_HW_INFO_FLAG_INPUT_TYPE ? u.u32(I.out_data_type!) : 0;
  const idev = ctx.get<IommufdDevice>(u.u32(I.dev_id!), 'DEVICE');
  const ops = idev.dev.ops;
  const [type, data] = ops.hwInfo(inType);
  const len = u.u32(I.data_len!);
  const uptr = Number(u.u64(I.data_uptr!));
  const copy = Math.min(len, data.length);
  if (len) {
    const out = new Uint8Array(len);
    out.set(data.subarray(0, copy));
    ctx.proc.mm.write(uptr, out); // the tail past the driver's data is zeroed
  }
  u.setU32(I.out_data_type!, type);
  u.setU32(I.data_len!, data.length);
  let caps = 0n;
  if (ops.capable('dirty-tracking')) caps |= 1n; // IOMMU_HW_CAP_DIRTY_TRACKING
  if (!ops.capable('pci-ats')) caps |= 1n << 3n; // IOMMU_HW_CAP_PCI_ATS_NOT_SUPPORTED
  u.setU64(I.out_capabilities!, caps);
  u.k.setUint8(I.out_max_pasid_log2!, ops.maxPasidLog2);
  u.respond();
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
  IOMMU_GET_HW_INFO: getHwInfo,
  IOMMU_FAULT_QUEUE_ALLOC: faultQueueAlloc,
  IOMMU_VIOMMU_ALLOC: viommuAlloc,
  IOMMU_VDEVICE_ALLOC: vdeviceAlloc,
  IOMMU_VEVENTQ_ALLOC: veventqAlloc,
  IOMMU_HW_QUEUE_ALLOC: hwQueueAlloc,
  IOMMU_IOAS_NOIOMMU_GET_PA: noiommuGetPa,
};
