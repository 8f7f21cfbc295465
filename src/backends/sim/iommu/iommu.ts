/**
 * The seam between the simulated machine (hardware: IOMMU units, PCI devices and their isolation
 * groups, bus-master DMA) and the simulated iommufd core (device objects, HWPTs, domains).
 *
 * - The machine gives iommufd a `SimDevice` per function: its name, requester ID, isolation group
 *   and the IOMMU unit that translates its DMA.
 * - iommufd gives the machine `DmaTarget`s: a domain's page table, installed per (RID, PASID) in the
 *   unit. A device's DMA goes unit -> target; no target means the blocking domain (every access
 *   faults).
 * - The VFIO device file (vfio cdev) calls `bindDevice` for VFIO_DEVICE_BIND_IOMMUFD and drives
 *   the returned `BoundDevice` for ATTACH/DETACH_IOMMUFD_PT and close.
 */
import type { NestedDomain, PagingDomain } from './domain.js';
import type { UserArray, UserData } from '../iommufd/hw_pagetable.js';
import type { Viommu, ViommuOps } from '../iommufd/viommu.js';
import { bindForVfio } from '../iommufd/device.js';
import type { IommufdCtx } from '../iommufd/main.js';

/** Why a DMA did not reach memory (recorded as a fault by the unit, never silently dropped). */
export type DmaFaultReason =
  /** No page-table entry for the IOVA (DMAR "PTE Read/Write access is not set" on VT-d). */
  | 'not-present'
  /** The entry exists but lacks the needed permission (a write to a read-only IOVA). */
  | 'permission'
  /** Nothing attached: the blocking domain. */
  | 'blocked'
  /** The IOVA is outside the domain's aperture / input address width. */
  | 'aperture';

export interface DmaFault {
  readonly iova: bigint;
  readonly write: boolean;
  readonly reason: DmaFaultReason;
  readonly rid: number;
  readonly pasid: number | null;
}

/**
 * What a device's DMA is translated by: a domain. All or nothing per call: on a fault no byte of
 * memory is read into `dst` or written from `src`, and the fault says where it stopped.
 */
export interface DmaTarget {
  dmaRead(iova: bigint, dst: Uint8Array): Omit<DmaFault, 'rid' | 'pasid'> | null;
  dmaWrite(iova: bigint, src: Uint8Array): Omit<DmaFault, 'rid' | 'pasid'> | null;
  /**
   * Optional page walk that lets the unit cache translations in its IOTLB: translate the IOVA page
   * `pfn` (pages of 1 << `pageShift` bytes, the unit's smallest page) into `out`, or say why it
   * cannot be reached. The page is backed by one contiguous range (iommufd keeps areas PAGE_SIZE
   * aligned once a domain is attached). Without it the unit calls dmaRead/dmaWrite every time.
   */
  walk?(pfn: number, pageShift: number, out: DmaPageWalk, write?: boolean): DmaFaultReason | null;
  /**
   * Optional with `walk`: raised whenever a translation is removed or narrowed (unmap). IOTLB
   * entries filled under an older generation are not used: the domain's IOTLB invalidation.
   * Undefined while the domain must see every access (dirty tracking on: a write walk sets the
   * IOPTE's dirty bit), so the unit walks each time and passes `write`.
   */
  readonly generation?: number;
}

/** What a page walk yields: the bytes backing one IOVA page and whether DMA may write them. */
export interface DmaPageWalk {
  bytes: Uint8Array;
  /** Offset of the page's first byte in `bytes`. */
  offset: number;
  writable: boolean;
}

/** A device's view of its bus: every DMA it issues goes through here. */
export interface DmaPort {
  read(iova: bigint, dst: Uint8Array, pasid?: number): DmaFault | null;
  write(iova: bigint, src: Uint8Array, pasid?: number): DmaFault | null;
}

/** IOMMU_HW_INFO_TYPE_* payload and capability bits a unit reports through IOMMU_GET_HW_INFO. */
export interface IommuCaps {
  /** A human name: 'vtd', 'smmuv3', 'mock'. */
  readonly model: string;
  /** Supported page sizes, a bitmap of powers of two (VT-d: 4K|2M|1G; mock: 2K|1M). */
  readonly pgsizeBitmap: bigint;
  /** Inclusive IOVA aperture a paging domain of this unit can translate. */
  readonly aperture: { readonly start: bigint; readonly last: bigint };
  /** Reserved IOVA regions every device behind the unit imposes (x86 MSI window, SW MSI...). */
  readonly reserved: readonly { readonly start: bigint; readonly last: bigint; readonly kind: string }[];
  /** IOMMU_CAP_ENFORCE_CACHE_COHERENCY. */
  readonly enforceCacheCoherency: boolean;
  /** Dirty tracking in the page table (IOMMU_HW_CAP_DIRTY_TRACKING). */
  readonly dirtyTracking: boolean;
  /** Nested (two-stage) translation: NEST_PARENT HWPTs and nested HWPTs. */
  readonly nesting: boolean;
  /** PASID width in bits (0 = no PASID support): GET_HW_INFO's out_max_pasid_log2. */
  readonly pasidBits: number;
  /** IOMMU_HW_INFO_TYPE_* this unit's driver reports (INTEL_VTD=1, ARM_SMMUV3=2, SELFTEST=0xfeedbeef). */
  readonly hwInfoType: number;
  /** The driver-specific GET_HW_INFO payload (struct iommu_hw_info_vtd, _arm_smmuv3, _selftest). */
  hwInfo(): Uint8Array;
}

/** One IOMMU hardware unit: translation contexts per requester (and PASID). */
export interface SimIommuUnit {
  readonly caps: IommuCaps;
  /** Install (or with null, remove = block) the translation for a requester and optional PASID. */
  setTranslation(rid: number, pasid: number | null, target: DmaTarget | null): void;
  /** The DMA port for a requester: translation through the installed target, faults recorded. */
  port(rid: number): DmaPort;
  /** Faults recorded so far, oldest first (the hardware's fault log). */
  readonly faults: readonly DmaFault[];
  /** Invalidate cached translations (all, or those filled from `target`): an IOTLB flush. */
  flushIotlb(target?: DmaTarget): void;
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
  viommuInit?(viommu: Viommu, parent: PagingDomain, data: UserData | null): ViommuOps;
  /**
   * The vIOMMU's cache_invalidate (IOMMU_HWPT_INVALIDATE on a vIOMMU id): returns the entries
   * handled; on failure throws a KernelErrno carrying `done`.
   */
  viommuInvalidate?(viommu: Viommu, type: number, entries: UserArray): number;
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

/**
 * iommufd_device_bind: claim DMA ownership of the device's group for `ctx` and create the device
 * object (the iommufd core's half of this file). The machine's VFIO file only calls it.
 */
export function bindDevice(ctx: IommufdCtx, dev: SimDevice): BoundDevice {
  return bindForVfio(ctx, dev);
}
