/**
 * Device DMA sets dirty bits (sim only: QEMU 7.2's intel-iommu has no second-stage A/D bits, so
 * the test VM cannot make a dirty-tracking HWPT for edu; the kernel answers EOPNOTSUPP there, as
 * the sim's default machine does too). A machine whose VT-d model has scalable mode with SLADS
 * lets the edu model write through a dirty-tracking HWPT: exactly the pages it wrote report dirty,
 * reads set nothing, and the IOTLB does not hide writes from the tracking.
 */
import { describe, expect, it } from 'vitest';
import { Iommufd } from '../src/index.js';
import { VfioDevice } from '../src/device/vfio_device.js';
import { presets, sim } from '../src/backends/sim/index.js';
import { BACKEND, expectErrno } from './helpers.js';
import { EduDriver } from './drivers/edu.js';

const SKIP = BACKEND !== 'sim';

describe(`edu DMA under dirty tracking (sim VT-d model with SLADS)${SKIP ? ' (skipped: a sim machine model; the VM has no dirty-capable VT-d)' : ''}`, () => {
  it.skipIf(SKIP)('the default (VM-like) machine refuses a dirty-tracking HWPT for edu: EOPNOTSUPP', () => {
    const b = sim();
    using ctx = new Iommufd(b);
    using dev = VfioDevice.open(b, '0000:00:01.0');
    const devId = dev.bind(ctx);
    const ioas = ctx.allocIoas();
    expectErrno(() => ctx.allocHwpt({ devId, ptId: ioas.id, dirtyTracking: true }), 'EOPNOTSUPP');
  });

  it.skipIf(SKIP)('pages edu writes are dirty, pages it only reads are not; reading clears them', () => {
    const desc = presets.q35Edu();
    const b = sim({ machine: { ...desc, iommu: { kind: 'vtd', options: { scalableMode: true, dirtyTracking: true } } } });
    using ctx = new Iommufd(b);
    using dev = VfioDevice.open(b, '0000:00:01.0');
    const devId = dev.bind(ctx);
    const ioas = ctx.allocIoas();
    using mem = ctx.mmap(16 * 4096);
    const base = ioas.map(mem, { iova: 0x100000n });
    const hwpt = ctx.allocHwpt({ devId, ptId: ioas.id, dirtyTracking: true });
    dev.attach(hwpt);
    const edu = new EduDriver(dev);
    edu.init();
    hwpt.setDirtyTracking(true);
    const page = (i: number) => base + BigInt(i) * 4096n;
    edu.toDevice(page(1), 64); // a read: nothing dirty
    edu.toRam(page(3), 64); // writes
    edu.toRam(page(3) + 100n, 8); // again, through the IOTLB
    edu.toRam(page(9) + 4050n, 96); // straddles pages 9 and 10
    const opts = { iova: base, length: 16n * 4096n, pageSize: 4096n };
    const bits = hwpt.getDirtyBitmap(opts);
    const dirty = [...Array(16).keys()].filter((i) => bits[i >> 3]! & (1 << (i & 7)));
    expect(dirty).toEqual([3, 9, 10]);
    expect([...hwpt.getDirtyBitmap(opts)]).toEqual([0, 0]);
    // with tracking off, writes leave no trace
    hwpt.setDirtyTracking(false);
    edu.toRam(page(5), 8);
    hwpt.setDirtyTracking(true); // enabling starts clean
    expect([...hwpt.getDirtyBitmap(opts)]).toEqual([0, 0]);
    edu.remove();
  });
});
