/**
 * Differential test: the same seeded random sequence of IOAS commands on the real kernel and on a
 * fresh sim, in the same process, comparing every return value and errno, and the IOVA ranges
 * and alignment after each step. It needs /dev/iommu, so it runs in the real-kernel tier; on the
 * sim tier there is nothing to compare against and it is skipped with that reason. A second
 * program adds the kernel's mock IOMMU: devices attached, replaced and destroyed, manual HWPTs,
 * and probes of what the domains hold (ids must agree too).
 */
import { existsSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { Iommufd, IommuError, type Ioas, type UserMemory } from '../src/index.js';
import { IommufdTest } from '../src/testing.js';
import { BACKEND, hugepageAligned } from './helpers.js';

const PG = 4096n;
const BUF_PAGES = 64;

interface Side {
  ctx: Iommufd;
  test: IommufdTest;
  buf: UserMemory;
  a: Ioas;
  b: Ioas;
}

function side(backend: 'sim' | 'linux'): Side {
  const ctx = Iommufd.open({ backend });
  return { ctx, test: new IommufdTest(ctx), buf: hugepageAligned(ctx, BUF_PAGES * 4096), a: ctx.allocIoas(), b: ctx.allocIoas() };
}

function outcome(fn: () => unknown): string {
  try {
    const v = fn();
    return `ok ${typeof v === 'bigint' ? '0x' + v.toString(16) : String(v ?? '')}`;
  } catch (e) {
    if (e instanceof IommuError) return e.code;
    throw e;
  }
}

function rng(seed: number) {
  let s = seed >>> 0;
  const next = () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32);
  return { int: (n: number) => Math.floor(next() * n), pick: <T>(xs: T[]) => xs[Math.floor(next() * xs.length)]! };
}

type Op = (s: Side) => unknown;

function program(seed: number, n: number): { name: string; op: Op }[] {
  const r = rng(seed);
  const ops: { name: string; op: Op }[] = [];
  const len = (): bigint => (r.int(4) === 0 ? BigInt(1 + r.int(3 * 4096)) : BigInt(1 + r.int(8)) * PG);
  const iova = (): bigint => BigInt(r.int(64)) * PG + (r.int(6) === 0 ? BigInt(r.int(4096)) : 0n);
  const off = (): number => (r.int(5) === 0 ? r.int(4096) : r.int(BUF_PAGES / 2) * 4096);
  for (let i = 0; i < n; i++) {
    const k = r.int(100);
    const io = r.int(4) === 0 ? 'b' : 'a';
    if (k < 30) {
      const [o, l, v, w] = [off(), len(), iova(), r.int(3) !== 0];
      ops.push({ name: `${io}.map fixed va+${o} len ${l} at ${v}`, op: (s) => s[io].mapUser(s.buf.addr + BigInt(o), l, { iova: v, writeable: w }) });
    } else if (k < 55) {
      const [o, l] = [off(), len()];
      ops.push({ name: `${io}.map auto va+${o} len ${l}`, op: (s) => s[io].mapUser(s.buf.addr + BigInt(o), l) });
    } else if (k < 75) {
      const [v, l] = [iova(), BigInt(1 + r.int(16)) * PG];
      ops.push({ name: `${io}.unmap ${v} len ${l}`, op: (s) => s[io].unmap(v, l) });
    } else if (k < 80) {
      ops.push({ name: `${io}.unmapAll`, op: (s) => s[io].unmapAll() });
    } else if (k < 88) {
      const [src, l, fixed, v] = [iova(), len(), r.int(2) === 0, iova()];
      ops.push({ name: `b.copyFrom a ${src} len ${l} ${fixed ? 'at ' + v : 'auto'}`, op: (s) => s.b.copyFrom(s.a, src, l, fixed ? { iova: v, writeable: false } : { writeable: false }) });
    } else if (k < 92) {
      const [v, l] = [iova(), BigInt(1 + r.int(4)) * PG];
      ops.push({ name: `${io}.reserve ${v} len ${l}`, op: (s) => s.test.addReserved(s[io].id, v, l) });
    } else if (k < 96) {
      const ranges = r.int(3) === 0 ? [] : [{ start: iova(), last: iova() + BigInt(r.int(32)) * PG }];
      ops.push({ name: `${io}.allow ${JSON.stringify(ranges, (_, x) => (typeof x === 'bigint' ? String(x) : x))}`, op: (s) => s[io].allowIovas(ranges) });
    } else {
      const on = r.int(2) === 0;
      ops.push({ name: `${io}.hugePages ${on}`, op: (s) => s[io].setHugePages(on) });
    }
  }
  return ops;
}

const canCompare = BACKEND === 'linux' && existsSync('/dev/iommu');

/**
 * Replay each seed's program on the kernel and on a fresh sim, step by step: the outcome (value or
 * errno) and both IOASes' ranges must agree after every step. Returns the steps taken.
 */
function replay<S extends Side>(seeds: number[], make: (b: 'sim' | 'linux') => S, prog: (seed: number) => { name: string; op: (s: S) => unknown }[]): number {
  let steps = 0;
  for (const seed of seeds) {
    const k = make('linux');
    const s = make('sim');
    try {
      for (const { name, op } of prog(seed)) {
        const got = { kernel: outcome(() => op(k)), sim: outcome(() => op(s)) };
        expect(got.sim, `seed ${seed} step ${steps}: ${name}`).toBe(got.kernel);
        for (const io of ['a', 'b'] as const) {
          expect(s[io].iovaRanges(), `seed ${seed} after ${name}: ${io} ranges`).toEqual(k[io].iovaRanges());
        }
        steps++;
      }
    } finally {
      k.ctx.close();
      s.ctx.close();
    }
  }
  return steps;
}

const NEEDS = canCompare ? '' : ' (needs /dev/iommu: runs in the real-kernel tier)';

describe('sim vs the real kernel, command by command', () => {
  it.skipIf(!canCompare)(`random IOAS programs give the same result, errno and IOVA ranges${NEEDS}`, () => {
    expect(replay([1, 2, 3, 4], side, (seed) => program(seed, 250))).toBe(1000);
  });
});

// ---- with the kernel's mock IOMMU: devices, HWPTs, domains ---------------------------------------

interface DevSide extends Side {
  devs: { stdevId: number; idevId: number }[];
  hwpts: number[];
  /** HWPT ids seen (manual and automatic), for MD_CHECK_MAP probes. */
  seenHwpts: number[];
  /** Maps made (they may be gone since): MD_CHECK_MAP probes ask a domain about them. */
  maps: { iova: bigint; off: number; len: bigint }[];
}

const AP = 1n << 24n; // MOCK_APERTURE_START

function devSide(backend: 'sim' | 'linux'): DevSide {
  return { ...side(backend), devs: [], hwpts: [], seenHwpts: [], maps: [] };
}

/**
 * Random programs over two IOASes with mock devices coming and going: attach (with or without
 * NO_DIRTY / PASID), replace onto the other IOAS or a HWPT, destroy; manual HWPTs (plain,
 * NEST_PARENT, DIRTY_TRACKING, an unknown flag) and their destruction; maps inside and outside
 * the mock aperture; and MD_CHECK_MAP / MD_CHECK_REFS probes of what the domains hold.
 */
function deviceProgram(seed: number, n: number): { name: string; op: (s: DevSide) => unknown }[] {
  const r = rng(seed);
  const ops: { name: string; op: (s: DevSide) => unknown }[] = [];
  const iova = (): bigint => (r.int(8) === 0 ? BigInt(r.int(64)) * PG : AP + BigInt(r.int(48)) * PG + (r.int(10) === 0 ? 2048n : 0n));
  const len = (): bigint => (r.int(6) === 0 ? BigInt(1 + r.int(3)) * 2048n : BigInt(1 + r.int(6)) * PG);
  const off = (): number => r.int(BUF_PAGES / 2) * 4096 + (r.int(8) === 0 ? 2048 : 0);
  const pt = (s: DevSide, k: number): number => (k % 3 === 0 ? s.a.id : k % 3 === 1 ? s.b.id : (s.hwpts[k % Math.max(1, s.hwpts.length)] ?? s.a.id));
  for (let i = 0; i < n; i++) {
    const k = r.int(100);
    const io = r.int(3) === 0 ? 'b' : 'a';
    const x = r.int(1000);
    if (k < 12) {
      const flags = r.pick([0, 0, 0, 1 /* NO_DIRTY */, 4 /* PASID */]);
      ops.push({
        name: `mock device (flags ${flags}) on ${io}`,
        op: (s) => {
          const d = s.test.mockDomainFlags(s[io].id, flags);
          s.devs.push({ stdevId: d.stdevId, idevId: d.idevId });
          s.seenHwpts.push(d.hwptId);
          return `${d.stdevId}/${d.hwptId}/${d.idevId}`;
        },
      });
    } else if (k < 18) {
      ops.push({
        name: `destroy device #${x}`,
        op: (s) => {
          if (!s.devs.length) return 'none';
          const [d] = s.devs.splice(x % s.devs.length, 1);
          s.ctx.destroy(d!.stdevId);
        },
      });
    } else if (k < 28) {
      ops.push({
        name: `replace device #${x} onto pt ${x >> 3}`,
        op: (s) => (s.devs.length ? s.test.mockDomainReplace(s.devs[x % s.devs.length]!.stdevId, pt(s, x >> 3)) : 'none'),
      });
    } else if (k < 36) {
      const kind = r.pick(['plain', 'nestParent', 'dirty', 'bad']);
      ops.push({
        name: `HWPT (${kind}) for device #${x} on ${io}`,
        op: (s) => {
          if (!s.devs.length) return 'none';
          const devId = s.devs[x % s.devs.length]!.idevId;
          const h = s.ctx.allocHwpt({
            devId, ptId: s[io].id, nestParent: kind === 'nestParent', dirtyTracking: kind === 'dirty', flags: kind === 'bad' ? 1 << 20 : 0,
          });
          s.hwpts.push(h.id);
          s.seenHwpts.push(h.id);
          return h.id;
        },
      });
    } else if (k < 40) {
      ops.push({
        name: `destroy HWPT #${x}`,
        op: (s) => {
          if (!s.hwpts.length) return 'none';
          const id = s.hwpts[x % s.hwpts.length]!;
          s.ctx.destroy(id);
          s.hwpts.splice(s.hwpts.indexOf(id), 1);
        },
      });
    } else if (k < 65) {
      const [o, l, v] = [off(), len(), iova()];
      ops.push({
        name: `${io}.map va+${o} len ${l} at ${v}`,
        op: (s) => {
          const at = s[io].mapUser(s.buf.addr + BigInt(o), l, { iova: v });
          s.maps.push({ iova: at, off: o, len: l });
          return at;
        },
      });
    } else if (k < 72) {
      const [o, l] = [off(), len()];
      ops.push({ name: `${io}.map auto va+${o} len ${l}`, op: (s) => s[io].mapUser(s.buf.addr + BigInt(o), l) });
    } else if (k < 85) {
      const [v, l] = [iova(), BigInt(1 + r.int(8)) * PG];
      ops.push({ name: `${io}.unmap ${v} len ${l}`, op: (s) => s[io].unmap(v, l) });
    } else if (k < 88) {
      ops.push({ name: `${io}.unmapAll`, op: (s) => s[io].unmapAll() });
    } else if (k < 94) {
      const y = r.int(1000);
      ops.push({
        name: `MD_CHECK_MAP hwpt #${x} of map #${y}`,
        op: (s) => {
          if (!s.maps.length || !s.seenHwpts.length) return 'none';
          const m = s.maps[y % s.maps.length]!;
          return s.test.checkMap(s.seenHwpts[x % s.seenHwpts.length]!, m.iova, m.len, s.buf.addr + BigInt(m.off));
        },
      });
    } else {
      const [o, refs] = [r.int(BUF_PAGES) * 4096, r.int(2)];
      ops.push({ name: `MD_CHECK_REFS va+${o} refs ${refs}`, op: (s) => s.test.checkRefs(s.buf.addr + BigInt(o), PG, refs) });
    }
  }
  return ops;
}

describe('sim vs the real kernel with mock devices, command by command', () => {
  it.skipIf(!canCompare)(`random device/HWPT/map programs give the same ids, result, errno and IOVA ranges${NEEDS}`, () => {
    expect(replay([11, 12, 13, 14], devSide, (seed) => deviceProgram(seed, 250))).toBe(1000);
  });
});
