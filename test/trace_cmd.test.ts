/**
 * `ioasid trace` (docs/trace.md, "Recording a real program"): an unmodified C program run with the
 * preload library recording, its VFIO and iommufd calls written as a trace that readTrace reads and
 * the replay runs in every mode.
 *
 * - Both tiers: examples/bridge/ioas_map.c recorded against the sim (--sim); in the VM also on the
 *   real kernel, which must answer the same. A program's own view (errnos, descriptor numbers,
 *   every descriptor it holds) is the same traced and untraced.
 * - The VM: the kernel's own vfio_dma_mapping_test, in its vfio_type1_iommu and vfio_type1v2_iommu
 *   variants on the edu at 0000:00:01.0, recorded on the real kernel, then replayed on the sim in
 *   the recorded mode (every answer as recorded) and in all six (compareModes: where they
 *   diverge). On the sim tier, three of those recordings (test/bridge/recorded/) replay the same way.
 */
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { release } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { BridgeServer, preloadLibrary } from '../src/bridge/index.js';
import { openBinding } from '../src/backends/index.js';
import { compareModes } from '../src/migration/compare.js';
import { IOMMU_MODE_NAMES, IommuSession, type IommuModeName, type SessionCall } from '../src/migration/modes.js';
import { isHeader, readTrace, type TraceCall, type TraceHeader, type TraceRecord } from '../src/migration/trace.js';
import { replayPlan, traceScenario, type ReplayStep } from '../src/migration/trace_replay.js';
import type { Decoded } from '../src/migration/trace_decode.js';
import { cc, scratch, selftests } from './bridge_build.js';
import { root } from './doc_examples.js';
import { claimDevices } from './drivers/devices.js';
import { ioasid } from './helpers.js';

const IN_GUEST = process.env.IOASID_IN_GUEST === '1';
const built = selftests();

const calls = (records: readonly TraceRecord[]): TraceCall[] => records.filter((r): r is TraceCall => !isHeader(r));
const ioctls = (records: readonly TraceRecord[]): TraceCall[] => calls(records).filter((r) => r.syscall === 'ioctl');
const summary = (r: TraceCall): [string | null | undefined, string | null, unknown] => [r.name, r.errno, r.result];

/** Run `bin` with `env`; its stdout. */
async function output(bin: string, env: NodeJS.ProcessEnv): Promise<string> {
  const child = spawn(bin, [], { env, stdio: ['ignore', 'pipe', 'inherit'] });
  let text = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (text += d));
  const code = await new Promise<number | null>((resolve) => child.once('close', resolve));
  expect(code).toBe(0);
  // socket:[12345] and pipe:[678] name inodes that differ from run to run
  return text.replace(/:\[\d+\]/g, '');
}

describe.skipIf(!built)('ioasid trace: an iommufd program', () => {
  /** What examples/bridge/ioas_map.c does, as the kernel answers it (iopt_map_user_pages' EEXIST, iopt_unmap_iova's ENOENT). */
  const EXPECTED = [
    ['IOMMU_IOAS_ALLOC', null, 0],
    ['IOMMU_IOAS_MAP', null, 0],
    ['IOMMU_IOAS_IOVA_RANGES', null, 0],
    ['IOMMU_IOAS_MAP', 'EEXIST', -1],
    ['IOMMU_IOAS_UNMAP', 'ENOENT', -1],
    ['IOMMU_IOAS_UNMAP', null, 0],
  ];

  function checkIoasMap(records: TraceRecord[]): void {
    expect(calls(records).map((r) => r.syscall)).toEqual(['open', 'ioctl', 'ioctl', 'ioctl', 'ioctl', 'ioctl', 'ioctl', 'close']);
    expect(calls(records)[0]).toMatchObject({ path: '/dev/iommu', errno: null });
    const io = ioctls(records);
    expect(io.map(summary)).toEqual(EXPECTED);
    expect(io.every((r) => r.path === '/dev/iommu' && r.fd === calls(records)[0]!.result)).toBe(true);
    const [alloc, map, ranges, over, cut, unmap] = io as [TraceCall, TraceCall, TraceCall, TraceCall, TraceCall, TraceCall];
    expect(alloc.out).toEqual({ size: 12, flags: 0, out_ioas_id: 1 });
    expect({ ...map.in, user_va: 'any' }).toEqual({ size: 40, flags: 7, ioas_id: 1, __reserved: 0, user_va: 'any', length: '0x100000', iova: '0x10000000' });
    expect(map.out).toEqual(map.in);
    // the kernel wrote num_iovas and one range at allowed_iovas: recorded as mem_hex, decoded as out.ranges
    expect(ranges.in).toMatchObject({ num_iovas: 8 });
    expect(ranges.out).toMatchObject({ num_iovas: 1, out_iova_alignment: '0x1', ranges: [{ start: '0x0', last: '0xffffffffffffffff' }] });
    expect(over.in).toMatchObject({ iova: '0x10080000', length: '0x100000' });
    expect(cut.in).toMatchObject({ iova: '0x10001000', length: '0x100000' });
    expect(unmap.out).toEqual({ size: 24, ioas_id: 1, iova: '0x10000000', length: '0x100000' });
  }

  it('`ioasid trace --sim` records every call with its struct bytes, and readTrace decodes them', async () => {
    const bin = cc(built!, 'examples/bridge/ioas_map.c');
    const file = join(scratch, 'ioas_map.sim.jsonl');
    const r = await ioasid('trace', '-o', file, '--sim', '--', bin);
    expect(r.code).toBe(0);
    expect(r.err).toBe(`ioasid trace: 8 calls of pid ${(readTrace(readFileSync(file, 'utf8'))[0] as TraceHeader).pid} written to ${file}`);
    const records = readTrace(readFileSync(file, 'utf8'));
    expect(records[0]).toMatchObject({ trace: 'ioasid', version: 1, backend: 'sim', machine: 'q35Edu', page_size: 4096, exe: bin });
    expect(records[0]).not.toHaveProperty('kernel');
    checkIoasMap(records);
  });

  it.skipIf(!IN_GUEST)('without --sim the calls reach the real kernel, recorded, and it answers as the sim did', async () => {
    const bin = cc(built!, 'examples/bridge/ioas_map.c');
    const file = join(scratch, 'ioas_map.linux.jsonl');
    expect((await ioasid('trace', '-o', file, '--', bin)).code).toBe(0);
    const records = readTrace(readFileSync(file, 'utf8'));
    expect(records[0]).toMatchObject({ backend: 'linux', kernel: release() });
    checkIoasMap(records);
  });

  it('tracing changes nothing the program sees: errnos, descriptor numbers, its descriptors (the trace file is close-on-exec at >= 1000)', async () => {
    const bin = cc(built!, 'test/bridge/trace_fds.c');
    const lib = preloadLibrary();
    await using server = await BridgeServer.listen();
    const prefix = join(scratch, 'fds');
    const hosts = [
      { backend: 'sim', plain: server.env(lib) },
      { backend: 'linux', plain: { ...process.env, LD_PRELOAD: lib } },
    ];
    for (const { backend, plain } of hosts) {
      const untraced = await output(bin, plain);
      const traced = await output(bin, { ...plain, IOASID_TRACE: `${prefix}.${backend}` });
      expect(traced).toBe(`${untraced}fd >= 1000: close-on-exec yes\n`);
      const file = readdirSync(scratch).find((n) => n.startsWith(`fds.${backend}.`))!;
      const records = readTrace(readFileSync(join(scratch, file), 'utf8'));
      expect(records[0]).toMatchObject({ backend });
      const open = calls(records)[0]!;
      expect(open).toMatchObject({ syscall: 'open', path: '/dev/iommu' });
      if (open.errno !== null) {
        // this host has no /dev/iommu: the failed open is recorded, nothing else
        expect(backend).toBe('linux');
        expect(untraced).toMatch(/^open \/dev\/iommu: ENOENT\n/);
        continue;
      }
      // iommufd_fops_ioctl: get_user of the size faults (EFAULT); a size under the struct's minimum is EINVAL
      expect(ioctls(records).map((r) => [r.name, r.in_hex, r.errno])).toEqual([
        ['IOMMU_IOAS_ALLOC', '', 'EFAULT'],
        ['IOMMU_IOAS_ALLOC', '04000000', 'EINVAL'],
      ]);
      // the program's own descriptors start at 3 as on the kernel: the bridge's connection sits at >= 1000
      expect(untraced).toMatch(/^open \/dev\/iommu: ok\nIOAS_ALLOC at a bad pointer: EFAULT\nIOAS_ALLOC of size 4: EINVAL\nnext fd: 4\n/);
    }
  });
});

// ---- a legacy-container program of the kernel's, recorded on the kernel, replayed on the sim ----

/** A replay step's answer as a string: 'ok', an errno, the bytes unmapped, the IOVA ranges. */
type Outcome = string;

const rangesText = (list: readonly { start: unknown; last: unknown }[]): string =>
  list.map((r) => `${typeof r.start === 'bigint' ? `0x${r.start.toString(16)}` : String(r.start)}-${typeof r.last === 'bigint' ? `0x${r.last.toString(16)}` : String(r.last)}`).join(',');

/** What the recording answered to the call a replay step makes again. */
function recordedOutcome(step: ReplayStep, rec: TraceCall): Outcome {
  if (rec.errno !== null) return rec.errno;
  const out = rec.out as Decoded;
  switch (step.op) {
    case 'unmap':
    case 'unmapAll':
      return String(out.size ?? out.length);
    case 'iovaRanges': {
      const caps = (out.caps ?? []) as Decoded[];
      const cap = caps.find((c) => c.iova_ranges);
      const list = cap ? (cap.iova_ranges as Decoded[]).map((r) => ({ start: r.start, last: r.end })) : (out.ranges as Decoded[]);
      return rangesText(list as { start: unknown; last: unknown }[]);
    }
    default:
      return 'ok';
  }
}

function replayedOutcome(c: SessionCall): Outcome {
  if (c.errno !== null) return c.errno;
  if (Array.isArray(c.result)) return rangesText(c.result as { start: bigint; last: bigint }[]);
  return c.op === 'unmap' || c.op === 'unmapAll' ? String(c.result) : 'ok';
}

/** The mode a legacy-container trace ran in, from its VFIO_SET_IOMMU. */
function recordedMode(records: readonly TraceRecord[]): IommuModeName {
  const set = ioctls(records).find((r) => r.name === 'VFIO_SET_IOMMU')!;
  return ({ 1: 'vfio_type1_iommu', 3: 'vfio_type1v2_iommu' } as Record<number, IommuModeName>)[set.arg!]!;
}

/**
 * Steps where the six modes answer a recorded vfio_dma_mapping_test differently, by case, with the
 * reason. None: for these cases (a page or 2 MiB mapped and unmapped at an allocated IOVA, the last
 * page of the aperture, the u64 overflow) the kernel answers alike in every mode, as the port
 * test/vfio_dma_mapping.test.ts checks in the VM.
 */
const MODE_DIVERGENCES: Record<string, string[]> = {};

/** Replay one recording: in its own mode every answer must be the recorded one; then across all six modes. */
async function checkReplay(name: string, records: TraceRecord[]): Promise<void> {
  const plan = replayPlan(records);
  const bySeq = new Map(calls(records).map((r) => [r.seq, r]));
  const recorded = plan.steps.map((s) => `${s.op} ${recordedOutcome(s, bySeq.get(s.seq)!)}`);
  const replayed: SessionCall[] = [];
  {
    using s = IommuSession.init(recordedMode(records), openBinding('sim'), { onCall: (c) => replayed.push(c) });
    await traceScenario(records)(s);
  }
  expect(replayed.map((c) => `${c.op} ${replayedOutcome(c)}`), `${name}: the replay answers as the kernel did`).toEqual(recorded);
  // what the replay leaves out are the device's own commands and setup every mode does its own way
  for (const skip of plan.skipped) expect(skip.why, `${name}: seq ${skip.seq} ${skip.name}`).toMatch(/^(folded into|a device command|a size probe|teardown)/);
  const report = await compareModes(traceScenario(records), { modes: IOMMU_MODE_NAMES });
  const divergent = report.divergences.map((i) => {
    const step = report.steps[i]!;
    return `${step.calls.find((c) => c)?.op}: ${step.groups.map((g) => `${g.join('+')} ${replayedOutcome(step.calls[report.modes.indexOf(g[0]!)] as unknown as SessionCall)}`).join(' / ')}`;
  });
  expect(divergent, `${name}: where the six modes diverge`).toEqual(MODE_DIVERGENCES[name] ?? []);
  expect(report.runs.map((r) => r.end.status)).toEqual(IOMMU_MODE_NAMES.map(() => 'completed'));
}

const RECORDED = join(root, 'test/bridge/recorded');

describe('ioasid trace: the kernel\'s vfio_dma_mapping_test recorded on the 7.3 kernel, replayed on the sim', () => {
  for (const file of readdirSync(RECORDED).filter((f) => f.endsWith('.jsonl')).sort()) {
    it(`${file.replace(/\.jsonl$/, '')} (recorded in the test VM)`, async () => {
      const records = readTrace(readFileSync(join(RECORDED, file), 'utf8'));
      expect(records[0]).toMatchObject({ backend: 'linux', kernel: '7.3.4', producer: 'libioasid_preload' });
      await checkReplay(file.replace(/\.jsonl$/, ''), records);
    });
  }
});

const BDF = '0000:00:01.0';
const CASES = ['vfio_type1_iommu', 'vfio_type1v2_iommu'].flatMap((m) => [
  ...['anonymous', 'anonymous_hugetlb_2mb', 'anonymous_hugetlb_1gb'].map((v) => `vfio_dma_mapping_test.${m}_${v}.dma_map_unmap`),
  ...['unmap_range', 'unmap_all', 'overflow'].map((t) => `vfio_dma_map_limit_test.${m}.${t}`),
]);

describe.skipIf(!IN_GUEST || !built || !existsSync(join(built ?? '', 'vfio/vfio_dma_mapping_test')))(
  'ioasid trace: vfio_dma_mapping_test on the real kernel (legacy container, type1 and type1v2), replayed on the sim in every mode', () => {
    it.each(CASES)('%s', async (name) => {
      const unclaim = claimDevices([BDF]);
      let r;
      const file = join(scratch, `${name}.jsonl`);
      try {
        r = await ioasid('trace', '-o', file, '--', join(built!, 'vfio/vfio_dma_mapping_test'), '-r', name, BDF);
      } finally {
        unclaim();
      }
      expect(r.code).toBe(0);
      // the kselftest harness runs each case in a forked child: its trace is FILE.PID
      expect(r.err).toMatch(/itself made no VFIO or iommufd call: nothing written to/);
      const child = readdirSync(scratch).filter((n) => n.startsWith(`${name}.jsonl.`));
      expect(child).toHaveLength(1);
      const records = readTrace(readFileSync(join(scratch, child[0]!), 'utf8'));
      expect(records[0]).toMatchObject({ backend: 'linux', kernel: release() });
      expect(recordedMode(records)).toBe(name.split('.')[1]!.replace(/_anonymous.*/, ''));
      await checkReplay(name, records);
    }, 300_000);
  });
