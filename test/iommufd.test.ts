/**
 * Port of the kernel selftests FIXTURE(iommufd) and FIXTURE(change_process), in the order of
 * tools/testing/selftests/iommu/iommufd.c (FIXTURE(iommufd)'s VFIO cases are in vfio_compat.test.ts).
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Iommufd, MemFd, uapi } from '../src/index.js';
import { BACKEND, BUFFER_SIZE, PAGE_SIZE, errnoOf, expectErrno, rawIoctl, useIommufd } from './helpers.js';
import { restrictPinning, vmCounters } from './privileges.js';
import { ioasAlloc } from './selftest_utils.js';

const { IOCTLS, IOMMU_OPTION_HUGE_PAGES, IOMMU_OPTION_OP_GET, IOMMU_OPTION_OP_SET, IOMMU_OPTION_RLIMIT_MODE } = uapi;

describe(`iommufd fixture [${BACKEND}]`, () => {
  const f = useIommufd();

  it('simple_close', () => {
    const ctx = Iommufd.open({ backend: f.ctx.binding });
    ctx.close();
  });

  it('cmd_fail: DESTROY id 0 -> ENOENT, NULL arg -> EFAULT, unknown nr -> ENOTTY', () => {
    expectErrno(() => f.ctx.destroy(0), 'ENOENT');
    expectErrno(() => rawIoctl(f.ctx, IOCTLS.DESTROY.request, null), 'EFAULT');
    // struct iommu_destroy cmd = { .size = sizeof(cmd), .id = 0 }
    const cmd = new Uint8Array(IOCTLS.DESTROY.struct.size);
    new DataView(cmd.buffer).setUint32(0, cmd.length, true);
    expectErrno(() => rawIoctl(f.ctx, uapi._IO(0x3b, 0x7f), cmd), 'ENOTTY');
  });

  it('cmd_length: min-1 -> EINVAL, non-zero tail -> E2BIG, zero tail == exact size', () => {
    const cases: [keyof typeof IOCTLS, string][] = [
      ['DESTROY', 'id'], ['GET_HW_INFO', '__reserved'], ['HWPT_ALLOC', '__reserved'],
      ['HWPT_INVALIDATE', '__reserved'], ['IOAS_ALLOC', 'out_ioas_id'],
      ['IOAS_IOVA_RANGES', 'out_iova_alignment'], ['IOAS_ALLOW_IOVAS', 'allowed_iovas'],
      ['IOAS_MAP', 'iova'], ['IOAS_COPY', 'src_iova'], ['IOAS_UNMAP', 'length'], ['OPTION', 'val64'],
      ['VFIO_IOAS', '__reserved'], ['IOAS_MAP_FILE', 'iova'], ['VIOMMU_ALLOC', 'out_viommu_id'],
      ['VDEVICE_ALLOC', 'virt_id'], ['IOAS_CHANGE_PROCESS', '__reserved'],
    ];
    for (const [name, last] of cases) {
      const d = IOCTLS[name];
      expect(d.minSize, name).toBe(uapi.offsetofend(d.struct, last));
      const size = d.struct.size;
      const buf = new Uint8Array(size + 1);
      const dv = new DataView(buf.buffer);
      buf[size] = 0xff;
      dv.setUint32(0, d.minSize - 1, true);
      expectErrno(() => rawIoctl(f.ctx, d.request, buf), 'EINVAL');
      dv.setUint32(0, size + 1, true);
      expectErrno(() => rawIoctl(f.ctx, d.request, buf), 'E2BIG');
      dv.setUint32(0, size, true);
      const exact = errnoOf(() => rawIoctl(f.ctx, d.request, buf));
      dv.setUint32(0, size + 1, true);
      buf[size] = 0;
      expect(errnoOf(() => rawIoctl(f.ctx, d.request, buf)), name).toBe(exact);
    }
  });

  it('cmd_ex_fail: longer struct with zero tail works, non-zero tail E2BIG, short EINVAL', () => {
    const buf = new Uint8Array(16);
    const dv = new DataView(buf.buffer);
    dv.setUint32(0, 16, true);
    expectErrno(() => rawIoctl(f.ctx, IOCTLS.DESTROY.request, buf), 'ENOENT');
    dv.setBigUint64(8, 1n, true);
    expectErrno(() => rawIoctl(f.ctx, IOCTLS.DESTROY.request, buf), 'E2BIG');
    dv.setUint32(0, 8, true);
    expectErrno(() => rawIoctl(f.ctx, IOCTLS.DESTROY.request, buf), 'ENOENT');
    dv.setUint32(0, 7, true);
    expectErrno(() => rawIoctl(f.ctx, IOCTLS.DESTROY.request, buf), 'EINVAL');
  });

  it('global_options: RLIMIT_MODE get/set, HUGE_PAGES with object 0 -> ENOENT', () => {
    // One struct iommu_option reused as in the C test, so every GET is checked on the raw val64.
    const cmd = f.ctx.cmd(IOCTLS.OPTION).u32('option_id', IOMMU_OPTION_RLIMIT_MODE).u16('op', IOMMU_OPTION_OP_GET).u64('val64', 1n);
    const ioctl = () => f.ctx.ioctl(cmd);

    ioctl();
    expect(cmd.get64('val64')).toBe(0n);

    // This requires root
    cmd.u16('op', IOMMU_OPTION_OP_SET).u64('val64', 1n);
    ioctl();
    cmd.u64('val64', 2n);
    expectErrno(ioctl, 'EINVAL');

    cmd.u16('op', IOMMU_OPTION_OP_GET);
    ioctl();
    expect(cmd.get64('val64')).toBe(1n);

    cmd.u16('op', IOMMU_OPTION_OP_SET).u64('val64', 0n);
    ioctl();

    cmd.u16('op', IOMMU_OPTION_OP_GET).u32('option_id', IOMMU_OPTION_HUGE_PAGES);
    expectErrno(ioctl, 'ENOENT');
    cmd.u16('op', IOMMU_OPTION_OP_SET);
    expectErrno(ioctl, 'ENOENT');
  });

  it('global_options: RLIMIT_MODE cannot change once the context holds objects (EBUSY)', () => {
    f.ctx.allocIoas();
    expectErrno(() => f.ctx.setRlimitMode('mm'), 'EBUSY');
    expect(f.ctx.getRlimitMode()).toBe('user');
  });

  it('global_options: getRlimitMode() names only the values the uAPI has (0 user, 1 mm), anything else throws', () => {
    // A binding that answers RLIMIT_MODE GET with `answer`, as a broken kernel would.
    const answering = (answer: bigint) => {
      const b = f.ctx.binding;
      const lying = Object.create(b) as typeof b;
      lying.ioctl = (fd, request, arg) => {
        const rc = b.ioctl(fd, request, arg);
        if (request === IOCTLS.OPTION.request && arg) new DataView(arg.buffer, arg.byteOffset).setBigUint64(IOCTLS.OPTION.struct.off.val64!, answer, true);
        return rc;
      };
      return new Iommufd(lying);
    };
    for (const [answer, mode] of [[0n, 'user'], [1n, 'mm']] as const) {
      using ctx = answering(answer);
      expect(ctx.getRlimitMode()).toBe(mode);
    }
    using ctx = answering(7n);
    expect(() => ctx.getRlimitMode()).toThrow(RangeError);
  });

  it('vfio_ioas: GET with none -> ENODEV, SET 0 -> ENOENT, SET/GET/CLEAR', () => {
    expect(f.ctx.getVfioIoas()).toBeNull();
    expectErrno(() => f.ctx.setVfioIoas(0), 'ENOENT');
    const ioas = ioasAlloc(f.ctx);
    f.ctx.setVfioIoas(ioas);
    expect(f.ctx.getVfioIoas()).toBe(ioas.id);
    f.ctx.clearVfioIoas();
    expect(f.ctx.getVfioIoas()).toBeNull();
  });

  it('vfio_ioas: destroying the compat IOAS clears it; unknown op -> EOPNOTSUPP', () => {
    const ioas = f.ctx.allocIoas();
    f.ctx.setVfioIoas(ioas);
    ioas.destroy();
    expect(f.ctx.getVfioIoas()).toBeNull();
    const c = f.ctx.cmd(IOCTLS.VFIO_IOAS).u16('op', 3);
    expectErrno(() => f.ctx.ioctl(c), 'EOPNOTSUPP');
  });
});

/** iommufd_utils.h */
const IOPT_PAGES_ACCOUNT_NONE = 0;
const IOPT_PAGES_ACCOUNT_USER = 1;
const IOPT_PAGES_ACCOUNT_MM = 2;

/**
 * FIXTURE(change_process), variants account_none, account_user, account_mm: CAP_IPC_LOCK dropped,
 * RLIMIT_MODE set (0 user, 1 mm) unless none, an IOAS with a mock domain.
 *
 * TEST_F(change_process, basic) is ported up to its fork(): a plain map makes
 * IOMMU_IOAS_CHANGE_PROCESS EINVAL, and with only a MAP_FILE mapping it succeeds in the current
 * process. Its last step forks a child that calls it and checks that VmPin (and VmLck in mm mode)
 * move from parent to child; a Node.js process cannot fork(2) and the sim models one process, so
 * that step is not ported. What a change to the same process can show, on both tiers: it succeeds
 * and leaves the charge where it was, the one page the mock domain pinned (what the C child reads
 * from its parent before its own call).
 */
describe.each([
  { name: 'account_none', accounting: IOPT_PAGES_ACCOUNT_NONE },
  { name: 'account_user', accounting: IOPT_PAGES_ACCOUNT_USER },
  { name: 'account_mm', accounting: IOPT_PAGES_ACCOUNT_MM },
])(`change_process $name [${BACKEND}]`, (variant) => {
  const f = useIommufd();
  const self = { ioasId: 0 };
  let undo: (() => void) | null = null;

  // FIXTURE_SETUP(change_process)
  beforeEach(() => {
    undo = restrictPinning(f.ctx.binding, { ipcLock: false }); // drop_cap_ipc_lock
    if (variant.accounting !== IOPT_PAGES_ACCOUNT_NONE) {
      f.ctx.setRlimitMode(variant.accounting === IOPT_PAGES_ACCOUNT_MM ? 'mm' : 'user');
    }
    self.ioasId = ioasAlloc(f.ctx).id;
    f.test.mockDomain(self.ioasId);
  });

  // (the C test's fixture process exits instead)
  afterEach(() => {
    undo?.();
    undo = null;
  });

  it('basic (up to the fork: the move to a child process cannot be run from Node.js)', () => {
    const ioas = f.ctx.ioas(self.ioasId);
    const changeProcess = () => f.ctx.changeProcess();

    // Expect failure if non-file maps exist
    let iova = ioas.mapUser(f.buffer.addr, PAGE_SIZE);
    expectErrno(changeProcess, 'EINVAL');
    ioas.unmap(iova, PAGE_SIZE);

    // Change process works in current process.
    using mfd = new MemFd(f.ctx.binding, 'buffer', BUFFER_SIZE);
    iova = ioas.mapFile(mfd, 0n, PAGE_SIZE);
    // Parent accounts for locked memory before (nlock = PAGE_SIZE / 1024 kB; vmCounters counts pages)
    const nlock = 1;
    const before = vmCounters(f.ctx.binding);
    expect(before.pinned).toBe(nlock);
    if (variant.accounting === IOPT_PAGES_ACCOUNT_MM) expect(before.locked).toBe(nlock);
    changeProcess();
    // The same process: need_charge_update() is false for every pages, nothing is moved or doubled.
    expect(vmCounters(f.ctx.binding)).toEqual(before);
  });
});
