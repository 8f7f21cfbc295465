/**
 * Port of the kernel selftest FIXTURE(iommufd_dirty_tracking), all variants, from
 * tools/testing/selftests/iommu/iommufd.c: an IOAS (HUGE_PAGES off unless hugetlb-backed) with a
 * mock domain; dirty-tracking HWPTs; the mock marks every other IOPTE dirty and
 * IOMMU_HWPT_GET_DIRTY_BITMAP must report exactly the bits under those IOPTEs (an IOPTE covers
 * pte_size / MOCK_PAGE_SIZE bits), then clear them (or not, with NO_CLEAR).
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Iommufd, uapi, type UserMemory } from '../src/index.js';
import {
  IOMMU_HWPT_DATA_SELFTEST, IommufdTest, MOCK_APERTURE_START, MOCK_FLAGS_DEVICE_NO_DIRTY, MOCK_FLAGS_DEVICE_PASID,
  MOCK_HUGE_PAGE_SIZE, MOCK_IOMMUPT_DEFAULT, MOCK_IOMMUPT_HUGE, MOCK_PAGE_SIZE,
} from '../src/testing.js';
import { IOMMU_HW_CAP_DIRTY_TRACKING as HW_CAP_DIRTY } from '../src/device/uapi.js';
import { BACKEND, HUGEPAGE_SIZE, P, expectErrno, hugepageAligned } from './helpers.js';
import { IOMMU_HW_INFO_TYPE_DEFAULT, getHwInfo, ioasAlloc } from './selftest_utils.js';

const IOMMU_HW_CAP_DIRTY_TRACKING = BigInt(HW_CAP_DIRTY);

const K = 1024;
const variants: [string, number, boolean][] = [
  ['domain_dirty8k', 8 * K, false],
  ['domain_dirty16k', 16 * K, false],
  ['domain_dirty64k', 64 * K, false],
  ['domain_dirty128k', 128 * K, false],
  ['domain_dirty320k', 320 * K, false],
  ['domain_dirty64M', 64 * K * K, false],
  ['domain_dirty64M_huge', 64 * K * K, true],
  ['domain_dirty128M', 128 * K * K, false],
  ['domain_dirty128M_huge', 128 * K * K, true],
];

/** struct iommu_hwpt_selftest { iotlb; pagetable_type; } */
function selftestData(pagetableType: number): { type: number; bytes: Uint8Array } {
  const bytes = new Uint8Array(8);
  new DataView(bytes.buffer).setUint32(4, pagetableType, true);
  return { type: IOMMU_HWPT_DATA_SELFTEST, bytes };
}

function testBit(b: Uint8Array, i: number): boolean {
  return (b[i >> 3]! & (1 << (i & 7))) !== 0;
}

describe.each(variants)(`iommufd_dirty_tracking %s [${BACKEND}]`, (_name, bufferSize, hugepages) => {
  let ctx: Iommufd;
  let t: IommufdTest;
  let buffer: UserMemory;
  let bitmapMem: UserMemory;
  let ioasId: number;
  let idevId: number;
  const pageSize = MOCK_PAGE_SIZE;
  const bitmapSize = bufferSize / pageSize; // bits

  beforeEach(() => {
    ctx = Iommufd.open({ backend: BACKEND });
    t = new IommufdTest(ctx);
    const mmapSize = hugepages ? Math.max(bufferSize, HUGEPAGE_SIZE) : bufferSize;
    buffer = hugepages
      ? ctx.mmap(mmapSize, { hugetlb: true, fixedAddress: alignedAddr(ctx, mmapSize) })
      : hugepageAligned(ctx, mmapSize);
    // an extra page for the unaligned-pointer cases
    bitmapMem = ctx.mmap(Math.ceil(bitmapSize / 8) + P);
    const ioas = ioasAlloc(ctx);
    ioasId = ioas.id;
    if (!hugepages) ioas.setHugePages(false);
    ({ idevId } = t.mockDomain(ioasId));
  });

  afterEach(() => {
    const binding = ctx.binding;
    ctx.close();
    const again = new Iommufd(binding);
    try {
      if (!hugepages) new IommufdTest(again).checkRefs(buffer.addr, BigInt(bufferSize), 0);
    } finally {
      again.close();
      buffer.close();
      bitmapMem.close();
    }
  });

  it('enforce_dirty: a NO_DIRTY device cannot join a dirty HWPT (EINVAL) nor make one (EOPNOTSUPP)', () => {
    const hwpt = ctx.allocHwpt({ devId: idevId, ptId: ioasId, dirtyTracking: true });
    const dev = t.mockDomain(hwpt.id);
    expectErrno(() => t.mockDomainFlags(hwpt.id, MOCK_FLAGS_DEVICE_NO_DIRTY), 'EINVAL');
    ctx.destroy(dev.stdevId);
    hwpt.destroy();

    const ioas2 = ioasAlloc(ctx);
    const nd = t.mockDomainFlags(ioas2.id, MOCK_FLAGS_DEVICE_NO_DIRTY);
    expectErrno(() => ctx.allocHwpt({ devId: nd.idevId, ptId: ioas2.id, dirtyTracking: true }), 'EOPNOTSUPP');
    ctx.destroy(nd.stdevId);
  });

  it('set_dirty_tracking: enable and disable on a DIRTY_TRACKING HWPT', () => {
    const hwpt = ctx.allocHwpt({ devId: idevId, ptId: ioasId, dirtyTracking: true });
    const dev = t.mockDomain(hwpt.id);
    hwpt.setDirtyTracking(true);
    hwpt.setDirtyTracking(false);
    ctx.destroy(dev.stdevId);
    hwpt.destroy();
  });

  it('pasid_set_dirty_tracking: on a PASID-attached HWPT; a NO_DIRTY PASID device is refused (EINVAL)', () => {
    const pasid = 100;
    const hwpt = ctx.allocHwpt({ devId: idevId, ptId: ioasId, pasid: true, dirtyTracking: true });
    const dev = t.mockDomainFlags(hwpt.id, MOCK_FLAGS_DEVICE_PASID);
    t.pasidAttach(dev.stdevId, pasid, hwpt.id);
    hwpt.setDirtyTracking(true);
    hwpt.setDirtyTracking(false);
    t.pasidDetach(dev.stdevId, pasid);
    ctx.destroy(dev.stdevId);

    const ioas2 = ioasAlloc(ctx);
    const nd = t.mockDomainFlags(ioas2.id, MOCK_FLAGS_DEVICE_PASID | MOCK_FLAGS_DEVICE_NO_DIRTY);
    expectErrno(() => t.pasidAttach(nd.stdevId, pasid, hwpt.id), 'EINVAL');
    ctx.destroy(nd.stdevId);
    hwpt.destroy();
  });

  it('device_dirty_capability: GET_HW_INFO reports IOMMU_HW_CAP_DIRTY_TRACKING', () => {
    const hwpt = ctx.allocHwpt({ devId: idevId, ptId: ioasId });
    const dev = t.mockDomain(hwpt.id);
    // test_cmd_get_hw_capabilities: _test_cmd_get_hw_info with its type and data_len checks
    const caps = getHwInfo(ctx, idevId, IOMMU_HW_INFO_TYPE_DEFAULT, null, 0).capabilities;
    expect(caps & IOMMU_HW_CAP_DIRTY_TRACKING).toBe(IOMMU_HW_CAP_DIRTY_TRACKING);
    ctx.destroy(dev.stdevId);
    hwpt.destroy();
  });

  for (const noClear of [false, true]) {
    it(noClear ? 'get_dirty_bitmap_no_clear' : 'get_dirty_bitmap', () => {
      const ptePageSize = hugepages ? MOCK_HUGE_PAGE_SIZE : P;
      ctx.ioas(ioasId).mapUser(buffer.addr, BigInt(bufferSize), { iova: MOCK_APERTURE_START });
      const hwpt = ctx.allocHwpt({
        devId: idevId, ptId: ioasId, dirtyTracking: true,
        data: selftestData(hugepages ? MOCK_IOMMUPT_HUGE : MOCK_IOMMUPT_DEFAULT),
      });
      hwpt.setDirtyTracking(true);
      for (const offset of [0, MOCK_PAGE_SIZE, 0xff1]) {
        mockDirtyBitmaps(hwpt.id, bitmapMem.addr + BigInt(offset), ptePageSize, noClear);
      }
      hwpt.destroy();
    });
  }

  /** _test_mock_dirty_bitmaps from iommufd_utils.h */
  function mockDirtyBitmaps(hwpt: number, bitmapAddr: bigint, ptePageSize: number, noClear: boolean): void {
    const npte = ptePageSize / pageSize;
    const pteset = 2 * npte;
    const nr = Math.floor(bitmapSize / pteset) || 1;
    const bytes = Math.ceil(bitmapSize / 8);
    const bm = ctx.binding.view(bitmapAddr, bytes);
    const view = () => bm;
    // mark every pteset-th bit in the mock domain
    view().fill(0);
    for (let i = 0; i < bitmapSize; i += pteset) view()[i >> 3]! |= 1 << (i & 7);
    expect(t.setDirty(hwpt, MOCK_APERTURE_START, BigInt(bufferSize), BigInt(pageSize), bitmapAddr)).toBe(BigInt(nr));

    const read = () => {
      view().fill(0);
      ctx.ioctl(
        ctx.cmd(dirtyDesc).u32('hwpt_id', hwpt).u32('flags', noClear ? 1 : 0)
          .u64('iova', MOCK_APERTURE_START).u64('length', BigInt(bufferSize)).u64('page_size', BigInt(pageSize)).u64('data', bitmapAddr),
      );
      return view().slice();
    };
    // bit i + j of each pteset is set iff j < npte (one expectation per read: the bits that differ)
    const wrong = (got: Uint8Array, expectSet: boolean): number[] => {
      const bad: number[] = [];
      for (let i = 0; i < bitmapSize; i += pteset) {
        for (let j = 0; j < pteset && i + j < bitmapSize; j++) if (testBit(got, i + j) !== (j < npte && expectSet)) bad.push(i + j);
      }
      return bad.slice(0, 8);
    };
    expect(wrong(read(), true), 'bits that differ from every-other-IOPTE dirty').toEqual([]);
    expect(wrong(read(), noClear), noClear ? 'bits that differ on a second NO_CLEAR read' : 'bits left set after a clearing read').toEqual([]);
  }
});

const dirtyDesc = uapi.IOCTLS.HWPT_GET_DIRTY_BITMAP;

/** A free, HUGEPAGE_SIZE-aligned address with room for `size` bytes (posix_memalign in the selftest). */
function alignedAddr(ctx: Iommufd, size: number): bigint {
  const probe = ctx.mmap(size + HUGEPAGE_SIZE);
  const a = (probe.addr + BigInt(HUGEPAGE_SIZE) - 1n) & ~(BigInt(HUGEPAGE_SIZE) - 1n);
  probe.close();
  return a;
}
