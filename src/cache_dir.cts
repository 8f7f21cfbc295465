/**
 * The cache directory of the package's generated files (the bridge's preload library, the
 * command's code caches): $IOASID_CACHE, else $XDG_CACHE_HOME/ioasid, else ~/.cache/ioasid.
 * CommonJS, so that the command's bin (cli/cold.cts) requires it before any ES module loads.
 */
import { join } from 'node:path';

export function cacheDir(env: NodeJS.ProcessEnv = process.env): string {
  return env.IOASID_CACHE ?? join(env.XDG_CACHE_HOME ?? join(home(), '.cache'), 'ioasid');
}

/** os.homedir(), which takes $HOME when it is set, without loading node:os (~0.4 ms) then. */
function home(): string {
  return process.env.HOME ?? (require('node:os') as typeof import('node:os')).homedir();
}
