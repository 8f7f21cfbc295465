#!/usr/bin/env node
/**
 * The API reference (`npm run docs:api` writes dist/api/): TypeDoc over the package's public entry
 * points ('ioasid', 'ioasid/compat', 'ioasid/testing'), then a check that every local link in the
 * generated HTML reaches a file and, for `#anchor` links, an element with that id (types in
 * api-docs.d.mts).
 *
 * Fails (exit 1) on any TypeDoc warning: a type the API uses but does not export, a `{@link}` to
 * nothing, a malformed doc comment; and on any broken link in the output. test/api_docs.test.ts runs
 * it into a temporary directory.
 *
 * TypeDoc 0.28 runs on TypeScript's JavaScript compiler API, which ends with TypeScript 6.0; the
 * project compiles with TypeScript 7, so this folder's package.json gives TypeDoc its own
 * TypeScript 6 (installed by the root package's `npm ci` as the file: dependency ioasid-ts-tools).
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, '../..');

/** TypeDoc's options: the public entry points, every validation, every warning an error. */
export const OPTIONS = {
  name: 'ioasid',
  entryPoints: ['src/index.ts', 'src/compat/index.ts', 'src/testing.ts'].map((p) => join(root, p)),
  tsconfig: join(root, 'tsconfig.build.json'),
  readme: 'none',
  excludePrivate: true,
  excludeInternal: true,
  validation: { notExported: true, invalidLink: true, invalidPath: true, rewrittenLink: true, notDocumented: false },
  // The sim's kernel and machine objects are reachable from SimKernel and SimBinding for
  // introspection (docs/machine.md) but are the simulator's internals, not the package's API;
  // machine descriptions come from 'ioasid/machines' (presets.ts) and are described in
  // docs/machine.md.
  intentionallyNotExported: ['Machine', 'MachineDesc', 'SimProcess', 'SimUser', 'SimVfs'],
  treatWarningsAsErrors: true,
  disableSources: true,
  githubPages: false,
  logLevel: 'Warn',
};

const HREF = /\s(?:href|src)="([^"]*)"/g;
const ID = /\s(?:id|name)="([^"]*)"/g;

/** Every local link in the HTML under `dir` that reaches no file, or no element with its anchor. */
export function brokenLinks(dir) {
  const ids = new Map();
  const idsOf = (file) => {
    let set = ids.get(file);
    if (!set) ids.set(file, (set = new Set([...readFileSync(file, 'utf8').matchAll(ID)].map((m) => m[1]))));
    return set;
  };
  const broken = [];
  const walk = (d) => readdirSync(d, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? walk(join(d, e.name)) : [join(d, e.name)]));
  for (const file of walk(dir).filter((f) => f.endsWith('.html'))) {
    for (const [, raw] of readFileSync(file, 'utf8').matchAll(HREF)) {
      const href = raw.replaceAll('&amp;', '&');
      if (/^[a-z][a-z0-9+.-]*:/i.test(href) || href.startsWith('//')) continue; // not local
      const [path, anchor] = href.split('#', 2);
      const target = path ? resolve(dirname(file), decodeURIComponent(path.split('?')[0])) : file;
      const where = `${relative(dir, file)}: ${raw}`;
      if (!existsSync(target) || (statSync(target).isDirectory() && !existsSync(join(target, 'index.html')))) broken.push(`${where} (no such file)`);
      else if (anchor && /\.(html|svg)$/.test(target) && !idsOf(target).has(decodeURIComponent(anchor))) broken.push(`${where} (no such anchor)`);
    }
  }
  return broken;
}

/** Build the reference into `out`; returns the problems found (none: it is complete and its links resolve). */
export async function build(out) {
  const td = await import('typedoc');
  const app = await td.Application.bootstrapWithPlugins({ ...OPTIONS, out }, [new td.TSConfigReader()]);
  const project = await app.convert();
  if (!project) return ['TypeDoc could not convert the entry points'];
  app.validate(project);
  if (app.logger.hasErrors() || app.logger.hasWarnings()) return ['TypeDoc reported the warnings above'];
  await app.generateDocs(project, out);
  if (app.logger.hasErrors() || app.logger.hasWarnings()) return ['TypeDoc reported the warnings above'];
  return brokenLinks(out);
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const out = resolve(process.argv[2] ?? join(root, 'dist/api'));
  const problems = await build(out);
  for (const p of problems) console.error(p);
  if (problems.length) process.exit(1);
  console.log(`API reference: ${join(out, 'index.html')}`);
}
