/**
 * Port of the kernel selftest FIXTURE(iommufd_viommu) (variants no_viommu, mock_viommu) from
 * tools/testing/selftests/iommu/iommufd.c. Ported: viommu_auto_destroy, viommu_negative_tests,
 * viommu_alloc_nested_iopf, vdevice_alloc, vdevice_cache, vdevice_tombstone. Not yet (the sim
 * has no HW queues or vIOMMU driver data/mmap): viommu_alloc_with_data, hw_queue — listed in
 * docs/conformance.md and skipped here with that reason.
 */
import { describe, expect, it } from 'vitest';
import { uapi } from '../src/index.js';
import { IOMMU_HWPT_DATA_SELFTEST, IOMMU_TEST_IOTLB_DEFAULT } from '../src/testing.js';
import { BACKEND, expectErrno, useIommufd } from './helpers.js';

const IOMMU_VIOMMU_TYPE_SELFTEST = 0xdeadbeef;
const IOMMU_VIOMMU_INVALIDATE_DATA_SELFTEST = 0xdeadbeef;
const IOMMU_VIOMMU_INVALIDATE_DATA_SELFTEST_INVALID = 0xdadbeef;
const IOMMU_TEST_DEV_CACHE_DEFAULT = 0xbaddad;
const IOMMU_VEVENTQ_TYPE_SELFTEST = 0xbeefbeef;
const MOCK_DEV_CACHE_ID_MAX = 3;
const { IOCTLS } = uapi;

function selftestData() {
  const bytes = new Uint8Array(8);
  new DataView(bytes.buffer).setUint32(0, IOMMU_TEST_IOTLB_DEFAULT, true);
  return { type: IOMMU_HWPT_DATA_SELFTEST, bytes };
}

describe.each([['no_viommu', false], ['mock_viommu', true]] as const)(`iommufd_viommu %s [${BACKEND}]`, (_n, withViommu) => {
  const f = useIommufd();

  function setup() {
    const ioas = f.ctx.allocIoas();
    if (!withViommu) return { ioas, stdevId: 0, deviceId: 0, hwptId: 0, viommuId: 0, nestedId: 0 };
    const dev = f.test.mockDomain(ioas.id);
    const parent = f.ctx.allocHwpt({ devId: dev.idevId, ptId: ioas.id, nestParent: true });
    const viommuId = viommuAlloc(dev.idevId, parent.id, IOMMU_VIOMMU_TYPE_SELFTEST);
    const nested = f.ctx.allocHwpt({ devId: dev.idevId, ptId: viommuId, data: selftestData() });
    return { ioas, stdevId: dev.stdevId, deviceId: dev.idevId, hwptId: parent.id, viommuId, nestedId: nested.id };
  }

  function viommuAlloc(devId: number, hwptId: number, type: number): number {
    const c = f.ctx.cmd(IOCTLS.VIOMMU_ALLOC).u32('dev_id', devId).u32('hwpt_id', hwptId).u32('type', type);
    f.ctx.ioctl(c);
    return c.get32('out_viommu_id');
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

  it.skipIf(!withViommu)('viommu_alloc_nested_iopf', () => {
    const s = setup();
    const fault = f.ctx.allocFaultQueue();
    expectErrno(() => f.ctx.allocHwpt({ devId: s.deviceId, ptId: s.viommuId, faultId: 0xffffffff, data: selftestData() }), 'ENOENT');
    expectErrno(() => f.ctx.allocHwpt({ devId: s.deviceId, ptId: s.viommuId, faultId: fault.id, flags: 1 << 31, data: selftestData() }), 'EOPNOTSUPP');
    const iopf = f.ctx.allocHwpt({ devId: s.deviceId, ptId: s.viommuId, faultId: fault.id, data: selftestData() });
    // a vDEVICE must exist before attaching to a nested HWPT on a vIOMMU
    expectErrno(() => f.test.mockDomainReplace(s.stdevId, iopf.id), 'ENOENT');
    vdeviceAlloc(s.viommuId, s.deviceId, 0x99n);
    f.test.mockDomainReplace(s.stdevId, iopf.id);
    expectErrno(() => iopf.destroy(), 'EBUSY');
    // test_cmd_trigger_iopf uses PASID 1: with the mock's user-managed PASID table it lands on the RID's nested domain
    f.test.triggerIopf(s.deviceId, 1);
    const [g] = fault.read();
    expect(g).toBeDefined();
    fault.respond(g!.cookie);
    f.test.mockDomainReplace(s.stdevId, s.ioas.id);
    iopf.destroy();
    fault.close();
    f.ctx.destroy(fault.id);
  });

  it.skip('viommu_alloc_with_data (sim: vIOMMU driver data and its mmap through the iommufd are not modelled)', () => {});

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

  it.skipIf(!withViommu)('vdevice_cache', () => {
    const s = setup();
    vdeviceAlloc(s.viommuId, s.deviceId, 0x99n);
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
    expect(invalidate(s.viommuId, [[1 /* FLAG_ALL */, 0x99, 0]], 12)).toEqual({ errno: null, num: 1 });
    checkAll(0);
  });

  it.skip('hw_queue (sim: HW queues are not modelled)', () => {});

  it.skipIf(!withViommu)('vdevice_tombstone', () => {
    const s = setup();
    const vdev = vdeviceAlloc(s.viommuId, s.deviceId, 0x99n);
    f.ctx.destroy(s.stdevId);
    expectErrno(() => f.ctx.destroy(vdev), 'ENOENT');
  });
});
