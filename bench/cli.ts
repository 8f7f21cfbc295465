/**
 * Cold start of the `ioasid` command: a fresh `node dist/src/cli.cjs …` (package.json's bin) for
 * each run, until it exits, beside `node -e 0` (Node's own start on this machine) measured in the
 * same rounds. For each: the CPU time it used (user + system, from getrusage(RUSAGE_CHILDREN)
 * through koffi, else /proc/self/stat's 10 ms ticks; load from other processes stretches wall
 * time, not this) and the wall time, min / median / max over the rounds, and the median CPU over
 * `node -e 0`'s. Rounds are interleaved (one run of each command per round) so that other load
 * falls on all alike. The target is under 200 ms for every command (judged on the median CPU). It
 * reports; it asserts nothing.
 *
 * The commands keep their V8 code cache (src/cli/cold.cts) in a temporary IOASID_CACHE: the first
 * run of each command compiles and writes it, and is reported on its own; the rounds use it.
 * When NODE_EXTRA_CA_CERTS is set, every Node process loads those certificates before it starts,
 * so every row is also measured without it, in the same rounds, to show what the environment adds;
 * the verdict says when a command is under the target only without it.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { libc } from '../src/backends/linux/libc.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '../..');
/** The command as npm installs it: package.json's bin. */
const cli = join(root, (JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { bin: Record<string, string> }).bin.ioasid!);
const TARGET_MS = 200;

/** The commands timed, as a user types them (run from the repository's root). */
const COMMANDS: string[][] = [
  ['--version'], ['--help'], ['ls'], ['doctor'],
  ['ls', '--machine', 'q35Edu'], ['doctor', '--machine', 'q35Edu'], ['ls', '--machine', 'smmuv3Platform', '--json'],
  ['bind', '0000:00:05.0', '--machine', 'q35Host'], ['unbind', '0000:00:01.0', '--to', 'none', '--machine', 'q35Edu'],
  ['demo'], ['map', '--machine', 'q35Edu', '--device', '0000:00:01.0'],
  ['compare', '--trace', 'examples/unmap-subrange.jsonl', '--modes', 'vfio_type1v2_iommu,iommufd'],
  // a scenario module; the second imports the package (its entries take the command's bundle)
  ['compare', 'examples/unmap-subrange.mjs', '--modes', 'vfio_type1v2_iommu,iommufd'],
  ['compare', 'bench/unmap-imports.mjs', '--modes', 'vfio_type1v2_iommu,iommufd'],
];

/** A program importing the package, as `node -e` runs it from the repository's root (which resolves 'ioasid' to itself). */
const LIBRARY: [string, string][] = [
  ["import 'ioasid' and 'ioasid/migration'", "await import('ioasid'); await import('ioasid/migration');"],
  ['the same from the ES modules', "await import('./dist/src/index.js'); await import('./dist/src/migration/index.js');"],
];

export interface Stats {
  min: number;
  median: number;
  max: number;
}

export interface ColdStart {
  args: string;
  /** CPU time (user + system) in ms; null where neither getrusage nor /proc/self/stat is available. */
  cpu: Stats | null;
  wall: Stats;
  /** The first run, which wrote the code cache (null for `node -e 0`). */
  firstCpu: number | null;
  /** CPU time of the same runs with NODE_EXTRA_CA_CERTS unset, where the environment sets it. */
  bareCpu: Stats | null;
}

/** The CPU time of this process's waited-for children so far, in ms. */
function childCpu(): () => number | null {
  try {
    const { getrusage } = libc();
    const usage = Buffer.alloc(144); // struct rusage: ru_utime and ru_stime (struct timeval) first
    const RUSAGE_CHILDREN = -1;
    return () => {
      if (getrusage(RUSAGE_CHILDREN, usage) !== 0) return null;
      const tv = (at: number): number => Number(usage.readBigInt64LE(at)) * 1e3 + Number(usage.readBigInt64LE(at + 8)) / 1e3;
      return tv(0) + tv(16);
    };
  } catch {
    return () => {
      try {
        const stat = readFileSync('/proc/self/stat', 'utf8');
        const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
        return (Number(f[13]) + Number(f[14])) * 10;
      } catch {
        return null;
      }
    };
  }
}

function stats(values: number[]): Stats {
  const s = [...values].sort((a, b) => a - b);
  return { min: s[0]!, median: s[s.length >> 1]!, max: s[s.length - 1]! };
}

export async function coldStart(rounds = Number(process.env.IOASID_BENCH_COLD_ROUNDS ?? 11)): Promise<ColdStart[]> {
  const cache = mkdtempSync(join(tmpdir(), 'ioasid-bench-cache-'));
  const env: NodeJS.ProcessEnv = { ...process.env, IOASID_CACHE: cache };
  // where the environment makes every Node process load a certificate bundle first, each row also runs without it
  const bare: NodeJS.ProcessEnv | null = env.NODE_EXTRA_CA_CERTS ? { ...env, NODE_EXTRA_CA_CERTS: undefined } : null;
  const rows: { args: string; argv: string[] }[] = [
    { args: 'node -e 0', argv: ['-e', '0'] },
    ...COMMANDS.map((c) => ({ args: `ioasid ${c.join(' ')}`, argv: [cli, ...c] })),
    // what a program pays for its first import of the package: its entries take the one bundle
    // (no code cache: that is the command's), beside tsc's ES modules the bundle was made from
    ...LIBRARY.map(([args, code]) => ({ args, argv: ['--input-type=module', '-e', code] })),
  ];
  const cpuNow = childCpu();
  const run = (argv: string[], runEnv: NodeJS.ProcessEnv, check = ''): { cpu: number | null; wall: number } => {
    const c0 = cpuNow();
    const t0 = performance.now();
    const p = spawnSync(process.execPath, argv, { cwd: root, env: runEnv, stdio: ['ignore', 'ignore', check ? 'pipe' : 'ignore'] });
    const wall = performance.now() - t0;
    const c1 = cpuNow();
    if (p.error) throw p.error;
    // a command that failed would time its failure: an answer exits 0, or 1 for a finding (the
    // doctor's, modes that diverge) with nothing on stderr; a failure prints there
    if (check && (![0, 1].includes(p.status ?? -1) || p.stderr.length)) throw new Error(`${check} exited with ${p.status ?? p.signal}: ${p.stderr}`);
    return { cpu: c0 === null || c1 === null ? null : c1 - c0, wall };
  };
  const cpuStats = (values: (number | null)[]): Stats | null => (values.includes(null) ? null : stats(values as number[]));
  try {
    const first = rows.map((r) => (r.args.startsWith('node -e') ? null : run(r.argv, env, r.args).cpu));
    const cpu = rows.map((): (number | null)[] => []);
    const bareCpu = rows.map((): (number | null)[] => []);
    const wall = rows.map((): number[] => []);
    for (let round = 0; round < rounds; round++) {
      rows.forEach((r, i) => {
        const t = run(r.argv, env);
        cpu[i]!.push(t.cpu);
        wall[i]!.push(t.wall);
        if (bare) bareCpu[i]!.push(run(r.argv, bare).cpu);
      });
    }
    const out = rows.map((r, i): ColdStart => ({
      args: r.args, cpu: cpuStats(cpu[i]!), wall: stats(wall[i]!), firstCpu: first[i]!, bareCpu: bare ? cpuStats(bareCpu[i]!) : null,
    }));
    report(out, rounds);
    return out;
  } finally {
    rmSync(cache, { recursive: true, force: true });
  }
}

function report(out: ColdStart[], rounds: number): void {
  const node = out[0]!;
  const ms = (v: number, w = 4): string => v.toFixed(0).padStart(w);
  const triple = (s: Stats | null): string => (s ? `${ms(s.min)} ${ms(s.median)} ${ms(s.max)}` : '   -    -    -');
  const bare = node.bareCpu !== null;
  console.log(`cli cold start: ${rounds} interleaved rounds after a first run of each (which writes its code cache); ms, target < ${TARGET_MS} (median CPU)`);
  if (bare) console.log('  this environment sets NODE_EXTRA_CA_CERTS: every Node process loads it before any of its code runs; the last columns are the same runs without it');
  console.log(`  ${''.padEnd(62)} CPU min  med  max   wall min  med  max   CPU over node -e 0   first run CPU${bare ? '   no certs: CPU min  med  max   over node' : ''}`);
  for (const c of out) {
    const over = (s: Stats | null, n: Stats | null): string => (c === node || !s || !n ? '' : `${ms(s.median - n.median, 5)} (${(s.median / n.median).toFixed(2)}x)`);
    const judged = c !== node && c.args.startsWith('ioasid ') && c.cpu;
    const verdict = !judged ? '' : c.cpu!.median < TARGET_MS ? '  pass' : c.bareCpu && c.bareCpu.median < TARGET_MS ? '  pass without the certificates, OVER with them' : '  OVER';
    const noCerts = bare ? `              ${triple(c.bareCpu)}   ${over(c.bareCpu, node.bareCpu).padEnd(12)}` : '';
    console.log(`  ${c.args.padEnd(62)}  ${triple(c.cpu)}      ${triple(c.wall)}   ${over(c.cpu, node.cpu).padEnd(18)} ${c.firstCpu === null ? '      ' : ms(c.firstCpu, 6)}${noCerts}${verdict}`);
  }
}
