/**
 * Places where the sim once answered differently from the kernel, each pinned by what the kernel
 * (7.3, with IOMMUFD_TEST) does. One `it` per divergence, named after the kernel function whose
 * behaviour it states; the expected values were confirmed in the test VM.
 */
import { describe, expect, it } from 'vitest';
import { uapi, type Ioas } from '../src/index.js';
import {
  IOMMU_HWPT_DATA_SELFTEST, IOMMU_HWPT_INVALIDATE_DATA_SELFTEST, IOMMU_TEST_IOTLB_DEFAULT, MOCK_APERTURE_START,
  MOCK_FLAGS_ACCESS_CREATE_NEEDS_PIN_PAGES, MOCK_FLAGS_DEVICE_NO_DIRTY, MOCK_FLAGS_DEVICE_PASID, MOCK_IOMMUPT_HUGE,
} from '../src/testing.js';
import { BACKEND, P, U64_MAX, expectErrno, hugeMockHwpt, peakRssGrowth, unmappedAddress, useIommufd } from './helpers.js';

const { IOCTLS } = uapi;

describe(`sim/kernel divergences [${BACKEND}]`, () => {
  const f = useIommufd();

  /** IOMMU_HWPT_GET_DIRTY_BITMAP on a raw command, returning the ioctl's result or the errno name. */
  function getDirty(hwptId: number, iova: bigint, length: bigint, data: bigint): string {
    try {
      f.ctx.ioctl(f.ctx.cmd(IOCTLS.HWPT_GET_DIRTY_BITMAP).u32('hwpt_id', hwptId).u32('flags', 0)
        .u64('iova', iova).u64('length', length).u64('page_size', BigInt(P)).u64('data', data));
      return 'ok';
    } catch (e) {
      return (e as { code: string }).code;
    }
  }

  function dirtyWorld() {
    const ioas = f.ctx.allocIoas();
    const dev = f.test.mockDomain(ioas.id);
    const hwpt = f.ctx.allocHwpt({ devId: dev.idevId, ptId: ioas.id, dirtyTracking: true });
    hwpt.setDirtyTracking(true);
    return { ioas, dev, hwpt };
  }

  it('iommu_read_and_clear_dirty: an IOVA range with nothing mapped is not an error (the walk\'s EINVAL is dropped)', () => {
    const { hwpt } = dirtyWorld();
    const bitmap = f.ctx.mmap(P);
    bitmap.bytes.fill(0);
    expect(getDirty(hwpt.id, MOCK_APERTURE_START, 16n * BigInt(P), bitmap.addr)).toBe('ok');
    expect([...bitmap.bytes.subarray(0, 2)]).toEqual([0, 0]);
    bitmap.close();
  });

  it('iommu_read_and_clear_dirty: a range only partly mapped reports the mapped part and succeeds', () => {
    const { ioas, hwpt } = dirtyWorld();
    ioas.mapUser(f.buffer.addr, 2n * BigInt(P), { iova: MOCK_APERTURE_START });
    const bits = f.ctx.mmap(P);
    bits.bytes.fill(0);
    bits.bytes[0] = 0b11; // DIRTY marks the IOPTEs under set bits
    f.test.setDirty(hwpt.id, MOCK_APERTURE_START, 2n * BigInt(P), BigInt(P), bits.addr);
    bits.bytes.fill(0);
    expect(getDirty(hwpt.id, MOCK_APERTURE_START, 16n * BigInt(P), bits.addr)).toBe('ok');
    expect([...bits.bytes.subarray(0, 2)]).toEqual([0b11, 0]);
    ioas.unmapAll();
    bits.close();
  });

  it('iova_bitmap_set: an unwritable bitmap is only touched for dirty IOPTEs, and its EFAULT is dropped', () => {
    const { ioas, hwpt } = dirtyWorld();
    ioas.mapUser(f.buffer.addr, 2n * BigInt(P), { iova: MOCK_APERTURE_START });
    const gone = f.ctx.mmap(P);
    const addr = gone.addr;
    gone.close();
    // nothing dirty: the bitmap is never pinned
    expect(getDirty(hwpt.id, MOCK_APERTURE_START, 2n * BigInt(P), addr)).toBe('ok');
    // dirty IOPTEs: pinning the bitmap fails, the bits are lost, the ioctl still succeeds
    const bits = f.ctx.mmap(P);
    bits.bytes.fill(0);
    bits.bytes[0] = 0b01;
    f.test.setDirty(hwpt.id, MOCK_APERTURE_START, 2n * BigInt(P), BigInt(P), bits.addr);
    expect(getDirty(hwpt.id, MOCK_APERTURE_START, 2n * BigInt(P), addr)).toBe('ok');
    // ... and they were cleared: a second read into good memory sees nothing
    bits.bytes.fill(0);
    expect(getDirty(hwpt.id, MOCK_APERTURE_START, 2n * BigInt(P), bits.addr)).toBe('ok');
    expect(bits.bytes[0]).toBe(0);
    ioas.unmapAll();
    bits.close();
  });

  it('dev_iommu_get_max_pasids: a mock device without MOCK_FLAGS_DEVICE_PASID has pasid-num-bits 0, one PASID: every PASID attach is EINVAL', () => {
    const ioas = f.ctx.allocIoas();
    const dev0 = f.test.mockDomain(ioas.id);
    const s2 = [0, 1].map(() => f.ctx.allocHwpt({ devId: dev0.idevId, ptId: ioas.id, pasid: true }));
    const dev = f.test.mockDomain(s2[0]!.id); // max_pasids = 1 << 0
    for (const pasid of [1, 1024, (1 << 20) - 1, 1 << 20]) {
      expectErrno(() => f.test.pasidAttach(dev.stdevId, pasid, s2[1]!.id), 'EINVAL');
      f.test.pasidCheckHwpt(dev.stdevId, pasid, 0);
    }
    s2[1]!.destroy(); // no reference was left behind
    f.ctx.destroy(dev.stdevId);
    f.ctx.destroy(dev0.stdevId);
  });

  it('mock_domain_set_dev_pasid_nop: a NO_DIRTY device takes a dirty-tracking domain at a PASID (only attach_dev refuses it)', () => {
    const ioas = f.ctx.allocIoas();
    const dev0 = f.test.mockDomain(ioas.id);
    const rid = f.ctx.allocHwpt({ devId: dev0.idevId, ptId: ioas.id, pasid: true });
    const dirty = f.ctx.allocHwpt({ devId: dev0.idevId, ptId: ioas.id, pasid: true, dirtyTracking: true });
    const nd = f.test.mockDomainFlags(rid.id, MOCK_FLAGS_DEVICE_PASID | MOCK_FLAGS_DEVICE_NO_DIRTY);
    expectErrno(() => f.test.mockDomainReplace(nd.stdevId, dirty.id), 'EINVAL');
    f.test.pasidAttach(nd.stdevId, 100, dirty.id);
    f.test.pasidCheckHwpt(nd.stdevId, 100, dirty.id);
    f.test.pasidDetach(nd.stdevId, 100);
    f.ctx.destroy(nd.stdevId);
    f.ctx.destroy(dev0.stdevId);
  });

  it('mock_domain_cache_invalidate_user: the type is checked before any entry is read, entries are copied one at a time (an unreadable second entry: the first is done, entry_num 1, EFAULT)', () => {
    const ioas = f.ctx.allocIoas();
    const dev = f.test.mockDomain(ioas.id);
    const parent = f.ctx.allocHwpt({ devId: dev.idevId, ptId: ioas.id, nestParent: true });
    const cfg = new Uint8Array(8);
    new DataView(cfg.buffer).setUint32(0, IOMMU_TEST_IOTLB_DEFAULT, true);
    const nested = f.ctx.allocHwpt({ devId: dev.idevId, ptId: parent.id, data: { type: IOMMU_HWPT_DATA_SELFTEST, bytes: cfg } });
    const mem = f.ctx.mmap(2 * P);
    f.ctx.binding.munmap(mem.addr + BigInt(P), P);
    const entry0 = mem.addr + BigInt(P - 8);
    const e0 = f.ctx.binding.view(entry0, 8); // (only the first page is still mapped)
    new DataView(e0.buffer, e0.byteOffset, 8).setUint32(4, 2, true); // { flags 0, iotlb_id 2 }
    const inv = (type: number, uptr: bigint, num: number) => {
      const c = f.ctx.cmd(IOCTLS.HWPT_INVALIDATE).u32('hwpt_id', nested.id).u64('data_uptr', uptr)
        .u32('data_type', type).u32('entry_len', 8).u32('entry_num', num);
      let code = 'ok';
      try {
        f.ctx.ioctl(c);
      } catch (e) {
        code = (e as { code: string }).code;
      }
      return [code, c.get32('entry_num')];
    };
    // a wrong type: EINVAL, though no entry could be read
    expect(inv(IOMMU_HWPT_INVALIDATE_DATA_SELFTEST + 1, mem.addr + BigInt(P), 2)).toEqual(['EINVAL', 0]);
    // the second entry is unreadable: the first is done
    expect(inv(IOMMU_HWPT_INVALIDATE_DATA_SELFTEST, entry0, 2)).toEqual(['EFAULT', 1]);
    f.test.checkIotlb(nested.id, 2, 0);
    f.test.checkIotlb(nested.id, 1, IOMMU_TEST_IOTLB_DEFAULT);
    f.ctx.binding.munmap(mem.addr, P);
    nested.destroy();
    parent.destroy();
    f.ctx.destroy(dev.stdevId);
  });

  it('iommufd_object_alloc: an object under construction holds its id but stays invisible until finalized (MOCK_DOMAIN naming itself: ENOENT)', () => {
    const ioas = f.ctx.allocIoas();
    const own = ioas.id + 1; // the selftest object MOCK_DOMAIN reserves first
    expectErrno(() => f.test.mockDomain(own), 'ENOENT');
    expectErrno(() => f.test.mockDomainFlags(own, 0), 'ENOENT');
    // the device is finalized inside iommufd_device_bind: its id is an object of the wrong type
    expectErrno(() => f.test.mockDomain(own + 1), 'EINVAL');
    // the aborted objects gave their ids back
    const dev = f.test.mockDomain(ioas.id);
    expect([dev.stdevId, dev.idevId, dev.hwptId]).toEqual([own, own + 1, own + 2]);
    // HWPT_ALLOC looks its fault queue up after allocating the HWPT: its own id is no FAULT
    expectErrno(() => f.ctx.allocHwpt({ devId: dev.idevId, ptId: ioas.id, faultId: own + 3 }), 'ENOENT');
    const fault = f.ctx.allocFaultQueue();
    expect(fault.id).toBe(own + 3);
    fault.close();
    f.ctx.destroy(dev.stdevId);
  });

  describe('iopt_alloc_iova: allowed ranges that touch (last + 1 == start) are one span', () => {
    const MiB = 1n << 20n;
    /** Allowed [1 MiB, 3 MiB) and [3 MiB, U64_MAX], with [1 MiB, 2 MiB) taken: a 2 MiB-aligned 2 MiB mapping fits only across the seam. */
    function seamed(): Ioas {
      const ioas = f.ctx.allocIoas();
      ioas.allowIovas([{ start: MiB, last: 3n * MiB - 1n }, { start: 3n * MiB, last: U64_MAX }]);
      ioas.mapUser(f.buffer.addr, MiB, { iova: MiB });
      return ioas;
    }

    it('MAP', () => {
      expect(seamed().mapUser(f.buffer.addr, 2n * MiB)).toBe(2n * MiB);
    });

    it('MAP_FILE', () => {
      using mfd = f.ctx.memfd('seam', P);
      expect(seamed().mapFile(mfd, 0n, 2n * MiB)).toBe(2n * MiB);
    });

    it('COPY', () => {
      const src = f.ctx.allocIoas();
      const at = src.mapUser(f.buffer.addr, 2n * MiB);
      expect(seamed().copyFrom(src, at, 2n * MiB)).toBe(2n * MiB);
    });

    it('the differential run\'s case: [0x3500000, 0x7fffffff] + [0x80000000, U64_MAX], a 32 MiB map lands at 0x7f200000', () => {
      const ioas = f.ctx.allocIoas();
      ioas.allowIovas([{ start: 0x350_0000n, last: 0x7fff_ffffn }, { start: 0x8000_0000n, last: U64_MAX }]);
      ioas.mapUser(f.buffer.addr, 0x7f20_0000n - 0x350_0000n, { iova: 0x350_0000n });
      expect(ioas.mapUser(f.buffer.addr, 32n * MiB)).toBe(0x7f20_0000n);
    });
  });

  it('iopt_area_start_byte: byte offsets past 2^53 are exact (a COPY from 2^62 bytes into an area keeps its page offset)', () => {
    const src = f.ctx.allocIoas();
    const length = (1n << 62n) + (1n << 60n);
    src.mapUser(f.buffer.addr + 0x10n, length, { iova: 0n });
    const from = (1n << 62n) + 0x3000n; // start_byte = 2^62 + 0x3010: 0x10 is below a double's precision there
    // the automatic IOVA keeps the source's page offset and alignment (1 << __ffs(addr) = 16)
    const dst = f.ctx.allocIoas();
    expect(dst.copyFrom(src, from, 0x2000n)).toBe(0x1010n);
    // ... and so does a copy of the copy
    expect(f.ctx.allocIoas().copyFrom(dst, 0x1010n, 0x2000n)).toBe(0x1010n);
    // a page offset of 0x10 breaks a mock domain's 2 KiB IOVA alignment (iopt_insert_area)
    const mock = f.ctx.allocIoas();
    const dev = f.test.mockDomain(mock.id);
    expectErrno(() => mock.copyFrom(src, from, 0x2000n, { iova: MOCK_APERTURE_START }), 'EINVAL');
    f.ctx.destroy(dev.stdevId);
  });

  /**
   * pfn_reader's batches: pinning does work for the pages it pins, and a range over memory that
   * cannot be pinned fails on its first batch, however large the range (here 2^38 bytes, 2^26
   * pages). Asserted on memory (the process's peak RSS), not time; bench/sim.ts times it.
   */
  describe('pinning costs what it pins: 2^38 bytes over unmapped memory answer EFAULT at once', () => {
    const LEN = 1n << 38n;
    const AT = 0n; // the MOCK_IOMMUPT_HUGE aperture is [0, 2^38)
    const MiB = 1 << 20;
    const SANITY_MS = 60_000;

    it('IOAS_MAP into an IOAS with a domain', () => {
      const ioas = f.ctx.allocIoas();
      hugeMockHwpt(f, ioas);
      expect(peakRssGrowth(() => expectErrno(() => ioas.mapUser(unmappedAddress(f.ctx), LEN, { iova: AT }), 'EFAULT'))).toBeLessThan(64 * MiB);
      expect(ioas.unmapAll()).toBe(0n);
    }, SANITY_MS);

    it('a domain added after a lazy map (HWPT_ALLOC fills the IOAS)', () => {
      const ioas = f.ctx.allocIoas();
      ioas.mapUser(unmappedAddress(f.ctx), LEN, { iova: AT });
      expect(peakRssGrowth(() => expectErrno(() => hugeMockHwpt(f, ioas), 'EFAULT'))).toBeLessThan(64 * MiB);
      expect(ioas.unmapAll()).toBe(LEN);
    }, SANITY_MS);

    it('IOAS_COPY into an IOAS with a domain', () => {
      const src = f.ctx.allocIoas();
      src.mapUser(unmappedAddress(f.ctx), LEN, { iova: AT });
      const dst = f.ctx.allocIoas();
      hugeMockHwpt(f, dst);
      expect(peakRssGrowth(() => expectErrno(() => dst.copyFrom(src, AT, LEN, { iova: AT }), 'EFAULT'))).toBeLessThan(64 * MiB);
      expect(dst.unmapAll()).toBe(0n);
    }, SANITY_MS);

    it('an access pinning one page of a 2^38-byte area (its pages object is 2^26 pages)', () => {
      const ioas = f.ctx.allocIoas();
      ioas.mapUser(unmappedAddress(f.ctx), LEN, { iova: AT });
      const fd = f.test.createAccess(ioas.id, MOCK_FLAGS_ACCESS_CREATE_NEEDS_PIN_PAGES);
      expect(peakRssGrowth(() => expectErrno(() => f.test.accessPages(fd, AT, BigInt(P)), 'EFAULT'))).toBeLessThan(64 * MiB);
      f.test.closeAccess(fd);
    }, SANITY_MS);
  });
});
