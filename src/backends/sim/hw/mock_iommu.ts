/**
 * The kernel's mock IOMMU (drivers/iommu/iommufd/selftest.c, CONFIG_IOMMUFD_TEST): what a
 * device made by IOMMU_TEST_OP_MOCK_DOMAIN sits behind. Facts from selftest.c and iommufd_test.h:
 *
 * - paging domains use the AMDv1 page table with a 2 KiB granule (MOCK_PAGE_SIZE); 7.3's generic_pt
 *   gives the default domain (starting level 2, 38-bit VA) every power of two from 2^11 to 2^36
 *   (amdv1pt_possible_sizes masked by log2_mod(max_vasz_lg2 - 1)); the MOCK_IOMMUPT_HUGE variant is
 *   MOCK_HUGE_PAGE_SIZE | PAGE_SIZE;
 * - the aperture is overridden to [MOCK_APERTURE_START, MOCK_APERTURE_LAST] = [2^24, 2^31 - 1];
 * - no reserved regions (the mock has no get_resv_regions);
 * - IOMMU_CAP_CACHE_COHERENCY yes, IOMMU_CAP_ENFORCE_CACHE_COHERENCY no (mock_domain_capable);
 * - dirty tracking unless the device was made with MOCK_FLAGS_DEVICE_NO_DIRTY;
 * - nesting (IOMMU_HWPT_DATA_SELFTEST nested domains);
 * - PASID: max_pasids = 1 << MOCK_PASID_WIDTH (20) on the unit; a device has it with MOCK_FLAGS_DEVICE_PASID;
 * - GET_HW_INFO: IOMMU_HW_INFO_TYPE_SELFTEST, struct iommu_test_hw_info { flags = 0,
 *   test_reg = IOMMU_HW_INFO_SELFTEST_REGVAL }.
 */
import type { IommuCaps } from '../include/iommu.js';

import {
  IOMMU_HW_INFO_SELFTEST_REGVAL, IOMMU_HW_INFO_TYPE_SELFTEST, MOCK_APERTURE_LAST, MOCK_APERTURE_START,
  MOCK_FLAGS_DEVICE_NO_DIRTY, MOCK_FLAGS_DEVICE_PASID, MOCK_HUGE_PAGE_SIZE, MOCK_PASID_WIDTH,
} from '../../../ioasid/uapi.js';

/** GENMASK(36, 11): the MOCK_IOMMUPT_DEFAULT domain's page sizes on 7.3. */
export const MOCK_PGSIZE_BITMAP = ((1n << 37n) - 1n) & ~((1n << 11n) - 1n);
/** MOCK_IOMMUPT_HUGE: MOCK_HUGE_PAGE_SIZE | PAGE_SIZE. */
export const MOCK_HUGE_PGSIZE_BITMAP = BigInt(MOCK_HUGE_PAGE_SIZE) | 4096n;

/** The unit's capabilities; a device's view adjusts dirtyTracking and pasidBits by its flags. */
export function mockCaps(): IommuCaps {
  return {
    model: 'mock',
    pgsizeBitmap: MOCK_PGSIZE_BITMAP,
    aperture: { start: MOCK_APERTURE_START, last: MOCK_APERTURE_LAST },
    reserved: [],
    enforceCacheCoherency: false,
    dirtyTracking: true,
    nesting: true,
    pasidBits: MOCK_PASID_WIDTH,
    hwInfoType: IOMMU_HW_INFO_TYPE_SELFTEST,
    hwInfo: () => {
      const b = new Uint8Array(8);
      new DataView(b.buffer).setUint32(4, IOMMU_HW_INFO_SELFTEST_REGVAL, true);
      return b;
    },
  };
}

/** The capabilities a mock device created with MOCK_FLAGS_DEVICE_* flags reports. */
export function mockDeviceCaps(unit: IommuCaps, flags: number): IommuCaps {
  return {
    ...unit,
    dirtyTracking: !(flags & MOCK_FLAGS_DEVICE_NO_DIRTY),
    pasidBits: flags & MOCK_FLAGS_DEVICE_PASID ? MOCK_PASID_WIDTH : 0,
    hwInfo: unit.hwInfo,
  };
}
