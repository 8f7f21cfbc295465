/**
 * What the iommufd mode builds on, without a device: an Ioas's area record (Ioas.trackAreas)
 * matches what the kernel holds, and TYPE1's cuts, which the iommufd mode makes with
 * IOMMU_IOAS_COPY through a scratch IOAS, leave every remaining page mapped to the same memory in
 * the domain, as the kernel's in-place split does (checked with the selftest's mock domain and
 * IOMMU_TEST_OP_MD_CHECK_MAP). Runs on both tiers.
 */
import { describe, expect, it } from 'vitest';
import { VfioContainer, containerUapi as V, type Ioas } from '../src/index.js';
import { IommufdTest } from '../src/testing.js';
import { BACKEND, PAGE_SIZE as PG, expectErrno, useIommufd } from './helpers.js';

describe(`the area record and TYPE1's cuts [${BACKEND}]`, () => {
  const f = useIommufd();

  /** The kernel's view: which pages are covered by an area (COPY needs whole coverage). */
  function covered(io: Ioas, pages: bigint[]): boolean[] {
    const probe = f.ctx.allocIoas();
    const out = pages.map((v) => {
      try {
        probe.copyFrom(io, v, PG, { iova: v, writeable: false });
        probe.unmap(v, PG);
        return true;
      } catch {
        return false;
      }
    });
    probe.destroy();
    return out;
  }

  const areas = (io: Ioas) => io.areas!.all().map((a) => [a.iova.toString(16), a.last.toString(16), a.readable, a.writeable]);

  it('the record follows map, copy, a refused unmap that removed whole areas first, and unmap all', () => {
    const io = f.ctx.allocIoas();
    io.trackAreas();
    const base = 0x10_0000n;
    io.mapUser(f.buffer.addr, 2n * PG, { iova: base });
    io.mapUser(f.buffer.addr, PG, { iova: base + 3n * PG, writeable: false });
    const src = f.ctx.allocIoas();
    src.mapUser(f.buffer.addr, 4n * PG, { iova: 0x40_0000n });
    io.copyFrom(src, 0x40_0000n, 4n * PG, { iova: base + 5n * PG });
    expect(areas(io)).toEqual([['100000', '101fff', true, true], ['103000', '103fff', true, false], ['105000', '108fff', true, true]]);
    // [base, base+6 pages) holds two whole areas and sticks into the third: ENOENT after removing those two.
    expectErrno(() => io.unmap(base, 6n * PG), 'ENOENT');
    expect(areas(io)).toEqual([['105000', '108fff', true, true]]);
    const pages = Array.from({ length: 10 }, (_, i) => base + BigInt(i) * PG);
    expect(covered(io, pages)).toEqual(pages.map((v) => v >= base + 5n * PG && v < base + 9n * PG));
    expect(io.unmapAll()).toBe(4n * PG);
    expect(io.areas!.length).toBe(0);
  });

  it("iommufd mode, TYPE1: an unmap inside a mapping cuts it; the rest stays mapped to the same memory in the domain", () => {
    using c = VfioContainer.open(f.ctx.binding, { mode: 'iommufd' });
    // The container's IOAS as the first group would make it, and a mock domain on it.
    const ioas = c.iommufdContainer!.ioasCreate();
    const t = new IommufdTest(c.iommufd!);
    const { hwptId } = t.mockDomain(ioas.id);
    c.setIommu('type1');
    expect(ioas.getHugePages()).toBe(false);
    const base = 0x100_0000n;
    c.mapDma(f.buffer.addr, base, { size: 8n * PG });
    expect(c.unmapDma(base + PG, PG)).toBe(PG);
    expect(c.unmapDma(base + 4n * PG, 2n * PG)).toBe(2n * PG);
    expect(areas(ioas)).toEqual([['1000000', '1000fff', true, true], ['1002000', '1003fff', true, true], ['1006000', '1007fff', true, true]]);
    for (const p of [0n, 2n, 3n, 6n, 7n]) t.checkMap(hwptId, base + p * PG, PG, f.buffer.addr + p * PG);
    expectErrno(() => t.checkMap(hwptId, base + PG, PG, f.buffer.addr + PG), 'EINVAL');
    // An unaligned cut is refused before anything is removed.
    expectErrno(() => c.unmapDma(base + 2n * PG + 0x800n, PG), 'EINVAL');
    expect(c.unmapAllDma()).toBe(5n * PG);
  });

  it('kernel-compat on the same IOAS (IOMMU_VFIO_IOAS) cuts the same way', () => {
    const ioas = f.ctx.allocIoas();
    f.ctx.setVfioIoas(ioas);
    const { hwptId } = f.test.mockDomain(ioas.id);
    f.ctx.binding.ioctlInt(f.ctx.fd, V.VFIO_SET_IOMMU, V.VFIO_TYPE1_IOMMU);
    const base = 0x100_0000n;
    ioas.mapUser(f.buffer.addr, 8n * PG, { iova: base });
    const unmap = (iova: bigint, size: bigint) => {
      const b = new Uint8Array(24);
      const d = new DataView(b.buffer);
      d.setUint32(0, 24, true);
      d.setBigUint64(8, iova, true);
      d.setBigUint64(16, size, true);
      f.ctx.binding.ioctl(f.ctx.fd, V.VFIO_IOMMU_UNMAP_DMA, b);
      return d.getBigUint64(16, true);
    };
    expect(unmap(base + PG, PG)).toBe(PG);
    expect(unmap(base + 4n * PG, 2n * PG)).toBe(2n * PG);
    for (const p of [0n, 2n, 3n, 6n, 7n]) f.test.checkMap(hwptId, base + p * PG, PG, f.buffer.addr + p * PG);
    expectErrno(() => f.test.checkMap(hwptId, base + PG, PG, f.buffer.addr + PG), 'EINVAL');
    expectErrno(() => unmap(base + 2n * PG + 0x800n, PG), 'EINVAL');
    // The same three areas: each can be unmapped whole, and nothing else is left.
    expect([ioas.unmap(base, PG), ioas.unmap(base + 2n * PG, 2n * PG), ioas.unmap(base + 6n * PG, 2n * PG)]).toEqual([PG, 2n * PG, 2n * PG]);
    expect(ioas.unmapAll()).toBe(0n);
  });
});
