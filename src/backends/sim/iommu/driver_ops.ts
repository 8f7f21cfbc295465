/**
 * The IOMMU driver as iommufd calls it (struct iommu_ops: capable, domain_alloc_paging_flags,
 * attach_dev, hw_info, get_resv_regions), for a hardware unit described by its IommuCaps: what
 * intel-iommu and arm-smmu-v3 answer, reduced to the capabilities the sim models. One ops object
 * per unit: its identity is the domains' owner, so a domain attaches only to devices of its unit.
 */
import { ERRNO } from '../../../ioasid/errors.js';
import {
  IOMMU_HWPT_ALLOC_DIRTY_TRACKING, IOMMU_HWPT_ALLOC_NEST_PARENT, IOMMU_HWPT_ALLOC_PASID,
} from '../../../ioasid/uapi.js';
import type { IommuCaps, IommuDriverOps, ResvRegion, UserData } from './iommu.js';
import { NestedDomain, PagingDomain } from './domain.js';
import { kerr } from '../kernel/errno.js';

/** IOMMU_HWPT_DATA_VTD_S1 / _ARM_SMMUV3: the stage-1 formats a nesting-capable unit accepts. */
const NESTED_DATA: Record<string, { type: number; size: number; min: number }> = {
  vtd: { type: 1, size: 24, min: 24 }, // struct iommu_hwpt_vtd_s1 { flags; pgtbl_addr; addr_width; __reserved; }
  smmuv3: { type: 2, size: 16, min: 16 }, // struct iommu_hwpt_arm_smmuv3 { ste[2]; }
};

/** The driver ops of one unit; `caps` are the device's view of it (PASID width may be narrower). */
export function hardwareOps(owner: object, caps: IommuCaps): IommuDriverOps {
  return {
    owner,
    maxPasidLog2: caps.pasidBits,
    capable(cap) {
      switch (cap) {
        case 'cache-coherency':
          return true; // intel_iommu_capable / arm_smmu_capable (coherent walks on these models)
        case 'enforce-cache-coherency':
          return caps.enforceCacheCoherency;
        case 'dirty-tracking':
          return caps.dirtyTracking;
        case 'pci-ats':
          return false; // the models have no ATS: GET_HW_INFO reports PCI_ATS_NOT_SUPPORTED, as the VM does
      }
    },
    /** domain_alloc_paging_flags: no user data for paging domains on these drivers. */
    allocPaging(flags: number, data: UserData | null): PagingDomain {
      const allowed = IOMMU_HWPT_ALLOC_NEST_PARENT | IOMMU_HWPT_ALLOC_DIRTY_TRACKING | IOMMU_HWPT_ALLOC_PASID;
      if (flags & ~allowed || data) kerr(ERRNO.EOPNOTSUPP);
      if (flags & IOMMU_HWPT_ALLOC_NEST_PARENT && !caps.nesting) kerr(ERRNO.EOPNOTSUPP);
      if (flags & IOMMU_HWPT_ALLOC_DIRTY_TRACKING && !caps.dirtyTracking) kerr(ERRNO.EOPNOTSUPP);
      return new PagingDomain({
        owner,
        pgsizeBitmap: caps.pgsizeBitmap,
        aperture: caps.aperture,
        dirtyOps: !!(flags & IOMMU_HWPT_ALLOC_DIRTY_TRACKING),
        enforceCacheCoherency: caps.enforceCacheCoherency,
      });
    },
    /** domain_alloc_nested: the unit's stage-1 format; the guest table is opaque to the sim. */
    allocNested(parent: PagingDomain, flags: number, data: UserData): NestedDomain {
      const fmt = NESTED_DATA[caps.model];
      if (!caps.nesting || !fmt || flags & ~IOMMU_HWPT_ALLOC_PASID) kerr(ERRNO.EOPNOTSUPP);
      if (data.type !== fmt.type) kerr(ERRNO.EOPNOTSUPP);
      data.read(fmt.type, fmt.size, fmt.min);
      return new NestedDomain(owner, parent, null);
    },
    attachDev(domain) {
      // a dirty-tracking domain on a unit without it (intel: !ssads_supported -> EINVAL)
      if (domain.kind === 'paging' && domain.dirtyOps && !caps.dirtyTracking) kerr(ERRNO.EINVAL);
    },
    hwInfo(inType: number): [number, Uint8Array] {
      if (inType !== 0 && inType !== caps.hwInfoType) kerr(ERRNO.EOPNOTSUPP);
      return [caps.hwInfoType, caps.hwInfo()];
    },
    reservedRegions(): readonly ResvRegion[] {
      return caps.reserved.map((r) => ({ start: r.start, last: r.last, type: r.kind as ResvRegion['type'] }));
    },
  };
}
