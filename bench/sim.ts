/**
 * Sim benchmarks: map+unmap of one 4 KiB page through the public API, and the cost of that pair
 * with 1e3 / 1e5 / 1e6 areas already in the IOAS, plus the memory each area takes; DMA
 * translations; the cost of refusing to pin 2^38 bytes of unmapped memory on each path that pins.
 */
import { Iommufd, isErrno } from '../src/index.js';
import { VFIO_IOMMU_MAP_DMA } from '../src/ioasid/vfio_uapi.js';
import { IOMMU_HWPT_DATA_SELFTEST, IommufdTest, MOCK_FLAGS_ACCESS_CREATE_NEEDS_PIN_PAGES, MOCK_IOMMUPT_HUGE } from '../src/testing.js';

const PAGE = 4096n;

export interface PairResult {
  n: number;
  nsPerPair: number;
}

/**
 * N map (auto IOVA, R/W) + unmap pairs of one page; best of `runs`. With `mockDomain`, a mock
 * device is attached to the IOAS first (IOMMU_TEST_OP_MOCK_DOMAIN): every map pins and fills
 * its domain and every unmap empties it, as in the kernel's "mock domain attached" baseline.
 */
export function mapUnmapPair(ctx: Iommufd, n: number, runs = 3, fixed?: bigint, mockDomain = false): PairResult {
  const ioas = ctx.allocIoas();
  if (mockDomain) new IommufdTest(ctx).mockDomain(ioas.id);
  const mem = ctx.mmap(4096);
  const opts = fixed === undefined ? {} : { iova: fixed };
  for (let i = 0; i < Math.min(n, 2000); i++) ioas.unmap(ioas.map(mem, opts), PAGE);
  let best = Infinity;
  for (let r = 0; r < runs; r++) {
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < n; i++) ioas.unmap(ioas.map(mem, opts), PAGE);
    const ns = Number(process.hrtime.bigint() - t0) / n;
    if (ns < best) best = ns;
  }
  mem.close();
  if (!mockDomain) ioas.destroy(); // a mock device keeps it until the context closes
  return { n, nsPerPair: best };
}

export interface ScaleRow {
  areas: number;
  nsPerPairAuto: number;
  nsPerPairFixed: number;
  bytesPerArea: number;
}

/**
 * Fill an IOAS with `areas` one-page areas at fixed IOVAs from 2^40, then time pairs of
 * (a) auto-IOVA map + unmap (the allocator's first fit is the low hole below them) and
 * (b) fixed-IOVA map + unmap in the middle of the populated span (ordered-insert cost).
 */
export function scale(areas: number, n = 20000): ScaleRow {
  const ctx = Iommufd.open({ backend: 'sim' });
  const ioas = ctx.allocIoas();
  const mem = ctx.mmap(4096);
  const gc = (globalThis as { gc?: () => void }).gc;
  gc?.();
  const before = process.memoryUsage().heapUsed;
  const base = 1n << 40n;
  for (let i = 0; i < areas; i++) ioas.map(mem, { iova: base + BigInt(i) * 2n * PAGE });
  gc?.();
  const bytesPerArea = (process.memoryUsage().heapUsed - before) / areas;
  const time = (fn: () => void): number => {
    for (let i = 0; i < 1000; i++) fn();
    let best = Infinity;
    for (let r = 0; r < 3; r++) {
      const t0 = process.hrtime.bigint();
      for (let i = 0; i < n; i++) fn();
      best = Math.min(best, Number(process.hrtime.bigint() - t0) / n);
    }
    return best;
  };
  const mid = base + BigInt(areas) * PAGE + PAGE; // an odd page: a hole between two areas
  const auto = time(() => void ioas.unmap(ioas.map(mem), PAGE));
  const fixed = time(() => void ioas.unmap(ioas.map(mem, { iova: mid }), PAGE));
  ctx.close();
  return { areas, nsPerPairAuto: auto, nsPerPairFixed: fixed, bytesPerArea };
}

export interface DmaRow {
  /** Bytes per DMA. */
  size: number;
  iotlb: boolean;
  /** Page translations per second (each DMA of `size` bytes translates ceil(size/4096) pages). */
  translationsPerSec: number;
  nsPerDma: number;
  hitRate: number;
}

/**
 * Sim DMA through the VT-d model: the edu at 0000:00:01.0 is bound and attached to an IOAS with
 * 4 MiB mapped; its bus-master port reads `size` bytes at successive pages, wrapping over
 * `pages` pages. With the IOTLB on and `pages` <= 1024 every translation after the first pass
 * hits; with it off each page is walked in the domain's page table.
 */
export async function dmaTranslations(size: number, iotlb: boolean, pages = 512, n = 200_000): Promise<DmaRow> {
  const { VfioDevice } = await import('../src/device/vfio_device.js');
  const { sim } = await import('../src/backends/sim/index.js');
  const binding = sim();
  const ctx = new Iommufd(binding);
  try {
    using dev = VfioDevice.open(binding, '0000:00:01.0');
    dev.bind(ctx);
    const ioas = ctx.allocIoas();
    dev.attach(ioas);
    using mem = ctx.mmap(4 << 20);
    const base = ioas.map(mem, { iova: 1n << 30n });
    const machine = binding.kernel.machine;
    const unit = machine.iommu!;
    unit.iotlbEnabled = iotlb;
    const port = machine.device('0000:00:01.0')!.fn.dmaPort!;
    const buf = new Uint8Array(size);
    const iovas = Array.from({ length: pages }, (_, i) => base + BigInt(i) * 4096n);
    for (let i = 0; i < pages * 2; i++) port.read(iovas[i % pages]!, buf);
    const before = { ...unit.stats };
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < n; i++) {
      if (port.read(iovas[i % pages]!, buf)) throw new Error('bench: DMA faulted');
    }
    const ns = Number(process.hrtime.bigint() - t0);
    const translations = unit.stats.translations - before.translations;
    const hits = unit.stats.iotlbHits - before.iotlbHits;
    const misses = unit.stats.iotlbMisses - before.iotlbMisses;
    return {
      size, iotlb,
      translationsPerSec: translations / (ns / 1e9),
      nsPerDma: ns / n,
      hitRate: hits + misses ? hits / (hits + misses) : 0,
    };
  } finally {
    ctx.close();
  }
}

export interface RefusalRow {
  path: string;
  /** Mean time of one refused call (EFAULT). */
  ms: number;
  /** Peak RSS growth over all the calls, MiB. */
  peakRssMiB: number;
}

/**
 * The paths that pin, each asked for 2^38 bytes (2^26 pages) whose first page is unmapped: the
 * refusal (EFAULT) should cost the first batch, not the range. Domains are the mock IOMMU's
 * MOCK_IOMMUPT_HUGE format, whose aperture [0, 2^38) takes such a range at IOVA 0.
 */
export function unpinnableRefusals(n = 1000): RefusalRow[] {
  const LEN = 1n << 38n;
  const ctx = Iommufd.open({ backend: 'sim' });
  const t = new IommufdTest(ctx);
  const hole = ctx.mmap(4096);
  hole.close();
  const devId = t.mockDomain(ctx.allocIoas().id).idevId;
  const cfg = new Uint8Array([0, 0, 0, 0, MOCK_IOMMUPT_HUGE, 0, 0, 0]); // struct iommu_hwpt_selftest
  const dst = ctx.allocIoas();
  ctx.allocHwpt({ devId, ptId: dst.id, data: { type: IOMMU_HWPT_DATA_SELFTEST, bytes: cfg } });
  const src = ctx.allocIoas();
  src.mapUser(hole.addr, LEN, { iova: 0n });
  const dmaMap = new Uint8Array(32);
  const dv = new DataView(dmaMap.buffer);
  dv.setUint32(0, 32, true);
  dv.setUint32(4, 3, true); // VFIO_DMA_MAP_FLAG_READ | _WRITE
  dv.setBigUint64(8, hole.addr, true);
  dv.setBigUint64(16, 0n, true);
  dv.setBigUint64(24, LEN, true);
  const access = t.createAccess(src.id, MOCK_FLAGS_ACCESS_CREATE_NEEDS_PIN_PAGES);
  const paths: [string, () => unknown][] = [
    ['IOAS_MAP into an IOAS with a domain', () => dst.mapUser(hole.addr, LEN, { iova: 0n })],
    ['HWPT_ALLOC on an IOAS with a lazy map', () => ctx.allocHwpt({ devId, ptId: src.id, data: { type: IOMMU_HWPT_DATA_SELFTEST, bytes: cfg } })],
    ['VFIO_IOMMU_MAP_DMA with a domain', () => ctx.binding.ioctl(ctx.fd, VFIO_IOMMU_MAP_DMA, dmaMap)],
    ['IOAS_COPY into an IOAS with a domain', () => dst.copyFrom(src, 0n, LEN, { iova: 0n })],
    ['access pinning one page of the area', () => t.accessPages(access, 0n, 4096n)],
  ];
  ctx.setVfioIoas(dst);
  const rows = paths.map(([path, fn]) => {
    const rss = process.resourceUsage().maxRSS;
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < n; i++) {
      try {
        fn();
        throw new Error(`bench: ${path} succeeded`);
      } catch (e) {
        if (!isErrno(e, 'EFAULT')) throw e;
      }
    }
    const ns = Number(process.hrtime.bigint() - t0);
    return { path, ms: ns / n / 1e6, peakRssMiB: (process.resourceUsage().maxRSS - rss) / 1024 };
  });
  ctx.close();
  return rows;
}
