/**
 * A compareModes() report for people and programs: terse text (one line per step, divergent steps
 * marked `!`), JSON (the report itself, which is plain data), and one self-contained HTML page
 * (inline CSS and SVG, no scripts or external assets): the calls side by side per mode, the modes
 * that answered alike in one colour, divergent steps marked, and the IOVA layout after each step.
 */
import type { CompareReport, IovaLayout, RunEnd, StepCall, StepComparison } from './compare.js';
import { escapeXml as esc, LAYOUT_LEGEND, renderIovaLayoutSvg, type SvgLane } from './layout_svg.js';
import type { IommuModeName } from './modes.js';


/** The report as JSON text (it is plain data already: bigints are hex strings). */
export function reportJson(report: CompareReport): string {
  return JSON.stringify(report, null, 2);
}

const args = (c: StepCall): string => Object.entries(c.args).map(([k, v]) => `${k}=${v}`).join(' ');
const call = (c: StepCall): string => `${c.op}(${args(c)})`;

/** A call's answer in a few characters: 'ok', a returned value, or the errno. */
export function answer(c: StepCall | null): string {
  if (c === null) return '(no step: the scenario had ended)';
  if (c.errno) return c.errno;
  if (c.result === null) return 'ok';
  if (Array.isArray(c.result)) return c.result.map((s) => `${s.start}-${s.last}`).join(',') || '(none)';
  return String(c.result);
}

/** The mapped areas as text: '0x100000-0x103fff' pieces, or '(none)'. */
export function areasText(l: IovaLayout): string {
  return l.areas.map((a) => `${a.start}-${a.last}`).join(',') || '(none)';
}

export function endText(e: RunEnd): string {
  if (e.status === 'completed') return 'completed';
  if (e.status === 'refused') return `${e.at === 'init' ? 'could not open the mode' : 'stopped by a refusal'}: ${e.message}`;
  return `the scenario threw ${e.name}: ${e.message}`;
}

/** The text report: a head line, one line per step, the ends. */
export function formatReport(r: CompareReport): string[] {
  const where = r.backend === 'sim' ? `the sim (machine ${r.machine})` : 'this host\'s kernel';
  const lines = [
    `ioasid compare: ${r.modes.length} modes on ${where}, ${r.steps.length} steps, ${r.divergences.length} divergent${r.ends.divergent ? ', runs ended differently' : ''}`,
  ];
  for (const s of r.steps) {
    const first = s.calls.find((c) => c !== null)!;
    const sameOp = !s.differs.includes('op') && !s.differs.includes('missing');
    const head = `${s.divergent ? '!' : ' '} ${String(s.index).padStart(3)}  ${sameOp ? call(first) : '(calls differ)'}`;
    const showAreas = s.differs.includes('layout');
    const parts = s.groups.map((g) => {
      const c = s.calls[r.modes.indexOf(g[0]!)]!;
      const who = s.groups.length === 1 ? 'all' : g.join(',');
      return `${who}: ${sameOp || !c ? '' : `${call(c)} `}${answer(c)}${showAreas && c ? ` areas ${areasText(c.layout)}` : ''}`;
    });
    lines.push(`${head}  ${parts.join(' | ')}`);
  }
  const ends = r.ends.groups.map((g) => `${r.ends.groups.length === 1 ? 'all' : g.join(',')}: ${endText(runOf(r, g[0]!).end)}`);
  lines.push(`${r.ends.divergent ? '!' : ' '} end  ${ends.join(' | ')}`);
  return lines;
}

const runOf = (r: CompareReport, m: IommuModeName) => r.runs.find((x) => x.mode === m)!;

/** The modes of a step grouped by equal layouts, as lanes for the SVG. */
function layoutLanes(r: CompareReport, s: StepComparison): SvgLane[] {
  const lanes = new Map<string, { modes: string[]; layout: IovaLayout }>();
  s.calls.forEach((c, i) => {
    if (!c) return;
    const key = JSON.stringify(c.layout);
    const lane = lanes.get(key);
    if (lane) lane.modes.push(r.modes[i]!);
    else lanes.set(key, { modes: [r.modes[i]!], layout: c.layout });
  });
  return [...lanes.values()].map((l) => ({ label: l.modes.length === s.calls.length ? 'all modes' : l.modes.join(', '), layout: l.layout }));
}

const CSS = `
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222}
h1{font-size:1.3em;margin:0 0 .3em}
.summary{margin:.2em 0 1em}
.summary .div{color:#b00020;font-weight:600}
table{border-collapse:collapse;width:100%}
th,td{border:1px solid #ccc;padding:.3em .5em;vertical-align:top;text-align:left}
thead th{background:#f3f3f3;font-weight:600;font-size:.9em}
thead th small{display:block;font-weight:400;color:#666}
tbody.step{border-top:2px solid #999}
tr.call td.op,tr.call td.mode{font-family:monospace;font-size:.85em}
tr.call th.index{white-space:nowrap}
tbody.divergent tr.call th.index{background:#b00020;color:#fff}
tbody.divergent tr.call th.index::after{content:" \\2260"}
td.mode.g0{background:#eef3ff}td.mode.g1{background:#fff0d9}td.mode.g2{background:#e6f6e9}
td.mode.g3{background:#f8e6f5}td.mode.g4{background:#e6f4f6}td.mode.g5{background:#f4f4d9}
tbody:not(.divergent) td.mode{background:none}
td.mode .err{color:#b00020;font-weight:600}
td.mode .areas{color:#555;display:block}
td.mode.missing{color:#888;font-style:italic}
tr.layout td{padding:.2em .5em .6em;border-top:none}
tr.layout svg{display:block;max-width:100%;height:auto}
.differs{color:#b00020;font-size:.85em}
tfoot td,tfoot th{background:#fafafa}
.swatch{display:inline-block;width:12px;height:10px;border:1px solid #777;margin:0 3px 0 8px}
`;

/** The report as one self-contained HTML page. */
export function renderReportHtml(r: CompareReport, title = 'ioasid compare'): string {
  const where = r.backend === 'sim' ? `the sim (machine ${esc(String(r.machine))})` : 'this host\'s kernel';
  const h: string[] = [];
  h.push('<!DOCTYPE html>', '<html lang="en"><head><meta charset="utf-8">', `<title>${esc(title)}</title>`, `<style>${CSS}</style></head><body>`);
  h.push(`<h1>${esc(title)}</h1>`);
  h.push(`<p class="summary">${r.modes.length} modes on ${where}, ${r.steps.length} steps: `
    + (r.divergent ? `<span class="div">${r.divergences.length} divergent${r.ends.divergent ? ', runs ended differently' : ''}</span>` : 'no divergence')
    + '. Cells of one colour answered alike; a divergent step is marked &#8800;. Under each step, the IOVA layout after it, one lane per distinct layout.</p>');
  h.push('<table class="steps"><thead><tr><th>#</th><th>call</th>');
  for (const run of r.runs) h.push(`<th class="mode" data-mode="${run.mode}" title="${esc(run.summary)}">${run.mode}</th>`);
  h.push('</tr></thead>');
  const cols = r.modes.length + 2;
  for (const s of r.steps) {
    const first = s.calls.find((c) => c !== null)!;
    const sameOp = !s.differs.includes('op') && !s.differs.includes('missing');
    h.push(`<tbody class="step${s.divergent ? ' divergent' : ''}" data-step="${s.index}">`);
    h.push(`<tr class="call"><th class="index">${s.index}</th><td class="op">${sameOp ? esc(call(first)) : '(calls differ)'}`
      + (s.divergent ? `<div class="differs">differs: ${s.differs.join(', ')}</div>` : '') + '</td>');
    s.calls.forEach((c, i) => {
      const g = s.groups.findIndex((grp) => grp.includes(r.modes[i]!));
      if (!c) {
        h.push(`<td class="mode missing g${g}" data-mode="${r.modes[i]}">${esc(answer(c))}</td>`);
        return;
      }
      const a = answer(c);
      h.push(`<td class="mode g${g}" data-mode="${r.modes[i]}">${sameOp ? '' : `${esc(call(c))}<br>`}`
        + `<span class="${c.errno ? 'err' : 'ok'}">${esc(a)}</span><span class="areas">mapped: ${esc(areasText(c.layout))}</span></td>`);
    });
    h.push('</tr>');
    const svg = renderIovaLayoutSvg(layoutLanes(r, s), { legend: false, title: `IOVA layout after step ${s.index}` });
    h.push(`<tr class="layout"><td colspan="${cols}">${svg}</td></tr></tbody>`);
  }
  h.push(`<tfoot class="${r.ends.divergent ? 'divergent' : ''}"><tr><th>end</th><td>${r.ends.divergent ? '<span class="differs">the runs ended differently</span>' : ''}</td>`);
  r.ends.groups.flatMap((g, k) => g.map((m) => [m, k] as const))
    .sort((a, b) => r.modes.indexOf(a[0]) - r.modes.indexOf(b[0]))
    .forEach(([m, k]) => h.push(`<td class="mode g${k}" data-mode="${m}">${esc(endText(runOf(r, m).end))}</td>`));
  h.push('</tr></tfoot></table>');
  h.push(`<p class="legend">Layouts: ${LAYOUT_LEGEND.map(([c, t]) => `<span class="swatch" style="background:${c}"></span>${t}`).join(' ')}; `
    + 'the axis is compressed (each piece as wide as the logarithm of its size); hover a block for its exact range.</p>');
  h.push(`<script type="application/json" id="report">${JSON.stringify(r).replaceAll('<', '\\u003c')}</script>`);
  h.push('</body></html>');
  return h.join('\n');
}
