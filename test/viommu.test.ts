/**
 * Port of the kernel selftest FIXTURE(iommufd_viommu) (variants no_viommu, mock_viommu) from
 * tools/testing/selftests/iommu/iommufd.c: every TEST_F, one `it` each, named after it. The
 * cases after them go beyond the selftests (vIOMMU driver data and its mmap, HW queues) and take
 * their expected values from the real kernel.
 */
import { describe, expect, it } from 'vitest';
import { Iommufd, uapi } from '../src/index.js';
import { MAP_PRIVATE, MAP_SHARED, PROT_READ, PROT_WRITE } from '../src/backends/types.js';
import {
  IOMMU_HWPT_DATA_SELFTEST, IOMMU_HW_QUEUE_TYPE_SELFTEST, IOMMU_TEST_DEV_CACHE_DEFAULT, IOMMU_TEST_HW_QUEUE_MAX,
  IOMMU_TEST_IOTLB_DEFAULT, IOMMU_VEVENTQ_TYPE_SELFTEST, IOMMU_VIOMMU_INVALIDATE_DATA_SELFTEST,
  IOMMU_VIOMMU_INVALIDATE_DATA_SELFTEST_INVALID, IOMMU_VIOMMU_TYPE_SELFTEST, IommufdTest, MOCK_APERTURE_START,
  MOCK_DEV_CACHE_ID_MAX, MOCK_PAGE_SIZE,
} from '../src/testing.js';
import { BACKEND, P, U64_MAX, expectErrno, useIommufd } from './helpers.js';
import {
  MAP_HUGETLB, MAP_SHARED_ANON, NO_HUGETLB, faultAlloc, ioasAlloc, mmapAnon, setDefaultMemoryLimit, triggerIopf,
} from './selftest_utils.js';

const IOMMU_HW_QUEUE_TYPE_DEFAULT = 0;
/** sizeof(struct iommu_viommu_selftest) { in_data; out_data; out_mmap_offset; out_mmap_length; } */
const VIOMMU_SELFTEST_SIZE = 24;
const PROT_EXEC = 4;
const { IOCTLS } = uapi;

function selftestData() {
  const bytes = new Uint8Array(8);
  new DataView(bytes.buffer).setUint32(0, IOMMU_TEST_IOTLB_DEFAULT, true);
  return { type: IOMMU_HWPT_DATA_SELFTEST, bytes };
}

describe.each([['no_viommu', false], ['mock_viommu', true]] as const)(`iommufd_viommu %s [${BACKEND}]`, (_n, withViommu) => {
  const f = useIommufd();
  const NO_VIOMMU = withViommu ? '' : ' (skipped: the C test skips variant no_viommu)';

  /** FIXTURE_SETUP(iommufd_viommu) */
  function setup() {
    const ioas = ioasAlloc(f.ctx);
    setDefaultMemoryLimit(f.test);
    if (!withViommu) return { ioas, stdevId: 0, deviceId: 0, hwptId: 0, viommuId: 0, nestedId: 0 };
    const dev = f.test.mockDomain(ioas.id);
    const parent = f.ctx.allocHwpt({ devId: dev.idevId, ptId: ioas.id, nestParent: true });
    const viommuId = viommuAlloc(dev.idevId, parent.id, IOMMU_VIOMMU_TYPE_SELFTEST);
    const nested = f.ctx.allocHwpt({ devId: dev.idevId, ptId: viommuId, data: selftestData() });
    return { ioas, stdevId: dev.stdevId, deviceId: dev.idevId, hwptId: parent.id, viommuId, nestedId: nested.id };
  }

  function viommuAlloc(devId: number, hwptId: number, type: number, data?: { uptr: bigint; len: number }): number {
    const c = f.ctx.cmd(IOCTLS.VIOMMU_ALLOC).u32('dev_id', devId).u32('hwpt_id', hwptId).u32('type', type);
    if (data) c.u64('data_uptr', data.uptr).u32('data_len', data.len);
    f.ctx.ioctl(c);
    return c.get32('out_viommu_id');
  }

  /** A struct iommu_viommu_selftest in its own user page: in_data set, the other bytes `fill`. */
  function viommuData(inData: number, fill = 0) {
    const mem = f.ctx.mmap(P);
    mem.bytes.fill(fill, 0, VIOMMU_SELFTEST_SIZE);
    const dv = new DataView(mem.bytes.buffer, mem.bytes.byteOffset, VIOMMU_SELFTEST_SIZE);
    dv.setUint32(0, inData, true);
    return {
      mem,
      uptr: mem.addr,
      outData: () => dv.getUint32(4, true),
      offset: () => Number(dv.getBigUint64(8, true)),
      length: () => Number(dv.getBigUint64(16, true)),
    };
  }

  /** test_err_mmap's call: mmap(NULL, length, PROT_READ | PROT_WRITE, MAP_SHARED, self->fd, offset). */
  function mmapFd(length: number, offset: number, prot = PROT_READ | PROT_WRITE, flags = MAP_SHARED): bigint {
    return f.ctx.binding.mmap(0n, length, prot, flags, f.ctx.fd, offset);
  }

  function u32At(addr: bigint): number {
    const v = f.ctx.binding.view(addr, 4);
    return new DataView(v.buffer, v.byteOffset, 4).getUint32(0, true);
  }

  /** _test_cmd_hw_queue_alloc */
  function hwQueueAlloc(viommuId: number, type: number, idx: number, baseAddr: bigint, length: bigint): number {
    const c = f.ctx.cmd(IOCTLS.HW_QUEUE_ALLOC).u32('viommu_id', viommuId).u32('type', type).u32('index', idx)
      .u64('nesting_parent_iova', baseAddr).u64('length', length);
    f.ctx.ioctl(c);
    return c.get32('out_hw_queue_id');
  }

  function vdeviceAlloc(viommuId: number, devId: number, virtId: bigint): number {
    const c = f.ctx.cmd(IOCTLS.VDEVICE_ALLOC).u32('viommu_id', viommuId).u32('dev_id', devId).u64('virt_id', virtId);
    f.ctx.ioctl(c);
    return c.get32('out_vdevice_id');
  }

  /** HWPT_INVALIDATE on the vIOMMU with struct iommu_viommu_invalidate_selftest entries; returns entry_num back. */
  function invalidate(viommuId: number, reqs: [number, number, number][], entryLen: number, type = IOMMU_VIOMMU_INVALIDATE_DATA_SELFTEST, nullPtr = false): { errno: string | null; num: number } {
    const mem = f.ctx.userScratch(4096);
    mem.bytes.fill(0, 0, 64);
    const dv = new DataView(mem.bytes.buffer, mem.bytes.byteOffset, 64);
    reqs.forEach(([flags, vdev, cache], i) => {
      dv.setUint32(i * 12, flags, true);
      dv.setUint32(i * 12 + 4, vdev, true);
      dv.setUint32(i * 12 + 8, cache, true);
    });
    const c = f.ctx.cmd(IOCTLS.HWPT_INVALIDATE).u32('hwpt_id', viommuId).u64('data_uptr', nullPtr ? 0n : mem.addr)
      .u32('data_type', type).u32('entry_len', entryLen).u32('entry_num', reqs.length);
    let errno: string | null = null;
    try {
      f.ctx.ioctl(c);
    } catch (e) {
      errno = (e as { code: string }).code;
    }
    return { errno, num: c.get32('entry_num') };
  }

  it('viommu_auto_destroy', () => {
    setup();
  });

  it('viommu_negative_tests', () => {
    const s = setup();
    if (s.deviceId) {
      expectErrno(() => viommuAlloc(s.deviceId, 0, IOMMU_VIOMMU_TYPE_SELFTEST), 'ENOENT');
      const plain = f.ctx.allocHwpt({ devId: s.deviceId, ptId: s.ioas.id });
      expectErrno(() => viommuAlloc(s.deviceId, plain.id, IOMMU_VIOMMU_TYPE_SELFTEST), 'EINVAL');
      plain.destroy();
      expectErrno(() => viommuAlloc(s.deviceId, s.hwptId, 0xdead), 'EOPNOTSUPP');
      expectErrno(() => f.ctx.destroy(s.hwptId), 'EBUSY');
      expectErrno(() => f.ctx.destroy(s.viommuId), 'EBUSY');
    } else {
      expectErrno(() => viommuAlloc(s.deviceId, s.hwptId, IOMMU_VIOMMU_TYPE_SELFTEST), 'ENOENT');
    }
  });

  it.skipIf(!withViommu)(`viommu_alloc_nested_iopf${NO_VIOMMU}`, () => {
    const s = setup();
    const { faultId, faultFd } = faultAlloc(f.ctx);
    expectErrno(() => f.ctx.allocHwpt({ devId: s.deviceId, ptId: s.viommuId, faultId: 0xffffffff, data: selftestData() }), 'ENOENT');
    expectErrno(() => f.ctx.allocHwpt({ devId: s.deviceId, ptId: s.viommuId, faultId, flags: 1 << 31, data: selftestData() }), 'EOPNOTSUPP');
    const iopf = f.ctx.allocHwpt({ devId: s.deviceId, ptId: s.viommuId, faultId, data: selftestData() });
    // a vDEVICE must exist before attaching to a nested HWPT on a vIOMMU
    expectErrno(() => f.test.mockDomainReplace(s.stdevId, iopf.id), 'ENOENT');
    vdeviceAlloc(s.viommuId, s.deviceId, 0x99n);
    f.test.mockDomainReplace(s.stdevId, iopf.id);
    expectErrno(() => iopf.destroy(), 'EBUSY');
    // test_cmd_trigger_iopf uses PASID 1: with the mock's user-managed PASID table it lands on the RID's nested domain
    triggerIopf(f.ctx, s.deviceId, 0x1, faultFd);
    f.test.mockDomainReplace(s.stdevId, s.ioas.id);
    iopf.destroy();
    f.ctx.binding.close(faultFd);
    f.ctx.destroy(faultId);
  });

  it.skipIf(!withViommu)(`viommu_alloc_with_data${NO_VIOMMU}`, () => {
    const s = setup();
    const data = viommuData(0xbeef);
    const viommuId = viommuAlloc(s.deviceId, s.hwptId, IOMMU_VIOMMU_TYPE_SELFTEST, { uptr: data.uptr, len: VIOMMU_SELFTEST_SIZE });
    expect(data.outData()).toBe(0xbeef);

    // negative mmap tests: offset and length cannot be changed
    const length = data.length();
    const offset = data.offset();
    expectErrno(() => mmapFd(length, offset + P), 'ENXIO');
    expectErrno(() => mmapFd(length, offset + P * 2), 'ENXIO');
    expectErrno(() => mmapFd(length / 2, offset), 'ENXIO');
    expectErrno(() => mmapFd(length * 2, offset), 'ENXIO');

    // a correct mmap for a loopback test
    const test = mmapFd(length, offset);
    expect(u32At(test)).toBe(0xbeef);

    // the owner of the mmap region is blocked
    expectErrno(() => f.ctx.destroy(viommuId), 'EBUSY');
    f.ctx.binding.munmap(test, length);
    data.mem.close();
  });

  it('vdevice_alloc', () => {
    const s = setup();
    const b = f.ctx.binding;
    if (!s.deviceId) {
      expectErrno(() => vdeviceAlloc(s.viommuId, s.deviceId, 0x99n), 'ENOENT');
      return;
    }
    const veventqAlloc = (depth: number): [number, number] => {
      const c = f.ctx.cmd(IOCTLS.VEVENTQ_ALLOC).u32('viommu_id', s.viommuId).u32('type', IOMMU_VEVENTQ_TYPE_SELFTEST).u32('veventq_depth', depth);
      f.ctx.ioctl(c);
      return [c.get32('out_veventq_id'), c.get32('out_veventq_fd')];
    };
    const HDR = 8;
    const vbuf = new Uint8Array(64);
    let prevSeq = -1;
    /** _test_cmd_read_vevents: poll, read n events, check sequence continuity, LOST_EVENTS and virt_id. */
    const readVevents = (fd: number, n: number, virtId: number): string | null => {
      b.poll(fd, 1, 1000);
      const data = new Uint8Array(n * (HDR + 4));
      const bytes = b.read(fd, data);
      if (bytes <= 0) return 'EFAULT';
      const dv = new DataView(data.buffer);
      for (let i = 0; i < n; i++) {
        const flags = dv.getUint32(i * 12, true);
        const seq = dv.getUint32(i * 12 + 4, true);
        if (flags & 1 || seq - prevSeq > 1) {
          prevSeq = seq;
          return 'EOVERFLOW';
        }
        prevSeq = seq;
        if (dv.getUint32(HDR, true) !== virtId) return 'EINVAL';
      }
      return null;
    };

    // a vDEVICE must exist before attaching to a nested HWPT on the vIOMMU
    expectErrno(() => f.test.mockDomainReplace(s.stdevId, s.nestedId), 'ENOENT');
    // depth bounds
    expectErrno(() => veventqAlloc(0), 'EINVAL');
    expectErrno(() => veventqAlloc((1 << 19) + 1), 'EINVAL');
    let [qid, qfd] = veventqAlloc(1 << 19);
    b.close(qfd);
    f.ctx.destroy(qid);
    [qid, qfd] = veventqAlloc(2);
    expectErrno(() => veventqAlloc(2), 'EEXIST');
    // invalid read counts on an empty queue
    expectErrno(() => b.read(qfd, vbuf.subarray(0, 0)), 'EINVAL');
    expectErrno(() => b.read(qfd, vbuf.subarray(0, HDR - 1)), 'EINVAL');

    let vdev = vdeviceAlloc(s.viommuId, s.deviceId, 0x99n);
    f.test.mockDomainReplace(s.stdevId, s.nestedId);
    f.test.triggerVevent(s.deviceId);
    // invalid read counts on a non-empty queue: 0, and a header without room for the payload
    expectErrno(() => b.read(qfd, vbuf.subarray(0, 0)), 'EINVAL');
    expectErrno(() => b.read(qfd, vbuf.subarray(0, HDR)), 'EINVAL');
    expect(readVevents(qfd, 1, 0x99)).toBe(null);
    expectErrno(() => vdeviceAlloc(s.viommuId, s.deviceId, 0x99n), 'EEXIST');
    f.test.mockDomainReplace(s.stdevId, s.ioas.id);
    f.ctx.destroy(vdev);

    vdev = vdeviceAlloc(s.viommuId, s.deviceId, 0x88n);
    f.test.mockDomainReplace(s.stdevId, s.nestedId);
    // three events into a depth-2 queue: the reader sees the loss
    for (let i = 0; i < 3; i++) f.test.triggerVevent(s.deviceId);
    expect(readVevents(qfd, 3, 0x88)).toBe('EOVERFLOW');
    // drained: a new event reads cleanly
    f.test.triggerVevent(s.deviceId);
    expect(readVevents(qfd, 1, 0x88)).toBe(null);
    b.close(qfd);
    f.test.mockDomainReplace(s.stdevId, s.ioas.id);
    f.ctx.destroy(vdev);
    f.ctx.destroy(qid);
  });

  it.skipIf(!withViommu)(`vdevice_cache${NO_VIOMMU}`, () => {
    const s = setup();
    const vdev = vdeviceAlloc(s.viommuId, s.deviceId, 0x99n);
    const checkAll = (v: number) => {
      for (let i = 0; i <= MOCK_DEV_CACHE_ID_MAX; i++) f.test.checkDevCache(s.deviceId, i, v);
    };
    const check = (vals: number[]) => vals.forEach((v, i) => f.test.checkDevCache(s.deviceId, i, v));
    const D = IOMMU_TEST_DEV_CACHE_DEFAULT;
    checkAll(D);
    expect(invalidate(s.viommuId, [], 12)).toEqual({ errno: null, num: 0 });
    expect(invalidate(s.viommuId, [[0, 0, 0]], 12, IOMMU_VIOMMU_INVALIDATE_DATA_SELFTEST_INVALID)).toEqual({ errno: 'EINVAL', num: 0 });
    expect(invalidate(s.viommuId, [[0, 0, 0]], 13)).toEqual({ errno: 'EINVAL', num: 0 });
    expect(invalidate(s.viommuId, [[0, 0, 0]], 1)).toEqual({ errno: 'EINVAL', num: 0 });
    expect(invalidate(s.viommuId, [[0xffffffff, 0x99, 0]], 12)).toEqual({ errno: 'EOPNOTSUPP', num: 0 });
    expect(invalidate(s.viommuId, [[0, 0x99, 0]], 12, undefined, true)).toEqual({ errno: 'EINVAL', num: 0 });
    expect(invalidate(s.viommuId, [[0, 0x99, 0]], 0)).toEqual({ errno: 'EINVAL', num: 0 });
    expect(invalidate(s.viommuId, [[0, 0x99, MOCK_DEV_CACHE_ID_MAX + 1]], 12)).toEqual({ errno: 'EINVAL', num: 0 });
    expect(invalidate(s.viommuId, [[0, 0x9, 0]], 12)).toEqual({ errno: 'EINVAL', num: 0 });
    expect(invalidate(s.viommuId, [[0, 0x99, 0], [0xffffffff, 0x99, 1]], 12)).toEqual({ errno: 'EOPNOTSUPP', num: 1 });
    check([0, D, D, D]);
    expect(invalidate(s.viommuId, [[0, 0x99, 0], [0, 0x99, MOCK_DEV_CACHE_ID_MAX + 1]], 12)).toEqual({ errno: 'EINVAL', num: 1 });
    check([0, D, D, D]);
    expect(invalidate(s.viommuId, [[0, 0x99, 1]], 12)).toEqual({ errno: null, num: 1 });
    check([0, 0, D, D]);
    expect(invalidate(s.viommuId, [[0, 0x99, 2], [0, 0x99, 3]], 12)).toEqual({ errno: null, num: 2 });
    checkAll(0);
    // (cache_id keeps the 2 of the previous request, as inv_reqs[0] does in the C test)
    expect(invalidate(s.viommuId, [[1 /* FLAG_ALL */, 0x99, 2]], 12)).toEqual({ errno: null, num: 1 });
    checkAll(0);
    f.ctx.destroy(vdev);
  });

  it.skipIf(!withViommu)(`hw_queue${NO_VIOMMU}`, () => {
    const s = setup();
    let iova = MOCK_APERTURE_START;
    const PAGE = BigInt(P);
    const T = IOMMU_HW_QUEUE_TYPE_SELFTEST;
    // fail IOMMU_HW_QUEUE_TYPE_DEFAULT
    expectErrno(() => hwQueueAlloc(s.viommuId, IOMMU_HW_QUEUE_TYPE_DEFAULT, 0, iova, PAGE), 'EOPNOTSUPP');
    // fail queue addr and length
    expectErrno(() => hwQueueAlloc(s.viommuId, T, 0, iova, 0n), 'EINVAL');
    expectErrno(() => hwQueueAlloc(s.viommuId, T, 0, U64_MAX, PAGE), 'EOVERFLOW');
    // fail missing iova
    expectErrno(() => hwQueueAlloc(s.viommuId, T, 0, iova, PAGE), 'ENOENT');

    // map iova
    iova = s.ioas.map(f.buffer, { length: P });
    const iova2 = s.ioas.map(f.buffer, { offset: P, length: P });

    // fail index=1 and =MAX; must start from index=0
    expectErrno(() => hwQueueAlloc(s.viommuId, T, 1, iova, PAGE), 'EIO');
    expectErrno(() => hwQueueAlloc(s.viommuId, T, IOMMU_TEST_HW_QUEUE_MAX, iova, PAGE), 'EINVAL');

    // allocate index=0, declare ownership of the iova
    const q0 = hwQueueAlloc(s.viommuId, T, 0, iova, PAGE);
    // fail duplicated index
    expectErrno(() => hwQueueAlloc(s.viommuId, T, 0, iova, PAGE), 'EEXIST');
    // fail unmap, due to iova ownership
    expectErrno(() => s.ioas.unmap(iova, PAGE), 'EBUSY');
    // the 2nd page is not pinned, so it can be unmapped
    s.ioas.unmap(iova2, PAGE);

    // allocate index=1, with an unaligned case
    const q1 = hwQueueAlloc(s.viommuId, T, 1, iova + PAGE / 2n, PAGE / 2n);
    // fail to destroy, due to dependency
    expectErrno(() => f.ctx.destroy(q0), 'EBUSY');

    // destroy in descending order
    f.ctx.destroy(q1);
    f.ctx.destroy(q0);
    // now the first page can be unmapped
    s.ioas.unmap(iova, PAGE);
  });

  it.skipIf(!withViommu)(`vdevice_tombstone${NO_VIOMMU}`, () => {
    const s = setup();
    const vdev = vdeviceAlloc(s.viommuId, s.deviceId, 0x99n);
    f.ctx.destroy(s.stdevId);
    expectErrno(() => f.ctx.destroy(vdev), 'ENOENT');
  });

  // ---- beyond the selftests (mock_viommu only): expected values observed on the real kernel ---

  if (withViommu) {

    it('viommu data: data_len below out_data or above sizeof is EINVAL; a short struct loops back without the mmap fields', () => {
      const s = setup();
      const d = viommuData(0x1234, 0xff);
      const alloc = (uptr: bigint, len: number) => viommuAlloc(s.deviceId, s.hwptId, IOMMU_VIOMMU_TYPE_SELFTEST, { uptr, len });
      expectErrno(() => alloc(d.uptr, 4), 'EINVAL');
      d.mem.bytes.fill(0, VIOMMU_SELFTEST_SIZE, VIOMMU_SELFTEST_SIZE + 8);
      expectErrno(() => alloc(d.uptr, VIOMMU_SELFTEST_SIZE + 8), 'EINVAL');
      expectErrno(() => alloc(0n, VIOMMU_SELFTEST_SIZE), 'EFAULT');
      expect(d.outData()).toBe(0xffffffff);
      // 8 bytes (offsetofend(out_data)): the loopback value only, the mmap fields stay as they were
      const short = alloc(d.uptr, 8);
      expect(d.outData()).toBe(0x1234);
      expect([...d.mem.bytes.subarray(8, VIOMMU_SELFTEST_SIZE)].every((b) => b === 0xff)).toBe(true);
      // ... but its two pages were registered all the same: the next vIOMMU's pages come after them
      const full = viommuData(0x5678);
      alloc(full.uptr, VIOMMU_SELFTEST_SIZE);
      expect([full.offset(), full.length()]).toEqual([3 * P, 2 * P]);
      f.ctx.destroy(short);
      // read-only data: copy_to_user fails after the pages were registered, and they are released
      const ro = mmapAnon(f.ctx, P, MAP_SHARED_ANON, PROT_READ);
      expectErrno(() => alloc(ro, VIOMMU_SELFTEST_SIZE), 'EFAULT');
      const again = viommuData(0x9abc);
      alloc(again.uptr, VIOMMU_SELFTEST_SIZE);
      expect(again.offset()).toBe(P);
      f.ctx.binding.munmap(ro, P);
      for (const m of [d, full, again]) m.mem.close();
    });

    it('viommu mmap: MAP_SHARED only, no PROT_EXEC, offsets from PAGE_SIZE, every piece of a split mapping holds the vIOMMU', () => {
      const s = setup();
      const a = viommuData(1);
      const b = viommuData(2);
      const va = viommuAlloc(s.deviceId, s.hwptId, IOMMU_VIOMMU_TYPE_SELFTEST, { uptr: a.uptr, len: VIOMMU_SELFTEST_SIZE });
      viommuAlloc(s.deviceId, s.hwptId, IOMMU_VIOMMU_TYPE_SELFTEST, { uptr: b.uptr, len: VIOMMU_SELFTEST_SIZE });
      expect([a.offset(), a.length(), b.offset(), b.length()]).toEqual([P, 2 * P, 3 * P, 2 * P]);
      expectErrno(() => mmapFd(2 * P, P, PROT_READ | PROT_WRITE, MAP_PRIVATE), 'EINVAL');
      expectErrno(() => mmapFd(2 * P, P, PROT_READ | PROT_EXEC), 'EPERM');
      expectErrno(() => mmapFd(2 * P, 0), 'ENXIO');
      expectErrno(() => mmapFd(2 * P, 5 * P), 'ENXIO');
      const ma = mmapFd(2 * P, a.offset());
      const mb = mmapFd(2 * P, b.offset());
      expect([u32At(ma), u32At(mb)]).toEqual([1, 2]);
      // driver pages (VM_PFNMAP) cannot be pinned: an IOAS with a domain refuses to map them
      expectErrno(() => s.ioas.mapUser(ma, BigInt(2 * P)), 'EFAULT');
      // the pages are shared: a write through one mapping shows in another
      const ma2 = mmapFd(2 * P, a.offset());
      f.ctx.binding.view(ma + BigInt(P), 4).set([7, 0, 0, 0]);
      expect(u32At(ma2 + BigInt(P))).toBe(7);
      f.ctx.binding.munmap(ma2, 2 * P);
      // munmap of one page splits the mapping: the other page still holds the vIOMMU
      f.ctx.binding.munmap(ma, P);
      expectErrno(() => f.ctx.destroy(va), 'EBUSY');
      f.ctx.binding.munmap(ma + BigInt(P), P);
      f.ctx.destroy(va);
      // its range is free again and the lowest fit from PAGE_SIZE takes it
      const c = viommuData(3);
      viommuAlloc(s.deviceId, s.hwptId, IOMMU_VIOMMU_TYPE_SELFTEST, { uptr: c.uptr, len: VIOMMU_SELFTEST_SIZE });
      expect(c.offset()).toBe(P);
      f.ctx.binding.munmap(mb, 2 * P);
      for (const m of [a, b, c]) m.mem.close();
    });

    it('viommu mmap: the mapping holds the iommufd: closing the fd releases nothing until munmap', () => {
      const s = setup();
      s.ioas.map(f.buffer, { length: P });
      const d = viommuData(0x42);
      viommuAlloc(s.deviceId, s.hwptId, IOMMU_VIOMMU_TYPE_SELFTEST, { uptr: d.uptr, len: VIOMMU_SELFTEST_SIZE });
      const m = mmapFd(d.length(), d.offset());
      const b = f.ctx.binding;
      f.ctx.close();
      const other = new Iommufd(b);
      try {
        // the buffer page is still pinned by the closed context's domain
        new IommufdTest(other).checkRefs(f.buffer.addr, BigInt(P), 1);
        expect(u32At(m)).toBe(0x42);
        b.munmap(m, d.length());
        new IommufdTest(other).checkRefs(f.buffer.addr, BigInt(P), 0);
      } finally {
        other.close();
        d.mem.close();
      }
    });

    it('hw_queue: its internal access takes the next id and is not the user\'s; failures leave no id, pin or lock', () => {
      const s = setup();
      const PAGE = BigInt(P);
      const T = IOMMU_HW_QUEUE_TYPE_SELFTEST;
      const iova = s.ioas.map(f.buffer, { length: P });
      const probe = f.ctx.allocIoas();
      const free = probe.id;
      probe.destroy();
      // the pinned range rounded out to pages overflows (ERANGE); a page array past INT_MAX bytes
      // cannot be allocated (ENOMEM); a long range over a hole is ENOENT
      expectErrno(() => hwQueueAlloc(s.viommuId, T, 0, 0x800n, U64_MAX - 0x7ffn), 'ERANGE');
      expectErrno(() => hwQueueAlloc(s.viommuId, T, 0, iova, 1n << 40n), 'ENOMEM');
      expectErrno(() => hwQueueAlloc(s.viommuId, T, 0, iova, 1n << 32n), 'ENOENT');
      expectErrno(() => hwQueueAlloc(s.viommuId, T, 1, iova, PAGE), 'EIO');
      expectErrno(() => hwQueueAlloc(s.viommuId, T, IOMMU_TEST_HW_QUEUE_MAX, iova, PAGE), 'EINVAL');
      const q0 = hwQueueAlloc(s.viommuId, T, 0, iova, PAGE);
      expect(q0).toBe(free);
      // the access the queue pins through is an object too, held by its driver
      expectErrno(() => f.ctx.destroy(q0 + 1), 'EBUSY');
      const next = f.ctx.allocIoas();
      expect(next.id).toBe(q0 + 2);
      next.destroy();
      f.ctx.destroy(q0);
      // queue and access are gone: both ids free, the area unlocked
      const after = f.ctx.allocIoas();
      expect(after.id).toBe(q0);
      expect(f.ctx.allocIoas().id).toBe(q0 + 1);
      s.ioas.unmap(iova, PAGE);
    });

    it('hw_queue: its access raises the IOAS alignment to PAGE_SIZE while it lives (EADDRINUSE if an area breaks it)', () => {
      const s = setup();
      const PAGE = BigInt(P);
      const T = IOMMU_HW_QUEUE_TYPE_SELFTEST;
      const half = BigInt(MOCK_PAGE_SIZE);
      const base = MOCK_APERTURE_START;
      expect(s.ioas.iovaRanges().alignment).toBe(half);
      const iova = s.ioas.mapUser(f.buffer.addr, PAGE, { iova: base + 16n * PAGE });
      s.ioas.mapUser(f.buffer.addr + PAGE + half, half, { iova: base + half });
      expectErrno(() => hwQueueAlloc(s.viommuId, T, 0, iova, PAGE), 'EADDRINUSE');
      s.ioas.unmap(base + half, half);
      const q = hwQueueAlloc(s.viommuId, T, 0, iova, PAGE);
      expect(s.ioas.iovaRanges().alignment).toBe(PAGE);
      expectErrno(() => s.ioas.mapUser(f.buffer.addr + PAGE + half, half, { iova: base + half }), 'EINVAL');
      f.ctx.destroy(q);
      expect(s.ioas.iovaRanges().alignment).toBe(half);
      s.ioas.unmap(iova, PAGE);
    });

    it.skipIf(!!NO_HUGETLB)(`hw_queue: the queue's pages must be physically contiguous (hugetlb)${NO_HUGETLB ? ` (skipped: ${NO_HUGETLB})` : ''}`, () => {
      const s = setup();
      const PAGE = BigInt(P);
      const T = IOMMU_HW_QUEUE_TYPE_SELFTEST;
      const HP = 2 * 1024 * 1024;
      const buf = mmapAnon(f.ctx, HP, MAP_SHARED_ANON | MAP_HUGETLB);
      const base = MOCK_APERTURE_START;
      // two pages of one huge page in physical order: one queue across both, also unaligned
      s.ioas.mapUser(buf, 2n * PAGE, { iova: base });
      f.ctx.destroy(hwQueueAlloc(s.viommuId, T, 0, base, 2n * PAGE));
      f.ctx.destroy(hwQueueAlloc(s.viommuId, T, 0, base + PAGE / 2n, PAGE));
      // the same two pages swapped in IOVA order are not contiguous
      s.ioas.mapUser(buf + PAGE, PAGE, { iova: base + 4n * PAGE });
      s.ioas.mapUser(buf, PAGE, { iova: base + 5n * PAGE });
      expectErrno(() => hwQueueAlloc(s.viommuId, T, 0, base + 4n * PAGE, 2n * PAGE), 'EFAULT');
      // nothing stayed locked
      s.ioas.unmap(base + 4n * PAGE, 2n * PAGE);
      const q = hwQueueAlloc(s.viommuId, T, 0, base + PAGE, PAGE);
      expectErrno(() => s.ioas.unmap(base, 2n * PAGE), 'EBUSY');
      f.ctx.destroy(q);
      s.ioas.unmap(base, 2n * PAGE);
      f.ctx.binding.munmap(buf, HP);
    });
  }
});
