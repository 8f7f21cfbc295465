/**
 * What `npm install ioasid` gives a user. The checkout's package files (package.json, the
 * tsconfigs, src/, docs/, examples/, README.md, LICENSE) are copied to a temporary directory
 * without dist/, as a fresh clone has them, and packed there with `npm pack` (its prepack builds).
 * The tarball is installed into a fresh project with the oldest TypeScript docs/install.md
 * promises and @types/node (from the npm cache, else the registry). Then:
 * - the tarball holds what package.json promises and nothing else, and its source maps resolve;
 * - every export and the bin resolve in the installed package;
 * - every runnable example of README.md and docs/*.md (docs.test.ts's), importing 'ioasid' as a
 *   user does, typechecks against the installed declarations under --strict (skipLibCheck off), with
 *   that TypeScript and with this repository's; a control file importing a name the package does
 *   not export fails, with that error and no other, so the check cannot pass vacuously;
 * - every example runs on the sim: TypeScript ones as tsc compiled them (ES2022: `using`
 *   downlevelled, as Node.js 20 needs), JavaScript ones as they are;
 * - the example programs the package ships (examples/*.ts: the edu driver of
 *   docs/driver-guide.md), copied out of the installed package, typecheck with the docs' examples
 *   and the edu driver runs on the sim with no hardware;
 * - the installed `ioasid` runs its commands from the package's bundle prepack built (src/cli/cold.cts)
 *   with a V8 code cache, and prints what the ES modules print; a scenario module that imports the
 *   package gets the package's own classes from `ioasid compare`, as every entry takes them from the
 *   one bundle.
 */
import { execFile, spawn } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { exampleFile, examples, packageEntries, root } from './doc_examples.js';
import { BACKEND, ioasid } from './helpers.js';

const SKIP = BACKEND === 'linux';
const WHY = SKIP
  ? ' (skipped on linux: the test VM reaches no npm registry and sees the npm cache read-only; the tarball is the same for every backend, and docs.test.ts runs the examples on the kernel)'
  : '';

/** The oldest TypeScript the package's declarations support (docs/install.md). */
const MIN_TYPESCRIPT = '5.7.3';
const PKG = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as {
  name: string; version: string; files: string[]; bin: Record<string, string>;
  exports: Record<string, string | { types: string; default: string }>; devDependencies: Record<string, string>;
};
/** The control: a name the package does not export (the sim's errno helper). */
const CONTROL = `import { kerr } from '${PKG.name}';\nkerr;\nexport {};\n`;

/** The environment for child npm runs: without the npm_* variables of an `npm test` around us. */
const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^npm_/i.test(k) || /^npm_config_(cache|registry|userconfig)$/i.test(k)));

/** A command's exit status and output: `out` is stdout then stderr, and each apart. */
interface Run { code: number; out: string; stdout: string; stderr: string }
function run(cmd: string, args: string[], cwd: string, extra: NodeJS.ProcessEnv = {}): Promise<Run> {
  return new Promise((done) => {
    execFile(cmd, args, { cwd, env: { ...env, ...extra }, maxBuffer: 64 << 20, timeout: 120_000 }, (err, stdout, stderr) => {
      done({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, out: `${stdout}${stderr}`, stdout, stderr });
    });
  });
}

/** The installed bin, its stdout and stderr apart without their last newline (as helpers.ts's ioasid() gives them). */
async function runBin(args: string[], extra: NodeJS.ProcessEnv = {}): Promise<{ code: number; out: string; err: string }> {
  const r = await run(join(app, 'node_modules/.bin', Object.keys(PKG.bin)[0]!), args, app, extra);
  return { code: r.code, out: r.stdout.replace(/\n$/, ''), err: r.stderr.replace(/\n$/, '') };
}

const docs = examples();
let tmp = '';
let app = '';
let packed: string[] = [];
/** The example programs in the tarball (examples/*.ts), by file name. */
let shipped: string[] = [];

beforeAll(async () => {
  if (SKIP) return;
  tmp = mkdtempSync(join(tmpdir(), 'ioasid-packaging-'));
  const stage = join(tmp, 'clone');
  for (const f of ['package.json', 'tsconfig.json', 'tsconfig.build.json', 'README.md', 'LICENSE', 'src', 'docs', 'examples', 'native', 'scripts/bundle.mjs']) {
    cpSync(join(root, f), join(stage, f), { recursive: true });
  }
  symlinkSync(join(root, 'node_modules'), join(stage, 'node_modules'));
  const pack = await run('npm', ['pack', '--json', '--pack-destination', tmp], stage);
  if (pack.code !== 0) throw new Error(`npm pack failed:\n${pack.out}`);
  const report = JSON.parse(pack.out.slice(pack.out.indexOf('['), pack.out.lastIndexOf(']') + 1)) as { filename: string; files: { path: string }[] }[];
  packed = report[0]!.files.map((f) => f.path).sort();

  app = join(tmp, 'app');
  mkdirSync(join(app, 'examples'), { recursive: true });
  writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'app', private: true, type: 'module' }));
  const install = await run('npm', ['install', '--prefer-offline', '--no-audit', '--no-fund', join(tmp, report[0]!.filename),
    `typescript@${MIN_TYPESCRIPT}`, `@types/node@${PKG.devDependencies['@types/node']}`], app);
  if (install.code !== 0) throw new Error(`npm install of the tarball failed:\n${install.out}`);

  for (const ex of docs) writeFileSync(join(app, 'examples', exampleFile(ex)), `${ex.code}\nexport {};\n`);
  // the programs the package ships in examples/, as a user copies them out of it
  shipped = packed.filter((p) => /^examples\/[\w-]+\.ts$/.test(p)).map((p) => p.slice('examples/'.length));
  for (const f of shipped) cpSync(join(app, 'node_modules', PKG.name, 'examples', f), join(app, 'examples', f));
  writeFileSync(join(app, 'examples', 'control.ts'), CONTROL);
  writeFileSync(join(app, 'tsconfig.json'), JSON.stringify({
    compilerOptions: {
      target: 'es2022', lib: ['es2022', 'esnext.disposable'], module: 'nodenext', strict: true, skipLibCheck: false,
      types: ['node'], allowJs: true, checkJs: true, rootDir: 'examples', outDir: 'out',
    },
    include: ['examples'],
  }));
}, 180_000);

afterAll(() => {
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

/** tsc's errors, one per line (continuation lines dropped). */
const errors = (r: Run) => r.out.split('\n').filter((l) => / error TS\d+:/.test(l)).map((l) => l.trim());
const CONTROL_ERROR = new RegExp(`^examples/control\\.ts\\(1,10\\): error TS2305: Module '"${PKG.name}"' has no exported member 'kerr'\\.$`);

describe.skipIf(SKIP)(`the packed package [${BACKEND}]${WHY}`, () => {
  it('holds the build, the docs, the README and the LICENSE, and nothing else', () => {
    expect(packed).toEqual(expect.arrayContaining(['LICENSE', 'README.md', 'package.json', 'docs/install.md']));
    expect(packed.filter((p) => !/^(package\.json|README\.md|LICENSE|docs\/[\w-]+\.md|examples\/[\w-]+\.ts|(examples|native)\/bridge\/[\w-]+\.[ch]|dist\/src\/.+\.(c?js|d\.c?ts|c?js\.map))$/.test(p))).toEqual([]);
    expect(packed).toContain('examples/edu-driver.ts'); // docs/driver-guide.md's driver
    expect(packed).toContain('native/bridge/ioasid_preload.c'); // what `ioasid serve` compiles on first use
    const targets = Object.values(PKG.exports).flatMap((t) => (typeof t === 'string' ? [t] : [t.types, t.default]));
    for (const t of [...targets, ...Object.values(PKG.bin)]) expect(packed, t).toContain(t.replace(/^\.\//, ''));
    // a build from src alone: no tests, no benchmarks
    expect(packed.filter((p) => /^dist\/(test|bench)\//.test(p))).toEqual([]);
  });

  it('ships source maps that resolve: each compiled .js names its map, each map source is inlined or shipped', () => {
    const pkg = join(app, 'node_modules', PKG.name);
    const js = packed.filter((p) => /\.c?js$/.test(p));
    expect(js.length).toBeGreaterThan(50);
    const unresolved: string[] = [];
    const unmapped: string[] = [];
    for (const file of js) {
      const url = /\/\/# sourceMappingURL=(\S+)\s*$/.exec(readFileSync(join(pkg, file), 'utf8'))?.[1];
      const map = url && resolve(dirname(join(pkg, file)), url);
      if (!url) {
        unmapped.push(file);
        continue;
      }
      if (!map || !existsSync(map)) {
        unresolved.push(`${file}: no map`);
        continue;
      }
      const m = JSON.parse(readFileSync(map, 'utf8')) as { sources: string[]; sourcesContent?: (string | null)[]; sourceRoot?: string };
      m.sources.forEach((s, i) => {
        if (m.sourcesContent?.[i] == null && !existsSync(resolve(dirname(map), m.sourceRoot ?? '', s))) unresolved.push(`${file}: ${s}`);
      });
    }
    expect(unresolved).toEqual([]);
    // only the entries' modules, which scripts/bundle.mjs writes and are their own source, have none
    expect(unmapped.sort()).toEqual(Object.values(PKG.exports).flatMap((t) => (typeof t === 'string' ? [] : [t.default.slice(2)])).sort());
  });

  it('resolves every export and the bin in the installed package', async () => {
    const specifiers = packageEntries().map((e) => e.specifier);
    const probe = await run('node', ['--input-type=module', '-e',
      `const out = {}; for (const s of ${JSON.stringify(specifiers)}) out[s] = Object.keys(await import(s)).length; console.log(JSON.stringify(out));`], app);
    expect(probe.code, probe.out).toBe(0);
    const counts = JSON.parse(probe.out) as Record<string, number>;
    for (const s of specifiers) expect(counts[s], s).toBeGreaterThan(0);
    for (const t of Object.values(PKG.exports)) {
      if (typeof t !== 'string') expect(existsSync(join(app, 'node_modules', PKG.name, t.types)), t.types).toBe(true);
    }
    expect(await runBin(['--version'], { IOASID_CACHE: join(app, 'cache') })).toEqual({ code: 0, out: PKG.version, err: '' });
  });

  it(`typechecks the docs' examples against the installed declarations with --strict (TypeScript ${MIN_TYPESCRIPT}, then this repository's)`, async () => {
    expect(docs.length).toBeGreaterThan(10);
    // the oldest supported TypeScript also emits what the next tests run
    const [oldest, ours] = await Promise.all([
      run('node', [join(app, 'node_modules/typescript/bin/tsc'), '-p', '.'], app),
      run(join(root, 'node_modules/.bin/tsc'), ['-p', '.', '--noEmit'], app),
    ]);
    for (const r of [oldest, ours]) {
      expect(errors(r), r.out).toHaveLength(1);
      expect(errors(r)[0]).toMatch(CONTROL_ERROR);
    }
    expect(readdirSync(join(app, 'out')).length).toBe(docs.length + 1 + shipped.length);
  }, 120_000);

  it('the installed `ioasid` runs its commands from the package\'s bundle, with a code cache, printing what the ES modules print', async () => {
    expect(packed).toEqual(expect.arrayContaining(['dist/src/ioasid.bundle.cjs', 'dist/src/ioasid.bundle.cjs.map']));
    const cache = join(app, 'cli-cache');
    const trace = join(root, 'examples/unmap-subrange.jsonl');
    const commands = [
      ['ls'], ['doctor'], ['ls', '--machine', 'q35Edu', '--json'], ['doctor', '--machine', 'mockOnly'], ['bind', '00:05.0', '--machine', 'q35Host'],
      ['bind', '0000:00:02.0', '--machine', 'q35Host', '--json'], ['unbind', '0000:00:01.0', '--to', 'none', '--machine', 'q35Edu'], ['demo', '--machine', 'q35Edu'],
      ['compare', '--trace', trace, '--modes', 'vfio_type1v2_iommu,iommufd'], ['map', '--machine', 'q35Edu', '--device', '0000:00:01.0', '--json'],
    ];
    for (const args of commands) {
      const esm = await ioasid(...args);
      // the first run compiles the bundle and writes the cache, the second runs from the cache
      expect(await runBin(args, { IOASID_CACHE: cache }), args.join(' ')).toEqual(esm);
      expect(await runBin(args, { IOASID_CACHE: cache }), args.join(' ')).toEqual(esm);
    }
    // one cache per command (only the bundle writes one)
    const files = readdirSync(join(cache, 'cli'));
    expect(files.map((f) => f.replace(/^\w+-([\w-]+)\.\w+\.v8$/, '$1')).sort())
      .toEqual(['bind-machine', 'compare', 'demo-machine', 'doctor', 'doctor-machine', 'ls', 'ls-machine', 'map-machine', 'unbind-machine']);
    // a cache V8 rejects: the next run compiles afresh, prints the same, and writes a good one
    const ls = join(cache, 'cli', files.find((f) => f.includes('-ls-machine.'))!);
    writeFileSync(ls, 'not a code cache');
    expect(await runBin(['ls', '--machine', 'q35Edu', '--json'], { IOASID_CACHE: cache })).toEqual(await ioasid('ls', '--machine', 'q35Edu', '--json'));
    expect(readFileSync(ls).length).toBeGreaterThan(100_000);
  }, 120_000);

  it('the installed `ioasid` writes to a pipe whose reader is gone without an error (EPIPE drops the output), exit 0', async () => {
    const child = spawn(join(app, 'node_modules/.bin', Object.keys(PKG.bin)[0]!), ['ls', '--machine', 'q35Edu'], {
      cwd: app, env: { ...env, IOASID_CACHE: join(app, 'cache') }, stdio: ['ignore', 'pipe', 'pipe'],
    });
    child.stdout.destroy();
    let err = '';
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const code = await new Promise<number | null>((done) => child.on('close', done));
    expect({ code, err }).toEqual({ code: 0, err: '' });
  });

  it('the installed `ioasid compare` gives a scenario that imports the package the package\'s own classes (the bundle the command runs)', async () => {
    const mark = join(app, 'identity.txt');
    writeFileSync(join(app, 'identity.mjs'), [
      "import { writeFileSync } from 'node:fs';",
      `import { IommuError, isErrno } from '${PKG.name}';`,
      `import { IommuSession } from '${PKG.name}/migration';`,
      'export default function (s) {',
      '  try {',
      '    s.unmap({ iova: 0x100000n, size: 0x1000n });',
      '  } catch (e) {',
      `    writeFileSync(${JSON.stringify(mark)}, String(s instanceof IommuSession && e instanceof IommuError && isErrno(e, 'ENOENT')));`,
      '    throw e;',
      '  }',
      '}',
    ].join('\n'));
    const r = await runBin(['compare', 'identity.mjs', '--modes', 'iommufd'], { IOASID_CACHE: join(app, 'cli-cache') });
    expect(r.code, r.err).toBe(0);
    expect(readFileSync(mark, 'utf8')).toBe('true');
  });

  it.concurrent('the installed `ioasid serve` builds its preload library from the package and runs a command against the sim', async ({ expect }) => {
    expect(await runBin(['serve', '--', 'sh', '-c', 'echo served'], { IOASID_CACHE: join(app, 'cache') })).toEqual({ code: 0, out: 'served', err: '' });
    expect(readdirSync(join(app, 'cache', 'bridge')).length).toBe(1);
  }, 120_000);

  it.concurrent('runs the shipped examples/edu-driver.ts, compiled against the installed package, on the sim with no hardware', async ({ expect }) => {
    const r = await run('node', [join('out', 'edu-driver.js')], app, { IOASID_BACKEND: 'sim' });
    expect(r).toMatchObject({ code: 0, out: '0000:00:01.0: 10! = 3628800; 4096 bytes copied by DMA\n' });
  });

  for (const ex of docs) {
    it.concurrent(`runs ${ex.file}: ${ex.name} from the installed package on the sim`, async ({ expect }) => {
      const file = exampleFile(ex);
      const program = ex.lang === 'js' ? join('examples', file) : join('out', file.replace(/\.ts$/, '.js'));
      const r = await run('node', [program], app, { IOASID_BACKEND: 'sim' });
      expect(r.code, r.out).toBe(0);
    });
  }
});
