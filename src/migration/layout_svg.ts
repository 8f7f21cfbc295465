/**
 * renderIovaLayoutSvg(): an IOVA layout (allowed ranges, reserved gaps, mapped areas) as one
 * self-contained SVG element, for the compare report (report.ts) and any other view of an address
 * space. The 64-bit axis is compressed: it is cut at every boundary the layouts name, and each
 * piece gets a width that grows with the logarithm of its size, so a 4 KiB area next to a 256 TiB
 * range is still a visible block. Exact values are in each block's tooltip and the tick labels.
 * A layout may also carry marked regions (a device's reserved regions, drawn over the bar) and
 * apertures (what an attached domain translates, drawn as brackets above it); `ioasid map` draws
 * them, and notes under the legend name its devices and HWPTs.
 */
import { hex } from './modes.js';

/** An inclusive IOVA span: bigints or hex strings ('0x100000'), as compareModes reports them. */
export interface SvgSpan {
  readonly start: string | bigint;
  readonly last: string | bigint;
}

export interface SvgLayout {
  /** Where DMA may go; what lies outside is reserved. null: the mode could not say (drawn as unknown). */
  readonly allowed: readonly SvgSpan[] | null;
  /** The mapped areas. */
  readonly areas: readonly SvgSpan[];
  /** Further boundaries to mark on the axis (e.g. probed segments); not drawn as blocks. */
  readonly segments?: readonly SvgSpan[];
  /** Regions drawn over the bar in their own colour, each with its label (e.g. a device's reserved 'msi' window). */
  readonly regions?: readonly SvgMark[];
  /** Apertures drawn as brackets above the bar, each with its label (e.g. an attached domain's). */
  readonly apertures?: readonly SvgMark[];
}

/** A labelled span: a region or an aperture. */
export interface SvgMark extends SvgSpan {
  readonly label: string;
}

/** One lane of a drawing: a layout and what it belongs to (mode names). */
export interface SvgLane {
  readonly label: string;
  readonly layout: SvgLayout;
}

export interface SvgOptions {
  /** Pixels (default 820). */
  readonly width?: number;
  /** Draw a legend line under the axis (default true). */
  readonly legend?: boolean;
  /** The SVG's accessible title. */
  readonly title?: string;
  /** Lines of text under the legend (e.g. the devices and the HWPTs they attached to). */
  readonly notes?: readonly string[];
}

/** Text for HTML and SVG: &, <, >, " and ' escaped. */
export function escapeXml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

const AXIS_END = 1n << 64n;

const COLOR = { allowed: '#dcefd8', reserved: '#c8c8c8', mapped: '#2f62c9', unknown: '#ffffff' } as const;
const MARK_COLOR = { 'reserved region': '#f0a04b', aperture: '#8a3ab9' } as const;

/** The colours of the drawing: fill and meaning. */
export const LAYOUT_LEGEND: readonly (readonly [string, string])[] = Object.entries(COLOR).map(([meaning, fill]) => [fill, meaning]);
/** The colours of regions and apertures, in the legend when a layout has them. */
export const MARK_LEGEND: readonly (readonly [string, string])[] = Object.entries(MARK_COLOR).map(([meaning, fill]) => [fill, meaning]);
const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB', 'EiB'];

/** 4096n -> '4 KiB', 2n ** 48n -> '256 TiB' (whole units where exact, else one decimal). */
export function formatSize(bytes: bigint): string {
  let unit = 0;
  let v = bytes;
  while (unit < UNITS.length - 1 && v >= 1024n) {
    v /= 1024n;
    unit++;
  }
  const exact = v * 1024n ** BigInt(unit) === bytes;
  const shown = exact ? v.toString() : (Number(bytes) / 1024 ** unit).toFixed(1);
  return `${shown} ${UNITS[unit]}`;
}

interface Span {
  start: bigint;
  end: bigint;
}

const span = (s: SvgSpan): Span => ({ start: BigInt(s.start), end: BigInt(s.last) + 1n });

/** The layout(s) drawn on one compressed axis, one lane each; an `<svg>` element as a string. */
export function renderIovaLayoutSvg(layouts: SvgLayout | readonly SvgLane[], opts: SvgOptions = {}): string {
  const lanes: readonly SvgLane[] = Array.isArray(layouts) ? layouts : [{ label: '', layout: layouts as SvgLayout }];
  const width = opts.width ?? 820;
  const legend = opts.legend ?? true;
  const axis = compressedAxis(lanes, 32, width - 12);
  const labelH = lanes.some((l) => l.label) ? 14 : 0;
  const apRows = Math.max(0, ...lanes.map((l) => l.layout.apertures?.length ?? 0));
  const apH = apRows ? apRows * 5 + 2 : 0;
  const barH = 20;
  const laneH = labelH + apH + barH + 6;
  const top = 4;
  const axisY = top + lanes.length * laneH;
  const ticks = tickLabels(axis);
  const tickH = Math.ceil(Math.max(...ticks.map((t) => t.text.length)) * 6.2 * Math.SQRT1_2) + 16;
  const legendY = axisY + tickH;
  const marked = lanes.some((l) => l.layout.regions?.length) || apRows > 0;
  const unknown = lanes.some((l) => l.layout.allowed === null);
  const keys = legend ? [...LAYOUT_LEGEND.filter(([, t]) => unknown || t !== 'unknown'), ...(marked ? MARK_LEGEND : [])] : [];
  const keyX = keys.reduce((xs, [, t]) => [...xs, xs[xs.length - 1]! + Math.max(90, 30 + t.length * 6.2)], [axis.x0]);
  const axisNote = 'axis compressed (log of each piece\'s size)';
  const noteX = keyX[keys.length]!;
  const lines = [...(legend && noteX + axisNote.length * 6.2 > width ? [axisNote] : []), ...(opts.notes ?? [])];
  const notesY = legendY + (legend ? 22 : 0);
  const height = notesY + lines.length * 13 + (lines.length ? 4 : 0);
  const out: string[] = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" class="iova-layout" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" role="img" font-family="monospace" font-size="10">`);
  out.push(`<title>${escapeXml(opts.title ?? 'IOVA layout')}</title>`);
  out.push('<desc>The axis is compressed: each piece between two boundaries is as wide as the logarithm of its size.</desc>');
  lanes.forEach((lane, i) => {
    const y = top + i * laneH;
    const barY = y + labelH + apH;
    const l = lane.layout;
    out.push(`<g class="lane" data-label="${escapeXml(lane.label)}">`);
    if (lane.label) out.push(`<text class="lane-label" x="${axis.x0}" y="${y + 10}" fill="#333">${escapeXml(lane.label)}</text>`);
    if (l.allowed === null) {
      out.push(rect('unknown', axis.x0, barY, axis.x1 - axis.x0, barH, COLOR.unknown, 'allowed IOVA ranges unknown: the mode could not say', '#999', '3,2'));
    } else {
      for (const g of allowedPieces(l.allowed)) {
        const [x, w] = axis.place(g.start, g.end);
        out.push(rect(g.allowed ? 'allowed' : 'reserved', x, barY, w, barH, g.allowed ? COLOR.allowed : COLOR.reserved,
          `${g.allowed ? 'allowed' : 'reserved'} ${hex(g.start)}-${hex(g.end - 1n)} (${formatSize(g.end - g.start)})`));
      }
    }
    for (const m of l.regions ?? []) {
      const g = span(m);
      const [x, w] = axis.place(g.start, g.end);
      out.push(rect('region', x, barY, Math.max(w, 1), barH, MARK_COLOR['reserved region'],
        `${m.label} ${hex(g.start)}-${hex(g.end - 1n)} (${formatSize(g.end - g.start)})`, undefined, undefined, g));
    }
    (l.apertures ?? []).forEach((m, k) => {
      const g = span(m);
      const [x, w] = axis.place(g.start, g.end);
      const ay = y + labelH + k * 5 + 3;
      out.push(`<g class="aperture" data-start="${hex(g.start)}" data-last="${hex(g.end - 1n)}" stroke="${MARK_COLOR.aperture}">`
        + `<title>${escapeXml(`${m.label} ${hex(g.start)}-${hex(g.end - 1n)} (${formatSize(g.end - g.start)})`)}</title>`
        + `<path d="M${r(x)} ${ay + 3}V${ay}H${r(x + w)}V${ay + 3}" fill="none" stroke-width="1.5"/></g>`);
    });
    for (const a of l.areas.map(span)) {
      const [x, w] = axis.place(a.start, a.end);
      out.push(rect('area', x + 0.5, barY + 3, Math.max(w - 1, 1), barH - 6, COLOR.mapped,
        `mapped ${hex(a.start)}-${hex(a.end - 1n)} (${formatSize(a.end - a.start)})`, undefined, undefined, a));
    }
    out.push('</g>');
  });
  out.push(`<g class="axis"><line x1="${axis.x0}" y1="${axisY}" x2="${axis.x1}" y2="${axisY}" stroke="#555"/>`);
  for (const t of axis.cuts) out.push(`<line x1="${t.x}" y1="${axisY}" x2="${t.x}" y2="${axisY + 4}" stroke="#555"/>`);
  for (const t of ticks) out.push(`<text x="${t.x}" y="${axisY + 10}" text-anchor="end" transform="rotate(-45 ${t.x} ${axisY + 10})" fill="#333">${t.text}</text>`);
  out.push('</g>');
  if (legend) {
    out.push(`<g class="legend">`);
    keys.forEach(([fill, text], i) => {
      const x = Math.round(keyX[i]! * 10) / 10;
      out.push(`<rect x="${x}" y="${legendY + 6}" width="12" height="10" fill="${fill}" stroke="#777"/><text x="${x + 16}" y="${legendY + 15}" fill="#333">${text}</text>`);
    });
    if (lines[0] !== axisNote) out.push(`<text x="${noteX}" y="${legendY + 15}" fill="#666">${escapeXml(axisNote)}</text>`);
    out.push('</g>');
  }
  if (lines.length) {
    out.push('<g class="notes">');
    lines.forEach((t, i) => out.push(`<text x="${axis.x0}" y="${notesY + 10 + i * 13}" fill="#333">${escapeXml(t)}</text>`));
    out.push('</g>');
  }
  out.push('</svg>');
  return out.join('');
}

function rect(cls: string, x: number, y: number, w: number, h: number, fill: string, tip: string, stroke?: string, dash?: string, s?: Span): string {
  const data = s ? ` data-start="${hex(s.start)}" data-last="${hex(s.end - 1n)}"` : '';
  const line = stroke ? ` stroke="${stroke}"${dash ? ` stroke-dasharray="${dash}"` : ''}` : '';
  return `<rect class="${cls}"${data} x="${r(x)}" y="${y}" width="${r(w)}" height="${h}" fill="${fill}"${line}><title>${escapeXml(tip)}</title></rect>`;
}

const r = (v: number): string => (Math.round(v * 10) / 10).toString();

/** [0, 2^64) cut into allowed and reserved pieces. */
function allowedPieces(allowed: readonly SvgSpan[]): { start: bigint; end: bigint; allowed: boolean }[] {
  const out: { start: bigint; end: bigint; allowed: boolean }[] = [];
  let at = 0n;
  for (const a of allowed.map(span).sort((p, q) => (p.start < q.start ? -1 : 1))) {
    if (a.start > at) out.push({ start: at, end: a.start, allowed: false });
    if (a.end > at) out.push({ start: a.start > at ? a.start : at, end: a.end, allowed: true });
    if (a.end > at) at = a.end;
  }
  if (at < AXIS_END) out.push({ start: at, end: AXIS_END, allowed: false });
  return out;
}

interface Axis {
  x0: number;
  x1: number;
  cuts: { at: bigint; x: number }[];
  /** The x and width of [start, end). */
  place(start: bigint, end: bigint): [number, number];
}

/** Every boundary named by the lanes, with pieces as wide as 3 + log2(size). */
function compressedAxis(lanes: readonly SvgLane[], x0: number, x1: number): Axis {
  const set = new Set<bigint>([0n, AXIS_END]);
  for (const { layout } of lanes) {
    for (const s of [...(layout.allowed ?? []), ...layout.areas, ...(layout.segments ?? []), ...(layout.regions ?? []), ...(layout.apertures ?? [])].map(span)) {
      if (s.start < AXIS_END) set.add(s.start);
      if (s.end <= AXIS_END) set.add(s.end);
    }
  }
  const at = [...set].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  const weights = at.slice(1).map((end, i) => 3 + log2(end - at[i]!));
  const total = weights.reduce((a, b) => a + b, 0);
  const cuts = [{ at: at[0]!, x: x0 }];
  let x = x0;
  weights.forEach((w, i) => {
    x += (w / total) * (x1 - x0);
    cuts.push({ at: at[i + 1]!, x });
  });
  const xOf = (v: bigint): number => {
    let lo = 0;
    let hi = at.length - 1;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (at[mid]! < v) lo = mid + 1;
      else hi = mid;
    }
    return cuts[lo]!.x;
  };
  return { x0, x1, cuts, place: (s, e) => [xOf(s), xOf(e) - xOf(s)] };
}

function log2(v: bigint): number {
  return v <= 0n ? 0 : v.toString(2).length - 1;
}

/** Boundary labels, left to right, dropping any that would overlap the previous one. */
function tickLabels(axis: Axis): { x: number; text: string }[] {
  const out: { x: number; text: string }[] = [];
  for (const c of axis.cuts) {
    if (out.length && c.x - out[out.length - 1]!.x < 14) continue;
    out.push({ x: Math.round(c.x * 10) / 10, text: c.at === AXIS_END ? '2^64' : hex(c.at) });
  }
  return out;
}
