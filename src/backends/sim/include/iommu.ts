/**
 * What the hardware and the kernel's IOMMU side both include (the DMA half of
 * include/linux/iommu.h): how a device's DMA reaches an IOMMU unit, how a unit translates it
 * through a domain's page table, and what a unit can do. The hardware (hw/) implements units and
 * issues DMA; the IOMMU core and drivers (iommu/, iommufd/) install translations.
 */

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

/**
 * Page frames a DMA reaches once translated: the memory side of the bus. The sim's own RAM is a
 * PageStore's bytes; a bridged program's pages live in the real process (src/bridge).
 */
export interface DmaMemory {
  /** Move `n` bytes between byte `offset` of these frames and `buf` from `at` (write: into memory). */
  dmaCopy(write: boolean, offset: number, buf: Uint8Array, at: number, n: number): void;
}

/** What a page walk yields: the memory backing one IOVA page and whether DMA may write it. */
export interface DmaPageWalk {
  memory: DmaMemory | null;
  /** Offset of the page's first byte in `memory`. */
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
