/** `ioasid serve`: a sim machine behind the preload bridge (src/bridge), for one command or until interrupted. */
import { spawn } from 'node:child_process';
import { closeSync } from 'node:fs';
import { constants } from 'node:os';
import type { MachineDesc } from '../backends/sim/machine/machine.js';
import { libc } from '../backends/linux/libc.js';
import { listenBlocking, serveBlocking } from '../bridge/blocking.js';
import { BridgeServer } from '../bridge/server.js';
import { preloadLibrary } from '../bridge/preload.js';
import type { Io } from './main.js';

export async function serveCommand(command: readonly string[], machine: MachineDesc | undefined, io: Io, env: NodeJS.ProcessEnv): Promise<number> {
  const lib = preloadLibrary(env);
  const opts = machine ? { machine } : {};
  if (!command.length) {
    const server = await BridgeServer.listen(opts);
    try {
      io.out(`IOASID_BRIDGE_SOCKET=${server.socketPath}`);
      io.out(`LD_PRELOAD=${lib}`);
      io.out('serving; interrupt to stop');
      await new Promise<void>((resolve) => {
        process.once('SIGINT', resolve);
        process.once('SIGTERM', resolve);
      });
      return 0;
    } finally {
      await server.close();
    }
  }
  // One command: this process only serves it, so the blocking transport (blocking.ts) answers.
  const server = BridgeServer.create(opts);
  const listenFd = listenBlocking(server);
  try {
    return (await runCommand('serve', command, server.env(lib, env), io, { server, listenFd })).code;
  } finally {
    closeSync(listenFd);
    await server.close();
  }
}

/**
 * Run `command` with the terminal's stdio; its exit status (the shell's 128 + N for a signal, 127
 * when it cannot start) and pid. With `serve`, this process serves the bridge in the blocking
 * loop until the command has exited and every process it started has disconnected.
 */
export async function runCommand(
  who: string,
  command: readonly string[],
  env: NodeJS.ProcessEnv,
  io: Io,
  serve?: { server: BridgeServer; listenFd: number },
): Promise<{ code: number; pid: number | undefined }> {
  const child = spawn(command[0]!, command.slice(1), { env, stdio: 'inherit' });
  const code = new Promise<number>((resolve) => {
    child.once('error', (e) => {
      io.err(`ioasid ${who}: ${command[0]}: ${e.message}`);
      resolve(127);
    });
    child.once('exit', (c, signal) => resolve(c ?? 128 + (signal ? constants.signals[signal] ?? 0 : 0)));
  });
  if (serve && child.pid !== undefined) {
    const pidfd = libc().pidfd_open(child.pid, 0);
    if (pidfd < 0) {
      child.kill('SIGKILL');
      throw new Error(`pidfd_open failed (errno ${libc().errno()}): Linux 5.3 or later is needed`);
    }
    try {
      serveBlocking(serve.server, serve.listenFd, pidfd);
    } finally {
      closeSync(pidfd);
    }
  }
  return { code: await code, pid: child.pid };
}
