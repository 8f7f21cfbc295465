/**
 * What the kernel's IOMMU driver gives a device's automatic paging domain, as far as userspace can
 * tell from IOMMU_GET_HW_INFO: the page sizes (domain->pgsize_bitmap, which VFIO_IOMMU_GET_INFO
 * reports) and whether it enforces cache coherency (what VFIO_CHECK_EXTENSION(VFIO_DMA_CC_IOMMU)
 * reports). iommufd has no command that returns either, so the compat layer's iommufd mode derives
 * them from the unit's registers with the drivers' own rules (Linux 7.3):
 *
 * - Intel VT-d (intel/iommu.c): a first-stage domain when the unit runs in scalable mode with
 *   first-stage translation (4K|2M, 1G with FL1GP), else second stage (4K, 2M and 1G as SLLPS
 *   allows). Cache coherency is enforced when ECAP.SC is set (intel_iommu_capable).
 * - Arm SMMUv3 with a 4 KiB granule (IDR5.GRAN4K): 4K|2M|1G. Enforcing coherency depends on the
 *   firmware's CANWBS flag, which the payload does not carry: reported as not enforced.
 * - Any other IOMMU: unknown page sizes (null) and no enforced coherency.
 *
 * domainAperture() gives the same domain's aperture (domain->geometry) where the payload decides
 * it: VT-d's generic page table covers 2^vasz bytes from 0, vasz from MGAW (and SAGAW for the
 * second stage), the first stage sign-extended so that only its lower half is usable. An SMMUv3
 * stage-1 aperture also depends on the kernel's VA_BITS, which the payload does not carry.
 */
import { decodeVtd, type VtdInfo } from '../device/vtd.js';
import { IOMMU_HW_INFO_TYPE_ARM_SMMUV3, IOMMU_HW_INFO_TYPE_INTEL_VTD } from '../device/uapi.js';
import type { IovaRange } from '../ioasid/ioas.js';
import type { HwInfo } from '../ioasid/iommufd.js';

export interface DomainCaps {
  /** domain->pgsize_bitmap, or null when the driver's rule is not known here. */
  readonly pgsizeBitmap: bigint | null;
  /** The domain enforces cache coherency (hwpt_paging->enforce_cache_coherency). */
  readonly enforceCacheCoherency: boolean;
}

const SZ_4K = 1n << 12n;
const SZ_2M = 1n << 21n;
const SZ_1G = 1n << 30n;
/** struct iommu_hw_info_arm_smmuv3: flags, __reserved, idr[6]: IDR5 at 8 + 5 * 4. */
const SMMUV3_IDR5 = 28;
const SMMUV3_IDR5_GRAN4K = 1 << 4;

/** intel_iommu_domain_alloc_paging_flags prefers the first stage: scalable mode with FLTS. */
const vtdFirstStage = (ecap: VtdInfo['ecap']): boolean => ecap.scalableMode && ecap.firstLevelTranslation;

export function domainCaps(hw: HwInfo): DomainCaps {
  if (hw.type === IOMMU_HW_INFO_TYPE_INTEL_VTD) {
    const { cap, ecap } = decodeVtd(hw.data);
    let pgsizeBitmap = SZ_4K;
    if (vtdFirstStage(ecap)) pgsizeBitmap |= SZ_2M | (cap.firstLevel1G ? SZ_1G : 0n);
    else pgsizeBitmap |= (cap.superPages & 1 ? SZ_2M : 0n) | (cap.superPages & 2 ? SZ_1G : 0n);
    return { pgsizeBitmap, enforceCacheCoherency: ecap.snoopControl };
  }
  if (hw.type === IOMMU_HW_INFO_TYPE_ARM_SMMUV3 && hw.data.length >= SMMUV3_IDR5 + 4) {
    const idr5 = new DataView(hw.data.buffer, hw.data.byteOffset, hw.data.byteLength).getUint32(SMMUV3_IDR5, true);
    return { pgsizeBitmap: idr5 & SMMUV3_IDR5_GRAN4K ? SZ_4K | SZ_2M | SZ_1G : null, enforceCacheCoherency: false };
  }
  return { pgsizeBitmap: null, enforceCacheCoherency: false };
}

/**
 * The automatic paging domain's aperture (inclusive), or null where the payload does not decide
 * it. VT-d (intel/iommu.c, 7.3): the first stage takes compute_vasz_lg2_fs (57 bits when MGAW
 * exceeds 48 and CAP.FL5LP is set, else min(48, MGAW)) with PT_FEAT_SIGN_EXTEND, whose top range
 * is the lower half; the second stage compute_vasz_lg2_ss (the widest of 57, 48 and 39 that both
 * MGAW and SAGAW allow), the whole table. generic_pt's pt_iommu_init_domain makes that range the
 * geometry.
 */
export function domainAperture(hw: HwInfo): IovaRange | null {
  if (hw.type !== IOMMU_HW_INFO_TYPE_INTEL_VTD) return null;
  const { cap, ecap, capReg } = decodeVtd(hw.data);
  const { mgaw, sagaw } = cap;
  let vasz: number;
  if (vtdFirstStage(ecap)) vasz = (mgaw > 48 && (capReg >> 60n) & 1n ? Math.min(57, mgaw) : Math.min(48, mgaw)) - 1;
  else if (mgaw > 48 && sagaw >= 8) vasz = Math.min(57, mgaw);
  else if (mgaw > 39 && sagaw >= 4) vasz = Math.min(48, mgaw);
  else if (mgaw > 30 && sagaw >= 2) vasz = Math.min(39, mgaw);
  else return null;
  return { start: 0n, last: (1n << BigInt(vasz)) - 1n };
}
