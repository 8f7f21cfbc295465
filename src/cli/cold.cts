/**
 * Cold start of the `ioasid` command (the package's bin, src/cli.cts): the package's one bundle
 * compiled with a V8 code cache where it can be, else main loaded as ES modules. This module and
 * the bin are CommonJS: Node starts an ES module entry through its ES module loader, which costs
 * about 10 ms of CPU before the first line of the command runs.
 *
 * Node 20 has no compile cache for ES modules (module.enableCompileCache came in 22.1), and its
 * ESM loader spends about 1 ms of CPU on each module it resolves, reads and links; a --machine
 * command needs about 70 of them, and compiling them costs as much again. So the package ships
 * all its modules as one CommonJS module, dist/src/ioasid.bundle.cjs (scripts/bundle.mjs, run
 * after tsc), which every entry of package.json's exports takes its namespace from
 * (dist/src/entry/NAME.js); its trailer lists the modules it was made from with the SHA-256 of
 * each. This module compiles it with vm.Script and V8's code cache, kept under $IOASID_CACHE/cli
 * (default ~/.cache/ioasid/cli), one file per bundle and command (a cache holds the functions that
 * had run when it was made; cacheName() names the command), and puts it in require's cache as Node
 * would: a scenario module that imports 'ioasid' then gets the same module, so the command and the
 * user's code share its classes. A cache file's name carries a digest of the bundle's content hash
 * and of the size, mtime and inode of the bundle and of every module, Node's version and the CPU
 * architecture: a cache file exists only for a state whose modules were checked against the
 * trailer's hashes, so a run that finds one reads one file and stats the modules (as git trusts
 * its index; in an installed package, whose modules change only with the bundle, not even
 * that). Without one it checks the hashes first, and once the command has run, writes the
 * cache (atomically) and removes the bundle's older ones.
 *
 * What it falls back to:
 * - the ES modules, when there is no bundle (a checkout compiled by tsc alone) or a module no
 *   longer has the content the bundle was made from (compiled again since): the same code, slower
 *   to start (and a scenario that imports 'ioasid' meets the bundle's classes, or none: run
 *   scripts/bundle.mjs after tsc, as `npm run build` does);
 * - compiling the bundle without a cache, when V8 rejects the cache (other V8 flags) or the cache
 *   directory cannot be written (then each run checks the hashes and compiles).
 * A usage error writes no cache.
 */
import { mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync, type Stats } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { Script } from 'node:vm';
import { cacheDir } from '../cache_dir.cjs';
import type { Io, main as Main } from './main.js';

/** Where scripts/bundle.mjs writes the bundle: at the top of tsc's output, dist/src. */
const BUNDLE = join(__dirname, '..', 'ioasid.bundle.cjs');

/** The bundle's trailer line: its content hash and the modules it was made from. */
const TRAILER = '\n//# ioasid-bundle ';

/** node:module's Module, with what Node's CommonJS loader uses to place a module. */
interface CjsModule {
  new (id: string, parent?: NodeModule): NodeModule;
  _nodeModulePaths(dir: string): string[];
  createRequire(path: string): NodeJS.Require;
}

interface Trailer {
  hash: string;
  /** Whether the bundle is all ASCII (absent: not known, so not). */
  ascii?: boolean;
  inputs: { path: string; sha256: string }[];
}

export interface Loaded {
  main: typeof Main;
  from: 'bundle' | 'esm';
  /** From the bundle: the code cache's file. */
  cache?: string;
  /** From the bundle: whether the code cache was there and V8 took it. */
  cached?: boolean;
  /**
   * Write the code cache if this run had none: call once the command has run. With `entries`
   * (the command imported the user's module), every entry's modules run first, so that the cache
   * holds what any other module of the user's can import, not only what this one did.
   */
  save(entries?: boolean): void;
}

/**
 * The code cache's name for a command line: its command (`demo` when it names none, `help` for
 * --help and --version), with `-scenario` when it runs the user's module (`compare SCENARIO`,
 * `map --scenario`) and `-machine` when it runs on a sim machine (other code runs then). A cache
 * holds the code one run ran, so a command's --help gets the help's cache, not the command's.
 */
export function cacheName(argv: readonly string[]): string {
  const first = argv[0] ?? '-';
  const options = argv.includes('--') ? argv.slice(0, argv.indexOf('--')) : argv;
  const has = (option: string): boolean => options.some((a) => a === option || a.startsWith(`${option}=`));
  if (/^-(h|V|-help|-version)$/.test(first) || first === 'help' || options.includes('-h') || options.includes('--help')) return 'help';
  const command = first.startsWith('-') ? 'demo' : first;
  const scenario = (command === 'compare' && !has('--trace')) || (command === 'map' && has('--scenario'));
  return `${command}${scenario ? '-scenario' : ''}${has('--machine') ? '-machine' : ''}`;
}

/**
 * Run the command line `argv` (without node and the script) with main from the bundle, else from
 * the ES modules; resolves to the exit status. Writes the code cache after the bundle's code ran
 * the command, not after a usage error (exit status 2: a mistyped command gets no cache file).
 */
export async function run(argv: readonly string[], io?: Io, env: NodeJS.ProcessEnv = process.env, bundle = BUNDLE): Promise<number> {
  const loaded = await loadMain(cacheName(argv), env, bundle);
  let imported = false;
  const status = await loaded.main(argv, io, env, {
    importModule: (url) => {
      imported = true;
      return importModule(url);
    },
  });
  if (status !== 2) loaded.save(imported);
  return status;
}

/** main, for the command whose cache is `name`: from the bundle when it is there and matches the modules, else the ES modules. */
export async function loadMain(name: string, env: NodeJS.ProcessEnv = process.env, bundle = BUNDLE): Promise<Loaded> {
  return fromBundle(bundle, name, env) ?? { main: (await esm()).main, from: 'esm', save() {} };
}

const esm = (): Promise<typeof import('./main.js')> => import('./main.js');

/** import() from this module, which Node's CommonJS loader compiled: for the user's scenario module. */
const importModule = (url: string): Promise<unknown> => import(url);

function fromBundle(bundle: string, name: string, env: NodeJS.ProcessEnv): Loaded | null {
  let source: string;
  let stats: Stats;
  let bytes: Buffer;
  try {
    stats = statSync(bundle);
    bytes = readFileSync(bundle);
  } catch {
    return null;
  }
  // latin1 makes a string of an ASCII bundle ~2 ms sooner than UTF-8 does; the trailer is ASCII
  source = bytes.toString('latin1');
  const trailer = readTrailer(source);
  if (!trailer) return null;
  if (!trailer.ascii) source = bytes.toString('utf8');
  const dir = dirname(bundle);
  // one cache per bundle (by path) and command; its name says which state of the files it is for.
  // An installed package's modules change only with the bundle (npm writes them all): there the
  // bundle's own state stands for theirs, and a run does not stat the 135 of them (~2.5 ms).
  const state = new Digest().text(`${trailer.hash} ${process.version} ${process.arch}`).file(stats);
  const installed = bundle.includes('/node_modules/');
  for (const input of installed ? [] : trailer.inputs) {
    const s = statSync(`${dir}/${input.path}`, { throwIfNoEntry: false });
    if (s === undefined) return null;
    state.file(s);
  }
  const prefix = `${new Digest().text(bundle).hex()}-${name}.`;
  const cache = join(cacheDir(env), 'cli', `${prefix}${state.hex()}.v8`);
  let cachedData: Buffer | undefined;
  try {
    cachedData = readFileSync(cache);
  } catch {
    if (!matches(dir, trailer)) return null;
  }
  // compiled as Node's CommonJS loader compiles a module (its function wrapper), and in require's
  // cache before it runs. No importModuleDynamically (Node 20 warns that it is experimental, and
  // loses it with a code cache): run() gives main an import() of the user's module instead.
  const script = new Script(`(function (exports, require, module, __filename, __dirname) {${source}\n})`, {
    filename: bundle, ...(cachedData ? { cachedData } : {}),
  });
  const Module = require('node:module') as CjsModule;
  const mod = new Module(bundle);
  Object.assign(mod, { filename: bundle, paths: Module._nodeModulePaths(dir) });
  require.cache[bundle] = mod;
  try {
    (script.runInThisContext() as (...a: unknown[]) => void).call(mod.exports, mod.exports, Module.createRequire(bundle), mod, bundle, dir);
  } catch (e) {
    delete require.cache[bundle];
    throw e;
  }
  mod.loaded = true;
  const cached = cachedData !== undefined && !script.cachedDataRejected;
  return {
    main: (mod.exports as { cli: { main: typeof Main } }).cli.main, from: 'bundle', cache, cached,
    save: (entries = false) => {
      if (cached) return;
      // each entry is a getter that runs its modules on first use (scripts/bundle.mjs)
      if (entries) for (const name of Object.keys(mod.exports as object)) void (mod.exports as Record<string, unknown>)[name];
      writeCache(cache, prefix, () => script.createCachedData());
    },
  };
}

/** The trailer; null when the bundle has none (or a malformed one). */
function readTrailer(source: string): Trailer | null {
  const at = source.lastIndexOf(TRAILER);
  if (at < 0) return null;
  try {
    const t = JSON.parse(source.slice(at + TRAILER.length, source.indexOf('\n', at + 1))) as Partial<Trailer>;
    return typeof t.hash === 'string' && Array.isArray(t.inputs) ? t as Trailer : null;
  } catch {
    return null;
  }
}

/** Whether every module still has the content the bundle was made from. */
function matches(dir: string, trailer: Trailer): boolean {
  // node:crypto only here: loading it costs a few ms, and a run with a cache never needs it
  const { createHash } = require('node:crypto') as typeof import('node:crypto');
  return trailer.inputs.every((input) => createHash('sha256').update(readFileSync(join(dir, input.path))).digest('hex') === input.sha256);
}

/**
 * cyrb53's hash over 32-bit words (a string's UTF-16 units, a file's size, mtime and inode): 53
 * bits in hex, a name for a cache file, not a check of content. The numbers go in as numbers:
 * making and hashing a string of 114 files' states took ~1 ms at each start.
 */
class Digest {
  private h1 = 0xdeadbeef;
  private h2 = 0x41c6ce57;

  private word(w: number): this {
    this.h1 = Math.imul(this.h1 ^ w, 2654435761);
    this.h2 = Math.imul(this.h2 ^ w, 1597334677);
    return this;
  }

  /** A whole number below 2^53. */
  private number(n: number): this {
    return this.word(n % 0x1_0000_0000).word(Math.floor(n / 0x1_0000_0000));
  }

  text(s: string): this {
    for (let i = 0; i < s.length; i++) this.word(s.charCodeAt(i));
    return this;
  }

  /** Size, mtime (to the microsecond) and inode: what changes when a file is written again. */
  file(s: Stats): this {
    return this.number(s.size).number(Math.round(s.mtimeMs * 1000)).number(s.ino);
  }

  hex(): string {
    const h1 = Math.imul(this.h1 ^ (this.h1 >>> 16), 2246822507) ^ Math.imul(this.h2 ^ (this.h2 >>> 13), 3266489909);
    const h2 = Math.imul(this.h2 ^ (this.h2 >>> 16), 2246822507) ^ Math.imul(h1 ^ (h1 >>> 13), 3266489909);
    return (4294967296 * (2097151 & h2) + (h1 >>> 0)).toString(16).padStart(14, '0');
  }
}

/**
 * Write the code cache through a temporary file and a rename, and remove the caches of the same
 * bundle and command made for earlier states of its files; nothing when the directory cannot be
 * written.
 */
function writeCache(file: string, prefix: string, data: () => Buffer): void {
  const dir = dirname(file);
  const tmp = `${file}.${process.pid}.tmp`;
  try {
    mkdirSync(dir, { recursive: true });
    writeFileSync(tmp, data());
    renameSync(tmp, file);
    for (const old of readdirSync(dir)) if (old.startsWith(prefix) && old.endsWith('.v8') && old !== basename(file)) rmSync(join(dir, old), { force: true });
  } catch {
    try {
      rmSync(tmp, { force: true });
    } catch {
      // no directory to leave it in
    }
  }
}
