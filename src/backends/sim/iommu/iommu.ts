/**
 * The IOMMU core's API (include/linux/iommu.h and the driver-facing part of
 * include/linux/iommufd.h): what an IOMMU driver offers for a device (`IommuDriverOps`, struct
 * iommu_ops), the devices and isolation groups the core knows, reserved regions, the user data a
 * driver decodes, and the vIOMMU as drivers see it. The DMA half (units, targets, ports) that the
 * hardware shares is in include/iommu.ts.
 *
 * - The PCI core (pci/) gives iommufd a `SimDevice` per function: its name, requester ID, isolation
 *   group and the IOMMU unit that translates its DMA.
 * - iommufd gives the unit `DmaTarget`s: a domain's page table, installed per (RID, PASID). A
 *   device's DMA goes unit -> target; no target means the blocking domain (every access faults).
 * - The VFIO device file (vfio/) binds a device with iommufd's `bindForVfio` (iommufd_device_bind)
 *   and drives the returned `BoundDevice` for ATTACH/DETACH_IOMMUFD_PT and close.
 */
import { ERRNO } from '../../../ioasid/errors.js';
import { kerr } from '../kernel/errno.js';
import type { PageStore } from '../kernel/mm.js';
import type { NestedDomain, PagingDomain } from './domain.js';
import type { DmaTarget, IommuCaps, SimIommuUnit } from '../include/iommu.js';

export type { DmaTarget, IommuCaps, SimIommuUnit };

/** IOMMU_READ / IOMMU_WRITE: the protection bits of a mapping (include/linux/iommu.h). */
export const IOMMU_READ = 1;
export const IOMMU_WRITE = 2;

/**
 * Driver-specific user data (struct iommu_user_data): read with copy_struct_from_user rules by
 * the driver that understands its type.
 */
export interface UserData {
  readonly type: number;
  readonly len: number;
  /**
   * iommu_copy_struct_from_user (7.3): EINVAL for another type, fewer than `minLen` bytes or more
   * than `size` bytes, EFAULT for unreadable memory; the struct zero-extended to `size`.
   */
  read(type: number, size: number, minLen: number): Uint8Array;
  /**
   * iommu_copy_struct_to_user: the same type and length checks against `src.length` (sizeof),
   * then `len` bytes of `src` to the user (EFAULT if not writable).
   */
  write(type: number, src: Uint8Array, minLen: number): void;
}

/** struct iommu_user_data_array: `length` entries of `entryLen` bytes, copied from user memory on `get` (EFAULT there). */
export interface UserArray {
  readonly length: number;
  readonly entryLen: number;
  get(i: number): Uint8Array;
}

/** A physical address as drivers get it (phys_addr_t): a page store and a byte offset in it. */
export interface PhysAddr {
  store: PageStore;
  offset: number;
}

/** struct iommufd_viommu as a driver sees it (include/linux/iommufd.h). */
export interface IommufdViommu {
  readonly id: number;
}

/** struct iommufd_hw_queue as a driver sees it. */
export interface IommufdHwQueue {
  readonly id: number;
}

/** struct iommufd_viommu_ops, the part a driver's viommu_init hands back beyond invalidation. */
export interface ViommuOps {
  /** Release the driver's part of the vIOMMU (its mmap region, its pages). */
  destroy?(): void;
  /** get_hw_queue_size: 0 for a queue type the driver does not offer. */
  hwQueueSize?(type: number): number;
  /** hw_queue_init_phys: the queue's physically contiguous pages start at `basePa`. */
  hwQueueInitPhys?(q: IommufdHwQueue, index: number, basePa: PhysAddr): void;
}

/** An isolation group (iommu_group): DMA ownership is claimed and released for all members at once. */
export interface SimGroup {
  /** The number /sys/kernel/iommu_groups/N and /dev/vfio/N use. */
  readonly id: number;
  readonly devices: readonly SimDevice[];
  /** The DMA owner (an iommufd context, a VFIO group/container) or null; owner_cnt claims. */
  owner: unknown;
  ownerCount: number;
}

/** A reserved region an IOMMU imposes on a device's IOVA space (iommu_get_resv_regions). */
export interface ResvRegion {
  readonly start: bigint;
  readonly last: bigint;
  /** IOMMU_RESV_MSI (hardware MSI window), SW_MSI (software-managed MSI), RESERVED, DIRECT... */
  readonly type: 'msi' | 'sw-msi' | 'reserved' | 'direct' | 'direct-relaxable';
}

/**
 * What an IOMMU driver offers the core for one device (struct iommu_ops as iommufd uses it). The
 * machine's units provide one built from their IommuCaps; the selftest's mock device brings the
 * kernel's mock_ops.
 */
export interface IommuDriverOps {
  /** Identity of the driver (domain->owner): domains only attach to devices of the same driver. */
  readonly owner: object;
  capable(cap: 'cache-coherency' | 'enforce-cache-coherency' | 'dirty-tracking' | 'pci-ats'): boolean;
  /** domain_alloc_paging_flags: the HWPT flags left after FAULT_ID_VALID; user data if any. */
  allocPaging(flags: number, data: UserData | null): PagingDomain;
  /** domain_alloc_nested, or a vIOMMU's alloc_domain_nested when `viommu` is given (absent: EOPNOTSUPP). */
  allocNested?(parent: PagingDomain, flags: number, data: UserData, viommu?: object): NestedDomain;
  /** vIOMMU types the driver can make (get_viommu_size != 0). */
  readonly viommuTypes?: readonly number[];
  /** viommu_init: the driver's part of a new vIOMMU on `parent`, with its driver data if any. */
  viommuInit?(viommu: IommufdViommu, parent: PagingDomain, data: UserData | null): ViommuOps;
  /**
   * The vIOMMU's cache_invalidate (IOMMU_HWPT_INVALIDATE on a vIOMMU id): returns the entries
   * handled; on failure throws a KernelErrno carrying `done`.
   */
  viommuInvalidate?(viommu: IommufdViommu, type: number, entries: UserArray): number;
  /** attach_dev / set_dev_pasid: the driver may refuse (EINVAL = incompatible). */
  attachDev(domain: PagingDomain | NestedDomain, pasid: number | null): void;
  /** The blocking domain's set_dev_pasid (a PASID detached): drivers may track it. */
  blockPasid?(pasid: number): void;
  /** hw_info: [type, payload] for an input type (0 = default); EOPNOTSUPP for a wrong type. */
  hwInfo(inType: number): [number, Uint8Array];
  /** log2 of the device's PASID count (0: no PASID). */
  readonly maxPasidLog2: number;
  /** dev->iommu->max_pasids where it is not 2^maxPasidLog2 (or 0 without PASID): a "pasid-num-bits" of 0 gives 1. */
  readonly maxPasids?: number;
  reservedRegions(): readonly ResvRegion[];
}

/** One PCI function as iommufd sees it. */
export interface SimDevice {
  /** "0000:00:01.0" */
  readonly name: string;
  /** Requester ID: bus << 8 | devfn (the unit's context key). */
  readonly rid: number;
  readonly group: SimGroup;
  readonly iommu: SimIommuUnit;
  /** The kernel driver bound to it: 'vfio-pci', another driver's name, or null. */
  driver(): string | null;
  /** The IOMMU driver's view of this device (dev_iommu_ops). */
  readonly ops: IommuDriverOps;
}

/** A device bound to an iommufd (iommufd_device) as its VFIO file holds it. */
export interface BoundDevice {
  readonly devId: number;
  /** VFIO_DEVICE_ATTACH_IOMMUFD_PT: attach or replace; returns the pt_id written back (the HWPT). */
  attach(ptId: number, pasid?: number): number;
  /** VFIO_DEVICE_DETACH_IOMMUFD_PT */
  detach(pasid?: number): void;
  /** Close of the VFIO file: detach everything, release DMA ownership, drop the object. */
  unbind(): void;
}

/** An iommu_group. */
export class IommuGroup implements SimGroup {
  readonly devices: SimDevice[] = [];
  owner: unknown = null;
  ownerCount = 0;
  constructor(readonly id: number) {}
}

// ---- the IOMMU core's group operations (drivers/iommu/iommu.c) --------------------------------

/** __iommu_take_dma_ownership: the group's DMA is blocked until a domain is attached for the owner. */
function takeDmaOwnership(group: SimGroup, owner: object): void {
  group.owner = owner;
  group.ownerCount = 1;
  for (const d of group.devices) d.iommu.setTranslation(d.rid, null, null);
}

/** iommu_device_claim_dma_owner: one owner per group, counted (iommufd binds each device). */
export function iommuDeviceClaimDmaOwner(group: SimGroup, owner: object): void {
  if (group.ownerCount) {
    if (group.owner !== owner) kerr(ERRNO.EPERM);
    group.ownerCount++;
    return;
  }
  takeDmaOwnership(group, owner);
}

/** iommu_group_claim_dma_owner: exclusive (a VFIO group); EPERM while anyone holds the group, a kernel driver too. */
export function iommuGroupClaimDmaOwner(group: SimGroup, owner: object): void {
  if (group.ownerCount) kerr(ERRNO.EPERM);
  takeDmaOwnership(group, owner);
}

/** iommu_device_release_dma_owner / iommu_group_release_dma_owner: the last release unblocks the group. */
export function iommuReleaseDmaOwner(group: SimGroup): void {
  if (--group.ownerCount > 0) return;
  group.owner = null;
  group.ownerCount = 0;
  for (const d of group.devices) d.iommu.setTranslation(d.rid, null, null);
}

/** The driver accepts the domain for one device: same driver (domain_iommu_ops_compatible), then its attach_dev. */
export function iommuDriverAttach(dev: SimDevice, domain: PagingDomain | NestedDomain, pasid: number | null): void {
  if (domain.owner !== dev.ops.owner) kerr(ERRNO.EINVAL);
  dev.ops.attachDev(domain, pasid);
}

/** iommu_attach_group / the RID half of __iommu_group_set_domain: every member accepts, then all translate through it. */
export function iommuAttachGroup(domain: PagingDomain | NestedDomain, group: SimGroup): void {
  for (const d of group.devices) iommuDriverAttach(d, domain, null);
  for (const d of group.devices) d.iommu.setTranslation(d.rid, null, domain);
}

/** iommu_detach_group: back to the core domain, which for an owned group blocks all DMA. */
export function iommuDetachGroup(group: SimGroup): void {
  for (const d of group.devices) d.iommu.setTranslation(d.rid, null, null);
}
