/**
 * Device-side ioctls that have no object kind of their own: IOMMU_GET_HW_INFO (device.c) and the
 * NOIOMMU stub. Each validates its fields in the kernel's order first.
 */
import { ERRNO } from '../../../ioasid/errors.js';
import { IOCTLS } from '../../../ioasid/uapi.js';
import { kerr } from '../kernel/errno.js';
import type { IommufdDevice } from './device.js';
import type { Handler, IommufdCtx } from './main.js';
import type { Ucmd } from './ucmd.js';

const IOMMU_HW_INFO_FLAG_INPUT_TYPE = 1;

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
    ctx.proc.mm.copyToUser(uptr, out); // the tail past the driver's data is zeroed
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

/** CONFIG_IOMMUFD_NOIOMMU is off in the test kernel: the stub answers EOPNOTSUPP. */
function noiommuGetPa(): void {
  kerr(ERRNO.EOPNOTSUPP);
}

export const deviceHandlers: Record<string, Handler> = {
  IOMMU_GET_HW_INFO: getHwInfo,
  IOMMU_IOAS_NOIOMMU_GET_PA: noiommuGetPa,
};
