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
    const child = spawn(command[0]!, command.slice(1), { env: server.env(lib, env), stdio: 'inherit' });
    return await new Promise<number>((resolve) => {
      child.once('error', (e) => {
        io.err(`ioasid serve: ${command[0]}: ${e.message}`);
        resolve(127);
      });
      child.once('exit', (code, signal) => resolve(code ?? 128 + (signal ? osSignal(signal) : 0)));
    });
  } finally {
    await server.close();
  }
}

/** A signal's number, for the shell's 128 + N exit status. */
function osSignal(name: NodeJS.Signals): number {
  return constants.signals[name] ?? 0;
}
