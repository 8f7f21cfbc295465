/**
 * The generated API reference (`npm run docs:api`, scripts/ts-tools/api-docs.mjs): TypeDoc over the
 * public entry points with every validation on and every warning an error, then a check that every
 * local link in the output resolves. It builds into a temporary directory; nothing is committed.
 */
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { brokenLinks, build } from '../scripts/ts-tools/api-docs.mjs';
import { BACKEND } from './helpers.js';

const SKIP = BACKEND === 'linux';
const WHY = SKIP ? ' (skipped on linux: the reference is built from the source alone, the same for every backend, and TypeDoc under TCG would take minutes)' : '';

const tmp = mkdtempSync(join(tmpdir(), 'ioasid-api-docs-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe.skipIf(SKIP)(`API reference${WHY}`, () => {
  it('builds from the public entry points with no TypeDoc warning and no broken link', async () => {
    const out = join(tmp, 'api');
    expect(await build(out)).toEqual([]);
    // the three entry points are its modules, with their classes
    for (const page of ['index.html', 'modules/ioasid.html', 'modules/ioasid_compat.html', 'modules/ioasid_testing.html',
      'classes/ioasid.Iommufd.html', 'classes/ioasid.VfioDevice.html', 'classes/ioasid_testing.IommufdTest.html']) {
      expect(existsSync(join(out, page)), page).toBe(true);
    }
  }, 120_000);
});

describe('the API reference\'s link check', () => {
  it('finds a missing page and a missing anchor', () => {
    const dir = join(tmp, 'broken');
    mkdirSync(join(dir, 'classes'), { recursive: true });
    writeFileSync(join(dir, 'index.html'), '<a href="classes/A.html#run">A.run</a> <a href="classes/B.html">B</a> <a href="https://x.invalid/">x</a>');
    writeFileSync(join(dir, 'classes/A.html'), '<h3 id="open">open</h3><a href="../index.html">up</a><a href="#open">open</a>');
    expect(brokenLinks(dir)).toEqual(['index.html: classes/A.html#run (no such anchor)', 'index.html: classes/B.html (no such file)']);
  });
});
