/**
 * How the `ioasid` command (the bin, src/cli.cts) loads main and the commands' code
 * (src/cli/cold.cts): from the package's bundle with a V8 code cache when the bundle matches the
 * modules it was made from, else from the ES modules. Here the bundle is a small stand-in written
 * like scripts/bundle.mjs writes the real one (a CommonJS module whose `cli` is main.ts's exports,
 * a trailer naming its modules and their SHA-256), over two module files in a temporary directory;
 * test/packaging.test.ts runs the real one, built by `npm pack`, compares its output with the ES
 * modules', and has a fresh process find a cache V8 rejects (here V8 would take the script from
 * this process's own compilation cache instead).
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { cacheName, loadMain, run } from '../src/cli/cold.cjs';
import type { Io } from '../src/cli/main.js';
import { BACKEND } from './helpers.js';

const sha256 = (text: string): string => createHash('sha256').update(text).digest('hex');

let dir = '';
let bundle = '';
let cache = '';
const MODULES = { 'a.js': 'export const a = 1;\n', 'sub/b.js': 'export const b = 2;\n' };

/**
 * Write the stand-in bundle. Its main prints { fromBundle: true, file, text } and exits 0; given
 * `usage` it exits 2, given `import FILE` it prints the default export of that module, imported
 * with the runtime's importModule (as `compare SCENARIO` does).
 */
function writeBundle(trailer = true, text = 'ASCII'): void {
  const code = '"use strict";\n'
    + 'exports.cli = { main: async (argv, io, env, runtime) => {\n'
    + `  io.out(JSON.stringify({ fromBundle: true, file: __filename, text: ${JSON.stringify(text)} }));\n`
    + "  if (argv[0] === 'import') io.out(String((await runtime.importModule(argv[1])).default));\n"
    + "  return argv[0] === 'usage' ? 2 : 0;\n} };\n"
    + "Object.defineProperty(exports, 'index', { enumerable: true, configurable: true, get() { globalThis.ioasidStandInIndex = (globalThis.ioasidStandInIndex ?? 0) + 1; return {}; } });\n";
  const inputs = Object.entries(MODULES).map(([path, text]) => ({ path, sha256: sha256(text) }));
  const ascii = !/[^\x00-\x7f]/.test(code);
  writeFileSync(bundle, trailer ? `${code}//# ioasid-bundle ${JSON.stringify({ hash: sha256(code).slice(0, 16), ascii, inputs })}\n` : code);
}

/** The lines an Io was given, and the Io. */
function capture(): { io: Io; out: string[] } {
  const out: string[] = [];
  return { io: { out: (l) => out.push(l), err: (l) => out.push(l) }, out };
}

/** What main printed, run with the main `load` gave. */
async function mainOut(main: Awaited<ReturnType<typeof loadMain>>['main'], argv: string[]): Promise<unknown> {
  const { io, out } = capture();
  await main(argv, io, {});
  return out.length === 1 && out[0]!.startsWith('{') ? JSON.parse(out[0]!) : out;
}

function writeModule(path: keyof typeof MODULES, text: string = MODULES[path]): void {
  writeFileSync(join(dir, path), text);
}

const load = (name = 'ls', env: NodeJS.ProcessEnv = { IOASID_CACHE: cache }) => loadMain(name, env, bundle);
const VERSION = (JSON.parse(readFileSync(join(dirname(fileURLToPath(import.meta.url)), '../package.json'), 'utf8')) as { version: string }).version;
const cacheFiles = (): string[] => readdirSync(join(cache, 'cli')).sort();

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'ioasid-cli-cold-'));
  mkdirSync(join(dir, 'sub'));
  mkdirSync(join(dir, 'cli'));
  for (const path of Object.keys(MODULES) as (keyof typeof MODULES)[]) writeModule(path);
  bundle = join(dir, 'ioasid.bundle.cjs');
  cache = join(dir, 'cache');
  writeBundle();
});

afterEach(() => rmSync(dir, { recursive: true, force: true }));

describe(`the command's code: the package's bundle and its code cache [${BACKEND}]`, () => {
  it('runs the bundle; the first run writes the code cache, the next uses it', async () => {
    const first = await load();
    expect(first).toMatchObject({ from: 'bundle', cached: false });
    expect(await mainOut(first.main, ['ls'])).toEqual({ fromBundle: true, file: bundle, text: 'ASCII' });
    first.save();
    expect(cacheFiles()).toHaveLength(1);
    const second = await load();
    expect(second).toMatchObject({ from: 'bundle', cached: true, cache: first.cache });
    second.save();
    expect(cacheFiles()).toHaveLength(1);
  });

  it('reads a bundle that is not all ASCII as UTF-8', async () => {
    writeBundle(true, 'the first record is not a header {\u2026}');
    expect(await mainOut((await load()).main, ['ls'])).toMatchObject({ text: 'the first record is not a header {\u2026}' });
  });

  it('keeps one cache per command', async () => {
    for (const command of ['ls', 'ls-machine', 'doctor']) (await load(command)).save();
    expect(cacheFiles()).toHaveLength(3);
    expect((await load('ls-machine')).cached).toBe(true);
  });

  it('loads the ES modules when a module no longer has the content the bundle was made from', async () => {
    (await load()).save();
    writeModule('sub/b.js', 'export const b = 3;\n');
    const c = await load();
    expect(c.from).toBe('esm');
    expect(await mainOut(c.main, ['--version'])).toEqual([VERSION]);
    c.save();
    expect(cacheFiles()).toHaveLength(1);
  });

  it('loads the ES modules when a module is missing, or the bundle is, or it has no trailer', async () => {
    rmSync(join(dir, 'a.js'));
    expect((await load()).from).toBe('esm');
    writeModule('a.js');
    writeBundle(false);
    expect((await load()).from).toBe('esm');
    rmSync(bundle);
    expect((await load()).from).toBe('esm');
  });

  it('checks a module written again with the same content, and then replaces the cache it made before', async () => {
    (await load()).save();
    (await load('doctor')).save();
    const before = cacheFiles();
    writeModule('a.js');
    utimesSync(join(dir, 'a.js'), new Date(), new Date(Date.now() + 5000));
    const c = await load();
    expect(c).toMatchObject({ from: 'bundle', cached: false });
    c.save();
    const after = cacheFiles();
    expect(after).toHaveLength(2);
    expect(after.filter((f) => before.includes(f))).toEqual(before.filter((f) => f.includes('-doctor.')));
    expect((await load()).cached).toBe(true);
  });

  it('in an installed package (under node_modules), takes the bundle\'s state for its modules\': a module written again does not make it check them', async () => {
    const pkg = join(dir, 'node_modules', 'ioasid');
    mkdirSync(join(pkg, 'sub'), { recursive: true });
    for (const path of Object.keys(MODULES) as (keyof typeof MODULES)[]) writeFileSync(join(pkg, path), MODULES[path]);
    bundle = join(pkg, 'ioasid.bundle.cjs');
    writeBundle();
    (await load()).save();
    writeFileSync(join(pkg, 'a.js'), MODULES['a.js']);
    utimesSync(join(pkg, 'a.js'), new Date(), new Date(Date.now() + 5000));
    expect(await load()).toMatchObject({ from: 'bundle', cached: true });
  });

  it('runs without a cache where the cache directory cannot be made, writing nothing', async () => {
    writeFileSync(join(dir, 'file'), '');
    const env = { IOASID_CACHE: join(dir, 'file', 'cache') };
    const c = await load('ls', env);
    expect(c).toMatchObject({ from: 'bundle', cached: false });
    expect(() => c.save()).not.toThrow();
    expect(await load('ls', env)).toMatchObject({ from: 'bundle', cached: false });
    expect(readdirSync(dir).sort()).toEqual(['a.js', 'cli', 'file', 'ioasid.bundle.cjs', 'sub']);
  });

  it('puts the cache under $XDG_CACHE_HOME/ioasid without IOASID_CACHE', async () => {
    const xdg = join(dir, 'xdg');
    (await load('ls', { XDG_CACHE_HOME: xdg })).save();
    expect(readdirSync(join(xdg, 'ioasid', 'cli'))).toHaveLength(1);
  });

  it('names a cache by the command, demo when none is named, help for --help and --version, -scenario for the user\'s module, -machine on a sim machine', () => {
    const names = {
      ls: 'ls', 'ls --json': 'ls', '': 'demo', '--json': 'demo', '--backend sim': 'demo', 'doctor --machine q35Edu': 'doctor-machine',
      'demo --machine=q35Edu': 'demo-machine', '--help': 'help', '-V': 'help', 'help ls': 'help', 'ls -h': 'help',
      'doctor --machine q35Edu --help': 'help', 'bind 00:05.0 --machine q35Host': 'bind-machine',
      'compare s.mjs --modes iommufd': 'compare-scenario', 'compare --trace t.jsonl': 'compare', 'compare --trace=t.jsonl --json': 'compare',
      'compare s.mjs --machine q35Edu': 'compare-scenario-machine', 'map --scenario s.mjs --machine q35Edu': 'map-scenario-machine',
      'map --machine q35Edu': 'map-machine',
    };
    expect(Object.keys(names).map((l) => cacheName(l ? l.split(' ') : []))).toEqual(Object.values(names));
  });

  it('puts the bundle in require\'s cache, so that the package\'s entries, which require it, get the same module', async () => {
    const { main } = await load();
    const required = createRequire(join(dir, 'entry', 'index.js'))('../ioasid.bundle.cjs') as { cli: { main: unknown } };
    expect(required.cli.main).toBe(main);
  });

  it('run() writes the cache once the bundle ran the command, not after a usage error', async () => {
    const env = { IOASID_CACHE: cache };
    const { io, out } = capture();
    const reads = (): number => (globalThis as { ioasidStandInIndex?: number }).ioasidStandInIndex ?? 0;
    const before = reads();
    expect(await run(['usage'], io, env, bundle)).toBe(2);
    expect(existsSync(cache)).toBe(false);
    expect(await run(['ls'], io, env, bundle)).toBe(0);
    expect(cacheFiles()).toEqual([expect.stringMatching(/-ls\.\w+\.v8$/)]);
    // a command that imported no module of the user's caches only what it ran: no entry was read
    expect(reads()).toBe(before);
    expect(out.filter((l) => l.startsWith('{'))).toHaveLength(2);
  });

  it('run() gives main an import() for the user\'s module, which a script compiled by node:vm lacks, and caches every entry\'s code after it', async () => {
    const scenario = join(dir, 'scenario.mjs');
    writeFileSync(scenario, 'export default 42;\n');
    const { io, out } = capture();
    const before = (globalThis as { ioasidStandInIndex?: number }).ioasidStandInIndex ?? 0;
    expect(await run(['import', pathToFileURL(scenario).href], io, { IOASID_CACHE: cache }, bundle)).toBe(0);
    expect(out.slice(-1)).toEqual(['42']);
    // the cache it wrote was made after every entry's modules ran (the stand-in's `index` counts its reads)
    expect((globalThis as { ioasidStandInIndex?: number }).ioasidStandInIndex).toBe(before + 1);
    expect(cacheFiles()).toHaveLength(1);
  });
});
