/**
 * The documentation's runnable examples, shared by docs.test.ts (which runs them against this
 * checkout's source) and packaging.test.ts (which runs them against the packed and installed
 * package): every code block preceded by `<!-- <marker>: name -->` in README.md and docs/*.md.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');

export interface Example {
  /** README.md or docs/NAME.md. */
  file: string;
  name: string;
  /** The block's language: 'ts', or 'js' for a program that runs as it is. */
  lang: string;
  code: string;
}

/** README.md, then docs/*.md in name order, relative to the root. */
export function docFiles(): string[] {
  return ['README.md', ...readdirSync(join(root, 'docs')).filter((f) => f.endsWith('.md')).sort().map((f) => `docs/${f}`)];
}

/** The blocks in one of `langs` marked `<!-- <marker>: name -->` in README.md and docs/*.md. */
export function examples(marker = 'example', langs: readonly string[] = ['ts', 'js']): Example[] {
  const found: Example[] = [];
  const re = new RegExp(`<!-- ${marker}: ([\\w./-]+) -->\\s*\`\`\`(${langs.join('|')})\\n([\\s\\S]*?)\`\`\``, 'g');
  for (const file of docFiles()) {
    const text = readFileSync(join(root, file), 'utf8');
    for (let m; (m = re.exec(text)); ) found.push({ file, name: m[1]!, lang: m[2]!, code: m[3]! });
  }
  return found;
}

/** The file name an example is written to: `docs/hwpt.md` + `nesting` -> `docs_hwpt_md-nesting.ts` (`.mjs` for js). */
export function exampleFile(ex: Example): string {
  return `${ex.file.replace(/\W/g, '_')}-${ex.name}.${ex.lang === 'js' ? 'mjs' : 'ts'}`;
}

/**
 * The package's import specifiers ('ioasid', 'ioasid/compat', ...) with the source file each one's
 * `exports` entry is built from (its types ./dist/src/testing.d.ts -> src/testing.ts), longest first.
 */
export function packageEntries(): { specifier: string; source: string }[] {
  const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { name: string; exports: Record<string, string | { types: string }> };
  // an entry's module (dist/src/entry/NAME.js) takes its namespace from the bundle; its types are tsc's, of the source module
  return Object.entries(pkg.exports)
    .filter(([sub]) => sub !== './package.json')
    .map(([sub, target]) => ({
      specifier: pkg.name + sub.slice(1),
      source: join(root, (typeof target === 'string' ? target : target.types).replace(/^\.\/dist\//, '').replace(/\.d\.ts$/, '.ts')),
    }))
    .sort((a, b) => b.specifier.length - a.specifier.length);
}
