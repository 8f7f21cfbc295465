/**
 * `npm run bench`: sim figures on the host, then (where the test VM can run) one guest run that
 * measures a C loop, the linux backend and the sim on the same kernel, printing the ratios.
 */
import { Iommufd, sim, traceBinding, type Binding } from '../src/index.js';
import { bridgeDma, bridgeRoundTrip } from './bridge.js';
import { coldStart } from './cli.js';
import { dmaTranslations, mapUnmapPair, scale, unpinnableRefusals } from './sim.js';

const N = Number(process.env.IOASID_BENCH_N ?? 100000);
const fmt = (ns: number): string => `${ns.toFixed(0).padStart(7)} ns`;

function hostSim(): Record<string, unknown> {
  const ctx = Iommufd.open({ backend: 'sim' });
  const pair = mapUnmapPair(ctx, N);
  ctx.close();
  console.log(`sim (host)   map+unmap 4 KiB, auto IOVA, N=${N}: ${fmt(pair.nsPerPair)} per pair`);
  const mctx = Iommufd.open({ backend: 'sim' });
  const mock = mapUnmapPair(mctx, N, 3, undefined, true);
  mctx.close();
  console.log(`             with a mock domain attached:  ${fmt(mock.nsPerPair)} per pair (${(mock.nsPerPair / pair.nsPerPair).toFixed(2)}x; the kernel's own: 9752-10360 / 3812-4048 ns = ~2.6x)`);
  const rows = [1e3, 1e5, 1e6].map((a) => scale(a));
  console.log('sim scaling  existing areas   auto-IOVA pair   fixed-IOVA pair   bytes/area');
  for (const r of rows) {
    console.log(`             ${String(r.areas).padStart(14)}   ${fmt(r.nsPerPairAuto)}      ${fmt(r.nsPerPairFixed)}       ${r.bytesPerArea.toFixed(0)}`);
  }
  const first = rows[0]!;
  const last = rows[rows.length - 1]!;
  console.log(`             1e6 vs 1e3: auto ${(last.nsPerPairAuto / first.nsPerPairAuto).toFixed(2)}x, fixed ${(last.nsPerPairFixed / first.nsPerPairFixed).toFixed(2)}x`);
  return { pair, mock, rows };
}

/** Sim DMA translations per second through the VT-d model, with and without IOTLB hits. */
async function hostDma(): Promise<void> {
  console.log('sim DMA      edu -> VT-d model -> domain, reads at successive pages (512 pages, wrapping):');
  for (const size of [8, 4096]) {
    for (const iotlb of [true, false]) {
      const r = await dmaTranslations(size, iotlb);
      console.log(`             ${String(size).padStart(5)} B per DMA, IOTLB ${iotlb ? 'on ' : 'off'}: ${(r.translationsPerSec / 1e6).toFixed(2).padStart(6)} M translations/s  (${r.nsPerDma.toFixed(0)} ns per DMA, IOTLB hit rate ${(r.hitRate * 100).toFixed(1)}%)`);
    }
  }
}

/** What refusing 2^38 bytes of unpinnable memory costs on each path that pins. */
function hostRefusals(): void {
  console.log('sim EFAULT   2^38 bytes (2^26 pages) from an unmapped address, per refused call:');
  for (const r of unpinnableRefusals()) {
    console.log(`             ${r.path.padEnd(40)} ${r.ms.toFixed(3).padStart(8)} ms   peak RSS +${r.peakRssMiB.toFixed(0)} MiB`);
  }
}

/** What recording a trace costs on the cheapest call pair: untraced, recorded into a function, written as JSON Lines. */
function hostTrace(): void {
  const pair = (backend: Binding): number => {
    const ctx = Iommufd.open({ backend });
    const ns = mapUnmapPair(ctx, N).nsPerPair;
    ctx.close();
    return ns;
  };
  const plain = pair(sim());
  const recorded = pair(traceBinding(sim(), () => {}));
  const file = traceBinding(sim(), { file: '/dev/null' });
  const written = pair(file);
  file.end();
  console.log(`sim trace    map+unmap pair: untraced ${fmt(plain)}, recorded ${fmt(recorded)} (${(recorded / plain).toFixed(2)}x), written as JSON Lines ${fmt(written)} (${(written / plain).toFixed(2)}x)`);
}

const mode = process.argv[2] ?? 'host';
// `node dist/bench/run.js cli`: only the cold start of the command
if (mode === 'cli') await coldStart();
if (mode === 'host') {
  hostSim();
  hostTrace();
  await hostDma();
  await coldStart();
  hostRefusals();
  bridgeRoundTrip();
  bridgeDma();
}
