/**
 * The preload library, compiled on first use with the system's C compiler and cached by the hash
 * of its source (under $IOASID_CACHE, default ~/.cache/ioasid, as the test kernel is), so a second
 * run costs one stat.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { accessSync, constants, existsSync, mkdirSync, readFileSync, renameSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** native/bridge/ioasid_preload.c, found from src/bridge (a checkout) or dist/src/bridge (the package). */
export function preloadSource(): string {
  const here = dirname(fileURLToPath(import.meta.url));
  for (const up of ['../..', '../../..']) {
    const p = join(here, up, 'native/bridge/ioasid_preload.c');
    if (existsSync(p)) return p;
  }
  throw new Error('bridge: native/bridge/ioasid_preload.c is not in this installation');
}

export function cacheDir(env: NodeJS.ProcessEnv = process.env): string {
  return env.IOASID_CACHE ?? join(env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'ioasid');
}

/** The path of the compiled preload library, building it if this source has not been built yet. */
export function preloadLibrary(env: NodeJS.ProcessEnv = process.env): string {
  const src = preloadSource();
  const text = readFileSync(src);
  const key = createHash('sha256').update(text).digest('hex').slice(0, 16);
  let dir = join(cacheDir(env), 'bridge', key);
  let lib = join(dir, 'libioasid_preload.so');
  if (existsSync(lib)) return lib;
  try {
    mkdirSync(dir, { recursive: true });
    accessSync(dir, constants.W_OK);
  } catch {
    // a read-only cache (the test VM sees the host's): build beside the process instead
    dir = join(tmpdir(), `ioasid-bridge-${key}`);
    lib = join(dir, 'libioasid_preload.so');
    if (existsSync(lib)) return lib;
    mkdirSync(dir, { recursive: true });
  }
  const tmp = `${lib}.${process.pid}.tmp`;
  const cc = env.CC ?? 'cc';
  try {
    execFileSync(cc, ['-O2', '-Wall', '-shared', '-fPIC', '-o', tmp, src, '-ldl', '-lpthread'], { stdio: ['ignore', 'ignore', 'pipe'] });
  } catch (e) {
    const err = (e as { stderr?: Buffer }).stderr?.toString() ?? (e as Error).message;
    throw new Error(`bridge: building the preload library with ${cc} failed (install a C compiler, or set CC): ${err.trim()}`, { cause: e });
  }
  renameSync(tmp, lib);
  return lib;
}
