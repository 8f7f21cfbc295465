/**
 * Port of the kernel selftest FIXTURE(iommufd_ioas), variant no_domain (an IOAS with no device
 * attached, base_iova 0), from tools/testing/selftests/iommu/iommufd.c. The mock-domain variants
 * need simulated devices and come with them.
 */
import { describe, expect, it } from 'vitest';
import { uapi } from '../src/index.js';
import { MOCK_ACCESS_RW_SLOW_PATH, MOCK_ACCESS_RW_WRITE, MOCK_APERTURE_START, MOCK_FLAGS_ACCESS_CREATE_NEEDS_PIN_PAGES, MOCK_PAGE_SIZE } from '../src/testing.js';
import { BACKEND, BUFFER_SIZE, P, PAGE_SIZE, U64_MAX, expectErrno, rawIoctl, useIommufd } from './helpers.js';

const PG = PAGE_SIZE;

describe(`iommufd_ioas no_domain [${BACKEND}]`, () => {
  const f = useIommufd();
  const setup = () => f.ctx.allocIoas();

  it('ioas_auto_destroy / ioas_area_auto_destroy: areas freed at close', () => {
    const ioas = setup();
    for (let i = 0n; i < 10n; i++) ioas.mapUser(f.buffer.addr, PG, { iova: i * PG });
  });

  it('ioas_destroy: an IOAS with no device can be destroyed', () => {
    setup().destroy();
  });

  it('ioas_area_destroy: adding an area does not change ability to destroy', () => {
    const ioas = setup();
    ioas.mapUser(f.buffer.addr, PG, { iova: 0n });
    ioas.destroy();
    expectErrno(() => ioas.destroy(), 'ENOENT');
  });

  it('alloc_hwpt_nested (no device): HWPT_ALLOC ENOENT, nested ENOENT, replace ENOENT', () => {
    const ioas = setup();
    const hwpt = (devId: number, ptId: number, dataType: number, dataLen: number) => {
      const data = f.ctx.mmap(4096);
      const c = f.ctx.cmd(uapi.IOCTLS.HWPT_ALLOC).u32('dev_id', devId).u32('pt_id', ptId)
        .u32('data_type', dataType).u32('data_len', dataLen).u64('data_uptr', dataLen ? data.addr : 0n);
      try {
        f.ctx.ioctl(c);
      } finally {
        data.close();
      }
    };
    expectErrno(() => hwpt(0, ioas.id, 0, 0), 'ENOENT');
    expectErrno(() => hwpt(0, 0, 0xdead /* IOMMU_HWPT_DATA_SELFTEST */, 4), 'ENOENT');
    expectErrno(() => hwpt(0, 0, 0xdead, 4), 'ENOENT');
    expectErrno(() => f.test.mockDomainReplace(0, 0), 'ENOENT');
  });

  it('hwpt_attach (no device): a mock device on HWPT id 0 is ENOENT', () => {
    setup();
    expectErrno(() => f.test.mockDomain(0), 'ENOENT');
  });

  it('get_hw_info (no device): ENOENT with an exact and a larger buffer', () => {
    setup();
    const data = f.ctx.mmap(4096);
    for (const len of [8, 16]) {
      const c = f.ctx.cmd(uapi.IOCTLS.GET_HW_INFO).u32('dev_id', 0).u32('data_len', len).u64('data_uptr', data.addr);
      expectErrno(() => f.ctx.ioctl(c), 'ENOENT');
    }
    data.close();
  });

  it('area: unmap of nothing ENOENT; fixed map/unmap; no split; over-map EEXIST; unmap all', () => {
    const ioas = setup();
    for (let i = 0n; i < 10n; i++) expectErrno(() => ioas.unmap(i * PG, PG), 'ENOENT');
    for (let i = 0n; i < 10n; i++) ioas.mapUser(f.buffer.addr, PG, { iova: i * PG });
    for (let i = 0n; i < 10n; i++) expect(ioas.unmap(i * PG, PG)).toBe(PG);
    ioas.mapUser(f.buffer.addr, 2n * PG, { iova: 16n * PG });
    expectErrno(() => ioas.unmap(16n * PG, PG), 'ENOENT');
    expectErrno(() => ioas.unmap(17n * PG, PG), 'ENOENT');
    expectErrno(() => ioas.mapUser(f.buffer.addr, 2n * PG, { iova: 16n * PG }), 'EEXIST');
    expectErrno(() => ioas.mapUser(f.buffer.addr, PG, { iova: 16n * PG }), 'EEXIST');
    expectErrno(() => ioas.mapUser(f.buffer.addr, PG, { iova: 17n * PG }), 'EEXIST');
    expectErrno(() => ioas.mapUser(f.buffer.addr, 2n * PG, { iova: 15n * PG }), 'EEXIST');
    expectErrno(() => ioas.mapUser(f.buffer.addr, 3n * PG, { iova: 15n * PG }), 'EEXIST');
    expect(ioas.unmap(0n, U64_MAX)).toBe(2n * PG);
    expect(ioas.unmap(0n, U64_MAX)).toBe(0n);
  });

  it('unmap_fully_contained_areas: overhangs ENOENT; a range over 4 areas and gaps unmaps 32 pages', () => {
    const ioas = setup();
    const base = 4n * PG;
    for (let i = 0n; i < 4n; i++) ioas.mapUser(f.buffer.addr, 8n * PG, { iova: base + i * 16n * PG });
    expectErrno(() => ioas.unmap(base - 4n * PG, 8n * PG), 'ENOENT');
    expectErrno(() => ioas.unmap(base + 3n * 16n * PG + 8n * PG - 4n * PG, 8n * PG), 'ENOENT');
    expect(ioas.unmap(base - 4n * PG, 3n * 16n * PG + 8n * PG + 4n * PG)).toBe(32n * PG);
  });

  it('area_auto_iova: alignment from the length, avoids reserved, stays in the allowed range', () => {
    const ioas = setup();
    const iovas: bigint[] = [];
    for (let i = 0; i < 10; i++) iovas.push(ioas.mapUser(f.buffer.addr, PG));
    for (const iova of iovas) ioas.unmap(iova, PG);
    const ffsAlign = (len: bigint) => len & -len;
    // No domain: nothing is pinned, so an address that is not mapped at all still maps.
    for (let i = 1n; i <= 10n; i++) {
      const iova = ioas.mapUser(1n << 31n, PG * i);
      expect(iova % ffsAlign(PG * i)).toBe(0n);
      iovas[Number(i) - 1] = iova;
    }
    for (let i = 1n; i <= 10n; i++) ioas.unmap(iovas[Number(i) - 1]!, PG * i);

    f.test.addReserved(ioas.id, 4n * PG, 100n * PG);
    for (let i = 1n; i <= 10n; i++) {
      const iova = ioas.mapUser(f.buffer.addr, PG * i);
      expect(iova % ffsAlign(PG * i)).toBe(0n);
      expect(iova > 4n * PG && iova < 104n * PG).toBe(false);
      iovas[Number(i) - 1] = iova;
    }
    for (let i = 1n; i <= 10n; i++) ioas.unmap(iovas[Number(i) - 1]!, PG * i);

    expectErrno(() => ioas.allowIovas([{ start: PG, last: 600n * PG }]), 'EADDRINUSE');
    const range = { start: 200n * PG, last: 600n * PG - 1n };
    ioas.allowIovas([range]);
    for (let i = 1n; i <= 10n; i++) {
      const len = PG * i;
      const iova = ioas.mapUser(f.buffer.addr, len);
      expect(iova % ffsAlign(len)).toBe(0n);
      expect(iova >= range.start && iova <= range.last && iova + len <= range.last + 1n).toBe(true);
      iovas[Number(i) - 1] = iova;
    }
    for (let i = 1n; i <= 10n; i++) ioas.unmap(iovas[Number(i) - 1]!, PG * i);
  });

  it('auto IOVA alignment is lowered to the lowest set bit of the source address', () => {
    // 4 pages from a 2 MiB-aligned VA: alignment 16 KiB, first fit above PAGE_SIZE is 0x4000.
    expect(setup().mapUser(f.buffer.addr, 4n * PG)).toBe(0x4000n);
    // The same length from VA+4 KiB: alignment drops to 4 KiB, so the first fit is 0x1000.
    expect(setup().mapUser(f.buffer.addr + PG, 4n * PG)).toBe(0x1000n);
    // A sub-page source offset is kept in the IOVA.
    expect(setup().mapUser(f.buffer.addr + 0x123n, PG) % PG).toBe(0x123n);
  });

  it('reserved_overflow: a reservation up to the top leaves no hole for 0x5000 bytes (ENOSPC)', () => {
    const ioas = setup();
    f.test.addReserved(ioas.id, 6n, 0xffff_ffff_ffff_8001n);
    expectErrno(() => ioas.mapUser(f.buffer.addr, 0x5000n), 'ENOSPC');
  });

  it('area_allowed: reserved inside allowed and allowed over reserved are both EADDRINUSE', () => {
    const ioas = setup();
    ioas.allowIovas([{ start: 0n, last: 600n * PG }]);
    expectErrno(() => f.test.addReserved(ioas.id, PG, PG), 'EADDRINUSE');
    ioas.allowIovas([]);
    f.test.addReserved(ioas.id, PG, PG);
    expectErrno(() => ioas.allowIovas([{ start: 0n, last: 600n * PG }]), 'EADDRINUSE');
  });

  it('copy_area: copy inside one IOAS and into a fresh IOAS at IOVA 0', () => {
    const ioas = setup();
    ioas.mapUser(f.buffer.addr, PG, { iova: 0n });
    expect(ioas.copyFrom(ioas, 0n, PG, { iova: PG, readable: false })).toBe(PG);
    const dst = f.ctx.allocIoas();
    expect(dst.copyFrom(ioas, 0n, PG, { iova: 0n, readable: false })).toBe(0n);
  });

  it('iova_ranges: one range [0, SIZE_MAX]; EMSGSIZE with count; two ranges after a reservation', () => {
    const ioas = setup();
    expect(ioas.iovaRanges()).toEqual({ ranges: [{ start: 0n, last: U64_MAX }], alignment: 1n });

    const arr = f.ctx.mmap(BUFFER_SIZE);
    const c = f.ctx.cmd(uapi.IOCTLS.IOAS_IOVA_RANGES).u32('ioas_id', ioas.id).u32('num_iovas', 0).u64('allowed_iovas', arr.addr);
    expectErrno(() => f.ctx.ioctl(c), 'EMSGSIZE');
    expect(c.get32('num_iovas')).toBe(1);
    expect(arr.bytes.subarray(0, 16).every((b) => b === 0)).toBe(true);

    f.test.addReserved(ioas.id, PG, PG);
    expect(ioas.iovaRanges().ranges).toEqual([{ start: 0n, last: PG - 1n }, { start: 2n * PG, last: U64_MAX }]);

    const c2 = f.ctx.cmd(uapi.IOCTLS.IOAS_IOVA_RANGES).u32('ioas_id', ioas.id).u32('num_iovas', 1).u64('allowed_iovas', arr.addr);
    expectErrno(() => f.ctx.ioctl(c2), 'EMSGSIZE');
    expect(c2.get32('num_iovas')).toBe(2);
    const dv = new DataView(arr.bytes.buffer, arr.bytes.byteOffset, 32);
    expect([dv.getBigUint64(0, true), dv.getBigUint64(8, true)]).toEqual([0n, PG - 1n]);
    expect([dv.getBigUint64(16, true), dv.getBigUint64(24, true)]).toEqual([0n, 0n]);
    arr.close();
  });

  it('ioas_option_huge_pages: GET 1, SET 0, GET 0, SET 2 EINVAL, SET 1', () => {
    const ioas = setup();
    expect(ioas.getHugePages()).toBe(true);
    ioas.setHugePages(false);
    expect(ioas.getHugePages()).toBe(false);
    expectErrno(() => ioas.setHugePages(2n), 'EINVAL');
    ioas.setHugePages(true);
  });

  it('ioas_iova_alloc: every length from 1 to 2*PAGE_SIZE-1 maps and unmaps with no domain', () => {
    const ioas = setup();
    for (let len = 1n; len < 2n * PG; len++) {
      const iova = ioas.mapUser(f.buffer.addr, len);
      ioas.unmap(iova, len);
    }
  });

  it('ioas_align_change: HUGE_PAGES=0 raises alignment to PAGE_SIZE; misaligned areas block it', () => {
    const ioas = setup();
    const M = BigInt(MOCK_PAGE_SIZE);
    ioas.mapUser(f.buffer.addr, PG, { iova: MOCK_APERTURE_START });
    ioas.setHugePages(false);
    expectErrno(() => ioas.mapUser(f.buffer.addr + M, PG, { iova: MOCK_APERTURE_START + PG }), 'EINVAL');
    ioas.setHugePages(false);
    ioas.setHugePages(true);
    ioas.mapUser(f.buffer.addr + M, PG, { iova: MOCK_APERTURE_START + PG });
    expectErrno(() => ioas.setHugePages(false), 'EADDRINUSE');
    expect(ioas.iovaRanges().alignment).toBe(1n);
    ioas.unmap(MOCK_APERTURE_START + PG, PG);
    ioas.unmap(MOCK_APERTURE_START, PG);
  });

  it('copy_sweep: 2048-byte windows every 511 bytes copy iff inside the mapped span, else ENOENT', () => {
    const ioas = setup();
    const dst = f.ctx.allocIoas();
    const last = MOCK_APERTURE_START + BigInt(BUFFER_SIZE) - 2n;
    const len = BigInt(MOCK_PAGE_SIZE);
    ioas.mapUser(f.buffer.addr, last - MOCK_APERTURE_START + 1n, { iova: MOCK_APERTURE_START });
    let ok = 0;
    for (let iova = MOCK_APERTURE_START - PG; iova <= last; iova += 511n) {
      if (iova < MOCK_APERTURE_START || iova + len - 1n > last) {
        expectErrno(() => dst.copyFrom(ioas, iova, len, { iova: MOCK_APERTURE_START, readable: false }), 'ENOENT');
      } else {
        dst.copyFrom(ioas, iova, len, { iova: MOCK_APERTURE_START, readable: false });
        dst.unmap(MOCK_APERTURE_START, len);
        ok++;
      }
    }
    expect(ok).toBeGreaterThan(100);
    dst.destroy();
  });

  it('access_pin (without the mock-domain step): pin, double pin, unpin for 1..15 pages', () => {
    const ioas = setup();
    const fd = f.test.createAccess(ioas.id, MOCK_FLAGS_ACCESS_CREATE_NEEDS_PIN_PAGES);
    for (let n = 1n; n < BigInt(BUFFER_SIZE / P); n++) {
      ioas.mapUser(f.buffer.addr, BigInt(BUFFER_SIZE), { iova: MOCK_APERTURE_START });
      const a = f.test.accessPages(fd, MOCK_APERTURE_START, n * PG, 0, f.buffer.addr);
      f.test.checkRefs(f.buffer.addr, n * PG, 1);
      f.test.destroyAccessPages(fd, a);
      f.test.checkRefs(f.buffer.addr, n * PG, 0);
      const b = f.test.accessPages(fd, MOCK_APERTURE_START, n * PG, 0, f.buffer.addr);
      const c = f.test.accessPages(fd, MOCK_APERTURE_START, n * PG, 0, f.buffer.addr);
      f.test.checkRefs(f.buffer.addr, n * PG, 1); // one iopt_pages pins each page once
      f.test.destroyAccessPages(fd, c);
      f.test.destroyAccessPages(fd, b);
      ioas.unmap(MOCK_APERTURE_START, BigInt(BUFFER_SIZE));
    }
    f.test.closeAccess(fd);
  });

  it('access_pin_unmap: unmap under a pinned access succeeds and the kernel drops the pin', () => {
    const ioas = setup();
    const fd = f.test.createAccess(ioas.id, MOCK_FLAGS_ACCESS_CREATE_NEEDS_PIN_PAGES);
    ioas.mapUser(f.buffer.addr, BigInt(BUFFER_SIZE), { iova: MOCK_APERTURE_START });
    const id = f.test.accessPages(fd, MOCK_APERTURE_START, BigInt(BUFFER_SIZE), 0, f.buffer.addr);
    ioas.unmap(MOCK_APERTURE_START, BigInt(BUFFER_SIZE));
    expectErrno(() => f.test.destroyAccessPages(fd, id), 'ENOENT');
    f.test.closeAccess(fd);
  });

  /** check_access_rw(): reads and writes through an access object, compared against `buffer`. */
  function checkAccessRw(fd: number, iova: bigint, def: number): void {
    const buf = f.buffer.bytes;
    const tmp = f.ctx.mmap(P);
    let seed = 1;
    const rand = () => (seed = (seed * 1103515245 + 12345) >>> 0) & 0xff;
    for (let i = 0; i < BUFFER_SIZE; i++) buf[i] = rand();
    for (let at = iova + PG - 50n; at < iova + PG + 50n; at += 7n) {
      for (let len = 1; len < 64; len += 3) {
        const off = Number(at - iova);
        f.test.accessRw(fd, at, tmp.addr, BigInt(len), def);
        expect(Buffer.compare(buf.subarray(off, off + len), tmp.bytes.subarray(0, len))).toBe(0);
        for (let i = 0; i < 64; i++) tmp.bytes[i] = rand();
        f.test.accessRw(fd, at, tmp.addr, BigInt(len), def | MOCK_ACCESS_RW_WRITE);
        expect(Buffer.compare(buf.subarray(off, off + len), tmp.bytes.subarray(0, len))).toBe(0);
      }
    }
    const big = f.ctx.mmap(BUFFER_SIZE);
    f.test.accessRw(fd, iova, big.addr, BigInt(BUFFER_SIZE), def);
    expect(Buffer.compare(buf, big.bytes)).toBe(0);
    big.close();
    tmp.close();
  }

  it('access_rw: 1..63 bytes around a page boundary, fast and slow path, then BUFFER_SIZE', () => {
    const ioas = setup();
    const fd = f.test.createAccess(ioas.id, 0);
    const iova = ioas.map(f.buffer);
    checkAccessRw(fd, iova, 0);
    checkAccessRw(fd, iova, MOCK_ACCESS_RW_SLOW_PATH);
    ioas.unmap(iova, BigInt(BUFFER_SIZE));
    f.test.closeAccess(fd);
  });

  it('access_rw_unaligned: the same through a mapping at a sub-page IOVA (base + 2048)', () => {
    const ioas = setup();
    const fd = f.test.createAccess(ioas.id, 0);
    const iova = BigInt(MOCK_PAGE_SIZE);
    ioas.mapUser(f.buffer.addr, BigInt(BUFFER_SIZE), { iova });
    checkAccessRw(fd, iova, 0);
    ioas.unmap(iova, BigInt(BUFFER_SIZE));
    f.test.closeAccess(fd);
  });
});

describe(`IOAS bad input leaves state unchanged [${BACKEND}]`, () => {
  const f = useIommufd();

  it('MAP: reserved bits EOPNOTSUPP, U64_MAX EOVERFLOW, no R/W EINVAL, bad id ENOENT, length 0 EINVAL', () => {
    const ioas = f.ctx.allocIoas();
    ioas.mapUser(f.buffer.addr, PG, { iova: 0x10000n });
    const before = ioas.iovaRanges();
    const map = () => f.ctx.cmd(uapi.IOCTLS.IOAS_MAP).u32('ioas_id', ioas.id).u32('flags', 6).u64('user_va', f.buffer.addr).u64('length', PG);
    expectErrno(() => f.ctx.ioctl(map().u32('flags', 1 << 3 | 6)), 'EOPNOTSUPP');
    expectErrno(() => f.ctx.ioctl(map().u32('__reserved', 1)), 'EOPNOTSUPP');
    expectErrno(() => f.ctx.ioctl(map().u64('length', U64_MAX)), 'EOVERFLOW');
    expectErrno(() => f.ctx.ioctl(map().u32('flags', 1).u64('iova', 0x20000n)), 'EINVAL');
    expectErrno(() => f.ctx.ioctl(map().u32('ioas_id', 999)), 'ENOENT');
    expectErrno(() => f.ctx.ioctl(map().u64('length', 0n)), 'EINVAL');
    expectErrno(() => f.ctx.ioctl(map().u64('user_va', U64_MAX - 10n)), 'EOVERFLOW');
    expectErrno(() => ioas.mapUser(f.buffer.addr, 2n * PG, { iova: U64_MAX - PG }), 'EOVERFLOW');
    // Only the first area is there: unmap-all reports exactly its length.
    expect(ioas.iovaRanges()).toEqual(before);
    expect(ioas.unmapAll()).toBe(PG);
  });

  it('UNMAP: length 0 EINVAL, wrap EOVERFLOW, bad id ENOENT; the area survives', () => {
    const ioas = f.ctx.allocIoas();
    ioas.mapUser(f.buffer.addr, PG, { iova: 0x10000n });
    expectErrno(() => ioas.unmap(0x10000n, 0n), 'EINVAL');
    expectErrno(() => ioas.unmap(0x10000n, U64_MAX), 'EOVERFLOW');
    expectErrno(() => ioas.unmap(U64_MAX - 10n, 100n), 'EOVERFLOW');
    expectErrno(() => f.ctx.ioas(ioas.id + 100).unmap(0x10000n, PG), 'ENOENT');
    expect(ioas.unmap(0x10000n, PG)).toBe(PG);
  });

  it('UNMAP: an overhanging last area gives ENOENT after earlier areas are gone (kernel order)', () => {
    const ioas = f.ctx.allocIoas();
    ioas.mapUser(f.buffer.addr, PG, { iova: 0x10000n });
    ioas.mapUser(f.buffer.addr, 2n * PG, { iova: 0x20000n });
    expectErrno(() => ioas.unmap(0x10000n, 0x10000n + PG), 'ENOENT');
    // The first area was removed before the overhang was found; the second remains.
    expect(ioas.unmapAll()).toBe(2n * PG);
  });

  it('COPY: unmapped source ENOENT, bad dst ENOENT, overlap EEXIST, write of a read-only source EPERM', () => {
    const ioas = f.ctx.allocIoas();
    ioas.mapUser(f.buffer.addr, 2n * PG, { iova: 0x10000n, writeable: false });
    expectErrno(() => ioas.copyFrom(ioas, 0x30000n, PG, { iova: 0x40000n }), 'ENOENT');
    expectErrno(() => f.ctx.ioas(999).copyFrom(ioas, 0x10000n, PG, { iova: 0x40000n, writeable: false }), 'ENOENT');
    expectErrno(() => ioas.copyFrom(ioas, 0x10000n, PG, { iova: 0x11000n, writeable: false }), 'EEXIST');
    expectErrno(() => ioas.copyFrom(ioas, 0x10000n, PG, { iova: 0x40000n }), 'EPERM');
    expect(ioas.unmapAll()).toBe(2n * PG);
  });

  it('ALLOW_IOVAS: start == last and overlapping ranges are EINVAL; the old list stays', () => {
    const ioas = f.ctx.allocIoas();
    ioas.allowIovas([{ start: 0x100000n, last: 0x1fffffn }]);
    expectErrno(() => ioas.allowIovas([{ start: 0x5000n, last: 0x5000n }]), 'EINVAL');
    expectErrno(() => ioas.allowIovas([{ start: 0x5000n, last: 0x9000n }, { start: 0x8000n, last: 0xa000n }]), 'EINVAL');
    const iova = ioas.mapUser(f.buffer.addr, PG);
    expect(iova >= 0x100000n && iova <= 0x1fffffn).toBe(true);
  });

  it('MAP_FILE: maps a memfd range; length 0 EINVAL, bad fd EBADF, unknown flag EOPNOTSUPP', () => {
    const ioas = f.ctx.allocIoas();
    using mfd = f.ctx.memfd('ioasid-test', BUFFER_SIZE);
    const iova = ioas.mapFile(mfd, 0n, BigInt(BUFFER_SIZE));
    expect(iova % PG).toBe(0n);
    expectErrno(() => ioas.mapFile(mfd, 0n, 0n), 'EINVAL');
    expectErrno(() => ioas.mapFile(9999, 0n, PG), 'EBADF');
    const c = f.ctx.cmd(uapi.IOCTLS.IOAS_MAP_FILE).u32('ioas_id', ioas.id).u32('flags', 8 | 6).s32('fd', mfd.fd).u64('length', PG);
    expectErrno(() => f.ctx.ioctl(c), 'EOPNOTSUPP');
    expect(ioas.unmapAll()).toBe(BigInt(BUFFER_SIZE));
  });

  it('ids: lowest free id in the table is reused; DESTROY of a destroyed id is ENOENT', () => {
    const a = f.ctx.allocIoas();
    const b = f.ctx.allocIoas();
    expect(b.id).toBe(a.id + 1);
    a.destroy();
    expectErrno(() => a.destroy(), 'ENOENT');
    expect(f.ctx.allocIoas().id).toBe(a.id);
  });

  it('access objects hold the IOAS: DESTROY is EBUSY until the access fd closes', () => {
    const ioas = f.ctx.allocIoas();
    const fd = f.test.createAccess(ioas.id, 0);
    expectErrno(() => ioas.destroy(), 'EBUSY');
    f.test.closeAccess(fd);
    ioas.destroy();
  });

  it('an ioctl of another type byte on an iommufd is ENOTTY', () => {
    const buf = new Uint8Array(64);
    new DataView(buf.buffer).setUint32(0, 40, true);
    expectErrno(() => rawIoctl(f.ctx, 0x4085, buf), 'ENOTTY');
  });
});
