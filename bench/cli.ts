/**
 * Cold start of the `ioasid` command: wall time of a fresh `node dist/src/cli.js …` until it exits,
 * median of several runs, beside `node -e 0` (Node's own start on this machine). The target is
 * under 200 ms for every command.
 */
import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const cli = join(dirname(fileURLToPath(import.meta.url)), '../src/cli.js');

const COMMANDS: string[][] = [
  ['--version'], ['--help'], ['ls'], ['doctor'], ['ls', '--machine', 'q35Edu'], ['doctor', '--machine', 'q35Edu'],
];

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[s.length >> 1]!;
}

/** Median wall milliseconds of `node ...args` over `runs` runs. */
function wall(args: string[], runs: number): number {
  const times: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    spawnSync(process.execPath, args, { stdio: 'ignore' });
    times.push(performance.now() - t0);
  }
  return median(times);
}

export function coldStart(runs = 9): { node: number; commands: { args: string; ms: number }[] } {
  const node = wall(['-e', '0'], runs);
  console.log(`cli cold start (median of ${runs}, wall ms; target < 200):  node -e 0 alone ${node.toFixed(0)} ms`);
  const commands = COMMANDS.map((c) => {
    const ms = wall([cli, ...c], runs);
    console.log(`             ioasid ${c.join(' ').padEnd(28)} ${ms.toFixed(0).padStart(5)} ms  (${(ms - node).toFixed(0)} ms over node)${ms < 200 ? '' : '  OVER 200 ms'}`);
    return { args: c.join(' '), ms };
  });
  return { node, commands };
}
