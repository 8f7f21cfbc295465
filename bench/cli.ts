/**
 * Cold start of the `ioasid` command: wall time of a fresh `node dist/src/cli.js …` until it exits,
 * beside `node -e 0` (Node's own start on this machine). Runs are interleaved (one of each command
 * per round) so that load from other processes falls on all of them alike; the minimum is the
 * figure least disturbed by it. The target is under 200 ms for every command.
 */
import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const cli = join(dirname(fileURLToPath(import.meta.url)), '../src/cli.js');

const COMMANDS: string[][] = [
  ['--version'], ['--help'], ['ls'], ['doctor'], ['ls', '--machine', 'q35Edu'], ['doctor', '--machine', 'q35Edu'],
];

export interface ColdStart {
  args: string;
  minMs: number;
  medianMs: number;
}

export function coldStart(rounds = 11): ColdStart[] {
  const runs: [string, string[]][] = [['node -e 0', ['-e', '0']], ...COMMANDS.map((c): [string, string[]] => [`ioasid ${c.join(' ')}`, [cli, ...c]])];
  const times = runs.map((): number[] => []);
  for (let r = 0; r < rounds; r++) {
    runs.forEach(([, args], i) => {
      const t0 = performance.now();
      spawnSync(process.execPath, args, { stdio: 'ignore' });
      times[i]!.push(performance.now() - t0);
    });
  }
  const out = runs.map(([args], i) => {
    const s = times[i]!.sort((a, b) => a - b);
    return { args, minMs: s[0]!, medianMs: s[s.length >> 1]! };
  });
  const node = out[0]!;
  console.log(`cli cold start, wall ms over ${rounds} interleaved rounds (target < 200):  min  median`);
  for (const c of out) {
    const over = c === node ? '' : `   ${(c.minMs - node.minMs).toFixed(0).padStart(4)} ms over node${c.minMs < 200 ? '' : '  OVER 200 ms'}`;
    console.log(`             ${c.args.padEnd(36)} ${c.minMs.toFixed(0).padStart(5)} ${c.medianMs.toFixed(0).padStart(7)}${over}`);
  }
  return out;
}
