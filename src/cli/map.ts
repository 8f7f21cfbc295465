/**
 * `ioasid map`: build an IOAS and draw its layout. An IOAS lives only inside the process that made
 * it, so the command makes one: it opens an iommufd, allocates an IOAS (keeping the record of its
 * areas), binds and attaches each --device through its VFIO cdev (only a function already on a
 * VFIO driver: nothing is taken from the host), runs the optional scenario module that maps memory,
 * and then asks the kernel: IOMMU_IOAS_IOVA_RANGES (the allowed ranges and the alignment; their
 * complement is reserved), each device's IOMMU group reserved regions (sysfs), IOMMU_GET_HW_INFO
 * (the IOMMU and, where its payload decides it, the domain's aperture) and the HWPT each attach
 * answered with. Printed as text or JSON; --svg and --html draw it with renderIovaLayoutSvg, the
 * compare report's renderer.
 */
import { writeFileSync } from 'node:fs';
import type { Binding } from '../backends/types.js';
import { domainAperture } from '../compat/domain_caps.js';
import { PciDevice, isVfioDriver, orMissing } from '../device/pci.js';
import { IOMMU_HW_INFO_TYPE_AMD, IOMMU_HW_INFO_TYPE_ARM_SMMUV3, IOMMU_HW_INFO_TYPE_INTEL_VTD } from '../device/uapi.js';
import { VfioDevice } from '../device/vfio_device.js';
import { IommuError } from '../ioasid/errors.js';
import type { Ioas, IovaRange } from '../ioasid/ioas.js';
import { Iommufd } from '../ioasid/iommufd.js';
import { IOMMU_HW_INFO_TYPE_SELFTEST, U64_MAX } from '../ioasid/uapi.js';
import type { IovaSpan } from '../migration/compare.js';
import { hex } from '../migration/modes.js';
import { escapeXml as esc, formatSize, renderIovaLayoutSvg, type SvgMark } from '../migration/layout_svg.js';
import { loadScenario, type ImportModule } from './compare.js';
import { pciAddress } from './bind.js';
import { table } from './ls.js';

/** The JSON format's version: raised when a field changes meaning or goes away. */
export const IOAS_MAP_VERSION = 1;

/** What a scenario module's default export is given: the iommufd, the IOAS and the attached devices. */
export type MapScenario = (ctx: Iommufd, ioas: Ioas, devices: VfioDevice[]) => void | Promise<void>;

export interface MapArea extends IovaSpan {
  readonly readable: boolean;
  readonly writeable: boolean;
}

/** A reserved region of a device's IOMMU group, as sysfs names its type ('msi', 'direct', ...). */
export interface MapRegion extends IovaSpan {
  readonly type: string;
}

export interface MapDevice {
  readonly bdf: string;
  readonly cdev: string;
  readonly iommuGroup: number | null;
  /** The iommufd device object (VFIO_DEVICE_BIND_IOMMUFD's out_devid). */
  readonly devId: number;
  /** The HWPT the attach answered with (pt_id: the IOAS's automatic HWPT it found or made). */
  readonly hwpt: number;
  /** IOMMU_GET_HW_INFO's type: 'intel-vtd', 'arm-smmuv3', 'amd', 'selftest', 'none', 'type N', or 'unknown (ERRNO)'. */
  readonly iommu: string;
  readonly reservedRegions: readonly MapRegion[];
}

export interface MapHwpt {
  readonly id: number;
  readonly devices: readonly string[];
  /** What the domain translates: from GET_HW_INFO where the driver's rule is known, else the span of the allowed ranges. */
  readonly aperture: IovaSpan | null;
  readonly apertureFrom: 'hw-info' | 'iova-ranges' | null;
}

export interface IoasMap {
  readonly version: typeof IOAS_MAP_VERSION;
  readonly host: string;
  readonly ioas: number;
  /** out_iova_alignment: every MAP and COPY IOVA and length is a multiple of it. */
  readonly alignment: string;
  readonly allowed: readonly IovaSpan[];
  /** [0, 2^64) outside the allowed ranges. */
  readonly reserved: readonly IovaSpan[];
  /** The areas mapped through the IOAS handle (its record), in IOVA order. */
  readonly areas: readonly MapArea[];
  readonly devices: readonly MapDevice[];
  readonly hwpts: readonly MapHwpt[];
}

export interface MapOptions {
  /** Who the binding is, for the output: 'this host', 'sim machine q35Edu'. */
  readonly host: string;
  /** PCI addresses of functions on a VFIO driver, bound and attached in this order. */
  readonly devices?: readonly string[];
  readonly scenario?: MapScenario;
}

const spanOf = (r: IovaRange): IovaSpan => ({ start: hex(r.start), last: hex(r.last) });

const IOMMU_NAMES: Record<number, string> = {
  0: 'none', [IOMMU_HW_INFO_TYPE_INTEL_VTD]: 'intel-vtd', [IOMMU_HW_INFO_TYPE_ARM_SMMUV3]: 'arm-smmuv3', 3: 'tegra241-cmdqv',
  [IOMMU_HW_INFO_TYPE_AMD]: 'amd', [IOMMU_HW_INFO_TYPE_SELFTEST]: 'selftest',
};

/**
 * The PCI function at `bdf`, checked to be on a VFIO driver with a cdev; an Error saying what to
 * do otherwise. Nothing here binds a driver: the host keeps what it has.
 */
function vfioFunction(binding: Binding, bdf: string, host: string): PciDevice {
  const pci = new PciDevice(binding, bdf);
  if (orMissing(() => binding.readlink(pci.path), null) === null) throw new Error(`no PCI function ${bdf} on ${host} (\`ioasid ls\` lists them)`);
  const driver = pci.driver;
  if (driver === null || !isVfioDriver(driver)) {
    throw new Error(`${bdf} is ${driver === null ? 'bound to no driver' : `on ${driver}`}: \`ioasid map\` attaches only a function already on a VFIO `
      + `driver and takes none from the host -> \`ioasid bind ${bdf}\` hands it to vfio-pci (when the host does not use it)`);
  }
  if (pci.vfioCdev === null) throw new Error(`${bdf} is on ${driver} but has no VFIO cdev (/dev/vfio/devices): the kernel lacks CONFIG_VFIO_DEVICE_CDEV`);
  return pci;
}

/** [0, 2^64) minus the allowed ranges (sorted, disjoint, as the kernel returns them). */
function complement(allowed: readonly IovaRange[]): IovaRange[] {
  const out: IovaRange[] = [];
  let at = 0n;
  for (const r of allowed) {
    if (r.start > at) out.push({ start: at, last: r.start - 1n });
    if (r.last === U64_MAX) return out;
    at = r.last + 1n;
  }
  out.push({ start: at, last: U64_MAX });
  return out;
}

/** Build the IOAS on `binding`, run the scenario, and read back its layout. */
export async function ioasMap(binding: Binding, opts: MapOptions): Promise<IoasMap> {
  const pcis = (opts.devices ?? []).map((bdf) => vfioFunction(binding, bdf, opts.host));
  using ctx = new Iommufd(binding);
  const ioas = ctx.allocIoas();
  ioas.trackAreas();
  const opened: VfioDevice[] = [];
  try {
    const attached = pcis.map((pci) => {
      const dev = VfioDevice.open(binding, pci);
      opened.push(dev);
      const devId = dev.bind(ctx);
      return { pci, dev, devId, hwpt: dev.attach(ioas) };
    });
    await opts.scenario?.(ctx, ioas, opened);
    const { ranges, alignment } = ioas.iovaRanges();
    const span = ranges.length ? { start: hex(ranges[0]!.start), last: hex(ranges[ranges.length - 1]!.last) } : null;
    const devices: MapDevice[] = [];
    const hwpts = new Map<number, { id: number; devices: string[]; aperture: IovaSpan | null; apertureFrom: MapHwpt['apertureFrom'] }>();
    for (const { pci, dev, devId, hwpt } of attached) {
      let iommu: string;
      let aperture: IovaRange | null = null;
      try {
        const hw = dev.hwInfo();
        iommu = IOMMU_NAMES[hw.type] ?? `type ${hw.type}`;
        aperture = domainAperture(hw);
      } catch (e) {
        if (!(e instanceof IommuError)) throw e;
        iommu = `unknown (${e.code})`;
      }
      const regions = pci.reservedRegions().map((r) => ({ start: hex(r.start), last: hex(r.last), type: r.type }));
      devices.push({ bdf: pci.bdf, cdev: dev.path, iommuGroup: pci.iommuGroup, devId, hwpt, iommu, reservedRegions: regions });
      const h = hwpts.get(hwpt) ?? { id: hwpt, devices: [], aperture: aperture ? spanOf(aperture) : span, apertureFrom: aperture ? 'hw-info' : span ? 'iova-ranges' : null };
      h.devices.push(pci.bdf);
      hwpts.set(hwpt, h);
    }
    return {
      version: IOAS_MAP_VERSION, host: opts.host, ioas: ioas.id, alignment: hex(alignment),
      allowed: ranges.map(spanOf), reserved: complement(ranges).map(spanOf),
      areas: ioas.areas!.all().map((a) => ({ start: hex(a.iova), last: hex(a.last), readable: a.readable, writeable: a.writeable })),
      devices, hwpts: [...hwpts.values()],
    };
  } finally {
    for (const d of opened) d.close();
  }
}

const size = (s: IovaSpan): string => formatSize(BigInt(s.last) - BigInt(s.start) + 1n);
const rangeText = (s: IovaSpan): string => `${s.start}-${s.last}`;
const access = (a: MapArea): string => `${a.readable ? 'r' : '-'}${a.writeable ? 'w' : '-'}`;

/** Every distinct reserved region of the devices, with the devices whose groups have it. */
function regionsOf(m: IoasMap): (MapRegion & { devices: string[] })[] {
  const out = new Map<string, MapRegion & { devices: string[] }>();
  for (const d of m.devices) {
    for (const r of d.reservedRegions) {
      const key = `${r.start} ${r.last} ${r.type}`;
      const seen = out.get(key) ?? { ...r, devices: [] };
      seen.devices.push(d.bdf);
      out.set(key, seen);
    }
  }
  return [...out.values()];
}

/** The map as text: ranges, areas, devices, HWPTs. */
export function formatMap(m: IoasMap): string[] {
  const out = [`IOAS ${m.ioas} on ${m.host}: ${m.areas.length} area${m.areas.length === 1 ? '' : 's'}, IOVA alignment ${m.alignment}`, ''];
  const block = (title: string, header: string[], rows: string[][], none: string): void => {
    out.push(title);
    out.push(...(rows.length ? table(header, rows) : [none]).map((l) => `  ${l}`), '');
  };
  block('IOVA ranges (IOMMU_IOAS_IOVA_RANGES; reserved: the rest of [0, 2^64))', ['', 'FIRST', 'LAST', 'SIZE'],
    [...m.allowed.map((s) => ({ s, k: 'allowed' })), ...m.reserved.map((s) => ({ s, k: 'reserved' }))]
      .sort((a, b) => (BigInt(a.s.start) < BigInt(b.s.start) ? -1 : 1)).map(({ s, k }) => [k, s.start, s.last, size(s)]), '(none)');
  block('areas', ['FIRST', 'LAST', 'SIZE', 'ACCESS'], m.areas.map((a) => [a.start, a.last, size(a), access(a)]), '(none mapped)');
  block('devices', ['DEVICE', 'CDEV', 'GROUP', 'DEV ID', 'HWPT', 'IOMMU', 'RESERVED REGIONS (sysfs)'],
    m.devices.map((d) => [d.bdf, d.cdev, d.iommuGroup === null ? '-' : String(d.iommuGroup), String(d.devId), String(d.hwpt), d.iommu,
      d.reservedRegions.map((r) => `${rangeText(r)} ${r.type}`).join(', ') || '-']), '(none attached: --device BDF attaches one)');
  if (m.hwpts.length) {
    block('HWPTs', ['HWPT', 'APERTURE', 'FROM', 'DEVICES'],
      m.hwpts.map((h) => [String(h.id), h.aperture ? rangeText(h.aperture) : '-', h.apertureFrom ?? '-', h.devices.join(', ')]), '');
  }
  out.pop();
  return out;
}

/** The map drawn: one lane for the IOAS, its devices' reserved regions over it, each HWPT's aperture above. */
export function renderMapSvg(m: IoasMap): string {
  const regions: SvgMark[] = regionsOf(m).map((r) => ({ ...r, label: `reserved region (${r.type}) of ${r.devices.join(', ')}` }));
  const apertures: SvgMark[] = m.hwpts.filter((h) => h.aperture).map((h) => ({ ...h.aperture!, label: `aperture of HWPT ${h.id} (${h.devices.join(', ')})` }));
  const notes = [
    `IOAS ${m.ioas} on ${m.host}; IOVA alignment ${m.alignment}; ${m.areas.length} area${m.areas.length === 1 ? '' : 's'}`,
    ...m.devices.map((d) => `${d.bdf} (${d.iommu}, group ${d.iommuGroup ?? '-'}): device ${d.devId}, attached to HWPT ${d.hwpt}`),
  ];
  return renderIovaLayoutSvg([{ label: `IOAS ${m.ioas}`, layout: { allowed: m.allowed, areas: m.areas, regions, apertures } }],
    { title: `IOAS ${m.ioas} on ${m.host}`, notes });
}

const CSS = `
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222}
h1{font-size:1.3em;margin:0 0 .3em}h2{font-size:1.05em;margin:1.2em 0 .3em}
table{border-collapse:collapse}
th,td{border:1px solid #ccc;padding:.25em .6em;text-align:left;font-family:monospace;font-size:.9em}
th{background:#f3f3f3;font-family:system-ui,sans-serif}
svg{display:block;max-width:100%;height:auto}
`;

/** The map as one self-contained page: the drawing, then tables of ranges, regions, areas, devices and HWPTs. */
export function renderMapHtml(m: IoasMap): string {
  const tableHtml = (cls: string, header: string[], rows: (string | number)[][]): string => (rows.length
    ? `<table class="${cls}"><tr>${header.map((h) => `<th>${esc(h)}</th>`).join('')}</tr>${rows.map((r) => `<tr>${r.map((c) => `<td>${esc(String(c))}</td>`).join('')}</tr>`).join('')}</table>`
    : `<p class="${cls}">(none)</p>`);
  const ranges = [...m.allowed.map((s) => ['allowed', s] as const), ...m.reserved.map((s) => ['reserved', s] as const)]
    .sort((a, b) => (BigInt(a[1].start) < BigInt(b[1].start) ? -1 : 1));
  const title = `IOAS ${m.ioas} on ${m.host}`;
  return [
    '<!DOCTYPE html>', '<html lang="en"><head><meta charset="utf-8">', `<title>${esc(title)}</title>`, `<style>${CSS}</style></head><body>`,
    `<h1>${esc(title)}</h1>`,
    `<p class="summary">${m.areas.length} area${m.areas.length === 1 ? '' : 's'}, IOVA alignment ${m.alignment}, ${m.devices.length} device${m.devices.length === 1 ? '' : 's'}. `
      + 'The axis is compressed (each piece as wide as the logarithm of its size); hover a block for its exact range.</p>',
    renderMapSvg(m),
    '<h2>IOVA ranges</h2>', tableHtml('ranges', ['', 'first', 'last', 'size'], ranges.map(([k, s]) => [k, s.start, s.last, size(s)])),
    '<h2>Reserved regions (sysfs)</h2>', tableHtml('regions', ['first', 'last', 'type', 'devices'], regionsOf(m).map((r) => [r.start, r.last, r.type, r.devices.join(', ')])),
    '<h2>Areas</h2>', tableHtml('areas', ['first', 'last', 'size', 'access'], m.areas.map((a) => [a.start, a.last, size(a), access(a)])),
    '<h2>Devices</h2>', tableHtml('devices', ['device', 'cdev', 'group', 'dev id', 'HWPT', 'IOMMU'],
      m.devices.map((d) => [d.bdf, d.cdev, d.iommuGroup ?? '-', d.devId, d.hwpt, d.iommu])),
    '<h2>HWPTs</h2>', tableHtml('hwpts', ['HWPT', 'aperture', 'from', 'devices'],
      m.hwpts.map((h) => [h.id, h.aperture ? rangeText(h.aperture) : '-', h.apertureFrom ?? '-', h.devices.join(', ')])),
    `<script type="application/json" id="map">${JSON.stringify(m).replaceAll('<', '\\u003c')}</script>`,
    '</body></html>',
  ].join('\n');
}

export interface MapArgs {
  machine?: string;
  device?: string[];
  scenario?: string;
  svg?: string;
  html?: string;
  json?: boolean;
  /** import() of the scenario module (compare.ts's ImportModule). */
  importModule?: ImportModule;
}

/** A bad option value: main.ts reports it as a usage error (exit status 2), as parseArgs' own. */
class OptionError extends Error {
  readonly code = 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE';
}

/** `ioasid map`: check the options, build and read the IOAS, print or write it; the exit status. */
export async function mapCommand(binding: Binding, a: MapArgs, io: { out(line: string): void }): Promise<number> {
  const bdfs = (a.device ?? []).map((d) => {
    const bdf = pciAddress(d);
    if (bdf === null) throw new OptionError(`--device ${JSON.stringify(d)} is not a PCI address: domain:bus:device.function, e.g. 0000:00:01.0`);
    return bdf;
  });
  const twice = bdfs.find((b, i) => bdfs.indexOf(b) !== i);
  if (twice) throw new OptionError(`--device ${twice} is given twice: a device binds to one iommufd once`);
  let scenario: MapScenario | undefined;
  try {
    scenario = a.scenario === undefined ? undefined : await loadScenario<MapScenario>(a.scenario, process.cwd(), ['(ctx, ioas, devices)', 'ctx, ioas, devices'], a.importModule);
  } catch (e) {
    if (e instanceof RangeError) throw new OptionError(e.message);
    throw e;
  }
  const host = a.machine === undefined ? 'this host' : `sim machine ${a.machine}`;
  const m = await ioasMap(binding, { host, devices: bdfs, ...(scenario ? { scenario } : {}) });
  if (a.svg !== undefined) writeFileSync(a.svg, `<?xml version="1.0" encoding="UTF-8"?>\n${renderMapSvg(m)}\n`);
  if (a.html !== undefined) writeFileSync(a.html, renderMapHtml(m));
  if (a.json) io.out(JSON.stringify(m, null, 2));
  else {
    for (const l of formatMap(m)) io.out(l);
    for (const [what, file] of [['SVG', a.svg], ['HTML', a.html]] as const) if (file !== undefined) io.out(`${what}: ${file}`);
  }
  return 0;
}
