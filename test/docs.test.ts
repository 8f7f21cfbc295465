/**
 * The documentation's examples are programs: every ```ts (or ```js) block preceded by
 * `<!-- example: name -->` in README.md and docs/*.md runs here, on the tier's backend, with `ioasid`
 * and its subpaths (`ioasid/testing`, `ioasid/compat`, `ioasid/machines`) resolved to this
 * checkout's source (packaging.test.ts runs them against the packed package), and so does each
 * TypeScript program in examples/ (its exported `main()`); a ```ts block preceded by
 * `<!-- excerpt: examples/file.ts -->` must be a verbatim part of that file. Every ```console block
 * preceded by `<!-- cli-example: name -->` is a transcript of the `ioasid` command: each `$ ioasid …`
 * line runs (src/cli/main.ts, in this process), `$ echo $?` prints the last exit status, and the
 * block must be exactly what they print. A ```console block preceded by `<!-- bridge-output: FILE.c -->`
 * is what that C program prints against the sim through the bridge (docs/bridge.md). A doc that
 * drifts from the code fails the suite. README.md lists every page of docs/.
 */
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { runBridged } from '../src/bridge/index.js';
import { cc, selftests } from './bridge_build.js';
import { claimDevices } from './drivers/devices.js';
import { docFiles, exampleFile, examples, packageEntries, root, type Example } from './doc_examples.js';
import { BACKEND, ioasid } from './helpers.js';

const out = join(tmpdir(), `ioasid-doc-examples-${process.pid}`);

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

/** The TypeScript programs in examples/, each run through its exported main(). */
function programs(): Example[] {
  const dir = join(root, 'examples');
  return readdirSync(dir).filter((f) => f.endsWith('.ts')).sort()
    .map((f) => ({ file: `examples/${f}`, name: 'main', lang: 'ts', code: readFileSync(join(dir, f), 'utf8') }));
}

describe(`docs examples [${BACKEND}]`, () => {
  const entries = packageEntries();
  for (const ex of [...examples(), ...programs()]) {
    it(`${ex.file}: ${ex.name}`, async () => {
      mkdirSync(out, { recursive: true });
      const code = entries.reduce((c, e) => c.replaceAll(`'${e.specifier}'`, `'${e.source}'`), ex.code);
      const path = join(out, exampleFile(ex));
      writeFileSync(path, `${code}\nexport {};\n`);
      // examples that open the VM's edu (directly or through its group) take the same
      // cross-process claim as the device tests
      const release = /VfioDevice|VfioGroup/.test(code) ? claimDevices(['0000:00:01.0']) : () => {};
      try {
        const mod = (await import(/* @vite-ignore */ path)) as { main?: () => Promise<unknown> };
        if (ex.file.startsWith('examples/')) await mod.main!();
      } finally {
        release();
      }
    });
  }
});

describe('docs excerpts of examples/', () => {
  const found = examples('excerpt', ['ts']);
  found.forEach((ex, i) => {
    it(`${ex.file} #${i + 1}: ${ex.name} holds the block verbatim`, () => {
      expect(readFileSync(join(root, ex.name), 'utf8')).toContain(ex.code);
    });
  });
});

describe(`docs command transcripts [${BACKEND}]`, () => {
  const found = examples('cli-example', ['console']);
  it('there are some', () => expect(found.length).toBeGreaterThan(0));
  for (const ex of found) {
    it(`${ex.file}: ${ex.name}`, async () => {
      expect(await replay(ex.code)).toBe(ex.code);
    });
  }
});

describe(`docs C programs against the sim through the bridge [${BACKEND}]`, () => {
  // `<!-- bridge-output: FILE.c -->` before a console block: FILE.c, compiled against the kernel's
  // uAPI headers, prints the block's output under `ioasid serve`; in the VM, natively on the
  // kernel too. The headers come from scripts/selftests/build.sh (npm test builds it first).
  const found = examples('bridge-output', ['console']);
  const built = found.length ? selftests() : null;
  it('there are some', () => expect(found.length).toBeGreaterThan(0));
  for (const ex of found) {
    it.skipIf(!built)(`${ex.file}: ${ex.name}${built ? '' : ' (skipped: scripts/selftests/build.sh could not build the uAPI headers here)'}`, async () => {
      const bin = cc(built!, ex.name);
      const shown = ex.code.slice(ex.code.indexOf('\n') + 1);
      const r = await runBridged(bin, []);
      expect(r.code).toBe(0);
      expect(r.stdout + r.stderr).toBe(shown);
      if (process.env.IOASID_IN_GUEST === '1') expect(execFileSync(bin, { encoding: 'utf8' })).toBe(shown);
    });
  }
});

describe('README.md', () => {
  it('lists every page of docs/', () => {
    const readme = readFileSync(join(root, 'README.md'), 'utf8');
    const pages = docFiles().slice(1);
    expect(pages.length).toBeGreaterThan(0);
    expect(pages.filter((page) => !readme.includes(`\`${page}\``))).toEqual([]);
  });
});
