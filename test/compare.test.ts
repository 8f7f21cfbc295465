/**
 * compareModes, its reports and `ioasid compare` on the shipped example (examples/unmap-subrange.mjs:
 * four pages mapped at 0x100000 from one buffer, the second page unmapped, then the first, then
 * everything). The expected answers per mode are the kernel's (the test VM, 7.3): the type1 driver
 * with v1 rules unmaps nothing inside a mapping and the whole mapping from its start, with v2
 * rules refuses to bisect a mapping (EINVAL); iommufd's compat with type1 cuts the exact pages,
 * with type1v2 and natively refuses (ENOENT), and so does this library's re-expression. On the sim
 * each mode runs on a fresh machine; on linux on the VM's kernel with its edu claimed. The browser
 * test opens the HTML report in Debian's headless chromium (sim tier: the guest has no browser).
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadScenario } from '../src/cli/compare.js';
import {
  compareModes, formatReport, IOMMU_MODE_NAMES, renderIovaLayoutSvg, renderReportHtml, reportJson,
  type CompareReport, type IommuModeName, type Scenario,
} from '../src/migration/index.js';
import { IommuError } from '../src/index.js';
import { claimDevices, deviceMachine } from './drivers/devices.js';
import { BACKEND, ioasid } from './helpers.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const EXAMPLE = join(root, 'examples/unmap-subrange.mjs');
const EDU = '0000:00:01.0';
const machine = deviceMachine();
const noEdu = machine.soloEdu === EDU ? '' : machine.noSoloReason || `the solo edu is not ${EDU}`;
const skipped = (why: string): string => (why ? ` (skipped: ${why})` : '');

/** compareModes on this tier's backend, the edu claimed on linux (other test files open it too). */
async function compare(scenario: Scenario, modes?: readonly IommuModeName[]): Promise<CompareReport> {
  const release = BACKEND === 'linux' ? claimDevices([EDU]) : () => {};
  try {
    return await compareModes(scenario, { backend: BACKEND, ...(modes ? { modes } : {}) });
  } finally {
    release();
  }
}

const A = { start: '0x100000', last: '0x103fff' };
/** Per mode: each step's answer ('ok', a hex byte count or the errno) and the mapped areas after it. */
const KERNEL: Record<IommuModeName, [string, { start: string; last: string }[]][]> = {
  vfio_type1_iommu: [['ok', []], ['ok', [A]], ['0x0', [A]], ['0x4000', []], ['0x0', []]],
  vfio_type1v2_iommu: [['ok', []], ['ok', [A]], ['EINVAL', [A]], ['EINVAL', [A]], ['0x4000', []]],
  iommufd_compat_type1: [['ok', []], ['ok', [A]],
    ['0x1000', [{ start: '0x100000', last: '0x100fff' }, { start: '0x102000', last: '0x103fff' }]],
    ['0x1000', [{ start: '0x102000', last: '0x103fff' }]], ['0x2000', []]],
  iommufd_compat_type1v2: [['ok', []], ['ok', [A]], ['ENOENT', [A]], ['ENOENT', [A]], ['0x4000', []]],
  iommufd: [['ok', []], ['ok', [A]], ['ENOENT', [A]], ['ENOENT', [A]], ['0x4000', []]],
  ioasid_compat: [['ok', []], ['ok', [A]], ['ENOENT', [A]], ['ENOENT', [A]], ['0x4000', []]],
};
/** What the VM's VT-d (and the sim's q35Edu) allows once the edu is attached: below and above the MSI window. */
const ALLOWED = [{ start: '0x0', last: '0xfedfffff' }, { start: '0xfef00000', last: '0x7fffffffff' }];

describe.skipIf(noEdu !== '')(`compareModes: a sub-range unmap in the six modes [${BACKEND}]${skipped(noEdu)}`, () => {
  let report: CompareReport;
  beforeAll(async () => {
    report = await compare(await loadScenario(EXAMPLE));
  });

  it('each mode answers as the kernel does, step by step, with the areas the probes find', () => {
    expect(report.modes).toEqual(IOMMU_MODE_NAMES);
    for (const run of report.runs) {
      expect(run.end, run.mode).toEqual({ status: 'completed' });
      expect(run.steps.map((s) => s.op), run.mode).toEqual(['openDevice', 'map', 'unmap', 'unmap', 'unmapAll']);
      const got = run.steps.map((s) => [s.errno ?? (s.result === null ? 'ok' : s.result), s.layout.areas]);
      expect(got, run.mode).toEqual(KERNEL[run.mode]);
      for (const s of run.steps) expect(s.layout.allowed, run.mode).toEqual(ALLOWED);
    }
  });

  it('steps 2-4 diverge, grouped by equal answers; the probes are not steps', () => {
    expect(report.divergences).toEqual([2, 3, 4]);
    expect(report.divergent).toBe(true);
    expect(report.ends).toEqual({ groups: [[...IOMMU_MODE_NAMES]], divergent: false });
    const [open, map, second, first, all] = report.steps;
    expect([open!.groups, map!.groups]).toEqual([[[...IOMMU_MODE_NAMES]], [[...IOMMU_MODE_NAMES]]]);
    const native = ['iommufd_compat_type1v2', 'iommufd', 'ioasid_compat'];
    expect(second!.groups).toEqual([['vfio_type1_iommu'], ['vfio_type1v2_iommu'], ['iommufd_compat_type1'], native]);
    expect(second!.differs).toEqual(['result', 'errno', 'layout']);
    expect(first!.groups).toEqual(second!.groups);
    expect(all!.groups).toEqual([['vfio_type1_iommu'], ['vfio_type1v2_iommu', ...native], ['iommufd_compat_type1']]);
    expect(all!.differs).toEqual(['result']);
    // the segments between the IOVAs the scenario named, one probe each
    expect(report.runs[2]!.steps[2]!.layout.segments.map((s) => [s.start, s.last, s.state])).toEqual([
      ['0x100000', '0x100fff', 'mapped'], ['0x101000', '0x101fff', 'free'], ['0x102000', '0x103fff', 'mapped'],
    ]);
  });

  it('the JSON report round-trips and the text report marks the divergent steps', () => {
    const text = reportJson(report);
    expect(JSON.parse(text)).toEqual(report);
    expect(report.version).toBe(1);
    const lines = formatReport(report);
    expect(lines).toHaveLength(report.steps.length + 2);
    expect(lines.filter((l) => l.startsWith('!')).map((l) => l.slice(0, 6))).toEqual(['!   2 ', '!   3 ', '!   4 ']);
    expect(lines[3]).toContain('vfio_type1v2_iommu: EINVAL');
    expect(lines[3]).toContain('iommufd_compat_type1v2,iommufd,ioasid_compat: ENOENT areas 0x100000-0x103fff');
  });
});

describe(`compareModes: how runs end [${BACKEND}]`, () => {
  it('an async scenario is awaited; a non-IommuError is reported as such; an escaping refusal ends the run', async () => {
    let calls = 0;
    const r = await compare(async (s) => {
      try {
        s.iovaRanges();
      } catch (e) {
        if (!(e instanceof IommuError)) throw e;
      }
      await new Promise((res) => setTimeout(res, 1));
      calls++;
      if (s.mode.name === 'iommufd') throw new TypeError('scenario bug');
      if (s.mode.name === 'vfio_type1_iommu') s.unmap({ iova: 0x1001n, size: 0x1000n });
    }, ['vfio_type1_iommu', 'iommufd_compat_type1v2', 'iommufd']);
    expect(calls).toBe(3);
    expect(r.runs.map((x) => x.end.status)).toEqual(['refused', 'completed', 'error']);
    expect(r.runs[0]!.end).toMatchObject({ errno: 'EINVAL', at: 'scenario' });
    expect(r.runs[2]!.end).toEqual({ status: 'error', name: 'TypeError', message: 'scenario bug' });
    expect(r.ends.groups).toEqual([['vfio_type1_iommu'], ['iommufd_compat_type1v2'], ['iommufd']]);
    // no device yet: GET_INFO reaches no type1 driver (container.c: EINVAL) and no compat IOAS
    // (vfio_compat.c get_compat_ioas: ENODEV); native iommufd lists its IOAS's ranges
    expect(r.steps[0]!.calls.map((c) => c!.errno)).toEqual(['EINVAL', 'ENODEV', null]);
    expect(r.steps[1]!.calls[0]).toMatchObject({ op: 'unmap', errno: 'EINVAL' });
    expect(r.steps[1]!.calls.slice(1)).toEqual([null, null]);
    expect(r.steps[1]!.differs).toContain('missing');
    expect(r.divergent).toBe(true);
  });

  it('unknown or repeated modes are refused before anything runs', async () => {
    await expect(compareModes(() => {}, { modes: ['type3' as IommuModeName] })).rejects.toThrow(/not an IOMMU mode/);
    await expect(compareModes(() => {}, { modes: ['iommufd', 'iommufd'] })).rejects.toThrow(/named twice/);
    await expect(compareModes(() => {}, { machine: 'q35' })).rejects.toThrow(/not a machine preset/);
    await expect(compareModes(() => {}, { backend: 'linux', machine: 'q35Edu' })).rejects.toThrow(/for the sim/);
  });
});

describe(`renderIovaLayoutSvg [${BACKEND}]`, () => {
  it('a 4 KiB area beside 256 TiB of allowed space is still a visible block; ticks at the boundaries', () => {
    const svg = renderIovaLayoutSvg({ allowed: [{ start: 0n, last: (1n << 48n) - 1n }], areas: [{ start: '0x100000', last: '0x100fff' }] });
    const area = /<rect class="area" data-start="0x100000" data-last="0x100fff" x="[\d.]+" y="\d+" width="([\d.]+)"/.exec(svg);
    expect(Number(area![1])).toBeGreaterThan(20);
    for (const t of ['0x0', '0x100000', '0x101000', '0x1000000000000', '2^64']) expect(svg).toContain(`>${t}</text>`);
    expect(svg.match(/<rect class="reserved"/g)).toHaveLength(1);
    expect(renderIovaLayoutSvg({ allowed: null, areas: [] })).toContain('class="unknown"');
  });
});

describe.skipIf(noEdu !== '')(`ioasid compare [${BACKEND}]${skipped(noEdu)}`, () => {
  const dir = mkdtempSync(join(tmpdir(), 'ioasid-compare-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const backend = ['--backend', BACKEND];
  const cli = async (...args: string[]) => {
    const release = BACKEND === 'linux' ? claimDevices([EDU]) : () => {};
    try {
      return await ioasid('compare', ...args);
    } finally {
      release();
    }
  };

  it('exits 1 on divergences, prints one line per step and writes the HTML page', async () => {
    const html = join(dir, 'report.html');
    const r = await cli(EXAMPLE, ...backend, '--html', html);
    expect(r.err).toBe('');
    expect(r.code).toBe(1);
    const lines = r.out.split('\n');
    expect(lines[0]).toMatch(/^ioasid compare: 6 modes on .*, 5 steps, 3 divergent$/);
    expect(lines.at(-1)).toBe(`HTML report: ${html}`);
    const page = readFileSync(html, 'utf8');
    expect(page).toMatch(/^<!DOCTYPE html>/);
    expect(page).not.toMatch(/(src|href)="(?!#)/);
    const embedded = JSON.parse(/<script type="application\/json" id="report">(.*)<\/script>/.exec(page)![1]!) as CompareReport;
    expect(embedded.divergences).toEqual([2, 3, 4]);
  });

  it('--json prints the report; modes that agree exit 0', async () => {
    const r = await cli(EXAMPLE, ...backend, '--json', '--modes', 'iommufd_compat_type1v2,iommufd');
    expect(r.code).toBe(0);
    const report = JSON.parse(r.out) as CompareReport;
    expect(report.modes).toEqual(['iommufd_compat_type1v2', 'iommufd']);
    expect(report.divergent).toBe(false);
    expect(report.steps.map((s) => s.calls[0]!.errno ?? s.calls[0]!.result)).toEqual([null, null, 'ENOENT', 'ENOENT', '0x4000']);
  });

  it('usage errors exit 2 and say what is valid', async () => {
    const none = await ioasid('compare');
    expect([none.code, none.err]).toEqual([2, 'ioasid compare: give one SCENARIO module (got 0)\nsee `ioasid compare --help`']);
    const mode = await ioasid('compare', EXAMPLE, '--modes', 'iommufd,type3');
    expect(mode.code).toBe(2);
    expect(mode.err).toContain('"type3" is not an IOMMU mode: valid names are vfio_type1_iommu,');
    expect((await ioasid('compare', join(dir, 'nope.mjs'))).err).toMatch(/no scenario file/);
    writeFileSync(join(dir, 'nodefault.mjs'), 'export const x = 1;\n');
    expect(await ioasid('compare', join(dir, 'nodefault.mjs'))).toMatchObject({ code: 2, err: expect.stringMatching(/no default export/) });
    expect((await ioasid('compare', EXAMPLE, '--backend', 'linux', '--machine', 'q35Edu')).code).toBe(2);
    expect((await ioasid('compare', EXAMPLE, '--machine', 'q35')).err).toMatch(/not a machine preset/);
    expect((await ioasid('compare', '--help')).out).toMatch(/^usage: ioasid compare SCENARIO/);
    expect(await ioasid('compare', EXAMPLE, '--trace', 'x.jsonl')).toMatchObject({ code: 2, err: expect.stringMatching(/not both/) });
    expect((await ioasid('compare', '--trace', join(dir, 'nope.jsonl'))).err).toMatch(/no trace file/);
    writeFileSync(join(dir, 'bad.jsonl'), '{"trace":"ioasid","version":1}\n{"seq":0}\n');
    expect(await ioasid('compare', '--trace', join(dir, 'bad.jsonl'))).toMatchObject({ code: 2, err: expect.stringMatching(/bad\.jsonl: trace line 2: syscall/) });
  });
});

// ---- the HTML report in a real browser (sim tier) ----------------------------------------------

const chromium = ['chromium', '/usr/bin/chromium'].find((c) => spawnSync(c, ['--version'], { stdio: 'ignore' }).status === 0);
const noBrowser = BACKEND !== 'sim' ? 'the test VM has no browser: the sim tier opens the report'
  : chromium || process.env.CI ? '' : 'no chromium here (scripts/ensure-browser.sh, run by npm test, installs it as root)';

function browser(args: string[], profile: string): string {
  return execFileSync(chromium!, [
    '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', `--user-data-dir=${profile}`, ...args,
  ], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 120_000 });
}

describe.skipIf(noBrowser !== '')(`the HTML report in headless chromium [${BACKEND}]${skipped(noBrowser)}`, () => {
  it('a row per step, a column per mode, divergent steps marked, one SVG per step with the areas drawn', async () => {
    // in CI the browser must be there: ensure-browser.sh installs it
    expect(chromium, 'chromium (Debian package) not found').toBeDefined();
    const dir = mkdtempSync(join(tmpdir(), 'ioasid-browser-'));
    try {
      const html = join(dir, 'report.html');
      expect((await ioasid('compare', EXAMPLE, '--html', html)).code).toBe(1);
      // the browser measures what it drew: each area's rendered box, written into the DOM it dumps
      const measured = join(dir, 'measured.html');
      writeFileSync(measured, readFileSync(html, 'utf8').replace('</body>', `<script>
for (const r of document.querySelectorAll('rect.area')) { const b = r.getBoundingClientRect(); r.setAttribute('data-drawn', b.width.toFixed(1) + 'x' + b.height.toFixed(1)); }
document.body.setAttribute('data-width', String(document.documentElement.scrollWidth));
</script></body>`));
      const dom = browser(['--dump-dom', pathToFileURL(measured).href], join(dir, 'profile'));
      const steps = dom.split('<tbody class="step').slice(1).map((s) => s.slice(0, s.indexOf('</tbody>')));
      expect(steps).toHaveLength(5);
      const head = /<thead>([\s\S]*?)<\/thead>/.exec(dom)![1]!;
      expect([...head.matchAll(/<th class="mode" data-mode="(\w+)"/g)].map((m) => m[1])).toEqual(IOMMU_MODE_NAMES);
      expect(steps.map((s) => s.startsWith(' divergent'))).toEqual([false, false, true, true, true]);
      for (const s of steps) {
        expect(s.match(/<td class="mode[^"]*" data-mode=/g)).toHaveLength(6);
        expect(s.match(/<svg /g)).toHaveLength(1);
      }
      // after the sub-range unmaps: lanes per distinct layout, every area drawn with a real size
      const lanes = (i: number) => [...steps[i]!.matchAll(/<g class="lane" data-label="([^"]*)"/g)].map((m) => m[1]);
      expect(lanes(1)).toEqual(['all modes']);
      expect(lanes(2)).toEqual(['vfio_type1_iommu, vfio_type1v2_iommu, iommufd_compat_type1v2, iommufd, ioasid_compat', 'iommufd_compat_type1']);
      const drawn = [...steps[2]!.matchAll(/<rect class="area" data-start="(\w+)" data-last="\w+"[^>]* data-drawn="([\d.]+)x([\d.]+)"/g)];
      expect(drawn.map((m) => m[1])).toEqual(['0x100000', '0x100000', '0x102000']);
      for (const m of drawn) expect(Number(m[2])).toBeGreaterThan(10);
      expect(steps[4]!).not.toContain('class="area"');
      const width = Number(/<body data-width="(\d+)"/.exec(dom)?.[1]);
      expect(width).toBeGreaterThan(800);
      const shot = join(process.env.IOASID_SCREENSHOT_DIR ?? dir, 'compare-report.png');
      browser(['--window-size=1400,1800', `--screenshot=${shot}`, pathToFileURL(html).href], join(dir, 'profile'));
      expect(existsSync(shot)).toBe(true);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
