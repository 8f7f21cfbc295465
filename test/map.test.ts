/**
 * `ioasid map`: the IOAS it builds and what it reads back, on the three kinds of machine the
 * command meets. Expected values are the kernel's (7.3 in the test VM, QEMU 7.2's intel-iommu):
 * VT-d with MGAW 39 in legacy mode gives the automatic domain the second stage's 39-bit aperture
 * [0, 2^39 - 1] (intel/iommu.c compute_vasz_lg2_ss); intel_iommu_get_resv_regions reserves the
 * IOAPIC/MSI window 0xfee00000-0xfeefffff ('msi' in the group's reserved_regions), which iommufd
 * cuts out of the allowed IOVA ranges; iopt_init_table starts the alignment at 1 and a VT-d domain
 * (4K pages) raises it to 0x1000; the object ids of a fresh iommufd are 1 (IOAS), 2 (device), 3
 * (the automatic HWPT). SMMUv3 (arm-smmu-v3.h): the software MSI window MSI_IOVA_BASE 0x8000000,
 * MSI_IOVA_LENGTH 0x100000, a stage-1 aperture of 48 bits with the arm64 kernel's VA_BITS 48.
 *
 * - sim presets (any tier: --machine builds the machine in-process): q35Edu with its edu, q35EduBare
 *   refusing an edu on no driver, smmuv3Platform (no function on vfio-pci: refused by the command;
 *   the library call after bindDriver draws it), usage errors;
 * - this tier's machine: the sim's q35Edu, or the VM's kernel with its edu claimed;
 * - a host without /dev/iommu (this build host): the error names the cause, exit 1;
 * - the SVG well-formed (a small XML check on every tier; headless chromium parses it and the HTML
 *   page on the sim tier: the guest has no browser) and the areas drawn.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { sim } from '../src/backends/sim/index.js';
import { smmuv3Platform } from '../src/backends/sim/machine/presets.js';
import { ioasMap, renderMapSvg, type IoasMap } from '../src/cli/map.js';
import { claimDevices, deviceMachine, findEdus } from './drivers/devices.js';
import { BACKEND, ioasid } from './helpers.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const SCENARIO = join(root, 'examples/map-buffers.mjs');
const EDU = '0000:00:01.0';
const dir = mkdtempSync(join(tmpdir(), 'ioasid-map-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** The VM's VT-d layout after attaching one device (the kernel's values, see the file comment). */
const VTD_ALLOWED = [{ start: '0x0', last: '0xfedfffff' }, { start: '0xfef00000', last: '0x7fffffffff' }];
const VTD_RESERVED = [{ start: '0xfee00000', last: '0xfeefffff' }, { start: '0x8000000000', last: '0xffffffffffffffff' }];
const MSI = { start: '0xfee00000', last: '0xfeefffff', type: 'msi' };
/** What examples/map-buffers.mjs maps. */
const SCENARIO_AREAS = [
  { start: '0x100000', last: '0x10ffff', readable: true, writeable: true },
  { start: '0x40000000', last: '0x401fffff', readable: true, writeable: true },
  { start: '0xfed00000', last: '0xfed00fff', readable: true, writeable: false },
];

async function mapJson(...args: string[]): Promise<IoasMap> {
  const r = await ioasid('map', ...args, '--json');
  expect(r.err).toBe('');
  expect(r.code).toBe(0);
  return JSON.parse(r.out) as IoasMap;
}

/**
 * XML well-formedness, enough for what the renderer writes: every tag closed in order, attribute
 * values quoted, only the five predefined or numeric entities, no stray `<` or `&`.
 */
function wellFormed(xml: string): string[] {
  const errors: string[] = [];
  const stack: string[] = [];
  const body = xml.replace(/^<\?xml[^?]*\?>\s*/, '');
  let at = 0;
  for (const m of body.matchAll(/<(\/?)([A-Za-z][\w:-]*)((?:\s+[\w:-]+="[^"<]*")*)\s*(\/?)>/g)) {
    const text = body.slice(at, m.index);
    if (/[<>]/.test(text)) errors.push(`stray markup before offset ${m.index}: ${JSON.stringify(text.slice(0, 40))}`);
    for (const e of text.matchAll(/&([^;\s]*);?/g)) if (!/^(lt|gt|amp|quot|apos|#\d+|#x[\da-f]+)$/i.test(e[1]!) || !e[0].endsWith(';')) errors.push(`bad entity ${e[0]}`);
    at = m.index + m[0].length;
    if (m[1]) {
      if (stack.pop() !== m[2]) errors.push(`</${m[2]}> closes nothing open at offset ${m.index}`);
    } else if (!m[4]) stack.push(m[2]!);
    if (stack.length === 0 && at < body.trimEnd().length) errors.push(`content after the root element at offset ${at}`);
  }
  if (/[<>]/.test(body.slice(at))) errors.push('stray markup at the end');
  if (stack.length) errors.push(`unclosed: ${stack.join(', ')}`);
  return errors;
}

/** The areas drawn in an SVG: [data-start, data-last] of each rect.area. */
const drawnAreas = (svg: string): string[][] => [...svg.matchAll(/<rect class="area" data-start="(\w+)" data-last="(\w+)"/g)].map((m) => [m[1]!, m[2]!]);

describe('ioasid map on sim presets', () => {
  it('q35Edu: the edu attached, the example mapped; the VT-d layout, its MSI window and aperture', async () => {
    const m = await mapJson('--machine', 'q35Edu', '--device', '00:01.0', '--scenario', SCENARIO);
    expect(m).toMatchObject({ version: 1, host: 'sim machine q35Edu', ioas: 1, alignment: '0x1000', allowed: VTD_ALLOWED, reserved: VTD_RESERVED, areas: SCENARIO_AREAS });
    expect(m.devices).toEqual([{
      bdf: EDU, cdev: '/dev/vfio/devices/vfio0', iommuGroup: 1, devId: 2, hwpt: 3, iommu: 'intel-vtd', reservedRegions: [MSI],
    }]);
    expect(m.hwpts).toEqual([{ id: 3, devices: [EDU], aperture: { start: '0x0', last: '0x7fffffffff' }, apertureFrom: 'hw-info' }]);
  });

  it('q35Edu: three edus in two groups share one automatic HWPT (one VT-d domain fits all)', async () => {
    const m = await mapJson('--machine', 'q35Edu', '--device', '0000:01:01.0', '--device', '0000:01:02.0', '--device', EDU);
    expect(m.devices.map((d) => [d.bdf, d.iommuGroup, d.devId, d.hwpt])).toEqual([['0000:01:01.0', 2, 2, 3], ['0000:01:02.0', 2, 4, 3], [EDU, 1, 5, 3]]);
    expect(m.hwpts.map((h) => h.devices)).toEqual([['0000:01:01.0', '0000:01:02.0', EDU]]);
    expect(m.areas).toEqual([]);
  });

  it('q35Edu without a device: the IOAS alone, the whole 64-bit space allowed, alignment 1', async () => {
    const m = await mapJson('--machine', 'q35Edu');
    expect(m).toMatchObject({ alignment: '0x1', allowed: [{ start: '0x0', last: '0xffffffffffffffff' }], reserved: [], devices: [], hwpts: [] });
  });

  it('the text summary: ranges, areas, devices, HWPTs; --svg and --html say where they went', async () => {
    const svg = join(dir, 'text.svg');
    const html = join(dir, 'text.html');
    const r = await ioasid('map', '--machine', 'q35Edu', '--device', EDU, '--scenario', SCENARIO, '--svg', svg, '--html', html);
    expect(r.code).toBe(0);
    const lines = r.out.split('\n');
    expect(lines[0]).toBe('IOAS 1 on sim machine q35Edu: 3 areas, IOVA alignment 0x1000');
    expect(lines).toContain('  reserved  0xfee00000    0xfeefffff          1 MiB');
    expect(lines).toContain('  0xfed00000  0xfed00fff  4 KiB   r-');
    expect(lines.find((l) => l.startsWith(`  ${EDU}`))).toMatch(/\/dev\/vfio\/devices\/vfio0 +1 +2 +3 +intel-vtd +0xfee00000-0xfeefffff msi$/);
    expect(lines).toContain(`  3     0x0-0x7fffffffff  hw-info  ${EDU}`);
    expect(lines.slice(-2)).toEqual([`SVG: ${svg}`, `HTML: ${html}`]);
    expect(existsSync(svg) && existsSync(html)).toBe(true);
  });

  it('q35EduBare: an edu on no driver is refused, nothing bound (exit 1)', async () => {
    const r = await ioasid('map', '--machine', 'q35EduBare', '--device', EDU);
    expect(r.code).toBe(1);
    expect(r.out).toBe('');
    expect(r.err).toBe(`ioasid map: ${EDU} is bound to no driver: \`ioasid map\` attaches only a function already on a VFIO driver and takes `
      + `none from the host -> \`ioasid bind ${EDU}\` hands it to vfio-pci (when the host does not use it)`);
  });

  it('q35Edu: a function on another driver, and one that is not there, are refused (exit 1)', async () => {
    const virtio = await ioasid('map', '--machine', 'q35Edu', '--device', '0000:00:03.0');
    expect([virtio.code, virtio.err.split(':').slice(0, 4).join(':')]).toEqual([1, 'ioasid map: 0000:00:03.0 is on virtio-pci']);
    const none = await ioasid('map', '--machine', 'q35Edu', '--device', '0000:00:09.0');
    expect([none.code, none.err]).toEqual([1, 'ioasid map: no PCI function 0000:00:09.0 on sim machine q35Edu (`ioasid ls` lists them)']);
  });

  it('smmuv3Platform: no function on vfio-pci, so its edu is refused; bound first, the SMMUv3 layout', async () => {
    const edu = '0000:01:00.0';
    expect((await ioasid('map', '--machine', 'smmuv3Platform', '--device', edu)).code).toBe(1);
    const binding = sim({ machine: smmuv3Platform() });
    expect(findEdus(binding).map((d) => d.bdf)).toContain(edu);
    using change = findEdus(binding).find((d) => d.bdf === edu)!.bindDriver('vfio-pci');
    expect(change.changed).toBe(true);
    const m = await ioasMap(binding, { host: 'smmuv3Platform', devices: [edu] });
    const swMsi = { start: '0x8000000', last: '0x80fffff' };
    expect(m.allowed).toEqual([{ start: '0x0', last: '0x7ffffff' }, { start: '0x8100000', last: '0xffffffffffff' }]);
    expect(m.reserved).toEqual([swMsi, { start: '0x1000000000000', last: '0xffffffffffffffff' }]);
    expect(m.devices.map((d) => [d.iommu, d.reservedRegions])).toEqual([['arm-smmuv3', [{ ...swMsi, type: 'msi' }]]]);
    // the payload does not carry VA_BITS: the aperture is the span of what the kernel allows
    expect(m.hwpts.map((h) => [h.aperture, h.apertureFrom])).toEqual([[{ start: '0x0', last: '0xffffffffffff' }, 'iova-ranges']]);
  });

  it('usage errors (exit 2) and --help (exit 0)', async () => {
    for (const [args, text] of [
      [['--device', '1:2:3'], '--device "1:2:3" is not a PCI address'],
      [['--device', EDU, '--device', '00:01.0'], `--device ${EDU} is given twice`],
      [['--scenario', 'no-such.mjs'], 'no scenario file "no-such.mjs"'],
      [['--scenario', join(root, 'package.json')], 'has no default export taking (ctx, ioas, devices)'],
      [['--machine', 'q35'], '--machine "q35" is not a machine preset'],
      [['--svg'], "Option '--svg <value>' argument missing"],
    ] as const) {
      const r = await ioasid('map', '--machine', 'q35Edu', ...args);
      expect([r.code, r.err], args.join(' ')).toEqual([2, expect.stringContaining(text)]);
    }
    const h = await ioasid('map', '--help');
    expect([h.code, h.out.split('\n')[0]]).toEqual([0, 'usage: ioasid map [--device BDF]... [--scenario FILE] [--machine PRESET] [--json] [--svg FILE] [--html FILE]']);
  });

  it('the SVG is well-formed, standalone, and draws every area, the MSI window and the aperture', async () => {
    const file = join(dir, 'q35.svg');
    expect((await ioasid('map', '--machine', 'q35Edu', '--device', EDU, '--scenario', SCENARIO, '--svg', file)).code).toBe(0);
    const svg = readFileSync(file, 'utf8');
    expect(svg.startsWith('<?xml version="1.0" encoding="UTF-8"?>\n<svg xmlns="http://www.w3.org/2000/svg"')).toBe(true);
    expect(wellFormed(svg)).toEqual([]);
    expect(drawnAreas(svg)).toEqual(SCENARIO_AREAS.map((a) => [a.start, a.last]));
    expect(svg).toMatch(/<rect class="region" data-start="0xfee00000" data-last="0xfeefffff"[^>]*><title>reserved region \(msi\) of 0000:00:01.0 /);
    expect(svg).toContain('<g class="aperture" data-start="0x0" data-last="0x7fffffffff"');
    expect(svg).toContain(`${EDU} (intel-vtd, group 1): device 2, attached to HWPT 3`);
  });

  it('the well-formedness check catches what it is for', () => {
    expect(wellFormed('<svg><g></svg>')).not.toEqual([]);
    expect(wellFormed('<svg><text>a & b</text></svg>')).not.toEqual([]);
    expect(wellFormed('<svg><text>a < b</text></svg>')).not.toEqual([]);
    expect(wellFormed('<svg x=1></svg>')).not.toEqual([]);
    expect(wellFormed('<svg><text>a &amp; b &#60;</text><rect x="1"/></svg>')).toEqual([]);
  });
});

// ---- this tier's machine: the sim's q35Edu, or the VM's kernel -----------------------------------

const machine = deviceMachine();
const noEdu = machine.soloEdu === EDU ? '' : machine.noSoloReason || `the solo edu is not ${EDU}`;

describe.skipIf(noEdu !== '')(`ioasid map with the edu [${BACKEND}]${noEdu ? ` (skipped: ${noEdu})` : ''}`, () => {
  const where = BACKEND === 'sim' ? ['--machine', 'q35Edu'] : [];
  it(`${EDU} attached: the kernel's allowed ranges, MSI window, VT-d aperture and the areas`, async () => {
    const release = BACKEND === 'linux' ? claimDevices([EDU]) : () => {};
    let m: IoasMap;
    try {
      m = await mapJson(...where, '--device', EDU, '--scenario', SCENARIO);
    } finally {
      release();
    }
    expect(m).toMatchObject({ ioas: 1, alignment: '0x1000', allowed: VTD_ALLOWED, reserved: VTD_RESERVED, areas: SCENARIO_AREAS });
    expect(m.devices).toMatchObject([{ bdf: EDU, iommuGroup: 1, devId: 2, hwpt: 3, iommu: 'intel-vtd', reservedRegions: [MSI] }]);
    expect(m.hwpts).toEqual([{ id: 3, devices: [EDU], aperture: { start: '0x0', last: '0x7fffffffff' }, apertureFrom: 'hw-info' }]);
    expect(drawnAreas(renderMapSvg(m))).toHaveLength(3);
  });
});

// ---- a host without iommufd ---------------------------------------------------------------------

const hasIommufd = existsSync('/dev/iommu');

describe(`ioasid map on this host [${BACKEND}]`, () => {
  it.skipIf(hasIommufd)(`without /dev/iommu: the error names the cause, exit 1${hasIommufd ? ' (skipped: this host has /dev/iommu)' : ''}`, async () => {
    const r = await ioasid('map');
    expect(r.code).toBe(1);
    expect(r.out).toBe('');
    expect(r.err).toMatch(/^ioasid map: open \/dev\/iommu: ENOENT \(No such file or directory\): .*CONFIG_IOMMUFD.*\(`ioasid doctor` checks the rest\)$/);
  });

  it.skipIf(!hasIommufd)(`with /dev/iommu: an IOAS with no device is the whole 64-bit space${hasIommufd ? '' : ' (skipped: no /dev/iommu here)'}`, async () => {
    const m = await mapJson();
    expect(m).toMatchObject({ host: 'this host', alignment: '0x1', allowed: [{ start: '0x0', last: '0xffffffffffffffff' }], devices: [] });
  });
});

// ---- the drawing in a real browser (sim tier) ----------------------------------------------------

const chromium = ['chromium', '/usr/bin/chromium'].find((c) => spawnSync(c, ['--version'], { stdio: 'ignore' }).status === 0);
const noBrowser = BACKEND !== 'sim' ? 'the test VM has no browser: the sim tier opens the drawing'
  : chromium || process.env.CI ? '' : 'no chromium here (scripts/ensure-browser.sh, run by npm test, installs it as root)';

function dumpDom(url: string): string {
  return execFileSync(chromium!, [
    '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', `--user-data-dir=${join(dir, 'profile')}`, '--dump-dom', url,
  ], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 120_000 });
}

describe.skipIf(noBrowser !== '')(`the drawing in headless chromium [${BACKEND}]${noBrowser ? ` (skipped: ${noBrowser})` : ''}`, () => {
  it('the SVG parses as XML and the HTML page shows the drawing and its tables', async () => {
    expect(chromium, 'chromium (Debian package) not found').toBeDefined();
    const svg = join(dir, 'browser.svg');
    const html = join(dir, 'browser.html');
    expect((await ioasid('map', '--machine', 'q35Edu', '--device', EDU, '--scenario', SCENARIO, '--svg', svg, '--html', html)).code).toBe(0);
    // an XML parse error would replace the document with chromium's error page
    const svgDom = dumpDom(pathToFileURL(svg).href);
    expect(svgDom).not.toContain('parsererror');
    expect(drawnAreas(svgDom)).toHaveLength(3);
    // the browser measures what it drew: each area's and region's rendered box, written into the DOM it dumps
    const measured = join(dir, 'measured.html');
    writeFileSync(measured, readFileSync(html, 'utf8').replace('</body>', `<script>
for (const r of document.querySelectorAll('rect.area, rect.region, g.aperture')) { const b = r.getBoundingClientRect(); r.setAttribute('data-drawn', b.width.toFixed(1) + 'x' + b.height.toFixed(1)); }
</script></body>`));
    const dom = dumpDom(pathToFileURL(measured).href);
    expect(drawnAreas(dom)).toEqual(SCENARIO_AREAS.map((a) => [a.start, a.last]));
    const boxes = [...dom.matchAll(/class="(area|region|aperture)"[^>]* data-drawn="([\d.]+)x([\d.]+)"/g)].map((m) => [m[1], Number(m[2]) > 5 && Number(m[3]) > 2]);
    expect(boxes).toEqual([['region', true], ['aperture', true], ['area', true], ['area', true], ['area', true]]);
    const rows = (cls: string) => [...(new RegExp(`<table class="${cls}">([\\s\\S]*?)</table>`).exec(dom)?.[1] ?? '').matchAll(/<tr>/g)].length - 1;
    expect([rows('ranges'), rows('regions'), rows('areas'), rows('devices'), rows('hwpts')]).toEqual([4, 1, 3, 1, 1]);
    expect(JSON.parse(/<script type="application\/json" id="map">([\s\S]*?)<\/script>/.exec(dom)![1]!)).toMatchObject({ areas: SCENARIO_AREAS });
  });
});
