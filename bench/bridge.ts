/**
 * The preload bridge's cost per call: a C program (test/bridge/roundtrip.c) times N
 * IOMMU_IOAS_IOVA_RANGES through `ioasid serve`, beside the same call made on the sim in-process
 * (what the bridge adds is the difference: two socket hops and the user copies).
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Iommufd } from '../src/index.js';

const fmt = (ns: number): string => `${ns.toFixed(0).padStart(7)} ns`;

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
  const runs = [0, 1, 2].map(() => Number(execFileSync(process.execPath, ['dist/src/cli.js', 'serve', '--', bin, String(n)], { encoding: 'utf8' }).trim()));
  const ctx = Iommufd.open({ backend: 'sim' });
  const ioas = ctx.allocIoas();
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < n; i++) ioas.iovaRanges();
  const direct = Number(process.hrtime.bigint() - t0) / n;
  ctx.close();
  const best = Math.min(...runs);
  console.log(`bridge       IOMMU_IOAS_IOVA_RANGES from C through ioasid serve, N=${n}: ${fmt(best)} per call (runs: ${runs.map((r) => r.toFixed(0)).join(', ')} ns; target <= 30000 ns)`);
  console.log(`             the same call on the sim in-process: ${fmt(direct)} (the bridge adds ${(best - direct).toFixed(0)} ns)`);
}
