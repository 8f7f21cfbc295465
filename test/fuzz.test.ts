/**
 * A slice of bench/fuzz.ts in the sim tier: a few thousand seeded calls over every ioctl of the
 * uAPI tables and every Binding syscall on every kind of descriptor. Nothing may throw but
 * IommuError, no call may take a second, and a refused call must leave the sim's state as it was.
 * The full run (200,000 calls) is `node dist/bench/fuzz.js --count 200000` after a build.
 *
 * Sim only: the fuzzer compares the sim's internal state before and after each call, which the
 * kernel does not expose.
 */
import { describe, expect, it } from 'vitest';
import { sim } from '../src/backends/sim/index.js';
import { Iommufd } from '../src/index.js';
import { IOCTLS } from '../src/ioasid/uapi.js';
import { VFIO_DEVICE_IOCTLS } from '../src/device/uapi.js';
import { PARTIAL_OK, fingerprint, formatReport, runFuzz } from '../bench/fuzz.js';
import { BACKEND } from './helpers.js';

const SKIP = BACKEND === 'linux';
const WHY = SKIP ? ' (skipped on linux: the fuzzer fingerprints the sim\'s internal state)' : '';

describe(`fuzzing the sim's syscalls${WHY}`, () => {
  it.skipIf(SKIP)('the state fingerprint sees a mapping come and go, and not the ioctl scratch buffer', () => {
    const b = sim();
    const ctx = new Iommufd(b);
    const ioas = ctx.allocIoas();
    const before = fingerprint(b);
    ctx.allocIoas().destroy(); // leaves the id free again, and the ucmd scratch written
    expect(fingerprint(b)).toEqual(before);
    using mem = ctx.mmap(4096);
    const withMem = fingerprint(b);
    expect(withMem).not.toEqual(before);
    ioas.map(mem, { iova: 0x10000n });
    const mapped = fingerprint(b);
    expect(mapped).not.toEqual(withMem);
    ioas.unmapAll();
    expect(fingerprint(b)).toEqual(withMem);
  });

  it.skipIf(SKIP)('5000 seeded calls: only IommuError, none over 1 s, every refusal leaves the state as it was', () => {
    const rep = runFuzz({ seed: 20261201, count: 5000, reset: 1000 });
    if (rep.defects.length) console.log(formatReport(rep));
    expect(rep.defects).toEqual([]);
    expect(rep.calls).toBe(5000);
    expect(rep.slowest.ms).toBeLessThan(1000);
    // every command of the tables was issued, and some of each family were granted
    for (const d of [...Object.values(IOCTLS), ...Object.values(VFIO_DEVICE_IOCTLS)]) expect(rep.ioctls.get(d.name) ?? 0).toBeGreaterThan(0);
    // and the legacy container's and groups' (/dev/vfio/vfio, /dev/vfio/N)
    for (const name of ['VFIO_GROUP_GET_STATUS', 'VFIO_GROUP_SET_CONTAINER', 'VFIO_GROUP_GET_DEVICE_FD', 'VFIO_GROUP_UNSET_CONTAINER']) {
      expect(rep.ioctls.get(name) ?? 0).toBeGreaterThan(0);
    }
    for (const name of ['IOMMU_IOAS_MAP', 'IOMMU_HWPT_ALLOC', 'IOMMU_TEST_OP_MOCK_DOMAIN', 'VFIO_DEVICE_BIND_IOMMUFD', 'VFIO_GROUP_GET_STATUS', 'mmap', 'pwrite']) {
      expect(rep.granted.get(name) ?? 0).toBeGreaterThan(0);
    }
    expect(rep.refused).toBeGreaterThan(rep.calls / 2);
    for (const code of rep.errnos.keys()) expect(code).not.toMatch(/^E\d+$/);
    expect([...PARTIAL_OK.keys()].every((n) => rep.ioctls.has(n))).toBe(true);
  }, 180_000);
});
