/**
 * An Intel VT-d remapping unit as QEMU's intel-iommu presents it and as the 7.3 intel driver reads
 * it: the capability and extended-capability registers are the model, and every iommufd-visible
 * capability is derived from them with the driver's own rules (drivers/iommu/intel/iommu.c, iommu.h).
 *
 * The defaults are the registers the project's VM reports (QEMU 7.2, `-device intel-iommu,
 * intremap=on,caching-mode=on`): cap 0xd2008c22260286, ecap 0xf00f4a (test/sim-machine.vm-probe.txt).
 */
import type { IommuCaps } from '../include/iommu.js';

/** VT-d CAP_REG fields (VT-d spec 11.4.2; the driver's cap_* macros). */
export const VTD_CAP = {
  ND_64K: 6n,
  CM: 1n << 7n,
  SAGAW_39: 1n << 9n,
  SAGAW_48: 1n << 10n,
  MGAW_SHIFT: 16n,
  FRO_SHIFT: 24n,
  SLLPS_2M: 1n << 34n,
  SLLPS_1G: 1n << 35n,
  PSI: 1n << 39n,
  MAMV_SHIFT: 48n,
  DWD: 1n << 54n,
  DRD: 1n << 55n,
  FL1GP: 1n << 56n,
} as const;

/** VT-d ECAP_REG fields. */
export const VTD_ECAP = {
  C: 1n << 0n,
  QI: 1n << 1n,
  IR: 1n << 3n,
  EIM: 1n << 4n,
  PT: 1n << 6n,
  SC: 1n << 7n,
  IRO_SHIFT: 8n,
  MHMV_SHIFT: 20n,
  NEST: 1n << 26n,
  SRS: 1n << 31n,
  PSS_SHIFT: 35n,
  PASID: 1n << 40n,
  SMTS: 1n << 43n,
  SLADS: 1n << 45n,
  SLTS: 1n << 46n,
  SMPWC: 1n << 48n,
} as const;

export interface VtdOptions {
  /** QEMU aw-bits: 39 (default, 3-level) or 48 (4-level). */
  awBits?: 39 | 48;
  /** QEMU caching-mode (default on, as in the project's VM). */
  cachingMode?: boolean;
  /** QEMU intremap (default on): interrupt remapping. */
  intremap?: boolean;
  /** QEMU snoop-control: ECAP.SC, which the driver reports as IOMMU_CAP_ENFORCE_CACHE_COHERENCY. */
  snoopControl?: boolean;
  /** QEMU x-scalable-mode: ECAP.SMTS|SRS|SLTS (second-stage translation in scalable mode). */
  scalableMode?: boolean;
  /** With scalable mode: ECAP.PASID and PSS = bits - 1 (QEMU x-pasid-mode uses 20). */
  pasidBits?: number;
  /** With scalable mode: ECAP.SLADS|SMPWC, second-stage A/D bits: dirty tracking. No QEMU option. */
  dirtyTracking?: boolean;
  /** With scalable mode: ECAP.NEST, nested translation. No QEMU 7.2 option. */
  nesting?: boolean;
}

export interface VtdRegisters {
  readonly cap: bigint;
  readonly ecap: bigint;
}

/** The registers QEMU's intel-iommu builds for these options (hw/i386/intel_iommu.c vtd_cap_init). */
export function vtdRegisters(o: VtdOptions = {}): VtdRegisters {
  const aw = BigInt(o.awBits ?? 39);
  let cap = VTD_CAP.ND_64K | (0x22n << VTD_CAP.FRO_SHIFT) | VTD_CAP.PSI | (0x12n << VTD_CAP.MAMV_SHIFT) |
    VTD_CAP.SLLPS_2M | VTD_CAP.SLLPS_1G | ((aw - 1n) << VTD_CAP.MGAW_SHIFT) | VTD_CAP.DWD | VTD_CAP.DRD |
    VTD_CAP.SAGAW_39;
  if (aw === 48n) cap |= VTD_CAP.SAGAW_48;
  if (o.cachingMode ?? true) cap |= VTD_CAP.CM;
  let ecap = VTD_ECAP.QI | (0xfn << VTD_ECAP.IRO_SHIFT) | VTD_ECAP.PT;
  if (o.intremap ?? true) ecap |= VTD_ECAP.IR | (0xfn << VTD_ECAP.MHMV_SHIFT);
  if (o.snoopControl) ecap |= VTD_ECAP.SC;
  if (o.scalableMode) {
    ecap |= VTD_ECAP.SMTS | VTD_ECAP.SRS | VTD_ECAP.SLTS;
    if (o.pasidBits) ecap |= VTD_ECAP.PASID | (BigInt(o.pasidBits - 1) << VTD_ECAP.PSS_SHIFT);
    if (o.dirtyTracking) ecap |= VTD_ECAP.SLADS | VTD_ECAP.SMPWC;
    if (o.nesting) ecap |= VTD_ECAP.NEST;
  }
  return { cap, ecap };
}

const bit = (r: bigint, b: bigint): boolean => ((r >> b) & 1n) === 1n;
const field = (r: bigint, lo: bigint, width: bigint): number => Number((r >> lo) & ((1n << width) - 1n));

/** IOMMU_HW_INFO_VTD_ERRATA_772415_SPR17: the driver sets it for every unit (intel_iommu_hw_info). */
export const IOMMU_HW_INFO_VTD_ERRATA_772415_SPR17 = 1;
export const IOMMU_HW_INFO_TYPE_INTEL_VTD = 1;

/**
 * What the intel driver derives from the registers for a paging domain of this unit. Only the
 * second stage is modelled (legacy mode, or scalable mode without first-stage translation).
 */
export function vtdCaps(regs: VtdRegisters): IommuCaps {
  const { cap, ecap } = regs;
  const sm = bit(ecap, 43n);
  const mgaw = field(cap, 16n, 6n) + 1;
  const sagaw = field(cap, 8n, 5n);
  const vasz = computeVaszSs(mgaw, sagaw);
  const sllps = field(cap, 34n, 4n);
  let pgsize = 1n << 12n;
  if (sllps & 1) pgsize |= 1n << 21n;
  if (sllps & 2) pgsize |= 1n << 30n;
  return {
    model: 'vtd',
    pgsizeBitmap: pgsize,
    aperture: { start: 0n, last: (1n << BigInt(vasz)) - 1n },
    // IOAPIC_RANGE_START..END as IOMMU_RESV_MSI (intel_iommu_get_resv_regions); QEMU has no RMRRs.
    reserved: [{ start: 0xfee0_0000n, last: 0xfeef_ffffn, kind: 'msi' }],
    enforceCacheCoherency: bit(ecap, 7n),
    dirtyTracking: sm && bit(ecap, 45n) && bit(ecap, 48n),
    nesting: sm && bit(ecap, 26n),
    pasidBits: sm && bit(ecap, 40n) ? field(ecap, 35n, 5n) + 1 : 0,
    hwInfoType: IOMMU_HW_INFO_TYPE_INTEL_VTD,
    hwInfo: () => {
      // struct iommu_hw_info_vtd { __u32 flags; __u32 __reserved; __aligned_u64 cap_reg; __aligned_u64 ecap_reg; }
      const b = new Uint8Array(24);
      const dv = new DataView(b.buffer);
      dv.setUint32(0, IOMMU_HW_INFO_VTD_ERRATA_772415_SPR17, true);
      dv.setBigUint64(8, cap, true);
      dv.setBigUint64(16, ecap, true);
      return b;
    },
  };
}

/** compute_vasz_lg2_ss: the largest table both MGAW and SAGAW support. */
function computeVaszSs(mgaw: number, sagaw: number): number {
  if (mgaw > 48 && sagaw >= 8) return Math.min(57, mgaw);
  if (mgaw > 39 && sagaw >= 4) return Math.min(48, mgaw);
  if (mgaw > 30 && sagaw >= 2) return Math.min(39, mgaw);
  return 0;
}
