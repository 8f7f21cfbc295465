/**
 * Intel VT-d's IOMMU_GET_HW_INFO payload (struct iommu_hw_info_vtd): the unit's raw Capability
 * and Extended Capability registers, and the fields of them a VMM or driver reads, decoded with
 * the same bit positions as the kernel's cap_* / ecap_* macros (drivers/iommu/intel/iommu.h,
 * VT-d spec 11.4.2 and 11.4.3).
 */
import { iommu_hw_info_vtd } from './uapi.js';

export interface VtdCap {
  /** Domains the unit supports: 2^(4 + 2*ND). */
  numDomains: number;
  /** Supported adjusted guest address widths (SAGAW bitmap: bit 1 = 39-bit, 2 = 48-bit, 3 = 57-bit). */
  sagaw: number;
  /** Maximum guest address width in bits (MGAW + 1). */
  mgaw: number;
  /** Caching mode: non-present entries may be cached (set by emulated IOMMUs such as QEMU's). */
  cachingMode: boolean;
  /** Second-level large pages: bit 0 = 2 MiB, bit 1 = 1 GiB. */
  superPages: number;
  /** Page-selective invalidation. */
  pageSelectiveInvalidation: boolean;
  /** Fault recording registers. */
  numFaultRegs: number;
  /** First-level 1 GiB pages. */
  firstLevel1G: boolean;
  /** Posted interrupts. */
  postedInterrupts: boolean;
}

export interface VtdEcap {
  /** Page walks are coherent (snooped). */
  coherent: boolean;
  queuedInvalidation: boolean;
  deviceTlb: boolean;
  interruptRemapping: boolean;
  extendedInterruptMode: boolean;
  passThrough: boolean;
  snoopControl: boolean;
  nested: boolean;
  pageRequests: boolean;
  /** PASID support and its width in bits (PSS + 1). */
  pasid: boolean;
  pasidBits: number;
  scalableMode: boolean;
  firstLevelTranslation: boolean;
  secondLevelTranslation: boolean;
  secondLevelAccessDirty: boolean;
}

export interface VtdInfo {
  /** IOMMU_HW_INFO_VTD_* flags (bit 0: erratum 772415, no read-only nested-parent mappings). */
  flags: number;
  capReg: bigint;
  ecapReg: bigint;
  cap: VtdCap;
  ecap: VtdEcap;
}

const bits = (r: bigint, shift: number, width = 1): number => Number((r >> BigInt(shift)) & ((1n << BigInt(width)) - 1n));

export function decodeVtd(data: Uint8Array): VtdInfo {
  if (data.length < iommu_hw_info_vtd.size) throw new RangeError(`iommu_hw_info_vtd needs ${iommu_hw_info_vtd.size} bytes, got ${data.length}`);
  const dv = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const o = iommu_hw_info_vtd.off;
  const c = dv.getBigUint64(o.cap_reg!, true);
  const e = dv.getBigUint64(o.ecap_reg!, true);
  return {
    flags: dv.getUint32(o.flags!, true),
    capReg: c,
    ecapReg: e,
    cap: {
      numDomains: 2 ** (4 + 2 * bits(c, 0, 3)),
      sagaw: bits(c, 8, 5),
      mgaw: bits(c, 16, 6) + 1,
      cachingMode: bits(c, 7) === 1,
      superPages: bits(c, 34, 4),
      pageSelectiveInvalidation: bits(c, 39) === 1,
      numFaultRegs: bits(c, 40, 8) + 1,
      firstLevel1G: bits(c, 56) === 1,
      postedInterrupts: bits(c, 59) === 1,
    },
    ecap: {
      coherent: bits(e, 0) === 1,
      queuedInvalidation: bits(e, 1) === 1,
      deviceTlb: bits(e, 2) === 1,
      interruptRemapping: bits(e, 3) === 1,
      extendedInterruptMode: bits(e, 4) === 1,
      passThrough: bits(e, 6) === 1,
      snoopControl: bits(e, 7) === 1,
      nested: bits(e, 26) === 1,
      pageRequests: bits(e, 29) === 1,
      pasid: bits(e, 40) === 1,
      pasidBits: bits(e, 35, 5) + 1,
      scalableMode: bits(e, 43) === 1,
      firstLevelTranslation: bits(e, 47) === 1,
      secondLevelTranslation: bits(e, 46) === 1,
      secondLevelAccessDirty: bits(e, 45) === 1,
    },
  };
}
