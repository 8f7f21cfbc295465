/**
 * The preload bridge's cost per call: a C program (test/bridge/roundtrip.c) times N
 * IOMMU_IOAS_IOVA_RANGES through `ioasid serve`, beside the floor under any such design (the
 * same program's round trip between two C processes over a unix socket) and the same call made
 * on the sim in-process. Runs alternate; of each kind, the run with the lowest mean is reported,
 * with its median (the mean also counts the calls that waited for a CPU other processes held).
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Iommufd } from '../src/index.js';
import { libc } from '../src/backends/linux/libc.js';
import { PageStore } from '../src/backends/sim/kernel/mm.js';
import { MAP_ANONYMOUS, MAP_PRIVATE, PROT_READ, PROT_WRITE } from '../src/backends/types.js';
import { RemoteMm, StoreRegistry } from '../src/bridge/remote_mm.js';

const TARGET_US = 30;
const us = (ns: number): string => `${(ns / 1000).toFixed(1)} µs`;

/** One run's mean and median per round trip (ns). */
interface Run {
  mean: number;
  median: number;
}

export function bridgeRoundTrip(n = 20000): void {
  let headers: string;
  try {
    headers = join(execFileSync('bash', ['scripts/selftests/build.sh'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim(), 'usr/include');
  } catch {
    console.log('bridge       skipped: the kernel uAPI headers (scripts/selftests/build.sh) are not available');
    return;
  }
  const bin = join(mkdtempSync(join(tmpdir(), 'ioasid-bench-')), 'roundtrip');
  execFileSync('cc', ['-O2', '-isystem', headers, '-o', bin, 'test/bridge/roundtrip.c']);
  const run = (args: string[]): Run => {
    const [mean, median] = execFileSync(args[0]!, args.slice(1), { encoding: 'utf8' }).trim().split(' ').map(Number);
    return { mean: mean!, median: median! };
  };
  const bridged: Run[] = [];
  const floor: Run[] = [];
  for (let i = 0; i < 5; i++) {
    bridged.push(run([process.execPath, 'dist/src/cli.js', 'serve', '--', bin, String(n)]));
    floor.push(run([bin, '--socket', String(n)]));
  }
  const ctx = Iommufd.open({ backend: 'sim' });
  const ioas = ctx.allocIoas();
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < n; i++) ioas.iovaRanges();
  const direct = Number(process.hrtime.bigint() - t0) / n;
  ctx.close();
  const best = (runs: Run[]): Run => runs.reduce((a, b) => (b.mean < a.mean ? b : a));
  const list = (runs: Run[]): string => runs.map((r) => `${(r.mean / 1000).toFixed(1)}/${(r.median / 1000).toFixed(1)}`).join(', ');
  const b = best(bridged);
  const f = best(floor);
  console.log(`bridge       IOMMU_IOAS_IOVA_RANGES from C through ioasid serve, N=${n}: mean ${us(b.mean)}, median ${us(b.median)} per call; target <= ${TARGET_US} µs: ${b.mean <= TARGET_US * 1000 ? 'met' : 'NOT met'}`);
  console.log(`             the floor, a C-to-C round trip over a unix socket (40 B there, 16 B back): mean ${us(f.mean)}, median ${us(f.median)}; the bridged call is ${(b.mean / f.mean).toFixed(2)}x it (means), ${(b.median / f.median).toFixed(2)}x (medians)`);
  console.log(`             the same call on the sim in-process: ${us(direct)} (the bridge adds ${us(b.mean - direct)} to the mean)`);
  console.log(`             runs, mean/median µs: bridged ${list(bridged)}; floor ${list(floor)}`);
}

/**
 * The memory side of a device's DMA into a bridged program (RemotePageStore.dmaCopy: one
 * process_vm_readv/writev per run of contiguous pages, through the server's scratch buffer),
 * beside the sim's own RAM (PageStore.dmaCopy), per DMA of 4 KiB, 64 KiB and 1 MiB. The program
 * is this process: its anonymous memory, as the server names it from /proc/PID/maps.
 */
export function bridgeDma(n = 20000): void {
  const c = libc();
  const size = 1 << 20;
  const addr = c.mmap(null, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (addr === null) throw new Error('bench: mmap');
  new Uint8Array(c.view(addr, size)).fill(1); // faulted in, as pinned pages are
  const mm = new RemoteMm(process.pid, new StoreRegistry());
  const { store, offset } = mm.phys(Number(addr));
  const ram = new PageStore(size / 4096);
  const us = (s: PageStore, off: number, write: boolean, buf: Uint8Array): number => {
    const reps = Math.ceil((n * 4096) / Math.max(4096, buf.length / 16)); // 1 MiB: n / 16
    for (let i = 0; i < reps / 10; i++) s.dmaCopy(write, off, buf, 0, buf.length); // warm up
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < reps; i++) s.dmaCopy(write, off, buf, 0, buf.length);
    return Number(process.hrtime.bigint() - t0) / reps / 1000;
  };
  console.log(`bridge DMA   the memory side of one DMA, into the program's pages vs the sim's RAM:`);
  for (const bytes of [4096, 65536, size]) {
    const buf = new Uint8Array(bytes);
    const [r, w, rr, rw] = [us(store, offset, false, buf), us(store, offset, true, buf), us(ram, 0, false, buf), us(ram, 0, true, buf)];
    console.log(`             ${String(bytes).padStart(7)} B: program read ${r.toFixed(1)} µs, write ${w.toFixed(1)} µs (${(bytes / r / 1000).toFixed(2)} GB/s read); sim RAM read ${rr.toFixed(2)} µs, write ${rw.toFixed(2)} µs`);
  }
  mm.release();
  c.munmap(addr, size);
}
