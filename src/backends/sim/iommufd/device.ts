/**
 * iommufd_device and attachment (device.c): binding claims DMA ownership of the device's whole
 * isolation group for one iommufd; attaching connects the group (or one PASID) to a HWPT, picking
 * or making an automatic paging HWPT when given an IOAS; replace swaps atomically; detach returns
 * the device to blocked DMA. Reserved regions of each attached device narrow the IOAS.
 *
 * The order of checks and errnos follows the kernel: EBUSY for a device already attached at that
 * PASID, EINVAL for a group already on another HWPT or an incompatible domain (the auto-domain
 * search treats EINVAL as "try the next"), EPERM for a group owned by someone else.
 */
import { ERRNO } from '../../../ioasid/errors.js';
import { IOMMU_HWPT_ALLOC_DIRTY_TRACKING, IOMMU_HWPT_ALLOC_NEST_PARENT, IOMMU_HWPT_ALLOC_PASID, IOMMU_HWPT_FAULT_ID_VALID } from '../../../ioasid/uapi.js';
import {
  iommuAttachGroup, iommuDetachGroup, iommuDeviceClaimDmaOwner, iommuDriverAttach, iommuReleaseDmaOwner,
  type BoundDevice, type SimDevice, type SimGroup,
} from '../iommu/iommu.js';
import { KernelErrno, kerr } from '../kernel/errno.js';
import { shouldFailSlab } from '../kernel/fault_inject.js';
import { HwptNested, HwptPaging, type Hwpt, type UserData } from './hw_pagetable.js';
import type { IoasObject } from './ioas.js';
import type { IommufdCtx, SimObject } from './main.js';
import type { Vdevice } from './viommu.js';

/** IOMMU_NO_PASID: the RID itself. */
export const NO_PASID = 0;

interface Attach {
  hwpt: Hwpt | null;
  /** The current attach handle: faults delivered through it are answered when it goes. */
  handle: object;
  readonly devices: Map<number, IommufdDevice>;
}

/** iommufd_group: this context's view of one isolation group (shared by its bound devices). */
export class IommufdGroup {
  refs = 0;
  readonly pasidAttach = new Map<number, Attach>();
  constructor(readonly group: SimGroup) {}
}

export class IommufdDevice implements SimObject {
  id = 0;
  igroup: IommufdGroup | null = null;
  enforceCc = false;
  /** Its vDEVICE in a vIOMMU, if any (idev->vdev). */
  vdev: Vdevice | null = null;

  constructor(
    readonly ctx: IommufdCtx,
    readonly dev: SimDevice,
    /** A VFIO device holds the context (iommufd_ctx_get); the selftest's mock device does not. */
    readonly holdsCtx: boolean,
  ) {}

  /** iommufd_device_pre_destroy + iommufd_device_destroy: a vDEVICE still there becomes a tombstone. */
  destroy(): void {
    if (this.vdev) this.ctx.tombstone(this.vdev.id);
    const g = this.igroup;
    if (!g) return;
    iommuReleaseDmaOwner(this.dev.group);
    putGroup(this.ctx, g);
    this.igroup = null;
    if (this.holdsCtx) this.ctx.release();
  }

  get group(): IommufdGroup {
    return this.igroup!;
  }

  /** The HWPT attached at a PASID (iommufd_device_is_attached + attach->hwpt). */
  attachedAt(pasid: number): Hwpt | null {
    const a = this.group.pasidAttach.get(pasid);
    return a?.devices.has(this.id) ? a.hwpt : null;
  }
}

// ---- groups and DMA ownership ----------------------------------------------------------------

function getGroup(ctx: IommufdCtx, group: SimGroup): IommufdGroup {
  let g = ctx.igroups.get(group.id);
  if (!g) {
    if (shouldFailSlab()) kerr(ERRNO.ENOMEM); // iommufd_alloc_group (fault injection)
    ctx.igroups.set(group.id, (g = new IommufdGroup(group)));
  }
  g.refs++;
  return g;
}

function putGroup(ctx: IommufdCtx, g: IommufdGroup): void {
  if (--g.refs === 0) ctx.igroups.delete(g.group.id);
}

// ---- bind / unbind -----------------------------------------------------------------------------

/**
 * find_fault_handler (io-pgfault.c): the attachment a page request lands on: the PASID's, else
 * (drivers with a user-managed PASID table) the RID's nested domain; only a HWPT with a fault
 * queue takes it.
 */
export function faultTarget(idev: IommufdDevice, pasid: number | null, userPasidTable: boolean): { hwpt: Hwpt; handle: object } | null {
  const g = idev.group;
  let a = pasid === null ? g.pasidAttach.get(NO_PASID) : g.pasidAttach.get(pasid);
  if (pasid !== null && !a?.hwpt) {
    const rid = g.pasidAttach.get(NO_PASID);
    a = userPasidTable && rid?.hwpt instanceof HwptNested ? rid : undefined;
  }
  if (!a?.hwpt || !a.hwpt.fault) return null;
  return { hwpt: a.hwpt, handle: a.handle };
}

/** iommufd_device_bind */
export function deviceBind(ctx: IommufdCtx, dev: SimDevice, holdsCtx: boolean): IommufdDevice {
  const idev = new IommufdDevice(ctx, dev, false);
  idev.id = ctx.add('DEVICE', idev);
  try {
    if (!dev.ops.capable('cache-coherency')) kerr(ERRNO.EINVAL);
    const g = getGroup(ctx, dev.group);
    try {
      iommuDeviceClaimDmaOwner(dev.group, ctx);
    } catch (e) {
      putGroup(ctx, g);
      throw e;
    }
    idev.igroup = g;
    idev.enforceCc = dev.ops.capable('enforce-cache-coherency');
  } catch (e) {
    ctx.remove(idev.id);
    throw e;
  }
  if (holdsCtx) {
    ctx.hold();
    (idev as { holdsCtx: boolean }).holdsCtx = true;
  }
  ctx.ref(idev.id, 1); // the binding driver is a user until unbind
  return idev;
}

/** iommufd_device_unbind: the driver's reference goes and the object with it. */
export function deviceUnbind(idev: IommufdDevice): void {
  for (const pasid of [...idev.group.pasidAttach.keys()]) if (idev.attachedAt(pasid)) deviceDetach(idev, pasid);
  idev.ctx.ref(idev.id, -1);
  idev.ctx.remove(idev.id);
}

// ---- attach / replace / detach -----------------------------------------------------------------

type AttachFn = (idev: IommufdDevice, pasid: number, hwpt: Hwpt) => Hwpt | null;

/** iommufd_device_attach: returns the pt_id to hand back (the HWPT actually attached). */
export function deviceAttach(idev: IommufdDevice, pasid: number, ptId: number): number {
  const out = changePt(idev, pasid, ptId, doAttach);
  idev.ctx.ref(idev.id, 1);
  return out;
}

/** iommufd_device_replace */
export function deviceReplace(idev: IommufdDevice, pasid: number, ptId: number): number {
  return changePt(idev, pasid, ptId, doReplace);
}

/** iommufd_device_detach: nothing attached is not an error. */
export function deviceDetach(idev: IommufdDevice, pasid: number): void {
  const hwpt = hwptDetach(idev, pasid);
  if (!hwpt) return;
  idev.ctx.ref(idev.id, -1);
}

function changePt(idev: IommufdDevice, pasid: number, ptId: number, fn: AttachFn): number {
  const ctx = idev.ctx;
  const e = ctx.entry(ptId);
  if (!e) kerr(ERRNO.ENOENT);
  let destroy: Hwpt | null;
  let out = ptId;
  if (e.type === 'HWPT_PAGING' || e.type === 'HWPT_NESTED') {
    destroy = fn(idev, pasid, e.obj as Hwpt);
  } else if (e.type === 'IOAS') {
    [out, destroy] = autoGetDomain(idev, pasid, e.obj as IoasObject, fn);
  } else {
    return kerr(ERRNO.EINVAL);
  }
  if (destroy) hwptPut(ctx, destroy);
  return out;
}

/**
 * iommufd_device_auto_get_domain: reuse any automatic paging HWPT of the IOAS that accepts the
 * device (EINVAL = incompatible, try the next), else make one.
 */
function autoGetDomain(idev: IommufdDevice, pasid: number, ioas: IoasObject, fn: AttachFn): [number, Hwpt | null] {
  for (const hwpt of [...ioas.hwpts]) {
    if (!hwpt.autoDomain) continue;
    try {
      return [hwpt.id, fn(idev, pasid, hwpt)];
    } catch (e) {
      if (e instanceof KernelErrno && e.errno === ERRNO.EINVAL) continue;
      throw e;
    }
  }
  const immediate = fn === doAttach;
  const hwpt = hwptPagingAlloc(idev, ioas, pasid, 0, immediate, null);
  let destroy: Hwpt | null = null;
  if (!immediate) {
    try {
      destroy = fn(idev, pasid, hwpt);
    } catch (e) {
      abortHwpt(hwpt);
      throw e;
    }
  }
  hwpt.autoDomain = true;
  return [hwpt.id, destroy];
}

function doAttach(idev: IommufdDevice, pasid: number, hwpt: Hwpt): null {
  hwptAttach(hwpt, idev, pasid);
  return null;
}

/** iommufd_hw_pagetable_attach */
export function hwptAttach(hwpt: Hwpt, idev: IommufdDevice, pasid: number): void {
  const g = idev.group;
  const existing = g.pasidAttach.get(pasid);
  if (!existing && shouldFailSlab()) kerr(ERRNO.ENOMEM); // the iommufd_attach (fault injection)
  const attach: Attach = existing ?? { hwpt: null, handle: {}, devices: new Map() };
  if (attach.devices.has(idev.id)) kerr(ERRNO.EBUSY);
  if (attach.hwpt && attach.hwpt !== hwpt) kerr(ERRNO.EINVAL);
  const paging = hwpt.paging;
  const attachResv = paging !== null && pasid === NO_PASID;
  if (attachResv) enforceResvRegions(paging, idev);
  if (!attach.hwpt) {
    try {
      attachDevice(hwpt, idev, pasid);
    } catch (e) {
      if (attachResv) paging.ioas.iopt.removeReserved(idev);
      throw e;
    }
    attach.hwpt = hwpt;
    g.pasidAttach.set(pasid, attach);
  }
  idev.ctx.ref(hwpt.id, 1);
  attach.devices.set(idev.id, idev);
}

/** iommufd_hw_pagetable_detach: returns the HWPT that was attached (its reference dropped), or null. */
function hwptDetach(idev: IommufdDevice, pasid: number): Hwpt | null {
  const g = idev.group;
  const attach = g.pasidAttach.get(pasid);
  if (!attach || !attach.devices.has(idev.id)) return null;
  const hwpt = attach.hwpt!;
  attach.devices.delete(idev.id);
  if (!attach.devices.size) {
    detachDevice(idev, pasid);
    g.pasidAttach.delete(pasid);
    hwpt.fault?.autoRespond(attach.handle);
  }
  const paging = hwpt.paging;
  if (paging && pasid === NO_PASID) paging.ioas.iopt.removeReserved(idev);
  hwptPut(idev.ctx, hwpt);
  return hwpt;
}

/** iommufd_device_do_replace: returns the old HWPT for the caller to put. */
function doReplace(idev: IommufdDevice, pasid: number, hwpt: Hwpt): Hwpt | null {
  const g = idev.group;
  const attach = g.pasidAttach.get(pasid);
  if (!attach) kerr(ERRNO.EINVAL);
  const old = attach.hwpt!;
  if (!attach.devices.has(idev.id)) kerr(ERRNO.EINVAL);
  if (hwpt === old) return null;
  const paging = hwpt.paging;
  const oldPaging = old.paging;
  const attachResv = paging !== null && pasid === NO_PASID;
  const newIoas = attachResv && (!oldPaging || paging.ioas !== oldPaging.ioas);
  if (newIoas) {
    const done: IommufdDevice[] = [];
    try {
      for (const d of attach.devices.values()) {
        enforceResvRegions(paging, d);
        done.push(d);
      }
    } catch (e) {
      for (const d of done) paging.ioas.iopt.removeReserved(d);
      throw e;
    }
  }
  try {
    attachDevice(hwpt, idev, pasid); // iommu_replace_group_handle: the new domain goes over the old
  } catch (e) {
    if (newIoas) for (const d of attach.devices.values()) paging!.ioas.iopt.removeReserved(d);
    throw e;
  }
  if (oldPaging && pasid === NO_PASID && (!paging || paging.ioas !== oldPaging.ioas)) {
    for (const d of attach.devices.values()) oldPaging.ioas.iopt.removeReserved(d);
  }
  attach.hwpt = hwpt;
  const oldHandle = attach.handle;
  attach.handle = {};
  old.fault?.autoRespond(oldHandle);
  // The device_array's references move to the new HWPT; one stays on the old for the caller to put.
  const n = attach.devices.size;
  for (let i = 0; i < n; i++) idev.ctx.ref(hwpt.id, 1);
  for (let i = 1; i < n; i++) idev.ctx.ref(old.id, -1);
  return old;
}

/** iopt_table_enforce_dev_resv_regions, owner = the device. */
function enforceResvRegions(paging: HwptPaging, idev: IommufdDevice): void {
  const iopt = paging.ioas.iopt;
  try {
    for (const r of idev.dev.ops.reservedRegions()) {
      if (r.type === 'direct-relaxable') continue;
      iopt.reserve(r.start, r.last, idev);
    }
  } catch (e) {
    iopt.removeReserved(idev);
    throw e;
  }
}

// ---- the IOMMU core below iommufd: domains onto the hardware ----------------------------------

/** iommufd_hwpt_pasid_compat */
function pasidCompat(hwpt: Hwpt, idev: IommufdDevice, pasid: number): void {
  const g = idev.group;
  if (pasid === NO_PASID) {
    if (!hwpt.pasidCompat) for (const p of g.pasidAttach.keys()) if (p !== NO_PASID) kerr(ERRNO.EINVAL);
  } else {
    if (!hwpt.pasidCompat) kerr(ERRNO.EINVAL);
    const rid = g.pasidAttach.get(NO_PASID);
    if (rid?.hwpt && !rid.hwpt.pasidCompat) kerr(ERRNO.EINVAL);
  }
}

/** iommu_attach_device_pasid's check: a PASID beyond any PASID-capable member's width is EINVAL. */
function checkPasidWidth(group: SimGroup, pasid: number): void {
  for (const d of group.devices) {
    const log2 = d.ops.maxPasidLog2;
    const max = d.ops.maxPasids ?? (log2 > 0 ? 2 ** log2 : 0);
    if (max > 0 && pasid >= max) kerr(ERRNO.EINVAL);
  }
}

/** iommufd_hwpt_attach_device: the whole group on the RID, or one device on a PASID. */
function attachDevice(hwpt: Hwpt, idev: IommufdDevice, pasid: number): void {
  pasidCompat(hwpt, idev, pasid);
  if (shouldFailSlab()) kerr(ERRNO.ENOMEM); // the attach handle (fault injection)
  const domain = hwpt.domain;
  if (pasid === NO_PASID) {
    iommuAttachGroup(domain, idev.group.group);
  } else {
    if (domain.owner !== idev.dev.ops.owner) kerr(ERRNO.EINVAL);
    checkPasidWidth(idev.group.group, pasid);
    iommuDriverAttach(idev.dev, domain, pasid);
    idev.dev.iommu.setTranslation(idev.dev.rid, pasid, domain);
  }
}

function detachDevice(idev: IommufdDevice, pasid: number): void {
  if (pasid === NO_PASID) {
    iommuDetachGroup(idev.group.group);
  } else {
    idev.dev.ops.blockPasid?.(pasid);
    idev.dev.iommu.setTranslation(idev.dev.rid, pasid, null);
  }
}

// ---- HWPT allocation and lifetime (hw_pagetable.c's halves that need devices) ----------------

const PAGING_FLAGS = IOMMU_HWPT_ALLOC_NEST_PARENT | IOMMU_HWPT_ALLOC_DIRTY_TRACKING | IOMMU_HWPT_FAULT_ID_VALID | IOMMU_HWPT_ALLOC_PASID;

/** iommufd_hwpt_paging_alloc: a new paging HWPT on an IOAS, filled, optionally attached at once. */
export function hwptPagingAlloc(
  idev: IommufdDevice, ioas: IoasObject, pasid: number, flags: number, immediate: boolean, data: UserData | null,
): HwptPaging {
  const ctx = idev.ctx;
  const ops = idev.dev.ops;
  if (flags & ~PAGING_FLAGS) kerr(ERRNO.EOPNOTSUPP);
  if (flags & IOMMU_HWPT_ALLOC_DIRTY_TRACKING && !ops.capable('dirty-tracking')) kerr(ERRNO.EOPNOTSUPP);
  if (flags & IOMMU_HWPT_FAULT_ID_VALID && flags & IOMMU_HWPT_ALLOC_NEST_PARENT) kerr(ERRNO.EOPNOTSUPP);
  const hwpt = new HwptPaging(ctx, ioas, !!(flags & IOMMU_HWPT_ALLOC_NEST_PARENT), !!(flags & IOMMU_HWPT_ALLOC_PASID));
  hwpt.id = ctx.add('HWPT_PAGING', hwpt);
  ctx.ref(ioas.id, 1);
  try {
    const domain = ops.allocPaging(flags & ~IOMMU_HWPT_FAULT_ID_VALID, data);
    hwpt.domain = domain;
    if (idev.enforceCc) {
      if (!domain.canEnforceCc) kerr(ERRNO.EINVAL);
      hwpt.enforceCc = true;
    }
    if (immediate) hwptAttach(hwpt, idev, pasid);
    try {
      ioas.iopt.addDomain(domain);
    } catch (e) {
      if (immediate) hwptDetach(idev, pasid); // a plain put: the HWPT is not automatic yet
      throw e;
    }
    ioas.hwpts.push(hwpt);
  } catch (e) {
    abortHwpt(hwpt);
    throw e;
  }
  return hwpt;
}

/** iommufd_hwpt_nested_alloc */
export function hwptNestedAlloc(idev: IommufdDevice, parent: HwptPaging, flags: number, data: UserData): HwptNested {
  const ctx = idev.ctx;
  const ops = idev.dev.ops;
  if (flags & ~(IOMMU_HWPT_FAULT_ID_VALID | IOMMU_HWPT_ALLOC_PASID) || !data.len || !ops.allocNested) kerr(ERRNO.EOPNOTSUPP);
  if (parent.autoDomain || !parent.nestParent || parent.domain.owner !== ops.owner) kerr(ERRNO.EINVAL);
  const hwpt = new HwptNested(ctx, parent, !!(flags & IOMMU_HWPT_ALLOC_PASID));
  hwpt.id = ctx.add('HWPT_NESTED', hwpt);
  ctx.ref(parent.id, 1);
  try {
    hwpt.domain = ops.allocNested(parent.domain, flags & ~IOMMU_HWPT_FAULT_ID_VALID, data);
  } catch (e) {
    abortHwpt(hwpt);
    throw e;
  }
  return hwpt;
}

/** iommufd_object_abort_and_destroy */
export function abortHwpt(hwpt: Hwpt): void {
  hwpt.ctx.remove(hwpt.id);
}

/** iommufd_hw_pagetable_put: an automatic paging HWPT goes with its last user. */
export function hwptPut(ctx: IommufdCtx, hwpt: Hwpt): void {
  ctx.ref(hwpt.id, -1);
  if (hwpt instanceof HwptPaging && hwpt.autoDomain && ctx.entry(hwpt.id)?.users === 1) ctx.remove(hwpt.id);
}

// ---- the VFIO device file's view ------------------------------------------------------------------

/** What a VFIO device file holds after VFIO_DEVICE_BIND_IOMMUFD. */
export function bindForVfio(ctx: IommufdCtx, dev: SimDevice): BoundDevice {
  const idev = deviceBind(ctx, dev, true);
  return {
    devId: idev.id,
    attach(ptId: number, pasid = NO_PASID): number {
      return idev.attachedAt(pasid) ? deviceReplace(idev, pasid, ptId) : deviceAttach(idev, pasid, ptId);
    },
    detach(pasid = NO_PASID): void {
      deviceDetach(idev, pasid);
    },
    unbind(): void {
      deviceUnbind(idev);
    },
  };
}
