/**
 * vIOMMU objects (viommu.c): IOMMU_VIOMMU_ALLOC on a NEST_PARENT paging HWPT, with the driver's
 * viommu_init taking optional driver data (the mock's loopback value and its two mmap-able
 * pages, mmap.ts), nested HWPTs allocated on a vIOMMU, vDEVICEs (one per device, unique virt_id
 * per vIOMMU, left as a tombstone when their device goes), vIOMMU cache invalidation through
 * IOMMU_HWPT_INVALIDATE, vEVENTQs (eventq.ts) and HW queues (hw_queue.ts).
 */
import { ERRNO } from '../../../ioasid/errors.js';
import { IOCTLS, IOMMU_HWPT_ALLOC_PASID, IOMMU_HWPT_FAULT_ID_VALID } from '../../../ioasid/uapi.js';
import { kerr } from '../kernel/errno.js';
import { HwptNested, userData, type HwptPaging, type UserData } from './hw_pagetable.js';
import type { HwQueue } from './hw_queue.js';
import type { IommuDriverOps, SimDevice, ViommuOps } from '../iommu/iommu.js';

export type { ViommuOps };
import type { VeventQueue } from './eventq.js';
import type { IommufdDevice } from './device.js';
import type { IommufdCtx, SimObject } from './main.js';
import type { Ucmd } from './ucmd.js';

export class Viommu implements SimObject {
  id = 0;
  /** virt_id -> vDEVICE (viommu->vdevs). */
  readonly vdevs = new Map<bigint, Vdevice>();
  /** Its event queues, one per type. */
  readonly veventqs: VeventQueue[] = [];
  /** viommu->ops: set once the driver's viommu_init succeeded. */
  viommuOps: ViommuOps | null = null;
  constructor(
    readonly ctx: IommufdCtx,
    readonly type: number,
    readonly hwpt: HwptPaging,
    /** The physical IOMMU instance it sits on (iommu_dev): devices of another one are refused. */
    readonly iommuDev: object,
    /** The IOMMU driver that made it (its viommu ops). */
    readonly ops: IommuDriverOps,
  ) {}

  /** iommufd_viommu_destroy */
  destroy(): void {
    this.viommuOps?.destroy?.();
    this.ctx.ref(this.hwpt.id, -1);
  }

  /** iommufd_viommu_report_event: EOPNOTSUPP without a queue of that type. */
  reportEvent(type: number, data: Uint8Array): void {
    const q = this.veventqs.find((x) => x.type === type);
    if (!q) kerr(ERRNO.EOPNOTSUPP);
    q.report(data);
  }

  /** iommufd_viommu_find_dev */
  findDev(virtId: bigint): SimDevice | null {
    return this.vdevs.get(virtId)?.idev.dev ?? null;
  }

  /** iommufd_viommu_get_vdev_id: ENOENT while the device has no vDEVICE here. */
  vdevIdOf(dev: SimDevice): bigint {
    for (const [virtId, v] of this.vdevs) if (v.idev.dev === dev) return virtId;
    return kerr(ERRNO.ENOENT);
  }
}

/** A vDEVICE: a device's identity (virt_id, e.g. a guest's stream/device id) in a vIOMMU. */
export class Vdevice implements SimObject {
  id = 0;
  constructor(
    readonly ctx: IommufdCtx,
    readonly viommu: Viommu,
    readonly idev: IommufdDevice,
    readonly virtId: bigint,
  ) {}

  /** iommufd_vdevice_abort / destroy */
  destroy(): void {
    if (this.viommu.vdevs.get(this.virtId) === this) this.viommu.vdevs.delete(this.virtId);
    this.ctx.ref(this.viommu.id, -1);
    if (this.idev.vdev === this) this.idev.vdev = null;
  }
}

const D = IOCTLS.VDEVICE_ALLOC.struct.off;
/** IOMMU_VDEVICE_ALLOC (iommufd_vdevice_alloc_ioctl) */
function vdeviceAlloc(ctx: IommufdCtx, u: Ucmd): void {
  const virtId = u.u64(D.virt_id!);
  const viommu = ctx.get<Viommu>(u.u32(D.viommu_id!), 'VIOMMU');
  const idev = ctx.get<IommufdDevice>(u.u32(D.dev_id!), 'DEVICE');
  if (viommu.iommuDev !== idev.dev.ops.owner) kerr(ERRNO.EINVAL);
  if (idev.vdev) kerr(ERRNO.EEXIST);
  if (viommu.vdevs.has(virtId)) kerr(ERRNO.EEXIST);
  const vdev = new Vdevice(ctx, viommu, idev, virtId);
  vdev.id = ctx.add('VDEVICE', vdev);
  ctx.ref(viommu.id, 1);
  idev.vdev = vdev;
  viommu.vdevs.set(virtId, vdev);
  u.setU32(D.out_vdevice_id!, vdev.id);
  ctx.abortOnError(vdev.id, () => u.respond());
}

const A = IOCTLS.VIOMMU_ALLOC.struct.off;
/** IOMMU_VIOMMU_ALLOC (iommufd_viommu_alloc_ioctl) */
function viommuAlloc(ctx: IommufdCtx, u: Ucmd): void {
  const type = u.u32(A.type!);
  if (u.u32(A.flags!) || type === 0) kerr(ERRNO.EOPNOTSUPP);
  const idev = ctx.get<IommufdDevice>(u.u32(A.dev_id!), 'DEVICE');
  const ops = idev.dev.ops;
  const init = ops.viommuInit;
  if (!init || !ops.viommuTypes?.includes(type)) kerr(ERRNO.EOPNOTSUPP); // get_viommu_size() == 0
  const hwpt = ctx.get<HwptPaging>(u.u32(A.hwpt_id!), 'HWPT_PAGING');
  if (!hwpt.nestParent) kerr(ERRNO.EINVAL);
  const len = u.u32(A.data_len!);
  const data = len ? userData(ctx, type, u.u64(A.data_uptr!), len) : null;
  const viommu = new Viommu(ctx, type, hwpt, ops.owner, ops);
  viommu.id = ctx.add('VIOMMU', viommu);
  ctx.ref(hwpt.id, 1);
  ctx.abortOnError(viommu.id, () => {
    viommu.viommuOps = init(viommu, hwpt.domain, data);
    u.setU32(A.out_viommu_id!, viommu.id);
    u.respond();
  });
}

/** iommufd_viommu_alloc_hwpt_nested: HWPT_ALLOC with a vIOMMU as pt_id. */
export function viommuNestedAlloc(idev: IommufdDevice, viommu: Viommu, flags: number, data: UserData): HwptNested {
  const ctx = idev.ctx;
  if (viommu.iommuDev !== idev.dev.ops.owner) kerr(ERRNO.EINVAL);
  if (flags & ~(IOMMU_HWPT_FAULT_ID_VALID | IOMMU_HWPT_ALLOC_PASID)) kerr(ERRNO.EOPNOTSUPP);
  if (!data.len) kerr(ERRNO.EOPNOTSUPP);
  const alloc = idev.dev.ops.allocNested;
  if (!alloc) kerr(ERRNO.EOPNOTSUPP);
  const hwpt = new HwptNested(ctx, viommu.hwpt, !!(flags & IOMMU_HWPT_ALLOC_PASID), viommu);
  hwpt.id = ctx.add('HWPT_NESTED', hwpt);
  ctx.ref(viommu.id, 1);
  try {
    hwpt.domain = alloc(viommu.hwpt.domain, flags & ~IOMMU_HWPT_FAULT_ID_VALID, data, viommu);
  } catch (e) {
    ctx.remove(hwpt.id);
    throw e;
  }
  return hwpt;
}

export const viommuHandlers = {
  IOMMU_VIOMMU_ALLOC: viommuAlloc,
  IOMMU_VDEVICE_ALLOC: vdeviceAlloc,
};

