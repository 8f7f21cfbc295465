/**
 * The preload bridge: unmodified programs against a sim machine (docs/bridge.md).
 * `BridgeServer` serves a machine on a private unix socket; `preloadLibrary()` builds the library
 * a program is started with; `runBridged` does both for one command and collects its output.
 */
import { spawn } from 'node:child_process';
import type { MachineDesc } from '../backends/sim/machine/machine.js';
import { preloadLibrary } from './preload.js';
import { BridgeServer } from './server.js';

export { BridgeServer, type ServeOptions } from './server.js';
export { preloadLibrary } from './preload.js';
export { compareTap, parseTap, type TapCase, type TapComparison, type TapRun, type TapVerdict } from './tap.js';

export interface BridgedRun {
  /** The exit status (128 + N for a signal). */
  code: number;
  stdout: string;
  stderr: string;
}

/** Run `command` against a fresh sim machine through the bridge; resolves when it exits. */
export async function runBridged(command: string, args: readonly string[], opts: { machine?: MachineDesc; timeoutMs?: number; env?: Record<string, string> } = {}): Promise<BridgedRun> {
  const lib = preloadLibrary();
  const server = await BridgeServer.listen(opts.machine ? { machine: opts.machine } : {});
  try {
    const child = spawn(command, args, { env: { ...server.env(lib), ...opts.env }, stdio: ['ignore', 'pipe', 'pipe'], timeout: opts.timeoutMs });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const code = await new Promise<number>((resolve, reject) => {
      child.once('error', reject);
      child.once('close', (c, signal) => resolve(c ?? 128 + (signal === 'SIGKILL' ? 9 : signal === 'SIGTERM' ? 15 : 0)));
    });
    return { code, stdout, stderr };
  } finally {
    await server.close();
  }
}
