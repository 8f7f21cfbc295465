/**
 * Reader of the TAP that the kernel's kselftest harness prints (tools/testing/selftests/
 * kselftest_harness.h over kselftest.h), so that the same selftest binary's results on the sim and
 * on the real kernel can be compared case by case. The lines it knows, as the C prints them:
 *
 *   TAP version 13                                   ksft_print_header (absent under KSFT_TAP_LEVEL)
 *   1..N                                             ksft_set_plan; "1..0 # SKIP why" = ksft_exit_skip
 *   # Starting N tests from M test cases.
 *   #  RUN           fixture.variant.test ...        __run_test ("fixture.test" without a variant)
 *   # file.c:123:test:Expected ...                   TH_LOG to stderr, between RUN and the result
 *   #      SKIP      why                             SKIP()
 *   #            OK  fixture.variant.test            "OK" or "FAIL"
 *   ok N fixture.variant.test                        ksft_test_result_code: pass
 *   not ok N fixture.variant.test                    fail ("not ok N name #  why" with a reason)
 *   ok N name # SKIP why | # XFAIL why | # XPASS why skip, xfail, xpass
 *   not ok N # error why                             ksft_test_result_error (no test name)
 *   Bail out! why                                    ksft_exit_fail_msg
 *   # FAILED: P / N tests passed.                    or PASSED
 *   # Totals: pass:P fail:F xfail:X xpass:Y skip:S error:E
 *
 * A case whose RUN line has no result line (the binary died or was killed in it) is 'incomplete'.
 */

export type TapVerdict = 'pass' | 'fail' | 'skip' | 'xfail' | 'xpass' | 'error' | 'incomplete';

export interface TapCase {
  /** fixture.variant.test as the harness prints it (fixture.test when the fixture has no variants). */
  name: string;
  /** The TAP test number, or null for an incomplete case. */
  number: number | null;
  verdict: TapVerdict;
  /** The text after the directive (SKIP/XFAIL/XPASS) or after `#` on a failure line. */
  reason?: string;
  /** Every line printed between the case's RUN line and its result line. */
  output: string[];
}

export interface TapTotals {
  pass: number;
  fail: number;
  xfail: number;
  xpass: number;
  skip: number;
  error: number;
}

export interface TapRun {
  /** The `1..N` plan, or null when none was printed. */
  planned: number | null;
  /** `1..0 # SKIP why`: the whole binary skipped before running anything. */
  skippedAll?: string;
  /** `Bail out! why`. */
  bailOut?: string;
  /** Cases in the order they ran. */
  cases: TapCase[];
  /** Verdicts counted from `cases` (incomplete cases count as errors). */
  counted: TapTotals;
  /** The harness's own `# Totals:` line, or null when the binary never printed it. */
  totals: TapTotals | null;
  /** Lines outside every case (header, plan, summaries, stray output). */
  other: string[];
}

const PLAN = /^1\.\.(\d+)(?:\s*#\s*SKIP\b\s*(.*))?$/i;
const RUN = /^#\s+RUN\s+(\S+) \.\.\.$/;
const RESULT = /^(not ok|ok) (\d+)(?: ([^#\s]\S*))?(?: #(.*))?$/;
// ksft_test_result_code writes " # SKIP "; a failure's reason follows " #  " (two spaces).
const DIRECTIVE = /^ (SKIP|XFAIL|XPASS|error)(?: (.*))?$/;
const TOTALS = /^# Totals: pass:(\d+) fail:(\d+) xfail:(\d+) xpass:(\d+) skip:(\d+) error:(\d+)$/;
const BAIL = /^Bail out!\s*(.*)$/;

function emptyTotals(): TapTotals {
  return { pass: 0, fail: 0, xfail: 0, xpass: 0, skip: 0, error: 0 };
}

/** The verdict and reason of an `ok`/`not ok` line's tail (after `#`). */
function verdictOf(ok: boolean, tail: string | undefined): { verdict: TapVerdict; reason?: string } {
  const d = tail === undefined ? null : DIRECTIVE.exec(tail);
  if (d) {
    const word = d[1]!.toLowerCase() as 'skip' | 'xfail' | 'xpass' | 'error';
    return { verdict: word, reason: d[2] ?? '' };
  }
  const verdict: TapVerdict = ok ? 'pass' : 'fail';
  const reason = tail?.trim();
  return reason ? { verdict, reason } : { verdict };
}

/** Parse one binary's kselftest TAP output (stdout and stderr interleaved, as `2>&1` gives it). */
export function parseTap(text: string): TapRun {
  const run: TapRun = { planned: null, cases: [], counted: emptyTotals(), totals: null, other: [] };
  let open: TapCase | null = null;
  const closeIncomplete = () => {
    if (open) run.cases.push(open);
    open = null;
  };
  for (const line of text.split('\n')) {
    if (line === '' || line === 'TAP version 13') continue;
    const plan = PLAN.exec(line);
    if (plan) {
      run.planned = Number(plan[1]);
      if (plan[2] !== undefined) run.skippedAll = plan[2];
      continue;
    }
    const started = RUN.exec(line);
    if (started) {
      closeIncomplete();
      open = { name: started[1]!, number: null, verdict: 'incomplete', output: [] };
      continue;
    }
    const result = RESULT.exec(line);
    if (result) {
      const name = result[3] ?? open?.name ?? '';
      const c: TapCase = open?.name === name ? open : { name, number: null, verdict: 'incomplete', output: [] };
      if (c !== open) closeIncomplete();
      open = null;
      c.number = Number(result[2]);
      Object.assign(c, verdictOf(result[1] === 'ok', result[4]));
      run.cases.push(c);
      continue;
    }
    const totals = TOTALS.exec(line);
    if (totals) {
      const [pass, fail, xfail, xpass, skip, error] = totals.slice(1).map(Number) as [number, number, number, number, number, number];
      run.totals = { pass, fail, xfail, xpass, skip, error };
      continue;
    }
    const bail = BAIL.exec(line);
    if (bail) run.bailOut = bail[1]!;
    if (open) open.output.push(line);
    else run.other.push(line);
  }
  closeIncomplete();
  for (const c of run.cases) run.counted[c.verdict === 'incomplete' ? 'error' : c.verdict]++;
  return run;
}

export interface TapDifference {
  name: string;
  a: TapVerdict;
  b: TapVerdict;
  aReason?: string;
  bReason?: string;
}

export interface TapComparison {
  /** Cases present in both runs with different verdicts, in `a`'s order. */
  differ: TapDifference[];
  /** Cases only `a` ran, and only `b` ran. */
  onlyA: string[];
  onlyB: string[];
  /** How many cases both ran with the same verdict. */
  same: number;
}

/** Compare two runs of the same binary case by case (by name; numbers may differ). */
export function compareTap(a: TapRun, b: TapRun): TapComparison {
  const inB = new Map(b.cases.map((c) => [c.name, c]));
  const inA = new Set(a.cases.map((c) => c.name));
  const out: TapComparison = { differ: [], onlyA: [], onlyB: [], same: 0 };
  for (const ca of a.cases) {
    const cb = inB.get(ca.name);
    if (!cb) out.onlyA.push(ca.name);
    else if (cb.verdict === ca.verdict) out.same++;
    else {
      const d: TapDifference = { name: ca.name, a: ca.verdict, b: cb.verdict };
      if (ca.reason !== undefined) d.aReason = ca.reason;
      if (cb.reason !== undefined) d.bReason = cb.reason;
      out.differ.push(d);
    }
  }
  out.onlyB = b.cases.filter((c) => !inA.has(c.name)).map((c) => c.name);
  return out;
}
