/**
 * The guest half of `npm run bench` (run inside the test VM): the same map+unmap pair through a
 * C loop, the linux backend and the sim, on one kernel, printing one JSON line.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Iommufd } from '../src/index.js';
import { mapUnmapPair } from './sim.js';

const N = Number(process.env.IOASID_BENCH_N ?? 100000);
const headers = process.env.IOASID_KERNEL_HEADERS;
if (!headers) throw new Error('IOASID_KERNEL_HEADERS is not set');
const dir = mkdtempSync(join(tmpdir(), 'ioasid-bench-'));
const bin = join(dir, 'map_unmap');
const src = new URL('../../bench/c/map_unmap.c', import.meta.url).pathname;
execFileSync('gcc', ['-O2', '-w', '-I', headers, '-o', bin, src]);
const c = JSON.parse(execFileSync(bin, [String(N)], { encoding: 'utf8' })) as { ns_per_pair: number; ns_map: number; ns_unmap: number };

const linuxCtx = Iommufd.open({ backend: 'linux' });
const linux = mapUnmapPair(linuxCtx, N);
linuxCtx.close();
const simCtx = Iommufd.open({ backend: 'sim' });
const sim = mapUnmapPair(simCtx, N);
simCtx.close();
console.log(JSON.stringify({ n: N, c, linux: linux.nsPerPair, sim: sim.nsPerPair }));
