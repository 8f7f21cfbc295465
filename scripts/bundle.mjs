#!/usr/bin/env node
/**
 * The package's one bundle, run after tsc (`npm run build`, prepack, `npm run bench`): tsc's ES
 * modules under dist/src, every entry of package.json's `exports` and the command's main
 * (cli/main.js), as one CommonJS module, dist/src/ioasid.bundle.cjs, with its source map; and each
 * entry's ES module, dist/src/entry/NAME.js, which takes its namespace from the bundle. So an
 * application, its scenario modules and the `ioasid` command all meet one copy of the package's
 * classes and state, and the command (src/cli/cold.cts) compiles the bundle with a V8 code cache.
 * Node 20 has no compile cache for ES modules, and importing 'ioasid' from the ~140 of them costs
 * about 120 ms more CPU than from the bundle (docs/performance.md).
 *
 * The bundle exports one namespace per entry: `index` ('ioasid'), `compat`, `migration`,
 * `testing`, `bridge`, `machines`, and `cli` (main). The last line before the map's is a trailer
 * for cold.cts: the bundle's content hash, whether it is all ASCII, and each module it was built
 * from, relative to it, with the SHA-256 of its content (the command uses the bundle only while
 * every module still has that content, else it runs the ES modules). Each module's dynamic imports
 * stay lazy (rolldown's init functions), so a command runs only the top-level code of what it
 * reaches. Node's built-in modules and koffi stay outside; immer (the sim's iommufd) is inside, so
 * that its code is in the V8 cache too. A CommonJS bundle requires its external modules at its top,
 * so the built-in modules most commands do not use (LAZY) are reached through functions that load
 * them on their first call. The map leads to the shipped modules under dist/src, whose own maps
 * lead to src/, and holds immer's code (named from node_modules/ on).
 */
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { rolldown } from 'rolldown';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const dir = join(root, 'dist/src');
const file = join(dir, 'ioasid.bundle.cjs');
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));

/**
 * The entries: package.json's exports with types (tsc's module is the .d.ts's .js), each named by
 * its subpath ('.' is index) and served by its `default`, dist/src/entry/NAME.js; and the command's main.
 */
const entries = Object.entries(pkg.exports).filter(([, e]) => typeof e === 'object' && e.types).map(([subpath, e]) => {
  const name = subpath === '.' ? 'index' : subpath.slice(2);
  const wrapper = `./dist/src/entry/${name}.js`;
  if (e.default !== wrapper) throw new Error(`bundle: exports['${subpath}'].default must be ${wrapper}, not ${e.default}`);
  return { name, subpath, module: join(root, e.types.replace(/\.d\.ts$/, '.js')), types: join(root, e.types) };
});
const modules = [...entries, { name: 'cli', module: join(dir, 'cli/main.js') }];

/**
 * Built-in modules loaded on first use: each exported function (not class) becomes one that loads
 * it when called (process.getBuiltinModule), each object a proxy that loads it when read. Each
 * costs 0.3-4 ms to load where a command does not use it: node:zlib reads /proc/config.gz,
 * node:os names bind's record directory, node:module loads koffi, and node:child_process,
 * node:crypto and node:net serve the bridge (and the first run's hash check).
 */
const LAZY = ['node:zlib', 'node:os', 'node:module', 'node:child_process', 'node:crypto', 'node:net'];
const require = createRequire(import.meta.url);
const ENTRY = '\0ioasid-entries';
const plugin = {
  name: 'ioasid-bundle',
  resolveId: (id) => (id === ENTRY ? id : LAZY.includes(id) ? `\0lazy:${id}` : null),
  load(id) {
    // CommonJS, so that each entry's modules run on its first use (a require() of an ES module is
    // a lazy init function in the bundle): a command does not run the top-level code of every entry
    if (id === ENTRY) {
      return ['const entries = {};', ...modules.map((m) => `Object.defineProperty(entries, ${JSON.stringify(m.name)}, { configurable: true, enumerable: true, get() { const ns = require(${JSON.stringify(m.module)}); Object.defineProperty(entries, ${JSON.stringify(m.name)}, { enumerable: true, value: ns }); return ns; } });`), 'module.exports = entries;'].join('\n');
    }
    if (!id.startsWith('\0lazy:')) return null;
    const name = id.slice('\0lazy:'.length);
    const mod = require(name);
    const fns = Object.keys(mod).filter((k) => typeof mod[k] === 'function' && /^[a-z]/.test(k));
    const objects = Object.keys(mod).filter((k) => typeof mod[k] === 'object' && mod[k] !== null && k !== 'default');
    return [
      `let mod; const load = () => (mod ??= process.getBuiltinModule(${JSON.stringify(name)}));`,
      ...fns.map((k) => `export function ${k}(...args) { return load().${k}(...args); }`),
      // an object (node:os's constants) is read through a proxy that loads the module on the first read
      ...objects.map((k) => `export const ${k} = new Proxy({}, { get: (_, p) => load().${k}[p], has: (_, p) => p in load().${k}, ownKeys: () => Reflect.ownKeys(load().${k}), getOwnPropertyDescriptor: (_, p) => Reflect.getOwnPropertyDescriptor(load().${k}, p) });`),
    ].join('\n');
  },
};

const bundle = await rolldown({
  input: ENTRY,
  platform: 'node',
  external: (id) => id === 'koffi' || (id.startsWith('node:') && !LAZY.includes(id)),
  plugins: [plugin],
  logLevel: 'warn',
});
const { output } = await bundle.generate({
  dir,
  entryFileNames: 'ioasid.bundle.cjs',
  format: 'cjs',
  codeSplitting: false,
  comments: false,
  // escapes in string and template literals: an ASCII bundle becomes a string in ~1 ms, not ~3
  charset: 'ascii',
  sourcemap: true,
});
await bundle.close();
const [chunk] = output;
if (output.length !== 2 || chunk.type !== 'chunk' || output[1].type !== 'asset') throw new Error(`bundle: expected one chunk and its map, got ${output.map((o) => o.fileName).join(', ')}`);

const code = chunk.code.replace(/\n\/\/# sourceMappingURL=\S+\s*$/, '\n');
const sha256 = (data) => createHash('sha256').update(data).digest('hex');
const inputs = chunk.moduleIds.filter((id) => id.startsWith(`${dir}/`)).sort()
  .map((id) => ({ path: relative(dir, id), sha256: sha256(readFileSync(id)) }));
const hash = sha256(code).slice(0, 16);
// cold.cts reads the bundle as latin1, and again as UTF-8 when `ascii` is false (a tagged template's non-ASCII text)
const ascii = !/[^\x00-\x7f]/.test(code);
writeFileSync(file, `${code}//# ioasid-bundle ${JSON.stringify({ hash, ascii, inputs })}\n//# sourceMappingURL=ioasid.bundle.cjs.map\n`);
// the map inlines only what the package does not ship (immer's code)
const map = JSON.parse(chunk.map.toString());
const shipped = map.sources.map((s) => join(dir, s).startsWith(`${dir}/`));
map.sourcesContent = map.sourcesContent.map((text, i) => (shipped[i] ? null : text));
map.sources = map.sources.map((s, i) => (shipped[i] ? s : s.slice(s.lastIndexOf('node_modules/'))));
writeFileSync(`${file}.map`, JSON.stringify(map));

// each entry's ES module: the names tsc's module exports, taken from the bundle's namespace
rmSync(join(dir, 'entry'), { recursive: true, force: true });
mkdirSync(join(dir, 'entry'));
for (const e of entries) {
  const names = Object.keys(await import(pathToFileURL(e.module).href)).sort();
  const plain = names.filter((n) => n !== 'default');
  writeFileSync(join(dir, 'entry', `${e.name}.js`), [
    `// ${JSON.stringify(e.subpath === '.' ? pkg.name : `${pkg.name}/${e.name}`)}: the ${e.name} namespace of the package's one bundle (scripts/bundle.mjs), whose`,
    `// classes and state every entry and the ioasid command share; its types are ${relative(join(dir, 'entry'), e.types)}.`,
    `const m = process.getBuiltinModule('node:module').createRequire(import.meta.url)('../ioasid.bundle.cjs').${e.name};`,
    ...(plain.length ? [`export const { ${plain.join(', ')} } = m;`] : []),
    ...(names.includes('default') ? ['export default m.default;'] : []),
    '',
  ].join('\n'));
}
console.log(`bundle: ${relative(root, file)} (${inputs.length} modules, ${(code.length / 1024).toFixed(0)} KiB, ${hash}), entries ${entries.map((e) => e.name).join(', ')}`);
