/**
 * `ioasid trace`: run a command with the preload library recording (native/bridge/trace.c) and
 * write its VFIO and iommufd calls as traces (docs/trace.md). Without --sim the calls go to this
 * host's kernel, only recorded; with --sim they go to a fresh sim machine through the bridge.
 *
 * Each process writes its own file (IOASID_TRACE=PREFIX: PREFIX.PID, or PREFIX.PID-N after an
 * exec) into a private directory beside FILE; afterwards the command's own process becomes FILE
 * and every other process (forked children) FILE.PID.
 */
import { mkdtempSync, readdirSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import type { MachineDesc } from '../backends/sim/machine/machine.js';
import { BridgeServer } from '../bridge/server.js';
import { preloadLibrary } from '../bridge/preload.js';
import type { Io } from './main.js';
import { runCommand } from './serve.js';

export interface TraceArgs {
  /** Where the command's own process's trace goes (children's: FILE.PID). */
  output: string;
  /** Run against a sim machine (this preset, or the default) instead of this host's kernel. */
  sim?: { machine?: MachineDesc };
}

/** What one run wrote: each file with its process and number of calls. */
export interface TraceFile {
  path: string;
  pid: number;
  calls: number;
  /** Whether this is the command's own process. */
  main: boolean;
}

export async function traceCommand(command: readonly string[], a: TraceArgs, io: Io, env: NodeJS.ProcessEnv): Promise<number> {
  const { code, files } = await runTraced(command, a, io, env);
  const main = files.find((f) => f.main);
  if (!main) io.err(`ioasid trace: ${command[0]} itself made no VFIO or iommufd call: nothing written to ${a.output}`);
  for (const f of files) io.err(`ioasid trace: ${f.calls} call${f.calls === 1 ? '' : 's'} of pid ${f.pid}${f.main ? '' : ' (a child)'} written to ${f.path}`);
  return code;
}

/** Run `command` traced; its exit status and the trace files written, the command's own first. */
export async function runTraced(command: readonly string[], a: TraceArgs, io: Io, env: NodeJS.ProcessEnv): Promise<{ code: number; files: TraceFile[] }> {
  const lib = preloadLibrary(env);
  const output = resolve(a.output);
  const dir = mkdtempSync(join(dirname(output), `.${basename(output)}.`));
  const server = a.sim ? await BridgeServer.listen(a.sim.machine ? { machine: a.sim.machine } : {}) : null;
  try {
    const base: NodeJS.ProcessEnv = { ...env, IOASID_TRACE: join(dir, 't') };
    let runEnv: NodeJS.ProcessEnv;
    if (server) {
      runEnv = { ...server.env(lib, base), IOASID_TRACE_MACHINE: server.kernel.machine.desc.name };
    } else {
      // the real kernel: nothing is routed, only recorded
      delete base.IOASID_BRIDGE_SOCKET;
      delete base.IOASID_TRACE_MACHINE;
      runEnv = { ...base, LD_PRELOAD: env.LD_PRELOAD ? `${lib} ${env.LD_PRELOAD}` : lib };
    }
    const { code, pid } = await runCommand('trace', command, runEnv, io);
    return { code, files: collect(dir, output, pid) };
  } finally {
    await server?.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Move the per-process files of `dir` into place: the command's (pid `main`) to `output`, the rest to output.PID. */
function collect(dir: string, output: string, main: number | undefined): TraceFile[] {
  const files: TraceFile[] = [];
  for (const name of readdirSync(dir).sort(byPid)) {
    const m = /^t\.(\d+)(-\d+)?$/.exec(name);
    if (!m) continue;
    const pid = Number(m[1]);
    const isMain = pid === main && !m[2];
    const path = isMain ? output : `${output}.${m[1]}${m[2] ?? ''}`;
    const calls = readFileSync(join(dir, name), 'utf8').split('\n').filter(Boolean).length - 1;
    renameSync(join(dir, name), path);
    files.push({ path, pid, calls, main: isMain });
  }
  return files.sort((x, y) => Number(y.main) - Number(x.main));
}

const byPid = (x: string, y: string): number => x.localeCompare(y, 'en', { numeric: true });
