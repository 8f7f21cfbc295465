/**
 * `ioasid compare SCENARIO`: load a scenario module (its default export, a function taking an
 * IommuSession) or a recorded trace (`--trace FILE.jsonl`, replayed by traceScenario), run it in the chosen modes with compareModes() and print the report as text or
 * JSON; --html writes the page too. Exit status 0 when every mode answered alike, 1 when they
 * diverge (or the command failed); a bad option or scenario is the caller's usage error.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { BackendName } from '../backends/types.js';
import { compareModes } from '../migration/compare.js';
import { IOMMU_MODE_NAMES, iommuMode, type IommuModeName, type Scenario } from '../migration/modes.js';
import { formatReport, renderReportHtml, reportJson } from '../migration/report.js';
import { TraceFormatError, readTrace } from '../migration/trace.js';
import { traceScenario } from '../migration/trace_replay.js';

export interface CompareArgs {
  scenario: string;
  modes?: string;
  backend: BackendName;
  machine?: string;
  json?: boolean;
  html?: string;
}

/** The modes named in a comma-separated list; a RangeError naming the valid ones otherwise. */
export function parseModes(list: string | undefined): IommuModeName[] {
  if (list === undefined) return [...IOMMU_MODE_NAMES];
  const names = list.split(',').map((m) => m.trim()).filter(Boolean);
  if (names.length === 0) throw new RangeError('--modes names no mode');
  return names.map((m) => iommuMode(m).name);
}

/** import() of the user's module: the bundle's code gets it from the bin (cold.cts), as a script compiled by node:vm has none of its own. */
export type ImportModule = (url: string) => Promise<unknown>;

const importModule: ImportModule = (url) => import(/* @vite-ignore */ url);

/**
 * The scenario module's default export; a RangeError when the file is missing or exports no
 * function. `takes` says what the function is given, for the message (`ioasid map`'s take more).
 */
export async function loadScenario<T = Scenario>(path: string, cwd = process.cwd(), takes = ['a session', 's'], load = importModule): Promise<T> {
  const file = resolve(cwd, path);
  if (!existsSync(file)) throw new RangeError(`no scenario file ${JSON.stringify(path)} (looked for ${file})`);
  const mod = (await load(pathToFileURL(file).href)) as { default?: unknown };
  if (typeof mod.default !== 'function') {
    throw new RangeError(`${path} has no default export taking ${takes[0]}: write \`export default function (${takes[1]}) { ... }\``);
  }
  return mod.default as T;
}

/** A recorded trace (docs/trace.md) replayed as the scenario; a RangeError when the file is missing or malformed. */
export function loadTraceScenario(path: string, cwd = process.cwd()): Scenario {
  const file = resolve(cwd, path);
  if (!existsSync(file)) throw new RangeError(`no trace file ${JSON.stringify(path)} (looked for ${file})`);
  try {
    return traceScenario(readTrace(readFileSync(file, 'utf8')));
  } catch (e) {
    if (e instanceof TraceFormatError) throw new RangeError(`${path}: ${e.message}`);
    throw e;
  }
}

/** Run the comparison and print it; the exit status (0 alike, 1 divergent). */
export async function compareCommand(a: CompareArgs, scenario: Scenario, out: (line: string) => void): Promise<number> {
  const report = await compareModes(scenario, {
    modes: parseModes(a.modes), backend: a.backend, ...(a.machine === undefined ? {} : { machine: a.machine }),
  });
  if (a.html !== undefined) writeFileSync(a.html, renderReportHtml(report, `ioasid compare ${a.scenario}`));
  if (a.json) out(reportJson(report));
  else {
    for (const l of formatReport(report)) out(l);
    if (a.html !== undefined) out(`HTML report: ${a.html}`);
  }
  return report.divergent ? 1 : 0;
}
