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
 * so `node -e 0` is also measured without it, to show what the environment adds to every row.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

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
}

/** The CPU time of this process's waited-for children so far, in ms. */
function childCpu(): () => number | null {
  try {
    const koffi = createRequire(import.meta.url)('koffi') as typeof import('koffi');
    const getrusage = koffi.load('libc.so.6').func('int getrusage(int who, void *usage)') as (who: number, usage: Buffer) => number;
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
  const runs: { args: string; argv: string[]; env: NodeJS.ProcessEnv }[] = [
    { args: 'node -e 0', argv: ['-e', '0'], env },
    ...(env.NODE_EXTRA_CA_CERTS ? [{ args: 'node -e 0, NODE_EXTRA_CA_CERTS unset', argv: ['-e', '0'], env: { ...env, NODE_EXTRA_CA_CERTS: undefined } }] : []),
    ...COMMANDS.map((c) => ({ args: `ioasid ${c.join(' ')}`, argv: [cli, ...c], env })),
    // what a program pays for its first import of the package: its entries take the one bundle
    // (no code cache: that is the command's), beside tsc's ES modules the bundle was made from
    ...LIBRARY.map(([args, code]) => ({ args, argv: ['--input-type=module', '-e', code], env })),
  ];
  const cpuNow = childCpu();
  const run = (r: (typeof runs)[number], check = false): { cpu: number | null; wall: number } => {
    const c0 = cpuNow();
    const t0 = performance.now();
    const p = spawnSync(process.execPath, r.argv, { cwd: root, env: r.env, stdio: ['ignore', 'ignore', check ? 'pipe' : 'ignore'] });
    const wall = performance.now() - t0;
    const c1 = cpuNow();
    if (p.error) throw p.error;
    // a command that failed would time its failure: an answer exits 0, or 1 for a finding (the
    // doctor's, modes that diverge) with nothing on stderr; a failure prints there
    if (check && (![0, 1].includes(p.status ?? -1) || p.stderr.length)) throw new Error(`${r.args} exited with ${p.status ?? p.signal}: ${p.stderr}`);
    return { cpu: c0 === null || c1 === null ? null : c1 - c0, wall };
  };
  try {
    const first = runs.map((r) => (r.args.startsWith('node -e') ? null : run(r, true).cpu));
    const cpu = runs.map((): (number | null)[] => []);
    const wall = runs.map((): number[] => []);
    for (let round = 0; round < rounds; round++) {
      runs.forEach((r, i) => {
        const t = run(r);
        cpu[i]!.push(t.cpu);
        wall[i]!.push(t.wall);
      });
    }
    const out = runs.map((r, i): ColdStart => ({
      args: r.args, cpu: cpu[i]!.includes(null) ? null : stats(cpu[i] as number[]), wall: stats(wall[i]!), firstCpu: first[i]!,
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
  console.log(`cli cold start: ${rounds} interleaved rounds after a first run of each (which writes its code cache); ms, target < ${TARGET_MS}`);
  console.log(`             ${''.padEnd(62)} CPU min  med  max   wall min  med  max   CPU over node -e 0   first run CPU`);
  for (const c of out) {
    const over = c === node || !c.cpu || !node.cpu ? '' : `${ms(c.cpu.median - node.cpu.median, 5)} (${(c.cpu.median / node.cpu.median).toFixed(2)}x)`;
    const verdict = c === node || !c.args.startsWith('ioasid ') || !c.cpu ? '' : c.cpu.median < TARGET_MS ? '  pass' : '  OVER';
    console.log(`             ${c.args.padEnd(62)}  ${triple(c.cpu)}      ${triple(c.wall)}   ${over.padEnd(18)} ${c.firstCpu === null ? '' : ms(c.firstCpu, 6)}${verdict}`);
  }
}
