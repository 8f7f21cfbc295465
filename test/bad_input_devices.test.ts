/**
 * The device-side commands fed bad input: the kernel's errno, and no trace left. What userspace
 * can observe after a refusal: the lowest free object id (an aborted object must give its id
 * back), each IOAS's IOVA ranges and alignment (reserved regions, apertures), the pins on the
 * buffer, what the domain maps, and which HWPT the device is on. Errnos follow the kernel's
 * check order in hw_pagetable.c, device.c and selftest.c.
 */
import { describe, expect, it } from 'vitest';
import { uapi } from '../src/index.js';
import type { Command } from '../src/ioasid/codec.js';
import {
  IOMMU_HWPT_DATA_SELFTEST, MOCK_APERTURE_START, MOCK_FLAGS_DEVICE_NO_DIRTY,
} from '../src/testing.js';
import { BACKEND, BUFFER_SIZE, expectErrno, useIommufd, type Fixture } from './helpers.js';

const { IOCTLS } = uapi;

describe(`device-side bad input changes nothing [${BACKEND}]`, () => {
  const f = useIommufd();

  function world(fx: Fixture) {
    const a = fx.ctx.allocIoas();
    const b = fx.ctx.allocIoas();
    a.mapUser(fx.buffer.addr, BigInt(BUFFER_SIZE), { iova: MOCK_APERTURE_START });
    const dev = fx.test.mockDomain(a.id);
    const parent = fx.ctx.allocHwpt({ devId: dev.idevId, ptId: a.id, nestParent: true });
    const dirty = fx.ctx.allocHwpt({ devId: dev.idevId, ptId: a.id, dirtyTracking: true });
    const plain = fx.ctx.allocHwpt({ devId: dev.idevId, ptId: a.id });
    return { a, b, dev, parent, dirty, plain };
  }
  type World = ReturnType<typeof world>;

  function snapshot(w: World) {
    const probe = f.ctx.allocIoas(); // the lowest free id
    const nextId = probe.id;
    probe.destroy();
    let mapped = 'ok';
    try {
      f.test.checkMap(w.dev.hwptId, MOCK_APERTURE_START, BigInt(BUFFER_SIZE), f.buffer.addr);
    } catch (e) {
      mapped = (e as { code: string }).code;
    }
    let refs = 'ok';
    try {
      f.test.checkRefs(f.buffer.addr, BigInt(BUFFER_SIZE), 1);
    } catch (e) {
      refs = (e as { code: string }).code;
    }
    return { nextId, a: w.a.iovaRanges(), b: w.b.iovaRanges(), mapped, refs };
  }

  function refuse(w: World, code: Parameters<typeof expectErrno>[1], call: () => unknown) {
    const before = snapshot(w);
    expectErrno(call, code);
    expect(snapshot(w)).toEqual(before);
  }

  const hwptAlloc = (devId: number, ptId: number) =>
    f.ctx.cmd(IOCTLS.HWPT_ALLOC).u32('dev_id', devId).u32('pt_id', ptId);

  it('IOMMU_HWPT_ALLOC: reserved EOPNOTSUPP, data type/len mismatch EINVAL, unknown device ENOENT, bad pt EINVAL', () => {
    const w = world(f);
    const run = (c: Command) => () => f.ctx.ioctl(c);
    refuse(w, 'EOPNOTSUPP', run(hwptAlloc(w.dev.idevId, w.a.id).u32('__reserved', 1)));
    refuse(w, 'EINVAL', run(hwptAlloc(w.dev.idevId, w.a.id).u32('data_len', 8)));
    refuse(w, 'EINVAL', run(hwptAlloc(w.dev.idevId, w.a.id).u32('data_type', IOMMU_HWPT_DATA_SELFTEST)));
    refuse(w, 'ENOENT', run(hwptAlloc(w.a.id, w.a.id)));
    refuse(w, 'ENOENT', run(hwptAlloc(999, w.a.id)));
    refuse(w, 'EINVAL', run(hwptAlloc(w.dev.idevId, 999)));
    refuse(w, 'EINVAL', run(hwptAlloc(w.dev.idevId, w.dev.idevId)));
  });

  it('IOMMU_HWPT_ALLOC paging: unknown flag / FAULT_ID_VALID with NEST_PARENT EOPNOTSUPP; bad fault id ENOENT gives its id back', () => {
    const w = world(f);
    refuse(w, 'EOPNOTSUPP', () => f.ctx.allocHwpt({ devId: w.dev.idevId, ptId: w.a.id, flags: 1 << 30 }));
    refuse(w, 'EOPNOTSUPP', () => f.ctx.allocHwpt({ devId: w.dev.idevId, ptId: w.a.id, nestParent: true, faultId: 1 }));
    refuse(w, 'ENOENT', () => f.ctx.allocHwpt({ devId: w.dev.idevId, ptId: w.a.id, faultId: 999 }));
    refuse(w, 'ENOENT', () => f.ctx.allocHwpt({ devId: w.dev.idevId, ptId: w.a.id, faultId: w.a.id }));
    // selftest data: wrong type EOPNOTSUPP, too short EINVAL, longer than the struct EINVAL (7.3's
    // iommu_copy_struct_from_user refuses any extra bytes, zero or not), unknown pagetable_type EOPNOTSUPP
    refuse(w, 'EOPNOTSUPP', () => f.ctx.allocHwpt({ devId: w.dev.idevId, ptId: w.a.id, data: { type: 0xbeef, bytes: new Uint8Array(8) } }));
    refuse(w, 'EINVAL', () => f.ctx.allocHwpt({ devId: w.dev.idevId, ptId: w.a.id, data: { type: IOMMU_HWPT_DATA_SELFTEST, bytes: new Uint8Array(3) } }));
    const tail = new Uint8Array(12);
    tail[11] = 1;
    refuse(w, 'EINVAL', () => f.ctx.allocHwpt({ devId: w.dev.idevId, ptId: w.a.id, data: { type: IOMMU_HWPT_DATA_SELFTEST, bytes: tail } }));
    refuse(w, 'EINVAL', () => f.ctx.allocHwpt({ devId: w.dev.idevId, ptId: w.a.id, data: { type: IOMMU_HWPT_DATA_SELFTEST, bytes: new Uint8Array(12) } }));
    const pt = new Uint8Array(8);
    pt[4] = 7;
    refuse(w, 'EOPNOTSUPP', () => f.ctx.allocHwpt({ devId: w.dev.idevId, ptId: w.a.id, data: { type: IOMMU_HWPT_DATA_SELFTEST, bytes: pt } }));
  });

  it('IOMMU_HWPT_ALLOC nested: non-parent EINVAL, NEST_PARENT flag EOPNOTSUPP, no data EOPNOTSUPP... NULL data EFAULT', () => {
    const w = world(f);
    const data = { type: IOMMU_HWPT_DATA_SELFTEST, bytes: new Uint8Array(8) };
    refuse(w, 'EINVAL', () => f.ctx.allocHwpt({ devId: w.dev.idevId, ptId: w.plain.id, data }));
    refuse(w, 'EINVAL', () => f.ctx.allocHwpt({ devId: w.dev.idevId, ptId: w.dev.hwptId, data })); // automatic: never a parent
    refuse(w, 'EOPNOTSUPP', () => f.ctx.allocHwpt({ devId: w.dev.idevId, ptId: w.parent.id, nestParent: true, data }));
    refuse(w, 'EOPNOTSUPP', () => f.ctx.allocHwpt({ devId: w.dev.idevId, ptId: w.parent.id }));
    refuse(w, 'EOPNOTSUPP', () => f.ctx.allocHwpt({ devId: w.dev.idevId, ptId: w.parent.id, data: { type: IOMMU_HWPT_DATA_SELFTEST + 1, bytes: new Uint8Array(8) } }));
    refuse(w, 'EFAULT', () => f.ctx.ioctl(hwptAlloc(w.dev.idevId, w.parent.id).u32('data_type', IOMMU_HWPT_DATA_SELFTEST).u32('data_len', 8)));
  });

  it('attach: a device that cannot do dirty tracking onto a dirty HWPT EINVAL (its selftest object, device and ids all given back)', () => {
    const w = world(f);
    refuse(w, 'EINVAL', () => f.test.mockDomainFlags(w.dirty.id, MOCK_FLAGS_DEVICE_NO_DIRTY));
    refuse(w, 'EINVAL', () => f.test.mockDomainFlags(w.a.id, 1 << 1)); // unknown device flag
    refuse(w, 'ENOENT', () => f.test.mockDomain(999));
    refuse(w, 'EINVAL', () => f.test.mockDomain(w.dev.idevId)); // neither IOAS nor HWPT
    refuse(w, 'ENOENT', () => f.test.mockDomainReplace(w.a.id, w.a.id)); // not a selftest device
    refuse(w, 'EINVAL', () => f.test.mockDomainReplace(w.dev.stdevId, w.dev.idevId));
  });

  it('attach: an IOAS whose mappings lie outside the aperture refuses a new domain with EADDRINUSE, and stays as it was', () => {
    const w = world(f);
    w.b.mapUser(f.buffer.addr, 4096n, { iova: 0x1000n });
    refuse(w, 'EADDRINUSE', () => f.test.mockDomain(w.b.id));
    refuse(w, 'EADDRINUSE', () => f.test.mockDomainReplace(w.dev.stdevId, w.b.id));
    w.b.unmapAll();
  });

  it('GET_HW_INFO: unknown flag / reserved EOPNOTSUPP, unknown device ENOENT, a type the IOMMU lacks EOPNOTSUPP', () => {
    const w = world(f);
    const c = () => f.ctx.cmd(IOCTLS.GET_HW_INFO).u32('dev_id', w.dev.idevId);
    refuse(w, 'EOPNOTSUPP', () => f.ctx.ioctl(c().u32('flags', 2)));
    refuse(w, 'EOPNOTSUPP', () => {
      const cmd = c();
      cmd.dv.setUint8(cmd.off.__reserved! + 1, 1);
      return f.ctx.ioctl(cmd);
    });
    refuse(w, 'ENOENT', () => f.ctx.hwInfo(999));
    refuse(w, 'ENOENT', () => f.ctx.hwInfo(w.a.id));
    refuse(w, 'EOPNOTSUPP', () => f.ctx.hwInfo(w.dev.idevId, { inType: 1 /* INTEL_VTD */ }));
  });

  it('dirty tracking: unknown flags EOPNOTSUPP, not a paging HWPT ENOENT, no dirty support EOPNOTSUPP, bad ranges EINVAL', () => {
    const w = world(f);
    const set = (id: number, flags: number) => () => f.ctx.ioctl(f.ctx.cmd(IOCTLS.HWPT_SET_DIRTY_TRACKING).u32('hwpt_id', id).u32('flags', flags));
    refuse(w, 'EOPNOTSUPP', set(w.dirty.id, 2));
    refuse(w, 'ENOENT', set(w.a.id, 1));
    refuse(w, 'EOPNOTSUPP', set(w.plain.id, 1));
    const get = (id: number, iova: bigint, length: bigint, pageSize: bigint, flags = 0) => () =>
      w.dirty.ctx.ioctl(f.ctx.cmd(IOCTLS.HWPT_GET_DIRTY_BITMAP).u32('hwpt_id', id).u32('flags', flags)
        .u64('iova', iova).u64('length', length).u64('page_size', pageSize).u64('data', f.buffer.addr));
    refuse(w, 'EOPNOTSUPP', get(w.dirty.id, MOCK_APERTURE_START, 4096n, 4096n, 2));
    refuse(w, 'EINVAL', get(w.dirty.id, MOCK_APERTURE_START, 0n, 4096n));
    refuse(w, 'EINVAL', get(w.dirty.id, MOCK_APERTURE_START, 4096n, 0n));
    refuse(w, 'EINVAL', get(w.dirty.id, MOCK_APERTURE_START + 1024n, 4096n, 4096n));
    refuse(w, 'EOVERFLOW', get(w.dirty.id, 0xffff_ffff_ffff_f000n, 0x2000n, 4096n));
    refuse(w, 'EOPNOTSUPP', get(w.plain.id, MOCK_APERTURE_START, 4096n, 4096n));
  });

  it('IOMMU_HWPT_INVALIDATE: on a paging HWPT EINVAL, unknown id ENOENT, entry_len 0 with entries EINVAL (entry_num comes back 0)', () => {
    const w = world(f);
    const inv = (id: number, num: number, len: number) =>
      f.ctx.cmd(IOCTLS.HWPT_INVALIDATE).u32('hwpt_id', id).u32('entry_num', num).u32('entry_len', len).u64('data_uptr', f.buffer.addr);
    // (commands share one preallocated buffer per kind: build each right before issuing it)
    for (const [code, id, num, len] of [
      ['EINVAL', w.plain.id, 0, 8],
      ['ENOENT', 999, 0, 8],
      ['EINVAL', w.plain.id, 1, 0],
      ['EINVAL', w.plain.id, 1, 4097],
    ] as const) {
      let c: Command | null = null;
      refuse(w, code, () => f.ctx.ioctl((c = inv(id, num, len))));
      expect(c!.get32('entry_num')).toBe(0);
    }
  });
});
