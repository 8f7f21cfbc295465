/**
 * The documentation's examples are programs: every ```ts block preceded by
 * `<!-- example: name -->` in README.md and docs/*.md runs here, on the tier's backend, with `ioasid` and
 * `ioasid/testing` resolved to this checkout. Every ```console block preceded by
 * `<!-- cli-example: name -->` is a transcript of the `ioasid` command: each `$ ioasid …` line runs
 * (src/cli/main.ts, in this process), `$ echo $?` prints the last exit status, and the block must be
 * exactly what they print. A doc that drifts from the code fails the suite.
 */
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { claimDevices } from './drivers/devices.js';
import { BACKEND, ioasid } from './helpers.js';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const docs = join(root, 'docs');
const out = join(tmpdir(), `ioasid-doc-examples-${process.pid}`);

interface Example {
  file: string;
  name: string;
  code: string;
}

/** The blocks of `lang` marked `<!-- <marker>: name -->` in README.md and docs/*.md. */
function examples(marker = 'example', lang = 'ts'): Example[] {
  const found: Example[] = [];
  const files = [join(root, 'README.md'), ...readdirSync(docs).filter((f) => f.endsWith('.md')).sort().map((f) => join(docs, f))];
  for (const path of files) {
    const file = path.slice(root.length + 1);
    const text = readFileSync(path, 'utf8');
    const re = new RegExp(`<!-- ${marker}: ([\\w-]+) -->\\s*\`\`\`${lang}\\n([\\s\\S]*?)\`\`\``, 'g');
    for (let m; (m = re.exec(text)); ) found.push({ file, name: m[1]!, code: m[2]! });
  }
  return found;
}

/** Run a console transcript's commands; returns the transcript they produce. */
async function replay(transcript: string): Promise<string> {
  const out: string[] = [];
  let status = 0;
  for (const line of transcript.split('\n')) {
    if (!line.startsWith('$ ')) continue;
    out.push(line);
    const [cmd, ...args] = line.slice(2).trim().split(/\s+/);
    if (cmd === 'echo' && args.join(' ') === '$?') out.push(String(status));
    else if (cmd === 'ioasid') {
      const r = await ioasid(...args);
      status = r.code;
      out.push(...[r.out, r.err].filter(Boolean));
    } else throw new Error(`a cli-example runs only ioasid and echo $?: ${line}`);
  }
  return `${out.join('\n')}\n`;
}

describe(`docs examples [${BACKEND}]`, () => {
  for (const ex of examples()) {
    it(`${ex.file}: ${ex.name}`, async () => {
      mkdirSync(out, { recursive: true });
      const code = ex.code
        .replaceAll(`'ioasid/testing'`, `'${join(root, 'src/testing.ts')}'`)
        .replaceAll(`'ioasid'`, `'${join(root, 'src/index.ts')}'`);
      const path = join(out, `${ex.file.replace(/\W/g, '_')}-${ex.name}.ts`);
      writeFileSync(path, `${code}\nexport {};\n`);
      // examples that open the VM's edu (directly or through its group) take the same
      // cross-process claim as the device tests
      const release = /VfioDevice|VfioGroup/.test(code) ? claimDevices(['0000:00:01.0']) : () => {};
      try {
        await import(/* @vite-ignore */ path);
      } finally {
        release();
      }
    });
  }
});

describe(`docs command transcripts [${BACKEND}]`, () => {
  const found = examples('cli-example', 'console');
  it('there are some', () => expect(found.length).toBeGreaterThan(0));
  for (const ex of found) {
    it(`${ex.file}: ${ex.name}`, async () => {
      expect(await replay(ex.code)).toBe(ex.code);
    });
  }
});
