/**
 * The preload library (every C file of native/bridge), compiled on first use with the system's C
 * compiler and cached by the hash of its sources (under $IOASID_CACHE, default ~/.cache/ioasid,
 * as the test kernel is), so a second run costs one stat.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { accessSync, constants, existsSync, mkdirSync, readFileSync, readdirSync, renameSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { cacheDir } from '../cache_dir.cjs';

/** native/bridge, found from src/bridge (a checkout) or dist/src/bridge (the package). */
export function preloadSourceDir(): string {
  const here = dirname(fileURLToPath(import.meta.url));
  for (const up of ['../..', '../../..']) {
    const p = join(here, up, 'native/bridge');
    if (existsSync(join(p, 'ioasid_preload.c'))) return p;
  }
  throw new Error('bridge: native/bridge/ioasid_preload.c is not in this installation');
}

/** The library's sources: every C file of native/bridge (compiled) and header (hashed), sorted. */
function preloadSources(dir: string): { c: string[]; all: string[] } {
  const all = readdirSync(dir).filter((f) => /\.[ch]$/.test(f)).sort().map((f) => join(dir, f));
  return { c: all.filter((f) => f.endsWith('.c')), all };
}

/** The path of the compiled preload library, building it if this source has not been built yet. */
export function preloadLibrary(env: NodeJS.ProcessEnv = process.env): string {
  const { c, all } = preloadSources(preloadSourceDir());
  const hash = createHash('sha256');
  for (const f of all) hash.update(`${basename(f)}\0`).update(readFileSync(f));
  const key = hash.digest('hex').slice(0, 16);
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
    execFileSync(cc, ['-O2', '-Wall', '-shared', '-fPIC', '-o', tmp, ...c, '-ldl', '-lpthread'], { stdio: ['ignore', 'ignore', 'pipe'] });
  } catch (e) {
    const err = (e as { stderr?: Buffer }).stderr?.toString() ?? (e as Error).message;
    throw new Error(`bridge: building the preload library with ${cc} failed (install a C compiler, or set CC): ${err.trim()}`, { cause: e });
  }
  renameSync(tmp, lib);
  return lib;
}
