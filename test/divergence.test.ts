/**
 * Places where the sim once answered differently from the kernel, each pinned by what the kernel
 * (7.3, with IOMMUFD_TEST) does. One `it` per divergence, named after the kernel function whose
 * behaviour it states; the expected values were confirmed in the test VM.
 */
import { describe, expect, it } from 'vitest';
import { uapi } from '../src/index.js';
import { MOCK_APERTURE_START } from '../src/testing.js';
import { BACKEND, P, useIommufd } from './helpers.js';

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
});
