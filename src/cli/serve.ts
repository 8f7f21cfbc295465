/** `ioasid serve`: a sim machine behind the preload bridge (src/bridge), for one command or until interrupted. */
import { spawn } from 'node:child_process';
import { constants } from 'node:os';
import type { MachineDesc } from '../backends/sim/machine/machine.js';
import { BridgeServer } from '../bridge/server.js';
import { preloadLibrary } from '../bridge/preload.js';
import type { Io } from './main.js';

export async function serveCommand(command: readonly string[], machine: MachineDesc | undefined, io: Io, env: NodeJS.ProcessEnv): Promise<number> {
  const lib = preloadLibrary(env);
  const server = await BridgeServer.listen(machine ? { machine } : {});
  try {
    if (!command.length) {
      io.out(`IOASID_BRIDGE_SOCKET=${server.socketPath}`);
      io.out(`LD_PRELOAD=${lib}`);
      io.out('serving; interrupt to stop');
      await new Promise<void>((resolve) => {
        process.once('SIGINT', resolve);
        process.once('SIGTERM', resolve);
      });
      return 0;
    }
    return (await runCommand('serve', command, server.env(lib, env), io)).code;
  } finally {
    await server.close();
  }
}

/** Run `command` with the terminal's stdio; its exit status (the shell's 128 + N for a signal, 127 when it cannot start) and pid. */
export async function runCommand(who: string, command: readonly string[], env: NodeJS.ProcessEnv, io: Io): Promise<{ code: number; pid: number | undefined }> {
  const child = spawn(command[0]!, command.slice(1), { env, stdio: 'inherit' });
  const code = await new Promise<number>((resolve) => {
    child.once('error', (e) => {
      io.err(`ioasid ${who}: ${command[0]}: ${e.message}`);
      resolve(127);
    });
    child.once('exit', (c, signal) => resolve(c ?? 128 + (signal ? osSignal(signal) : 0)));
  });
  return { code, pid: child.pid };
}

/** A signal's number, for the shell's 128 + N exit status. */
function osSignal(name: NodeJS.Signals): number {
  return constants.signals[name] ?? 0;
}
