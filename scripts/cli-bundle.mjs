#!/usr/bin/env node
/**
 * The cold-start bundle of the `ioasid` command (the bin, src/cli.cts, loads it through
 * src/cli/cold.cts): tsc's dist/src/cli/main.js and every module it imports, as one CommonJS
 * function expression in dist/src/cli/commands.bundle.js, with its source map. Run after tsc (`npm
 * run build`, prepack, `npm run bench`); without it the command runs the same code as ES modules,
 * only slower to start.
 *
 * The last line before the map's is a trailer for cold.cts: the bundle's content hash, whether it
 * is all ASCII, and each module it was built from, relative to it, with the SHA-256 of its content
 * (the bundle is used only while every module still has that content). Each module's dynamic
 * imports stay lazy (rolldown's init functions), so a command runs only the top-level code of what
 * it uses. serve.js and trace.js (the bridge) stay outside: main.ts hands those commands to the ES
 * modules. Node's built-in modules and koffi stay outside; immer (the sim's iommufd) is inside, so
 * that its code is in the V8 cache too. A CommonJS bundle requires its external modules at its top,
 * so the built-in modules most commands do not use (LAZY) are reached through functions that load
 * them on their first call. The map leads to the shipped
 * modules under dist/src, whose own maps lead to src/, and holds immer's code (named from
 * node_modules/ on).
 */
import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { rolldown } from 'rolldown';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const dir = join(root, 'dist/src/cli');
const file = join(dir, 'commands.bundle.js');

/**
 * Built-in modules loaded on first use: each exported function (not class) becomes one that loads
 * it when called (process.getBuiltinModule). Each costs 0.3-3 ms to load where a command does not
 * use it: node:zlib reads /proc/config.gz, node:os names bind's record directory, node:module loads
 * koffi.
 */
const LAZY = ['node:zlib', 'node:os', 'node:module'];
const require = createRequire(import.meta.url);
const lazyBuiltins = {
  name: 'lazy-builtins',
  resolveId: (id) => (LAZY.includes(id) ? `\0lazy:${id}` : null),
  load(id) {
    if (!id.startsWith('\0lazy:')) return null;
    const name = id.slice('\0lazy:'.length);
    const mod = require(name);
    const fns = Object.keys(mod).filter((k) => typeof mod[k] === 'function' && /^[a-z]/.test(k));
    return [
      `let mod; const load = () => (mod ??= process.getBuiltinModule(${JSON.stringify(name)}));`,
      ...fns.map((k) => `export function ${k}(...args) { return load().${k}(...args); }`),
    ].join('\n');
  },
};

/** main.ts's dynamic imports of what the bundle leaves out: serve and trace run the bridge, from the ES modules (main.ts's Runtime). */
const ESM_ONLY = ['./serve.js', './trace.js'].map((m) => join(dir, m));
const bundle = await rolldown({
  input: join(dir, 'main.js'),
  platform: 'node',
  external: (id, importer) => id === 'koffi' || (id.startsWith('node:') && !LAZY.includes(id)) || ESM_ONLY.includes(importer && id.startsWith('.') ? join(dirname(importer), id) : id),
  plugins: [lazyBuiltins],
  logLevel: 'warn',
});
const { output } = await bundle.generate({
  dir,
  entryFileNames: 'commands.bundle.js',
  format: 'cjs',
  codeSplitting: false,
  comments: false,
  // escapes in string and template literals: an ASCII bundle becomes a string in ~1 ms, not ~3
  charset: 'ascii',
  sourcemap: true,
  // the function cold.cts calls, as Node's CommonJS loader would; strict, as the ES modules are
  postBanner: '(function (exports, require, module, __filename, __dirname) {"use strict";',
  postFooter: '})',
});
await bundle.close();
const [chunk] = output;
if (output.length !== 2 || chunk.type !== 'chunk' || output[1].type !== 'asset') throw new Error(`cli-bundle: expected one chunk and its map, got ${output.map((o) => o.fileName).join(', ')}`);

const code = chunk.code.replace(/\n\/\/# sourceMappingURL=\S+\s*$/, '\n');
const sha256 = (data) => createHash('sha256').update(data).digest('hex');
const inputs = chunk.moduleIds.filter((id) => id.startsWith(join(root, 'dist/src/'))).sort()
  .map((id) => ({ path: relative(dir, id), sha256: sha256(readFileSync(id)) }));
const hash = sha256(code).slice(0, 16);
// cold.cts reads the bundle as latin1, and again as UTF-8 when `ascii` is false (a tagged template's non-ASCII text)
const ascii = !/[^\x00-\x7f]/.test(code);
writeFileSync(file, `${code}//# ioasid-cli-bundle ${JSON.stringify({ hash, ascii, inputs })}\n//# sourceMappingURL=commands.bundle.js.map\n`);
// the map inlines only what the package does not ship (immer's code)
const map = JSON.parse(chunk.map.toString());
const shipped = map.sources.map((s) => join(dir, s).startsWith(join(root, 'dist/src/')));
map.sourcesContent = map.sourcesContent.map((text, i) => (shipped[i] ? null : text));
map.sources = map.sources.map((s, i) => (shipped[i] ? s : s.slice(s.lastIndexOf('node_modules/'))));
writeFileSync(`${file}.map`, JSON.stringify(map));
console.log(`cli-bundle: ${relative(root, file)} (${inputs.length} modules, ${(code.length / 1024).toFixed(0)} KiB, ${hash})`);
