/**
 * An Arm SMMUv3 as the 7.3 arm-smmu-v3 driver reads it: the ID registers are the model and the
 * iommufd-visible capabilities follow the driver's rules (drivers/iommu/arm/arm-smmu-v3/).
 * Paging domains are stage 1 when the SMMU has S1P (the driver's preference), with a 4K granule
 * (a 4K-page kernel): pgsize 4K|2M|1G, aperture [0, 2^ias - 1] with ias = min(VAX ? 52 : 48, VA_BITS 48).
 */
import type { IommuCaps } from '../include/iommu.js';

export const IDR0 = {
  S2P: 1 << 0,
  S1P: 1 << 1,
  TTF_AARCH64: 2 << 2,
  COHACC: 1 << 4,
  HTTU_ACCESS: 1 << 6,
  HTTU_ACCESS_DIRTY: 2 << 6,
  ATS: 1 << 10,
  ASID16: 1 << 12,
  MSI: 1 << 13,
  VMID16: 1 << 18,
  TTENDIAN_LE: 2 << 21,
  ST_LVL_2LVL: 1 << 27,
} as const;

export const IOMMU_HW_INFO_TYPE_ARM_SMMUV3 = 2;
/** arm-smmu-v3.h MSI_IOVA_BASE / MSI_IOVA_LENGTH: the software MSI window of every device. */
export const SMMU_MSI_IOVA_BASE = 0x800_0000n;
export const SMMU_MSI_IOVA_LENGTH = 0x10_0000n;

export interface Smmuv3Options {
  /** Stage 1 / stage 2 translation (default both: then nesting is available). */
  s1?: boolean;
  s2?: boolean;
  /** Coherent table walks (IDR0.COHACC, default on). */
  coherent?: boolean;
  /** HTTU with dirty state (IDR0.HTTU = 2): with COHACC, dirty tracking (default on). */
  dirtyTracking?: boolean;
  /** SSIDSIZE: substream (PASID) bits (default 20). */
  ssidBits?: number;
  /** Output address size in bits (IDR5.OAS; default 48). */
  oasBits?: 32 | 36 | 40 | 42 | 44 | 48 | 52;
  /** IDR5.VAX: 52-bit input addresses. */
  vax?: boolean;
  /** The firmware's CANWBS flag on the root complex: IOMMU_CAP_ENFORCE_CACHE_COHERENCY (default off). */
  canwbs?: boolean;
}

export interface Smmuv3Registers {
  readonly idr: readonly number[];
  readonly iidr: number;
  readonly aidr: number;
  readonly canwbs: boolean;
}

const OAS_CODE: Record<number, number> = { 32: 0, 36: 1, 40: 2, 42: 3, 44: 4, 48: 5, 52: 6 };

export function smmuv3Registers(o: Smmuv3Options = {}): Smmuv3Registers {
  let idr0 = IDR0.TTF_AARCH64 | IDR0.ASID16 | IDR0.VMID16 | IDR0.MSI | IDR0.TTENDIAN_LE | IDR0.ST_LVL_2LVL;
  if (o.s1 ?? true) idr0 |= IDR0.S1P;
  if (o.s2 ?? true) idr0 |= IDR0.S2P;
  if (o.coherent ?? true) idr0 |= IDR0.COHACC;
  idr0 |= (o.dirtyTracking ?? true) ? IDR0.HTTU_ACCESS_DIRTY : IDR0.HTTU_ACCESS;
  const ssid = o.ssidBits ?? 20;
  // IDR1: CMDQS=19, EVTQS=19, SSIDSIZE, SIDSIZE=16.
  const idr1 = (19 << 21) | (19 << 16) | (ssid << 6) | 16;
  const idr3 = 1 << 10; // RIL
  // IDR5: OAS, GRAN4K|GRAN64K, VAX.
  const idr5 = OAS_CODE[o.oasBits ?? 48]! | (1 << 4) | (1 << 6) | (o.vax ? 1 << 10 : 0);
  // IIDR: implementer 0x43b (Arm), product 0x487 (MMU-700); AIDR: SMMUv3.1.
  return { idr: [idr0 >>> 0, idr1, 0, idr3, 0, idr5], iidr: (0x487 << 20) | 0x43b, aidr: 0x1, canwbs: o.canwbs ?? false };
}

const OAS_BITS = [32, 36, 40, 42, 44, 48, 52];

export function smmuv3Caps(regs: Smmuv3Registers): IommuCaps {
  const [idr0 = 0, idr1 = 0, , , , idr5 = 0] = regs.idr;
  const s1 = (idr0 & IDR0.S1P) !== 0;
  const s2 = (idr0 & IDR0.S2P) !== 0;
  const coherent = (idr0 & IDR0.COHACC) !== 0;
  const hd = ((idr0 >> 6) & 3) >= 2;
  const oas = OAS_BITS[idr5 & 7] ?? 48;
  const ias = s1 ? Math.min((idr5 >> 10) & 3 ? 52 : 48, 48) : oas;
  return {
    model: 'smmuv3',
    pgsizeBitmap: (1n << 12n) | (1n << 21n) | (1n << 30n),
    aperture: { start: 0n, last: (1n << BigInt(ias)) - 1n },
    reserved: [{ start: SMMU_MSI_IOVA_BASE, last: SMMU_MSI_IOVA_BASE + SMMU_MSI_IOVA_LENGTH - 1n, kind: 'sw-msi' }],
    enforceCacheCoherency: regs.canwbs,
    dirtyTracking: hd && coherent,
    nesting: s1 && s2,
    pasidBits: s1 ? (idr1 >> 6) & 0x1f : 0,
    hwInfoType: IOMMU_HW_INFO_TYPE_ARM_SMMUV3,
    hwInfo: () => {
      // struct iommu_hw_info_arm_smmuv3 { __u32 flags; __u32 __reserved; __u32 idr[6]; __u32 iidr; __u32 aidr; }
      const b = new Uint8Array(40);
      const dv = new DataView(b.buffer);
      regs.idr.forEach((v, i) => dv.setUint32(8 + 4 * i, v, true));
      dv.setUint32(32, regs.iidr, true);
      dv.setUint32(36, regs.aidr, true);
      return b;
    },
  };
}
