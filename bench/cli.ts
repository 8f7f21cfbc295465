/**
 * Cold start of the `ioasid` command: wall time of a fresh `node dist/src/cli.js …` until it exits,
 * beside `node -e 0` (Node's own start on this machine), and the CPU time it used (user + system,
 * from this process's cutime/cstime, so other load on the machine does not inflate it). Runs are
 * interleaved (one of each command per round) so that load from other processes falls on all of
 * them alike; the minimum is the wall figure least disturbed by it. The target is under 200 ms for
 * every command. It reports, it asserts nothing.
 *
 * Where rolldown is installed (vite, under vitest, brings it), the same commands also run from a
 * one-file bundle of the CLI: the difference is what Node's ESM loader costs for the ~70 modules
 * a `--machine` command loads (resolution, one URL and file read per import), which is most of
 * what those commands spend over `node -e 0`.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const cli = join(dirname(fileURLToPath(import.meta.url)), '../src/cli.js');

const COMMANDS: string[][] = [
  ['--version'], ['--help'], ['ls'], ['doctor'], ['ls', '--machine', 'q35Edu'], ['doctor', '--machine', 'q35Edu'],
  ['bind', '0000:00:05.0', '--machine', 'q35Host'],
];

/** Commands the bundle runs (not --version: it finds package.json by the package's name, from where it lies). */
const BUNDLED: string[][] = [['--help'], ['ls', '--machine', 'q35Edu']];

export interface ColdStart {
  args: string;
  minMs: number;
  medianMs: number;
  /** Mean CPU time (user + system) of the child, in ms; null where /proc/self/stat is missing. */
  cpuMs: number | null;
}

/** This process's waited-for children's CPU time so far, in ms (cutime + cstime, in USER_HZ = 100 ticks). */
function childCpuMs(): number | null {
  try {
    const stat = readFileSync('/proc/self/stat', 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(f[13]) + Number(f[14])) * 10;
  } catch {
    return null;
  }
}

/** The CLI as one ESM file (rolldown), in a temporary directory; null when rolldown is not installed. */
async function bundle(): Promise<{ file: string; dir: string } | null> {
  let rolldown: typeof import('rolldown').rolldown;
  try {
    ({ rolldown } = await import('rolldown'));
  } catch {
    return null;
  }
  const dir = mkdtempSync(join(tmpdir(), 'ioasid-cli-bundle-'));
  const file = join(dir, 'cli.mjs');
  const b = await rolldown({ input: cli, platform: 'node', external: ['koffi', /^node:/], logLevel: 'silent' });
  await b.write({ file, format: 'esm', codeSplitting: false });
  await b.close();
  return { file, dir };
}

export async function coldStart(rounds = 11): Promise<ColdStart[]> {
  const bundled = await bundle();
  const runs: [string, string[]][] = [
    ['node -e 0', ['-e', '0']],
    ...COMMANDS.map((c): [string, string[]] => [`ioasid ${c.join(' ')}`, [cli, ...c]]),
    ...(bundled ? BUNDLED.map((c): [string, string[]] => [`bundled: ioasid ${c.join(' ')}`, [bundled.file, ...c]]) : []),
  ];
  const times = runs.map((): number[] => []);
  const cpu = runs.map(() => 0);
  let cpuKnown = true;
  for (let r = 0; r < rounds; r++) {
    runs.forEach(([, args], i) => {
      const c0 = childCpuMs();
      const t0 = performance.now();
      spawnSync(process.execPath, args, { stdio: 'ignore' });
      times[i]!.push(performance.now() - t0);
      const c1 = childCpuMs();
      if (c0 === null || c1 === null) cpuKnown = false;
      else cpu[i]! += c1 - c0;
    });
  }
  if (bundled) rmSync(bundled.dir, { recursive: true, force: true });
  const out = runs.map(([args], i) => {
    const s = times[i]!.sort((a, b) => a - b);
    return { args, minMs: s[0]!, medianMs: s[s.length >> 1]!, cpuMs: cpuKnown ? cpu[i]! / rounds : null };
  });
  const node = out[0]!;
  console.log(`cli cold start, ms over ${rounds} interleaved rounds (target < 200):  wall min  median   cpu`);
  for (const c of out) {
    const over = c === node ? '' : `   ${(c.minMs - node.minMs).toFixed(0).padStart(4)} ms over node${c.minMs < 200 ? '' : '  OVER 200 ms'}`;
    const cpuText = c.cpuMs === null ? '     -' : c.cpuMs.toFixed(0).padStart(6);
    console.log(`             ${c.args.padEnd(52)} ${c.minMs.toFixed(0).padStart(5)} ${c.medianMs.toFixed(0).padStart(7)} ${cpuText}${over}`);
  }
  if (!bundled) console.log('             (rolldown not installed: no bundled rows)');
  return out;
}
