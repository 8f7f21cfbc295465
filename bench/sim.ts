/**
 * Sim benchmarks: map+unmap of one 4 KiB page through the public API, and the cost of that pair
 * with 1e3 / 1e5 / 1e6 areas already in the IOAS, plus the memory each area takes.
 */
import { Iommufd } from '../src/index.js';
import { IommufdTest } from '../src/testing.js';

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
