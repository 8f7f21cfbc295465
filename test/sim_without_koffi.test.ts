/**
 * The sim runs anywhere Node runs: with koffi unloadable (as where it has no native build, or
 * libc.so.6 does not exist), the whole package still imports and the sim tier's API works: the
 * demo's IOAS tour and edu DMA, the selftest extension's mock domain, and `ioasid ls/doctor
 * --machine`. Only the linux backend needs koffi, and it says so when asked for.
 *
 * How: the package is compiled (tsc, into a temporary directory) and run by a child node whose
 * module hooks make `koffi` fail to resolve, from `import` and from `require` alike. The child
 * first proves the hook works (importing koffi fails there), so the test cannot pass vacuously.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BACKEND } from './helpers.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const SKIP = BACKEND === 'linux';
const WHY = SKIP ? ' (skipped on linux: it proves the sim needs no koffi; compiling the package under TCG would take minutes)' : '';

/** Makes `koffi` unresolvable for ESM imports (a resolve hook) and for require (Module._resolveFilename). */
const NO_KOFFI = `
import Module, { register } from 'node:module';
const blocked = (s) => s === 'koffi' || s.startsWith('koffi/');
const resolveFilename = Module._resolveFilename;
Module._resolveFilename = function (request, ...rest) {
  if (blocked(request)) throw Object.assign(new Error("Cannot find module 'koffi' (blocked by the test)"), { code: 'MODULE_NOT_FOUND' });
  return resolveFilename.call(this, request, ...rest);
};
register('data:text/javascript,' + encodeURIComponent(\`
  export async function resolve(s, c, next) {
    if (s === 'koffi' || s.startsWith('koffi/')) throw Object.assign(new Error("Cannot find package 'koffi' (blocked by the test)"), { code: 'ERR_MODULE_NOT_FOUND' });
    return next(s, c);
  }\`));
`;

/** The sim tier's API with koffi gone; prints one JSON line of what happened. */
const PROGRAM = `
import { createRequire } from 'node:module';
import { Iommufd, isErrno } from './out/src/index.js';
import { IommufdTest } from './out/src/testing.js';
import { demo } from './out/src/demo.js';
const r = {};
try { await import('koffi'); r.importKoffi = 'loaded'; } catch (e) { r.importKoffi = e.code; }
try { createRequire(import.meta.url)('koffi'); r.requireKoffi = 'loaded'; } catch (e) { r.requireKoffi = e.code; }
const lines = [];
demo('sim', (l) => lines.push(l));
r.demo = lines.join('\\n');
const ctx = Iommufd.open({ backend: 'sim' });
const ioas = ctx.allocIoas();
const mock = new IommufdTest(ctx).mockDomain(ioas.id);
const mem = ctx.mmap(65536);
const iova = ioas.map(mem);
try { ioas.unmap(iova, 4096n); } catch (e) { r.splitUnmap = isErrno(e, 'ENOENT') ? 'ENOENT' : String(e); }
r.unmapped = String(ioas.unmapAll());
r.mockHwpt = mock.hwptId > 0;
ctx.close();
try { Iommufd.open({ backend: 'linux' }); r.linux = 'opened'; } catch (e) { r.linux = e.message; }
console.log(JSON.stringify(r));
`;

let dir = '';

describe.skipIf(SKIP)(`the sim with koffi unloadable${WHY}`, () => {
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'ioasid-no-koffi-'));
    writeFileSync(join(dir, 'tsconfig.json'), JSON.stringify({
      extends: join(root, 'tsconfig.json'),
      compilerOptions: {
        outDir: join(dir, 'out'), rootDir: root, declaration: false, sourceMap: false,
        typeRoots: [join(root, 'node_modules/@types')],
      },
      include: [join(root, 'src/**/*.ts')],
    }));
    execFileSync(join(root, 'node_modules/.bin/tsc'), ['-p', join(dir, 'tsconfig.json')], { stdio: 'pipe' });
    // the package's dependencies, koffi among them: only the hook keeps it from loading
    symlinkSync(join(root, 'node_modules'), join(dir, 'node_modules'));
    writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: 'ioasid', version: '0.0.0-test', type: 'module', exports: { './package.json': './package.json' } }));
    writeFileSync(join(dir, 'no-koffi.mjs'), NO_KOFFI);
    writeFileSync(join(dir, 'program.mjs'), PROGRAM);
  }, 120_000);
  afterAll(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const node = (...args: string[]): { status: number | null; stdout: string; stderr: string } =>
    spawnSync(process.execPath, ['--import', join(dir, 'no-koffi.mjs'), ...args], { cwd: dir, encoding: 'utf8', env: { ...process.env, IOASID_BACKEND: '' } });

  it('runs the demo, the selftest mock domain and the IOAS API; the linux backend says it needs koffi', () => {
    const run = node(join(dir, 'program.mjs'));
    expect(run.stderr).toBe('');
    expect(run.status).toBe(0);
    const r = JSON.parse(run.stdout) as Record<string, string | boolean>;
    // the hook works: koffi cannot be loaded in this process by either route
    expect(r.importKoffi).toBe('ERR_MODULE_NOT_FOUND');
    expect(r.requireKoffi).toBe('MODULE_NOT_FOUND');
    expect(r.demo).toContain('"bytes that went RAM -> device -> RAM through the IOMMU"');
    expect(r.demo).toMatch(/IOMMU_IOAS_MAP -> errno 17 \(EEXIST\)/);
    expect(r).toMatchObject({ splitUnmap: 'ENOENT', unmapped: '65536', mockHwpt: true });
    expect(r.linux).toMatch(/^the linux backend needs koffi, which did not load \(Cannot find module 'koffi'.*\); the sim backend does not$/);
  });

  it('ioasid ls and doctor run on a sim machine', () => {
    const ls = node(join(dir, 'out/src/cli.js'), 'ls', '--machine', 'q35Edu', '--json');
    expect(ls.stderr).toBe('');
    expect(ls.status).toBe(0);
    const edus = (JSON.parse(ls.stdout) as { functions: { device: string; driver: string }[] }).functions.filter((f) => f.device === '11e8');
    expect(edus.map((f) => f.driver)).toEqual(['vfio-pci', 'vfio-pci', 'vfio-pci']);
    const doctor = node(join(dir, 'out/src/cli.js'), 'doctor', '--machine', 'q35Edu');
    expect(doctor.status).toBe(0);
    expect(doctor.stdout).toMatch(/^iommufd: usable$/m);
  });
});
