/**
 * The guest half of `npm run bench` (run inside the test VM): map+unmap of one 4 KiB page through
 * a C loop, the linux backend and the sim, on one kernel, printing one JSON line. Three setups of
 * the IOAS: nothing attached; the kernel's selftest mock domain attached (IOMMU_TEST_CMD
 * MOCK_DOMAIN); an edu device attached through its VFIO cdev (real VT-d page-table work and IOTLB
 * flushes on every pair). The C loop, the linux backend and the sim (its mock IOMMU, its VT-d
 * model with the same edu) run each setup in the same guest.
 */
import { execFileSync } from 'node:child_process';
import { Iommufd, type Ioas } from '../src/index.js';
import { findPciDevices } from '../src/device/pci.js';
import { VfioDevice } from '../src/device/vfio_device.js';
import { IommufdTest } from '../src/testing.js';
import { compileCLoop } from './c-loop.js';
import { mapUnmapPair } from './sim.js';

const N = Number(process.env.IOASID_BENCH_N ?? 100000);
const PAGE = 4096n;

interface CLoop {
  ns_per_pair: number;
  ns_map: number;
  ns_unmap: number;
}

const bin = compileCLoop();
const cLoop = (attach: string): CLoop =>
  JSON.parse(execFileSync(bin, [String(N), 'auto', attach], { encoding: 'utf8' })) as CLoop;

/** N auto-IOVA map + unmap pairs of one page on an IOAS that `attach` prepared; best of 3 runs. */
function pairOn(ctx: Iommufd, ioas: Ioas, n: number): number {
  const mem = ctx.mmap(4096);
  mem.bytes.fill(0x5a);
  for (let i = 0; i < Math.min(n, 2000); i++) ioas.unmap(ioas.map(mem), PAGE);
  let best = Infinity;
  for (let r = 0; r < 3; r++) {
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < n; i++) ioas.unmap(ioas.map(mem), PAGE);
    best = Math.min(best, Number(process.hrtime.bigint() - t0) / n);
  }
  mem.close();
  return best;
}

/** The same pair through the library with the mock domain attached. */
function mockPair(backend: 'linux' | 'sim'): number {
  const ctx = Iommufd.open({ backend });
  try {
    const ioas = ctx.allocIoas();
    new IommufdTest(ctx).mockDomain(ioas.id);
    return pairOn(ctx, ioas, N);
  } finally {
    ctx.close();
  }
}

/** The edu alone in its group (0000:00:01.0 in the VM) and its cdev. */
function soloEdu(ctx: Iommufd): { bdf: string; cdev: string } {
  const edu = findPciDevices(ctx.binding, { vendor: 0x1234, device: 0x11e8 })
    .find((d) => d.vfioCdev !== null && d.groupDevices().length === 1);
  if (!edu) throw new Error('bench: no edu bound to vfio-pci alone in its group (run in the test VM)');
  return { bdf: edu.bdf, cdev: edu.vfioCdev! };
}

/** The same pair through the library with edu bound and attached through its cdev (the sim's edu on sim). */
function eduPair(backend: 'linux' | 'sim'): number {
  const ctx = Iommufd.open({ backend });
  try {
    using dev = VfioDevice.open(ctx.binding, soloEdu(ctx).bdf);
    dev.bind(ctx);
    const ioas = ctx.allocIoas();
    dev.attach(ioas);
    return pairOn(ctx, ioas, N);
  } finally {
    ctx.close();
  }
}

const linuxCtx = Iommufd.open({ backend: 'linux' });
const cdev = soloEdu(linuxCtx).cdev;
const linux = mapUnmapPair(linuxCtx, N);
linuxCtx.close();
const simCtx = Iommufd.open({ backend: 'sim' });
const sim = mapUnmapPair(simCtx, N);
simCtx.close();

const c = cLoop('none');
const cMock = cLoop('mock');
const linuxMock = mockPair('linux');
const simMock = mockPair('sim');
const cEdu = cLoop(cdev);
const linuxEdu = eduPair('linux');
const simEdu = eduPair('sim');

console.log(JSON.stringify({
  n: N,
  c,
  linux: linux.nsPerPair,
  sim: sim.nsPerPair,
  mock: { c: cMock, linux: linuxMock, sim: simMock },
  edu: { c: cEdu, linux: linuxEdu, sim: simEdu, cdev },
}));
