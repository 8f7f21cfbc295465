/**
 * VFIO type1 container ioctls on an iommufd (the kernel's vfio_compat.c): the remaining cases of
 * the selftests' FIXTURE(iommufd), and type1 behaviour on the compat IOAS, on both backends.
 */
import { beforeEach, describe, expect, it } from 'vitest';
import { Iommufd, SimBinding, errnoName } from '../src/index.js';
import type { HwptPaging } from '../src/backends/sim/iommufd/hw_pagetable.js';
import type { IommufdCtx } from '../src/backends/sim/iommufd/main.js';
import { MAP_POPULATE } from '../src/backends/types.js';
import { IOCTLS, IOMMU_OPTION_HUGE_PAGES, IOMMU_OPTION_OP_GET, IOMMU_VFIO_IOAS_SET } from '../src/ioasid/uapi.js';
import * as V from '../src/ioasid/vfio_uapi.js';
import { IOMMU_MODE_NAMES, iommuMode, type IommuModeName } from '../src/migration/modes.js';
import { IommufdTest, MOCK_APERTURE_LAST, MOCK_APERTURE_START, MOCK_FLAGS_ACCESS_CREATE_NEEDS_PIN_PAGES } from '../src/testing.js';
import {
  BACKEND, BUFFER_SIZE, HUGEPAGE_SIZE, P, PAGE_SIZE, U64_MAX, errnoOf, expectErrno, hugeMockHwpt, mapDmaBytes as mapCmd, peakRssGrowth,
  unmapDmaBytes as unmapCmd, unmappedAddress, useIommufd,
} from './helpers.js';
import { MAP_HUGETLB, MAP_SHARED_ANON, NO_HUGETLB, ioasAlloc, mmapAnon } from './selftest_utils.js';

const PG = PAGE_SIZE;

const sizeOut = (b: Uint8Array) => new DataView(b.buffer).getBigUint64(16, true);

/** On the sim, how many entries a paging HWPT's domain holds; null on linux, whose page table cannot be looked into. */
function simDomainEntries(ctx: Iommufd, hwptId: number): number | null {
  if (!(ctx.binding instanceof SimBinding)) return null;
  const file = ctx.binding.proc.file(ctx.fd) as IommufdCtx;
  return (file.entry(hwptId)!.obj as HwptPaging).domain.mapped;
}

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

  /**
   * iommufd_vfio_iommu_get_info with `len` bytes of memory at the argument (the next page is
   * unmapped): it reads 16 bytes, then writes, for argsz and n IOVA ranges, info [0, min(argsz, 24)),
   * DMA_AVAIL [24, 36) once argsz >= 36 (and its next link [28, 32) once argsz >= 40), IOVA range i
   * [56 + 16i, 72 + 16i) once argsz >= 72 + 16i, and the IOVA_RANGE header [40, 56) once all fit.
   * A write past the memory is EFAULT; argsz < 16 is EINVAL.
   */
  it('GET_INFO with short memory: every argsz x length answers as the kernel does', () => {
    const ioas = f.ctx.allocIoas();
    f.ctx.setVfioIoas(ioas);
    const mem = f.ctx.mmap(2 * P);
    f.ctx.binding.munmap(mem.addr + BigInt(P), P);
    const reach = (argsz: number, n: number) => {
      let r = Math.min(argsz, 24);
      if (argsz >= 36) r = 36;
      for (let i = 0; i < n; i++) if (argsz >= 72 + 16 * i) r = 72 + 16 * i;
      return r;
    };
    const sizes = [...Array.from({ length: 112 }, (_, i) => i), 128, 4096, 0xffff_ffff];
    const wrong: string[] = [];
    for (const n of [1, 2]) {
      if (n === 2) f.test.addReserved(ioas.id, PG, PG);
      const total = 24 + 16 + 16 + 16 * n;
      for (let len = 1; len <= total + 8; len++) {
        const b = f.ctx.binding.view(mem.addr + BigInt(P - len), len);
        const d = new DataView(b.buffer, b.byteOffset, len);
        for (const argsz of sizes) {
          b.fill(0);
          for (let k = 0; k < 4 && k < len; k++) b[k] = (argsz >>> (8 * k)) & 0xff;
          const want = len < 16 ? 'EFAULT' : argsz < 16 ? 'EINVAL' : len < reach(argsz, n) ? 'EFAULT' : 'ok';
          const errno = errnoOf(() => io(V.VFIO_IOMMU_GET_INFO, b));
          // what came back: the errno, or argsz, flags, cap_offset and nr_iovas as far as written
          let got = errno ? errnoName(errno) : 'ok';
          let expected = want;
          if (!errno && want === 'ok') {
            got += ` ${d.getUint32(0, true)} ${d.getUint32(4, true)} ${argsz >= 20 ? d.getUint32(16, true) : '-'} ${argsz >= 56 + 16 * n ? d.getUint32(48, true) : '-'}`;
            expected += ` ${total} ${V.VFIO_IOMMU_INFO_PGSIZES | V.VFIO_IOMMU_INFO_CAPS} ${argsz >= 20 ? (argsz >= total ? 24 : 0) : '-'} ${argsz >= 56 + 16 * n ? n : '-'}`;
          }
          if (got !== expected) wrong.push(`argsz ${argsz}, ${len} bytes, ${n} ranges: ${got}, want ${expected}`);
        }
      }
    }
    expect(wrong).toEqual([]);
    f.ctx.binding.munmap(mem.addr, P);
  });

  /**
   * iommufd_vfio_map_dma maps with IOMMU_CACHE plus what the flags ask for. With neither READ nor
   * WRITE the area takes no domain: generic_pt's map_range (like io-pgtable-arm) refuses a map
   * without IOMMU_READ or IOMMU_WRITE with EINVAL. IOAS_MAP and COPY refuse such flags up front.
   */
  it('MAP_DMA with neither READ nor WRITE: accepted without a domain, EINVAL with one (the domain untouched)', () => {
    const ioas = f.ctx.allocIoas();
    f.ctx.setVfioIoas(ioas);
    const none = mapCmd(32, 0, f.buffer.addr, MOCK_APERTURE_START, 4n * PG);
    expect(io(V.VFIO_IOMMU_MAP_DMA, none)).toBe(0);
    // no domain takes that area: attaching a mock device fails and leaves nothing behind
    expectErrno(() => f.test.mockDomain(ioas.id), 'EINVAL');
    f.test.checkRefs(f.buffer.addr, 4n * PG, 0);
    const all = unmapCmd(24, V.VFIO_DMA_UNMAP_FLAG_ALL, 0n, 0n);
    expect(io(V.VFIO_IOMMU_UNMAP_DMA, all)).toBe(0);
    expect(sizeOut(all)).toBe(4n * PG);

    const dev = f.test.mockDomain(ioas.id);
    expect(simDomainEntries(f.ctx, dev.hwptId) ?? 0).toBe(0);
    for (let cycle = 0; cycle < 3; cycle++) {
      expectErrno(() => io(V.VFIO_IOMMU_MAP_DMA, none), 'EINVAL');
      expectErrno(() => f.test.checkMap(dev.hwptId, MOCK_APERTURE_START, 4n * PG, f.buffer.addr), 'EINVAL');
      f.test.checkRefs(f.buffer.addr, 4n * PG, 0);
      expect(simDomainEntries(f.ctx, dev.hwptId) ?? 0).toBe(0);
      // the same IOVAs map (R/W) and unmap cleanly afterwards
      expect(io(V.VFIO_IOMMU_MAP_DMA, mapCmd(32, RW, f.buffer.addr, MOCK_APERTURE_START, 4n * PG))).toBe(0);
      f.test.checkMap(dev.hwptId, MOCK_APERTURE_START, 4n * PG, f.buffer.addr);
      expect(simDomainEntries(f.ctx, dev.hwptId) ?? 8).toBe(8); // 2 KiB entries
      expect(io(V.VFIO_IOMMU_UNMAP_DMA, unmapCmd(24, 0, MOCK_APERTURE_START, 4n * PG))).toBe(0);
      expect(simDomainEntries(f.ctx, dev.hwptId) ?? 0).toBe(0);
      f.test.checkRefs(f.buffer.addr, 4n * PG, 0);
    }
    // IOAS_MAP and COPY with neither flag: EINVAL before anything is looked at
    expectErrno(() => ioas.mapUser(f.buffer.addr, 4n * PG, { iova: MOCK_APERTURE_START, readable: false, writeable: false }), 'EINVAL');
    ioas.mapUser(f.buffer.addr, 4n * PG, { iova: MOCK_APERTURE_START });
    expectErrno(() => f.ctx.allocIoas().copyFrom(ioas, MOCK_APERTURE_START, 4n * PG, { readable: false, writeable: false }), 'EINVAL');
    f.ctx.destroy(dev.stdevId);
  });

  it('MAP_DMA of 2^38 bytes over unmapped memory into an IOAS with a domain: EFAULT at once', () => {
    const ioas = f.ctx.allocIoas();
    hugeMockHwpt(f, ioas);
    f.ctx.setVfioIoas(ioas);
    const cmd = mapCmd(32, RW, unmappedAddress(f.ctx), 0n, 1n << 38n); // the whole MOCK_IOMMUPT_HUGE aperture
    expect(peakRssGrowth(() => expectErrno(() => io(V.VFIO_IOMMU_MAP_DMA, cmd), 'EFAULT'))).toBeLessThan(64 * 1024 * 1024);
    expect(ioas.unmapAll()).toBe(0n);
  }, 60_000);

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

/**
 * Port of the kernel selftest FIXTURE(vfio_compat_mock_domain) (iommufd.c), variants Ver1v2
 * (VFIO_TYPE1v2_IOMMU) and Ver1v0 (VFIO_TYPE1_IOMMU): an IOAS with a mock domain set as the
 * compat IOAS, then VFIO_SET_IOMMU. One `it` per TEST_F, named after it.
 *
 * Listed over the six IOMMU modes of the vfio selftests (IOMMU_MODE_NAMES): the C is the
 * iommufd_compat_type1 (Ver1v0) and iommufd_compat_type1v2 (Ver1v2) modes, VFIO container ioctls
 * on /dev/iommu; the others cannot express it and are skipped with the reason in their titles.
 */
const MOCK_DOMAIN_NEEDS = 'IOMMU_TEST_OP_MOCK_DOMAIN, which only an iommufd offers';
const COMPAT_VARIANTS: readonly { mode: IommuModeName; name: string; version: number; skip: string }[] = IOMMU_MODE_NAMES.map((mode) => {
  const version = iommuMode(mode).iommuType === 'type1' ? V.VFIO_TYPE1_IOMMU : V.VFIO_TYPE1v2_IOMMU;
  const name = version === V.VFIO_TYPE1_IOMMU ? 'Ver1v0' : 'Ver1v2';
  const skip = {
    vfio_type1_iommu: `needs ${MOCK_DOMAIN_NEEDS}: /dev/vfio/vfio's type1 container holds no mock device`,
    vfio_type1v2_iommu: `needs ${MOCK_DOMAIN_NEEDS}: /dev/vfio/vfio's type1 container holds no mock device`,
    iommufd_compat_type1: '',
    iommufd_compat_type1v2: '',
    iommufd: 'native iommufd has no VFIO container: the C drives VFIO_SET_IOMMU and MAP_DMA on the compat IOAS',
    ioasid_compat: 'the C issues raw VFIO container ioctls on the iommufd (the kernel\'s vfio_compat.c); the library\'s re-expression answers none on the fd',
  }[mode];
  return { mode, name, version, skip };
});

for (const variant of COMPAT_VARIANTS) describe(`vfio_compat_mock_domain ${variant.name} [${variant.mode}] [${BACKEND}]`, () => {
  if (variant.skip) {
    for (const t of ['simple_close', 'option_huge_pages', 'get_info', 'map', 'huge_map']) it.skip(`${t} (skipped: ${variant.skip})`, () => {});
    return;
  }
  const f = useIommufd();
  let ioasId = 0;
  const io = (req: number, arg: Uint8Array | null) => f.ctx.binding.ioctl(f.ctx.fd, req, arg);
  const RW = V.VFIO_DMA_MAP_FLAG_READ | V.VFIO_DMA_MAP_FLAG_WRITE;

  // FIXTURE_SETUP(vfio_compat_mock_domain)
  beforeEach(() => {
    // Create what VFIO would consider a group
    ioasId = ioasAlloc(f.ctx).id;
    f.test.mockDomain(ioasId);
    // Attach it to the vfio compat
    f.ctx.ioctl(f.ctx.cmd(IOCTLS.VFIO_IOAS).u32('ioas_id', ioasId).u16('op', IOMMU_VFIO_IOAS_SET));
    expect(f.ctx.binding.ioctlInt(f.ctx.fd, V.VFIO_SET_IOMMU, variant.version)).toBe(0);
  });

  it('simple_close', () => {});

  it('option_huge_pages', () => {
    const c = f.ctx.cmd(IOCTLS.OPTION).u32('option_id', IOMMU_OPTION_HUGE_PAGES).u16('op', IOMMU_OPTION_OP_GET)
      .u64('val64', 3n).u32('object_id', ioasId);
    f.ctx.ioctl(c);
    expect(c.get64('val64')).toBe(variant.version === V.VFIO_TYPE1_IOMMU ? 0n : 1n);
  });

  it('get_info', () => {
    // `buffer` holds the command; the kernel must never write past argsz (0xAA canary).
    const buffer = new Uint8Array(BUFFER_SIZE);
    const dv = new DataView(buffer.buffer);
    const INFO_SIZE = V.vfio_iommu_type1_info.size; // 24
    const info = (argsz: number) => {
      buffer.fill(0, 0, INFO_SIZE);
      dv.setUint32(0, argsz, true);
    };
    const argsz = () => dv.getUint32(0, true);
    const flags = () => dv.getUint32(4, true);
    const iovaPgsizes = () => dv.getBigUint64(8, true);
    const capOffset = () => dv.getUint32(16, true);
    /** ioctl_check_buf */
    const ioctlCheckBuf = () => {
      const cmdLen = argsz();
      buffer.fill(0xaa, cmdLen);
      expect(io(V.VFIO_IOMMU_GET_INFO, buffer)).toBe(0);
      expect(buffer.subarray(cmdLen).every((b) => b === 0xaa)).toBe(true);
    };
    /** check_vfio_info_cap_chain */
    const checkCapChain = () => {
      const HDR = 8; // sizeof(struct vfio_info_cap_header)
      expect(argsz()).toBeGreaterThanOrEqual(capOffset() + HDR);
      let cap = capOffset();
      for (;;) {
        const next = dv.getUint32(cap + 4, true);
        const capSize = next ? next - cap : argsz() - cap;
        switch (dv.getUint16(cap, true)) {
          case V.VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE:
            expect(dv.getUint16(cap + 2, true)).toBe(1);
            expect(dv.getUint32(cap + 8, true)).toBe(1); // nr_iovas
            expect(dv.getBigUint64(cap + 16, true)).toBe(MOCK_APERTURE_START);
            expect(dv.getBigUint64(cap + 24, true)).toBe(MOCK_APERTURE_LAST);
            break;
          case V.VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL:
            expect(dv.getUint16(cap + 2, true)).toBe(1);
            expect(capSize).toBe(12); // sizeof(struct vfio_iommu_type1_info_dma_avail)
            break;
          default:
            expect.unreachable(`unknown cap id ${dv.getUint16(cap, true)}`);
        }
        if (!next) break;
        expect(argsz()).toBeGreaterThanOrEqual(next + HDR);
        expect(next).toBeGreaterThanOrEqual(cap);
        cap = next;
      }
    };

    // Pre-cap ABI
    info(16); // offsetof(struct vfio_iommu_type1_info, cap_offset)
    ioctlCheckBuf();
    expect(iovaPgsizes()).not.toBe(0n);
    expect(flags()).toBe(V.VFIO_IOMMU_INFO_PGSIZES | V.VFIO_IOMMU_INFO_CAPS);

    // Read the cap chain size
    info(INFO_SIZE);
    ioctlCheckBuf();
    expect(iovaPgsizes()).not.toBe(0n);
    expect(flags()).toBe(V.VFIO_IOMMU_INFO_PGSIZES | V.VFIO_IOMMU_INFO_CAPS);
    expect(capOffset()).toBe(0);
    expect(argsz()).toBeGreaterThan(INFO_SIZE);

    // Read the caps, kernel should never create a corrupted caps
    const caplen = argsz();
    for (let i = INFO_SIZE; i < caplen; i++) {
      info(i);
      ioctlCheckBuf();
      expect(flags()).toBe(V.VFIO_IOMMU_INFO_PGSIZES | V.VFIO_IOMMU_INFO_CAPS);
      if (!capOffset()) continue;
      checkCapChain();
    }
  });

  /** shuffle_array with a fixed-seed rand() */
  function shuffle(array: bigint[]): void {
    let seed = 1;
    const rand = () => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) >>> 16;
    for (let i = 0; i !== array.length; i++) {
      const tmp = array[i]!;
      const other = rand() % (array.length - i);
      array[i] = array[other]!;
      array[other] = tmp;
    }
  }

  it('map', () => {
    const BUF = BigInt(BUFFER_SIZE);
    const mapC = mapCmd(32, RW, f.buffer.addr, MOCK_APERTURE_START, BUF);
    const unmapC = unmapCmd(24, 0, MOCK_APERTURE_START, BUF);
    const md = new DataView(mapC.buffer);
    const ud = new DataView(unmapC.buffer);
    const pagesIova: bigint[] = [];

    // Simple map/unmap
    expect(io(V.VFIO_IOMMU_MAP_DMA, mapC)).toBe(0);
    expect(io(V.VFIO_IOMMU_UNMAP_DMA, unmapC)).toBe(0);
    expect(sizeOut(unmapC)).toBe(BUF);
    // Unmap of empty is success
    expect(io(V.VFIO_IOMMU_UNMAP_DMA, unmapC)).toBe(0);

    // UNMAP_FLAG_ALL requires 0 iova/size
    expect(io(V.VFIO_IOMMU_MAP_DMA, mapC)).toBe(0);
    ud.setUint32(4, V.VFIO_DMA_UNMAP_FLAG_ALL, true);
    expectErrno(() => io(V.VFIO_IOMMU_UNMAP_DMA, unmapC), 'EINVAL');

    ud.setBigUint64(8, 0n, true);
    ud.setBigUint64(16, 0n, true);
    expect(io(V.VFIO_IOMMU_UNMAP_DMA, unmapC)).toBe(0);
    expect(sizeOut(unmapC)).toBe(BUF);

    // Small pages
    for (let i = 0n; i !== BUF / PG; i++) {
      pagesIova[Number(i)] = MOCK_APERTURE_START + i * PG;
      md.setBigUint64(16, pagesIova[Number(i)]!, true);
      md.setBigUint64(8, f.buffer.addr + i * PG, true);
      md.setBigUint64(24, PG, true);
      expect(io(V.VFIO_IOMMU_MAP_DMA, mapC)).toBe(0);
    }
    shuffle(pagesIova);

    ud.setUint32(4, 0, true);
    ud.setBigUint64(16, PG, true);
    for (const iova of pagesIova) {
      ud.setBigUint64(8, iova, true);
      expect(io(V.VFIO_IOMMU_UNMAP_DMA, unmapC)).toBe(0);
    }
  });

  it.skipIf(NO_HUGETLB)(`huge_map${NO_HUGETLB ? ` (skipped: ${NO_HUGETLB})` : ''}`, () => {
    const bufSize = 2 * HUGEPAGE_SIZE;
    // Test huge pages and splitting
    const buf = mmapAnon(f.ctx, bufSize, MAP_SHARED_ANON | MAP_HUGETLB | MAP_POPULATE);
    expect(io(V.VFIO_IOMMU_MAP_DMA, mapCmd(32, RW, buf, MOCK_APERTURE_START, BigInt(bufSize)))).toBe(0);

    const size = BigInt(bufSize / 16);
    const pagesIova = Array.from({ length: 16 }, (_, i) => MOCK_APERTURE_START + BigInt(i) * size);
    shuffle(pagesIova);

    // type1 mode can cut up larger mappings, type1v2 always fails
    for (const iova of pagesIova) {
      const unmapC = unmapCmd(24, 0, iova, size);
      if (variant.version === V.VFIO_TYPE1_IOMMU) expect(io(V.VFIO_IOMMU_UNMAP_DMA, unmapC)).toBe(0);
      else expectErrno(() => io(V.VFIO_IOMMU_UNMAP_DMA, unmapC), 'ENOENT');
    }
    f.ctx.binding.munmap(buf, bufSize); // (the C test leaves it to process exit)
  });
});
