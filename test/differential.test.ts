/**
 * Differential test: the same seeded random sequence of IOAS commands on the real kernel and on a
 * fresh sim, in the same process, comparing every return value and errno, and the IOVA ranges
 * and alignment after each step. It needs /dev/iommu, so it runs in the real-kernel tier; on the
 * sim tier there is nothing to compare against and it is skipped with that reason.
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

describe('sim vs the real kernel, command by command', () => {
  it.skipIf(!canCompare)(`random IOAS programs give the same result, errno and IOVA ranges${canCompare ? '' : ' (needs /dev/iommu: runs in the real-kernel tier)'}`, () => {
    let steps = 0;
    for (const seed of [1, 2, 3, 4]) {
      const k = side('linux');
      const s = side('sim');
      try {
        for (const { name, op } of program(seed, 250)) {
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
    expect(steps).toBe(1000);
  });
});
