/**
 * The guest half of `npm run bench` (run inside the test VM): the same map+unmap pair through a
 * C loop, the linux backend and the sim, on one kernel, printing one JSON line.
 */
import { execFileSync } from 'node:child_process';
import { Iommufd } from '../src/index.js';
import { compileCLoop } from './c-loop.js';
import { mapUnmapPair } from './sim.js';

const N = Number(process.env.IOASID_BENCH_N ?? 100000);
const c = JSON.parse(execFileSync(compileCLoop(), [String(N), 'auto'], { encoding: 'utf8' })) as {
  ns_per_pair: number;
  ns_map: number;
  ns_unmap: number;
};
const linuxCtx = Iommufd.open({ backend: 'linux' });
const linux = mapUnmapPair(linuxCtx, N);
linuxCtx.close();
const simCtx = Iommufd.open({ backend: 'sim' });
const sim = mapUnmapPair(simCtx, N);
simCtx.close();
console.log(JSON.stringify({ n: N, c, linux: linux.nsPerPair, sim: sim.nsPerPair }));
