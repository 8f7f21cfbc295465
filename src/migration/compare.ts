/**
 * compareModes(): run one program (a Scenario) in several IOMMU modes and report where their
 * answers diverge (docs/migration.md, "Comparing modes on your own code").
 *
 * Each mode gets a fresh session (on the sim a fresh machine, so modes cannot see each other's
 * state). Every session call the scenario makes is one step: its operation and arguments, its
 * result or errno, and the mode's IOVA layout after it: the allowed IOVA ranges (the mode's own
 * answer) and the mapped areas. No mode can list its mappings, so the areas are derived from the
 * kernel's answers alone: each elementary segment between the IOVAs the scenario has named (every
 * map and unmap start and end) is probed with a one-page map at its start, undone at once. EEXIST
 * says mapped, success says free, any other errno says the mode would not map there. Probes are
 * not steps and leave nothing behind.
 *
 * Steps are aligned by index. Per step the modes are grouped by equal answers (the same operation
 * and arguments, result, errno and layout; a mode whose scenario had ended has no answer, which is
 * a group of its own); a step is divergent when there is more than one group. The report is plain
 * JSON (bigints as 0x hex strings), rendered by report.ts.
 */
import { openBinding } from '../backends/index.js';
import type { BackendName, Binding } from '../backends/types.js';
import { IommuError } from '../ioasid/errors.js';
import type { UserMemory } from '../ioasid/memory.js';
import type { MachineDesc } from '../backends/sim/machine/machine.js';
import { MACHINES, machinePreset } from '../backends/sim/machine/presets.js';
import { IOMMU_MODE_NAMES, IommuSession, hex, iommuMode, type IommuModeName, type Scenario, type SessionCall } from './modes.js';

/** The report format's version: raised when a field changes meaning or goes away. */
export const COMPARE_REPORT_VERSION = 1;

/** An inclusive IOVA span, as hex strings ('0x100000'). */
export interface IovaSpan {
  readonly start: string;
  readonly last: string;
}

/** What one probe of a segment found: 'mapped' (EEXIST), 'free' (mapped and undone), or the refusal's errno. */
export interface ProbedSegment extends IovaSpan {
  readonly state: 'mapped' | 'free' | 'refused';
  /** The probe's errno when refused. */
  readonly errno?: string;
}

/** One mode's IOVA layout at one moment, as the mode answered. */
export interface IovaLayout {
  /** Where DMA may go (GET_INFO's IOVA_RANGE capability, IOMMU_IOAS_IOVA_RANGES); null when the mode could not say. */
  readonly allowed: readonly IovaSpan[] | null;
  /** Why `allowed` is null: the errno of the refused query. */
  readonly allowedErrno?: string;
  /** The mapped areas: adjacent mapped segments merged (probes cannot tell one mapping from two). */
  readonly areas: readonly IovaSpan[];
  /** Every probed segment with its answer, in IOVA order. */
  readonly segments: readonly ProbedSegment[];
}

/** One mode's answer at one step. */
export interface StepCall {
  readonly op: string;
  readonly args: Readonly<Record<string, string | number | boolean>>;
  /** The value returned (bigints and IOVAs as hex strings; IOVA ranges as spans), or null. */
  readonly result: string | number | boolean | readonly IovaSpan[] | null;
  readonly errno: string | null;
  readonly layout: IovaLayout;
}

/** How one mode's run ended. */
export type RunEnd =
  | { readonly status: 'completed' }
  /** An IommuError left the scenario (or the session could not be opened: `at: 'init'`). */
  | { readonly status: 'refused'; readonly errno: string; readonly message: string; readonly at: 'init' | 'scenario' }
  /** Anything else left the scenario: a bug in it, or a mode it does not expect. */
  | { readonly status: 'error'; readonly name: string; readonly message: string };

export interface ModeRun {
  readonly mode: IommuModeName;
  readonly summary: string;
  readonly steps: readonly StepCall[];
  readonly end: RunEnd;
}

/** Which aspects of the answers differ between groups. */
export type Aspect = 'op' | 'result' | 'errno' | 'layout' | 'missing';

export interface StepComparison {
  readonly index: number;
  /** The call per mode, in the report's mode order; null where the mode's scenario had ended. */
  readonly calls: readonly (StepCall | null)[];
  /** Modes with equal answers, each group in mode order, groups in order of their first mode. */
  readonly groups: readonly (readonly IommuModeName[])[];
  readonly divergent: boolean;
  readonly differs: readonly Aspect[];
}

export interface CompareReport {
  readonly version: typeof COMPARE_REPORT_VERSION;
  readonly backend: BackendName;
  /** The sim machine: a preset's name, 'custom' for a MachineDesc, null on linux. */
  readonly machine: string | null;
  readonly modes: readonly IommuModeName[];
  readonly runs: readonly ModeRun[];
  readonly steps: readonly StepComparison[];
  /** How the runs ended, grouped as steps are. */
  readonly ends: { readonly groups: readonly (readonly IommuModeName[])[]; readonly divergent: boolean };
  /** The indices of the divergent steps. */
  readonly divergences: readonly number[];
  /** True when any step or the runs' ends diverge. */
  readonly divergent: boolean;
}

export interface CompareOptions {
  /** The modes to run, in report order (default: all six). */
  modes?: readonly IommuModeName[];
  /** 'sim' (default) or 'linux' (this host's kernel). */
  backend?: BackendName;
  /** The sim machine for each mode (a fresh one per mode): a preset name from MACHINES or a description; default q35Edu. */
  machine?: string | MachineDesc;
}

const U64_END = 1n << 64n;

/** Run `scenario` once per mode and compare the answers step by step. */
export async function compareModes(scenario: Scenario, opts: CompareOptions = {}): Promise<CompareReport> {
  const modes = [...(opts.modes ?? IOMMU_MODE_NAMES)];
  for (const m of modes) iommuMode(m);
  if (new Set(modes).size !== modes.length) throw new RangeError(`compareModes: a mode is named twice in ${modes.join(', ')}`);
  const backend = opts.backend ?? 'sim';
  if (backend === 'linux' && opts.machine !== undefined) throw new RangeError('compareModes: a machine is for the sim backend, not linux');
  const machine = backend === 'sim' ? machineFactory(opts.machine) : null;
  const runs: ModeRun[] = [];
  for (const mode of modes) {
    const binding = machine ? openBinding('sim', { machine: machine.desc() }) : openBinding('linux');
    runs.push(await runMode(scenario, mode, binding));
  }
  return compareRuns(runs, backend, machine?.name ?? null);
}

function machineFactory(m: string | MachineDesc | undefined): { name: string; desc: () => MachineDesc } {
  if (m === undefined) return { name: 'q35Edu', desc: MACHINES.q35Edu! };
  if (typeof m !== 'string') return { name: 'custom', desc: () => m };
  return { name: m, desc: machinePreset(m) };
}

/** One mode's run: the steps with their layouts, and how it ended. */
async function runMode(scenario: Scenario, mode: IommuModeName, binding: Binding): Promise<ModeRun> {
  const { summary } = iommuMode(mode);
  const steps: StepCall[] = [];
  const prober = new LayoutProber(binding.pageSize);
  let session: IommuSession;
  try {
    session = IommuSession.init(mode, binding, {
      onCall: (c) => {
        if (prober.probing) return;
        prober.note(c);
        steps.push({ op: c.op, args: c.args, result: jsonResult(c.result), errno: c.errno, layout: prober.layout(session) });
      },
    });
  } catch (e) {
    return { mode, summary, steps, end: endOf(e, 'init') };
  }
  try {
    await scenario(session);
    return { mode, summary, steps, end: { status: 'completed' } };
  } catch (e) {
    return { mode, summary, steps, end: endOf(e, 'scenario') };
  } finally {
    session.close();
  }
}

function endOf(e: unknown, at: 'init' | 'scenario'): RunEnd {
  if (e instanceof IommuError) return { status: 'refused', errno: e.code, message: e.message, at };
  if (e instanceof Error) return { status: 'error', name: e.name, message: e.message };
  return { status: 'error', name: typeof e, message: String(e) };
}

function jsonResult(r: SessionCall['result']): StepCall['result'] {
  if (Array.isArray(r)) return r.map((x) => ({ start: hex(x.start), last: hex(x.last) }));
  return r as StepCall['result'];
}

/** Finds a session's IOVA layout from its own answers (see the file comment). */
class LayoutProber {
  probing = false;
  /** Every IOVA a map or unmap has named as a start or an end, page aligned, below 2^64. */
  private readonly bounds = new Set<bigint>();
  private page: UserMemory | null = null;

  constructor(private readonly pageSize: number) {}

  note(c: SessionCall): void {
    if (c.op !== 'map' && c.op !== 'unmap') return;
    const iova = BigInt(c.args.iova as string);
    const end = iova + BigInt(c.args.size as string);
    const mask = BigInt(this.pageSize - 1);
    for (const b of [iova, end]) if ((b & mask) === 0n && b < U64_END) this.bounds.add(b);
  }

  layout(s: IommuSession): IovaLayout {
    this.probing = true;
    try {
      const [allowed, allowedErrno] = this.allowed(s);
      const segments = this.segments(s);
      const areas: IovaSpan[] = [];
      let open: { start: string; last: string } | null = null;
      for (const g of segments) {
        if (g.state === 'mapped' && open && BigInt(open.last) + 1n === BigInt(g.start)) open.last = g.last;
        else if (g.state === 'mapped') areas.push((open = { start: g.start, last: g.last }));
        else open = null;
      }
      return allowedErrno ? { allowed, allowedErrno, areas, segments } : { allowed, areas, segments };
    } finally {
      this.probing = false;
    }
  }

  private allowed(s: IommuSession): [IovaSpan[] | null, string?] {
    try {
      return [s.iovaRanges().map((r) => ({ start: hex(r.start), last: hex(r.last) }))];
    } catch (e) {
      if (e instanceof IommuError) return [null, e.code];
      throw e;
    }
  }

  /** The segments between consecutive bounds, each probed at its start. */
  private segments(s: IommuSession): ProbedSegment[] {
    const bounds = [...this.bounds].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    const out: ProbedSegment[] = [];
    for (let i = 0; i + 1 < bounds.length; i++) {
      const start = bounds[i]!;
      const span = { start: hex(start), last: hex(bounds[i + 1]! - 1n) };
      const errno = this.probe(s, start);
      out.push(errno === null ? { ...span, state: 'free' } : errno === 'EEXIST' ? { ...span, state: 'mapped' } : { ...span, state: 'refused', errno });
    }
    return out;
  }

  /** A one-page map at `iova`, undone when it succeeds: null, or the refusal's errno. */
  private probe(s: IommuSession, iova: bigint): string | null {
    this.page ??= s.alloc(this.pageSize);
    try {
      s.map({ mem: this.page, iova });
    } catch (e) {
      if (e instanceof IommuError) return e.code;
      throw e;
    }
    const undone = s.unmap({ iova, size: BigInt(this.pageSize) });
    if (undone !== BigInt(this.pageSize)) throw new Error(`compareModes: undoing the probe at ${hex(iova)} unmapped ${hex(undone)} bytes`);
    return null;
  }
}

/** The runs' steps aligned by index, grouped by equal answers. */
export function compareRuns(runs: readonly ModeRun[], backend: BackendName, machine: string | null): CompareReport {
  const modes = runs.map((r) => r.mode);
  const count = Math.max(0, ...runs.map((r) => r.steps.length));
  const steps: StepComparison[] = [];
  for (let index = 0; index < count; index++) {
    const calls = runs.map((r) => r.steps[index] ?? null);
    const groups = groupBy(modes, calls.map((c) => JSON.stringify(c)));
    const differs = groups.length > 1 ? aspects(calls) : [];
    steps.push({ index, calls, groups, divergent: groups.length > 1, differs });
  }
  const endGroups = groupBy(modes, runs.map((r) => endKey(r.end)));
  const divergences = steps.filter((s) => s.divergent).map((s) => s.index);
  return {
    version: COMPARE_REPORT_VERSION, backend, machine, modes, runs, steps,
    ends: { groups: endGroups, divergent: endGroups.length > 1 },
    divergences, divergent: divergences.length > 0 || endGroups.length > 1,
  };
}

/** How an end compares: the status and errno (an error's message is the scenario's own). */
function endKey(e: RunEnd): string {
  return e.status === 'refused' ? `refused ${e.errno} ${e.at}` : e.status === 'error' ? `error ${e.name} ${e.message}` : 'completed';
}

function groupBy(modes: readonly IommuModeName[], keys: readonly string[]): IommuModeName[][] {
  const groups = new Map<string, IommuModeName[]>();
  keys.forEach((k, i) => {
    const g = groups.get(k);
    if (g) g.push(modes[i]!);
    else groups.set(k, [modes[i]!]);
  });
  return [...groups.values()];
}

function aspects(calls: readonly (StepCall | null)[]): Aspect[] {
  const present = calls.filter((c): c is StepCall => c !== null);
  const differ = (f: (c: StepCall) => unknown): boolean => new Set(present.map((c) => JSON.stringify(f(c)))).size > 1;
  const out: Aspect[] = [];
  if (present.length < calls.length) out.push('missing');
  if (differ((c) => [c.op, c.args])) out.push('op');
  if (differ((c) => c.result)) out.push('result');
  if (differ((c) => c.errno)) out.push('errno');
  if (differ((c) => c.layout)) out.push('layout');
  return out;
}
