/**
 * VFIO type1 container ioctls on an iommufd (the kernel's vfio_compat.c): the remaining cases of
 * the selftests' FIXTURE(iommufd), and type1 behaviour on the compat IOAS, on both backends.
 */
import { describe, expect, it } from 'vitest';
import { Iommufd } from '../src/index.js';
import * as V from '../src/ioasid/vfio_uapi.js';
import { IommufdTest, MOCK_APERTURE_START, MOCK_FLAGS_ACCESS_CREATE_NEEDS_PIN_PAGES } from '../src/testing.js';
import { BACKEND, PAGE_SIZE, U64_MAX, expectErrno, useIommufd } from './helpers.js';

const PG = PAGE_SIZE;

function mapCmd(argsz: number, flags: number, vaddr: bigint, iova: bigint, size: bigint): Uint8Array {
  const b = new Uint8Array(V.vfio_iommu_type1_dma_map.size);
  const d = new DataView(b.buffer);
  d.setUint32(0, argsz, true);
  d.setUint32(4, flags, true);
  d.setBigUint64(8, vaddr, true);
  d.setBigUint64(16, iova, true);
  d.setBigUint64(24, size, true);
  return b;
}

function unmapCmd(argsz: number, flags: number, iova: bigint, size: bigint): Uint8Array {
  const b = new Uint8Array(V.vfio_iommu_type1_dma_unmap.size);
  const d = new DataView(b.buffer);
  d.setUint32(0, argsz, true);
  d.setUint32(4, flags, true);
  d.setBigUint64(8, iova, true);
  d.setBigUint64(16, size, true);
  return b;
}

const sizeOut = (b: Uint8Array) => new DataView(b.buffer).getBigUint64(16, true);

describe(`VFIO container ioctls on an iommufd [${BACKEND}]`, () => {
  const f = useIommufd();
  const io = (req: number, arg: Uint8Array | null) => f.ctx.binding.ioctl(f.ctx.fd, req, arg);
  const ioInt = (req: number, v: number) => f.ctx.binding.ioctlInt(f.ctx.fd, req, v);
  const RW = V.VFIO_DMA_MAP_FLAG_READ | V.VFIO_DMA_MAP_FLAG_WRITE;

  it('simple_ioctls: API version 0, TYPE1v2 extension 1', () => {
    expect(ioInt(V.VFIO_GET_API_VERSION, 0)).toBe(V.VFIO_API_VERSION);
    expect(ioInt(V.VFIO_CHECK_EXTENSION, V.VFIO_TYPE1v2_IOMMU)).toBe(1);
  });

  it('unmap_cmd: argsz 1 EINVAL, unknown flag EINVAL, no compat IOAS ENODEV', () => {
    expectErrno(() => io(V.VFIO_IOMMU_UNMAP_DMA, unmapCmd(1, 0, MOCK_APERTURE_START, PG)), 'EINVAL');
    expectErrno(() => io(V.VFIO_IOMMU_UNMAP_DMA, unmapCmd(24, 1 << 31, MOCK_APERTURE_START, PG)), 'EINVAL');
    expectErrno(() => io(V.VFIO_IOMMU_UNMAP_DMA, unmapCmd(24, 0, MOCK_APERTURE_START, PG)), 'ENODEV');
  });

  it('map_cmd: argsz 1 EINVAL, unknown flag EINVAL, no compat IOAS ENODEV', () => {
    expectErrno(() => io(V.VFIO_IOMMU_MAP_DMA, mapCmd(1, 0, f.buffer.addr, MOCK_APERTURE_START, PG)), 'EINVAL');
    expectErrno(() => io(V.VFIO_IOMMU_MAP_DMA, mapCmd(32, 1 << 31, f.buffer.addr, MOCK_APERTURE_START, PG)), 'EINVAL');
    expectErrno(() => io(V.VFIO_IOMMU_MAP_DMA, mapCmd(32, RW, f.buffer.addr, MOCK_APERTURE_START, PG)), 'ENODEV');
  });

  it('info_cmd: argsz 1 EINVAL, no compat IOAS ENODEV', () => {
    const b = new Uint8Array(24);
    new DataView(b.buffer).setUint32(0, 1, true);
    expectErrno(() => io(V.VFIO_IOMMU_GET_INFO, b), 'EINVAL');
    new DataView(b.buffer).setUint32(0, 24, true);
    expectErrno(() => io(V.VFIO_IOMMU_GET_INFO, b), 'ENODEV');
  });

  it('set_iommu_cmd: TYPE1v2 and TYPE1 need a compat IOAS (ENODEV); other types EINVAL', () => {
    expectErrno(() => ioInt(V.VFIO_SET_IOMMU, V.VFIO_TYPE1v2_IOMMU), 'ENODEV');
    expectErrno(() => ioInt(V.VFIO_SET_IOMMU, V.VFIO_TYPE1_IOMMU), 'ENODEV');
    expectErrno(() => ioInt(V.VFIO_SET_IOMMU, V.VFIO_SPAPR_TCE_IOMMU), 'EINVAL');
  });

  it('extensions: TYPE1, TYPE1v2, UNMAP_ALL yes; NOIOMMU, UPDATE_VADDR no; DMA_CC needs the compat IOAS', () => {
    expect([V.VFIO_TYPE1_IOMMU, V.VFIO_TYPE1v2_IOMMU, V.VFIO_UNMAP_ALL, V.VFIO_NOIOMMU_IOMMU, V.VFIO_UPDATE_VADDR, 6].map((t) => ioInt(V.VFIO_CHECK_EXTENSION, t)))
      .toEqual([1, 1, 1, 0, 0, 0]);
    expectErrno(() => ioInt(V.VFIO_CHECK_EXTENSION, V.VFIO_DMA_CC_IOMMU), 'ENODEV');
    f.ctx.setVfioIoas(f.ctx.allocIoas());
    expect(ioInt(V.VFIO_CHECK_EXTENSION, V.VFIO_DMA_CC_IOMMU)).toBe(1);
  });

  it('TYPE1v2: MAP_DMA maps at the fixed IOVA; unmap inside a mapping ENOENT; unmap of nothing is 0 bytes', () => {
    const ioas = f.ctx.allocIoas();
    f.ctx.setVfioIoas(ioas);
    expect(ioInt(V.VFIO_SET_IOMMU, V.VFIO_TYPE1v2_IOMMU)).toBe(0);
    expect(io(V.VFIO_IOMMU_MAP_DMA, mapCmd(32, RW, f.buffer.addr, 0x100000n, 4n * PG))).toBe(0);
    expectErrno(() => io(V.VFIO_IOMMU_MAP_DMA, mapCmd(32, RW, f.buffer.addr, 0x101000n, PG)), 'EEXIST');
    const inside = unmapCmd(24, 0, 0x101000n, PG);
    expectErrno(() => io(V.VFIO_IOMMU_UNMAP_DMA, inside), 'ENOENT');
    expect(sizeOut(inside)).toBe(0n);
    const nothing = unmapCmd(24, 0, 0x800000n, PG);
    expect(io(V.VFIO_IOMMU_UNMAP_DMA, nothing)).toBe(0);
    expect(sizeOut(nothing)).toBe(0n);
    expectErrno(() => io(V.VFIO_IOMMU_UNMAP_DMA, unmapCmd(24, V.VFIO_DMA_UNMAP_FLAG_ALL, PG, 0n)), 'EINVAL');
    const all = unmapCmd(24, V.VFIO_DMA_UNMAP_FLAG_ALL, 0n, 0n);
    expect(io(V.VFIO_IOMMU_UNMAP_DMA, all)).toBe(0);
    expect(sizeOut(all)).toBe(4n * PG);
    expect(ioas.getHugePages()).toBe(true);
  });

  it('TYPE1: huge pages off; unmapping inside a mapping cuts it (the rest stays mapped)', () => {
    const ioas = f.ctx.allocIoas();
    f.ctx.setVfioIoas(ioas);
    expect(ioInt(V.VFIO_SET_IOMMU, V.VFIO_TYPE1_IOMMU)).toBe(0);
    expect(ioas.getHugePages()).toBe(false);
    expect(ioas.iovaRanges().alignment).toBe(PG);
    io(V.VFIO_IOMMU_MAP_DMA, mapCmd(32, RW, f.buffer.addr, 0x100000n, 4n * PG));
    const mid = unmapCmd(24, 0, 0x101000n, PG);
    expect(io(V.VFIO_IOMMU_UNMAP_DMA, mid)).toBe(0);
    expect(sizeOut(mid)).toBe(PG);
    // What is left are two areas: [0x100000, +1 page) and [0x102000, +2 pages).
    expect(ioas.unmap(0x102000n, 2n * PG)).toBe(2n * PG);
    expect(ioas.unmap(0x100000n, PG)).toBe(PG);
    // An unaligned cut is refused.
    io(V.VFIO_IOMMU_MAP_DMA, mapCmd(32, RW, f.buffer.addr, 0x200000n, 4n * PG));
    expectErrno(() => io(V.VFIO_IOMMU_UNMAP_DMA, unmapCmd(24, 0, 0x200800n, PG)), 'EINVAL');
    expect(ioas.unmapAll()).toBe(4n * PG);
  });

  it('GET_INFO: argsz protocol and the DMA_AVAIL -> IOVA_RANGE capability chain; no byte past argsz', () => {
    const ioas = f.ctx.allocIoas();
    f.ctx.setVfioIoas(ioas);
    f.test.addReserved(ioas.id, PG, PG);
    const info = (argsz: number) => {
      const b = new Uint8Array(256).fill(0xaa);
      new DataView(b.buffer).setUint32(0, argsz, true);
      io(V.VFIO_IOMMU_GET_INFO, b);
      return b;
    };
    const small = info(24);
    const sd = new DataView(small.buffer);
    const total = sd.getUint32(0, true);
    expect(sd.getUint32(4, true)).toBe(V.VFIO_IOMMU_INFO_PGSIZES | V.VFIO_IOMMU_INFO_CAPS);
    expect(sd.getBigUint64(8, true)).toBe(U64_MAX & ~(PG - 1n));
    expect(sd.getUint32(16, true)).toBe(0); // caps did not fit: cap_offset 0
    expect(total).toBe(24 + 16 + 16 + 2 * 16);
    expect(small.subarray(24).every((x) => x === 0xaa)).toBe(true);

    const full = info(total);
    const d = new DataView(full.buffer);
    expect(d.getUint32(16, true)).toBe(24);
    expect([d.getUint16(24, true), d.getUint16(26, true), d.getUint32(28, true), d.getUint32(32, true)]).toEqual([V.VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL, 1, 40, 0xffff_ffff]);
    expect([d.getUint16(40, true), d.getUint16(42, true), d.getUint32(44, true), d.getUint32(48, true)]).toEqual([V.VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE, 1, 0, 2]);
    expect([d.getBigUint64(56, true), d.getBigUint64(64, true), d.getBigUint64(72, true), d.getBigUint64(80, true)]).toEqual([0n, PG - 1n, 2n * PG, U64_MAX]);
    expect(full.subarray(total).every((x) => x === 0xaa)).toBe(true);

    for (let argsz = 25; argsz < total; argsz++) {
      const b = info(argsz);
      expect(new DataView(b.buffer).getUint32(0, true), `argsz ${argsz}`).toBe(total);
      expect(b.subarray(argsz).every((x) => x === 0xaa), `argsz ${argsz}: nothing written past argsz`).toBe(true);
    }
  });

  it('an iommufd closed while an access fd is open keeps its pins until that fd closes', () => {
    const ctx = Iommufd.open({ backend: f.ctx.binding });
    const ioas = ctx.allocIoas();
    ctx.setVfioIoas(ioas);
    ctx.binding.ioctl(ctx.fd, V.VFIO_IOMMU_MAP_DMA, mapCmd(32, RW, f.buffer.addr, 0x100000n, 4n * PG));
    const t = new IommufdTest(ctx);
    const fd = t.createAccess(ioas.id, MOCK_FLAGS_ACCESS_CREATE_NEEDS_PIN_PAGES);
    t.accessPages(fd, 0x100000n, 4n * PG);
    f.test.checkRefs(f.buffer.addr, 4n * PG, 1);
    // The access file holds the context: closing the iommufd first keeps the pins...
    ctx.close();
    f.test.checkRefs(f.buffer.addr, 4n * PG, 1);
    // ...until the access fd goes too.
    t.closeAccess(fd);
    f.test.checkRefs(f.buffer.addr, 4n * PG, 0);
  });
});
