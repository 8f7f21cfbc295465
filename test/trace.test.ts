/**
 * The trace format (docs/trace.md): a recorded legacy-container session names and decodes each
 * call from the uAPI tables, reads back unchanged, malformed traces are refused with their line
 * number, and a recorded trace replays in each of the six IOMMU modes with the same session calls
 * and outcomes as the same program run directly in that mode. Where the replay differs from the
 * recording, the difference is the mode's: the tables below are what the test VM's kernel answered.
 */
import { readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { openBinding } from '../src/backends/index.js';
import { PciDevice } from '../src/device/pci.js';
import {
  IOMMU_MODE_NAMES, Iommufd, IommuError, IommuSession, TraceFormatError, UserMemory, VfioContainer, VfioGroup,
  containerUapi as V, formatTrace, iommuMode, readTrace, replayPlan, traceBinding, traceScenario,
  type Decoded, type IommuModeName, type Scenario, type SessionCall, type TraceCall, type TraceRecord,
} from '../src/index.js';
import { missingFor, why } from './compat_modes.js';
import { claimDevices, deviceMachine } from './drivers/devices.js';
import { EDU_BUFFER, EDU_REG } from './drivers/edu.js';
import { BACKEND, P } from './helpers.js';

const machine = deviceMachine();
const solo = machine.soloEdu;
const group = solo ? new PciDevice(openBinding(BACKEND), solo).iommuGroup : null;

/** Why `mode` cannot run on this tier's machine, or ''. */
function modeSkip(mode: IommuModeName): string {
  if (!solo) return machine.noSoloReason;
  const compat = iommuMode(mode).compat;
  return compat ? missingFor(compat, group) : '';
}

const calls = (records: readonly TraceRecord[]): TraceCall[] => readTrace(formatTrace(records)).slice(1) as TraceCall[];
const hex = (v: bigint): string => `0x${v.toString(16)}`;

describe(`trace: recording [${BACKEND}]`, () => {
  const skip = modeSkip('vfio_type1_iommu');
  it.skipIf(!!skip)(`the legacy edu tool (docs/compat.md) through /dev/vfio/vfio: names, decoded fields, errnos${why(skip)}`, () => {
    const release = claimDevices([solo!]);
    const records: TraceRecord[] = [];
    const traced = traceBinding(openBinding(BACKEND), records);
    try {
      using container = VfioContainer.open(traced, { mode: 'type1' });
      container.apiVersion();
      container.checkExtension(V.VFIO_TYPE1v2_IOMMU);
      using grp = VfioGroup.forDevice(traced, solo!, { mode: 'type1' });
      grp.status();
      grp.setContainer(container);
      container.setIommu('type1v2');
      expect(() => container.setIommu('type1v2')).toThrow(IommuError); // type1: EINVAL once a driver is set
      using src = UserMemory.anonymous(traced, P);
      using dst = UserMemory.anonymous(traced, P);
      src.bytes.set(new TextEncoder().encode('legacy'));
      container.mapDma(src, 0x100000n, { write: false });
      container.mapDma(dst, 0x200000n);
      expect(() => container.mapDma(dst, 0x200000n)).toThrow(IommuError);
      {
        using dev = grp.getDevice(solo!);
        dev.config.busMaster = true;
        const bar = dev.region(0);
        for (const [from, to, cmd] of [[0x100000n, EDU_BUFFER, 1n], [EDU_BUFFER, 0x200000n, 3n]] as const) {
          bar.write64(EDU_REG.DMA_SRC, from);
          bar.write64(EDU_REG.DMA_DST, to);
          bar.write64(EDU_REG.DMA_COUNT, 6n);
          bar.write64(EDU_REG.DMA_CMD, cmd);
          while (bar.read64(EDU_REG.DMA_CMD) & 1n);
        }
        expect(new TextDecoder().decode(dst.bytes.subarray(0, 6))).toBe('legacy');
      }
      expect(container.unmapDma(0x100000n, BigInt(P))).toBe(BigInt(P));
      expect(container.unmapAllDma()).toBe(BigInt(P));

      const header = records[0]!;
      expect(header).toMatchObject({ trace: 'ioasid', version: 1, backend: BACKEND, pid: process.pid, page_size: traced.pageSize });
      const all = calls(records);
      const legacy = all.filter((r) => r.syscall === 'ioctl' && /^\/dev\/vfio\/(vfio|\d+)$/.test(String(r.path)));
      expect(legacy.map((r) => `${r.name}${r.errno ? ` ${r.errno}` : ''}`)).toEqual([
        'VFIO_GET_API_VERSION', 'VFIO_CHECK_EXTENSION', 'VFIO_GROUP_GET_STATUS', 'VFIO_GROUP_SET_CONTAINER',
        'VFIO_SET_IOMMU', 'VFIO_SET_IOMMU EINVAL', 'VFIO_IOMMU_MAP_DMA', 'VFIO_IOMMU_MAP_DMA', 'VFIO_IOMMU_MAP_DMA EEXIST',
        'VFIO_GROUP_GET_DEVICE_FD', 'VFIO_IOMMU_UNMAP_DMA', 'VFIO_IOMMU_UNMAP_DMA',
      ]);
      const [version, ext, status, setContainer, setIommu, again, map, , busy, getFd, unmap, unmapAll] = legacy;
      expect(all.find((r) => r.syscall === 'open' && r.path === '/dev/vfio/vfio')).toMatchObject({ result: container.fd, errno: null });
      expect(version).toMatchObject({ fd: container.fd, path: '/dev/vfio/vfio', request: V.VFIO_GET_API_VERSION, arg: 0, result: V.VFIO_API_VERSION });
      expect(ext).toMatchObject({ arg: V.VFIO_TYPE1v2_IOMMU, result: 1, errno: null });
      expect(status).toMatchObject({ path: `/dev/vfio/${group}`, in: { argsz: 8, flags: 0 }, out: { argsz: 8, flags: V.VFIO_GROUP_FLAGS_VIABLE } });
      expect(setContainer).toMatchObject({ in: { fd: container.fd }, in_hex: new Uint8Array(new Int32Array([container.fd]).buffer).reduce((s, b) => s + b.toString(16).padStart(2, '0'), '') });
      expect(setIommu).toMatchObject({ arg: V.VFIO_TYPE1v2_IOMMU, result: 0, errno: null });
      expect(again).toMatchObject({ arg: V.VFIO_TYPE1v2_IOMMU, result: -1, errno: 'EINVAL' });
      expect(map).toMatchObject({
        request: V.VFIO_IOMMU_MAP_DMA,
        in: { argsz: 32, flags: V.VFIO_DMA_MAP_FLAG_READ, vaddr: hex(src.addr), iova: '0x100000', size: '0x1000' },
        result: 0, errno: null,
      });
      expect(map!.in_hex).toHaveLength(64);
      expect(busy).toMatchObject({ in: { vaddr: hex(dst.addr), iova: '0x200000' }, result: -1, errno: 'EEXIST' });
      expect(getFd).toMatchObject({ in: { name: solo }, errno: null });
      const deviceFd = getFd!.result as number;
      const onDevice = all.filter((r) => r.fd === deviceFd && r.seq > getFd!.seq);
      expect(new Set(onDevice.map((r) => r.path))).toEqual(new Set(['anon_inode:[vfio-device]']));
      expect(onDevice.some((r) => r.name === 'VFIO_DEVICE_GET_REGION_INFO')).toBe(true);
      expect(onDevice.filter((r) => r.syscall === 'pwrite' && r.offset === Number(EDU_REG.DMA_CMD))).toHaveLength(2);
      expect(unmap).toMatchObject({ in: { flags: 0, iova: '0x100000', size: '0x1000' }, out: { size: '0x1000' }, errno: null });
      expect(unmapAll).toMatchObject({ in: { flags: V.VFIO_DMA_UNMAP_FLAG_ALL, size: '0x0' }, out: { size: '0x1000' } });
      // the mmaps the memory came from
      expect(all.filter((r) => r.syscall === 'mmap').map((r) => r.result)).toEqual(expect.arrayContaining([hex(src.addr), hex(dst.addr)]));
      // and it reads back as it was recorded
      expect(readTrace(formatTrace(records))).toEqual(JSON.parse(JSON.stringify(records)));
      // replayed, the device comes first (its group joined the container before the maps), the DMA commands follow
      const plan = replayPlan(readTrace(formatTrace(records)));
      expect(plan.steps.map((s) => `${s.op}@${s.seq}`)).toEqual([
        `openDevice@${setContainer!.seq}`, `map@${map!.seq}`, `map@${map!.seq + 1}`, `map@${busy!.seq}`, `unmap@${unmap!.seq}`, `unmapAll@${unmapAll!.seq}`,
      ]);
      expect(plan.buffers).toEqual([P, P]);
      expect(plan.skipped.find((k) => k.seq === getFd!.seq)?.why).toMatch(`SET_CONTAINER (seq ${setContainer!.seq})`);
    } finally {
      release();
    }
  });

  it('a native session into a file and a function: the same records; an unknown request is recorded raw', () => {
    const file = join(tmpdir(), `ioasid-trace-${process.pid}.jsonl`);
    const seen: TraceRecord[] = [];
    const toFile = traceBinding(openBinding(BACKEND), { file });
    const both = traceBinding(toFile, (r) => seen.push(r));
    try {
      using ctx = Iommufd.open({ backend: both });
      const ioas = ctx.allocIoas();
      using mem = ctx.mmap(2 * P);
      ioas.map(mem, { iova: 0x100000n, writeable: false });
      expect(() => ioas.map(mem, { iova: 0x100000n })).toThrow(IommuError);
      expect(ioas.iovaRanges().ranges.length).toBeGreaterThan(0);
      expect(ioas.unmap(0x100000n, BigInt(2 * P))).toBe(BigInt(2 * P));
      const unknown = 0x3bff; // _IO(';', 0xff): no iommufd or VFIO command
      expect(() => both.ioctl(ctx.fd, unknown, new Uint8Array(8).fill(0xab))).toThrow(IommuError);
      toFile.end();
      const fromFile = readTrace(readFileSync(file, 'utf8'));
      expect(seen[0]).toMatchObject({ machine: fromFile[0]!.machine, backend: BACKEND });
      expect(fromFile.slice(1)).toEqual(calls(seen));
      const io = fromFile.filter((r): r is TraceCall => (r as TraceCall).syscall === 'ioctl');
      expect(io.map((r) => `${r.name}${r.errno ? ` ${r.errno}` : ''}`)).toEqual([
        'IOMMU_IOAS_ALLOC', 'IOMMU_IOAS_MAP', 'IOMMU_IOAS_MAP EEXIST', 'IOMMU_IOAS_IOVA_RANGES', 'IOMMU_IOAS_UNMAP', 'null ENOTTY',
      ]);
      const [alloc, map, , ranges, unmap, raw] = io;
      expect(alloc!.path).toBe('/dev/iommu');
      expect(map!.in).toMatchObject({ ioas_id: alloc!.out!.out_ioas_id, user_va: hex(mem.addr), length: '0x2000', iova: '0x100000', flags: 5 });
      expect((ranges!.out as { ranges: unknown[] }).ranges).toEqual(ioas.iovaRanges().ranges.map((r) => ({ start: hex(r.start), last: hex(r.last) })));
      expect(unmap!.out).toMatchObject({ length: '0x2000' });
      expect(raw).toMatchObject({ request: unknown, name: null, in: null, out: null, in_hex: 'ab'.repeat(8), result: -1, errno: 'ENOTTY' });
    } finally {
      rmSync(file, { force: true });
    }
  });
});

describe('trace: reading', () => {
  const header = '{"trace":"ioasid","version":1,"backend":"linux","machine":"m","pid":1,"start":"2026-01-01T00:00:00.000Z","page_size":4096}';
  const map = '{"seq":0,"syscall":"ioctl","fd":3,"path":"/dev/vfio/vfio","request":15217,"in_hex":"2000000003000000001000000000000000001000000000000020000000000000","out_hex":"2000000003000000001000000000000000001000000000000020000000000000","result":0,"errno":null,"tid":7}';

  it('a producer may write only the raw bytes: the reader names and decodes them, and keeps fields it does not know', () => {
    const [h, r] = readTrace(`${header}\n\n${map}\r\n`);
    expect(h).toMatchObject({ trace: 'ioasid', version: 1 });
    expect(r).toMatchObject({
      name: 'VFIO_IOMMU_MAP_DMA', tid: 7,
      in: { argsz: 32, flags: 3, vaddr: '0x1000', iova: '0x100000', size: '0x2000' },
    });
  });

  it.each([
    ['{"trace":"ioasid","version":2}', 1, /version 2/],
    [map, 1, /not a header/],
    [`${header}\n${map}\n{"seq":1,"syscall":"ioctl"`, 3, /not JSON/],
    [`${header}\n${map}\n${map}`, 3, /seq 0 does not follow 0/],
    [`${header}\n{"seq":0,"syscall":"close","fd":3,"result":0,"errno":"bad"}`, 2, /errno/],
    [`${header}\n{"seq":0,"syscall":"ioctl","fd":3,"result":0,"errno":null}`, 2, /request/],
    [`${header}\n{"seq":0,"syscall":"ioctl","fd":3,"request":1,"in_hex":"abc","result":0,"errno":null}`, 2, /hex/],
    [`${header}\n[1,2]`, 2, /not a JSON object/],
    [`${header}\n${header}`, 2, /second header/],
    ['', 1, /no header/],
  ])('refuses %j at line %i', (text, line, message) => {
    try {
      readTrace(text);
    } catch (e) {
      expect(e).toBeInstanceOf(TraceFormatError);
      expect((e as TraceFormatError).line).toBe(line);
      expect((e as Error).message).toMatch(message);
      expect((e as Error).message).toMatch(`trace line ${line}:`);
      return;
    }
    throw new Error('readTrace accepted it');
  });
});

// ---- replay -------------------------------------------------------------------------------------

describe('trace: the replay plan', () => {
  const header = { trace: 'ioasid', version: 1, backend: 'linux', machine: 'm', pid: 1, start: '', page_size: 4096 } as const;
  /** A MAP_DMA record as a bridge would write it: raw bytes only, no mmap seen. */
  const mapDma = (seq: number, vaddr: bigint, iova: bigint, size: bigint): TraceCall => {
    const b = new DataView(new ArrayBuffer(32));
    b.setUint32(0, 32, true);
    b.setUint32(4, 3, true);
    b.setBigUint64(8, vaddr, true);
    b.setBigUint64(16, iova, true);
    b.setBigUint64(24, size, true);
    const h = Buffer.from(b.buffer).toString('hex');
    return { seq, syscall: 'ioctl', fd: 3, path: '/dev/vfio/vfio', request: V.VFIO_IOMMU_MAP_DMA, in_hex: h, out_hex: h, result: 0, errno: null };
  };

  it('without recorded mmaps, buffers are the pages the maps touch, overlapping or adjacent ranges together, offsets kept', () => {
    const text = formatTrace([
      header,
      mapDma(0, 0x10000n, 0x100000n, 0x2000n),
      mapDma(1, 0x11800n, 0x200000n, 0x1000n), // inside the first range's pages, unaligned
      mapDma(2, 0x12000n, 0x300000n, 0x1000n), // adjacent: the same buffer
      mapDma(3, 0x40000n, 0x400000n, 0x1000n), // elsewhere: a buffer of its own
    ]);
    const plan = replayPlan(readTrace(text));
    expect(plan.buffers).toEqual([0x3000, 0x1000]);
    expect(plan.steps.map((s) => (s.op === 'map' ? [s.buffer, hex(s.offset), hex(s.iova), hex(s.size)] : s.op))).toEqual([
      [0, '0x0', '0x100000', '0x2000'], [0, '0x1800', '0x200000', '0x1000'], [0, '0x2000', '0x300000', '0x1000'],
      [1, '0x0', '0x400000', '0x1000'],
    ]);
  });

  it('IOMMU_IOAS_MAP_FILE: one buffer per file, the maps at their file offsets', () => {
    const map = (seq: number, start: string, length: string, iova: string): TraceCall => {
      const fields = { ioas_id: 1, flags: 7, fd: 5, start, length, iova };
      return { seq, syscall: 'ioctl', fd: 3, path: '/dev/iommu', request: 0, name: 'IOMMU_IOAS_MAP_FILE', in: fields, out: fields, in_hex: '', out_hex: '', result: 0, errno: null };
    };
    const plan = replayPlan([
      header,
      { seq: 0, syscall: 'memfd_create', memfd_name: 'buf', flags: 1, path: '/memfd:buf (deleted)', result: 5, errno: null },
      map(1, '0x0', '0x2000', '0x100000'),
      map(2, '0x1000', '0x1000', '0x200000'),
    ]);
    expect(plan.buffers).toEqual([0x2000]);
    expect(plan.steps.map((s) => (s.op === 'map' ? [s.buffer, hex(s.offset), hex(s.iova)] : s.op))).toEqual([[0, '0x0', '0x100000'], [0, '0x1000', '0x200000']]);
  });

  it('a native trace: the device from its cdev through the trace\'s sysfs reads, setup folded, other IOASes skipped', () => {
    const ioctl = (seq: number, fd: number, path: string, name: string, fields: { in?: Decoded; out?: Decoded }, errno: string | null = null): TraceCall =>
      ({ seq, syscall: 'ioctl', fd, path, request: 0, name, in: fields.in ?? {}, out: fields.out ?? fields.in ?? {}, in_hex: '', out_hex: '', result: errno ? -1 : 0, errno });
    const records: TraceRecord[] = [
      header,
      { seq: 0, syscall: 'readdir', path: '/sys/bus/pci/devices/0000:00:04.0/vfio-dev', result: ['vfio3'], errno: null },
      ioctl(1, 3, '/dev/iommu', 'IOMMU_IOAS_ALLOC', { out: { out_ioas_id: 1 } }),
      ioctl(2, 3, '/dev/iommu', 'IOMMU_IOAS_ALLOC', { out: { out_ioas_id: 2 } }),
      ioctl(3, 4, '/dev/vfio/devices/vfio3', 'VFIO_DEVICE_BIND_IOMMUFD', { in: { iommufd: 3 } }),
      ioctl(4, 4, '/dev/vfio/devices/vfio3', 'VFIO_DEVICE_ATTACH_IOMMUFD_PT', { in: { pt_id: 2 } }),
      ioctl(5, 3, '/dev/iommu', 'IOMMU_IOAS_MAP', { in: { ioas_id: 1, flags: 7, user_va: '0x10000', length: '0x1000', iova: '0x0' } }),
      ioctl(6, 3, '/dev/iommu', 'IOMMU_IOAS_MAP', { in: { ioas_id: 2, flags: 6, user_va: '0x10000', length: '0x1000', iova: '0x0' }, out: { iova: '0x5000' } }),
      ioctl(7, 3, '/dev/iommu', 'IOMMU_IOAS_IOVA_RANGES', { in: { ioas_id: 2 } }, 'EMSGSIZE'),
      ioctl(8, 3, '/dev/iommu', 'IOMMU_IOAS_IOVA_RANGES', { in: { ioas_id: 2 } }),
      ioctl(9, 3, '/dev/iommu', 'IOMMU_IOAS_UNMAP', { in: { ioas_id: 2, iova: '0x0', length: '0xffffffffffffffff' } }),
      ioctl(10, 4, '/dev/vfio/devices/vfio3', 'VFIO_DEVICE_RESET', {}),
    ];
    const plan = replayPlan(records);
    expect(plan.steps).toEqual([
      { seq: 3, op: 'openDevice', bdf: '0000:00:04.0' },
      { seq: 6, op: 'map', buffer: 0, offset: 0n, iova: 0x5000n, size: 0x1000n, read: true, write: true },
      { seq: 8, op: 'iovaRanges' },
      { seq: 9, op: 'unmapAll' },
    ]);
    expect(plan.skipped.map((k) => `${k.seq} ${k.name}: ${k.why.split(':')[0]}`)).toEqual([
      '1 IOMMU_IOAS_ALLOC: folded into openDevice', '2 IOMMU_IOAS_ALLOC: folded into openDevice',
      '4 VFIO_DEVICE_ATTACH_IOMMUFD_PT: folded into openDevice', '5 IOMMU_IOAS_MAP: IOAS 1',
      '7 IOMMU_IOAS_IOVA_RANGES: a size probe', '10 VFIO_DEVICE_RESET: a device command',
    ]);
  });
});

/**
 * The program recorded and replayed: a device, a 4-page buffer mapped whole and one page of it
 * mapped again elsewhere (a sub-range of the same buffer), an overlapping map, an unmap inside the
 * first mapping, an unmap of the page, an unmap where nothing is, unmap-all, IOVA ranges.
 */
const program: Scenario = (s) => {
  const attempt = (fn: () => unknown): void => {
    try {
      fn();
    } catch (e) {
      if (!(e instanceof IommuError)) throw e;
    }
  };
  s.openDevice(solo!);
  s.iovaRanges();
  const mem = s.alloc(4 * P);
  s.map({ mem, iova: 0x100000n });
  s.map({ vaddr: mem.addr + BigInt(P), size: BigInt(P), iova: 0x200000n });
  attempt(() => s.map({ mem, iova: 0x102000n }));
  attempt(() => s.unmap({ iova: 0x101000n, size: BigInt(P) }));
  attempt(() => s.unmap({ iova: 0x200000n, size: BigInt(P) }));
  attempt(() => s.unmap({ iova: 0x300000n, size: BigInt(P) }));
  s.unmapAll();
  s.iovaRanges();
};

/** The session calls of `scenario` in `mode`, optionally recording its trace. */
async function run(mode: IommuModeName, scenario: Scenario, trace?: TraceRecord[]): Promise<SessionCall[]> {
  const out: SessionCall[] = [];
  const binding = openBinding(BACKEND);
  using s = IommuSession.init(mode, trace ? traceBinding(binding, trace) : binding, { onCall: (c) => out.push(c) });
  await scenario(s);
  return out;
}

const outcome = (c: SessionCall): string => c.errno ?? (Array.isArray(c.result) ? 'ranges' : String(c.result));
const show = (c: SessionCall): string => `${c.op}${c.args.iova ? ` ${c.args.iova}+${c.args.size}` : ''}`;

/** Where a replay's calls differ from the recording's: 'op args: recorded -> replayed'. */
function differences(recorded: readonly SessionCall[], replayed: readonly SessionCall[]): string[] {
  expect(replayed.map(show)).toEqual(recorded.map(show));
  return recorded.flatMap((c, i) => {
    const r = replayed[i]!;
    return outcome(c) === outcome(r) && JSON.stringify(c.result, (_, v) => (typeof v === 'bigint' ? hex(v) : v)) === JSON.stringify(r.result, (_, v) => (typeof v === 'bigint' ? hex(v) : v))
      ? [] : [`${show(c)}: ${outcome(c)} -> ${outcome(r)}`];
  });
}

/**
 * What the test VM's kernel answered differently from the recording, per replay mode. The unmap
 * inside the 16 KiB mapping: type1v2 refuses to bisect (EINVAL, vfio_iommu_type1.c); type1 (v1)
 * unmaps the mappings that start in the range, none (0 bytes); iommufd's compat with TYPE1 cuts
 * the page out (4096, so unmap-all finds 12 KiB), with TYPE1v2 and natively IOMMU_IOAS_UNMAP
 * refuses a range that splits an area (ENOENT). The unmap where nothing is mapped: 0 bytes in
 * every container mode, ENOENT natively.
 */
const INSIDE = 'unmap 0x101000+0x1000';
const EMPTY = 'unmap 0x300000+0x1000';
const EXPECTED: Record<'vfio_type1v2_iommu' | 'iommufd', Record<IommuModeName, string[]>> = {
  vfio_type1v2_iommu: {
    vfio_type1_iommu: [`${INSIDE}: EINVAL -> 0x0`],
    vfio_type1v2_iommu: [],
    iommufd_compat_type1: [`${INSIDE}: EINVAL -> 0x1000`, 'unmapAll: 0x4000 -> 0x3000'],
    iommufd_compat_type1v2: [`${INSIDE}: EINVAL -> ENOENT`],
    iommufd: [`${INSIDE}: EINVAL -> ENOENT`, `${EMPTY}: 0x0 -> ENOENT`],
    ioasid_compat: [`${INSIDE}: EINVAL -> ENOENT`],
  },
  iommufd: {
    vfio_type1_iommu: [`${INSIDE}: ENOENT -> 0x0`, `${EMPTY}: ENOENT -> 0x0`],
    vfio_type1v2_iommu: [`${INSIDE}: ENOENT -> EINVAL`, `${EMPTY}: ENOENT -> 0x0`],
    iommufd_compat_type1: [`${INSIDE}: ENOENT -> 0x1000`, `${EMPTY}: ENOENT -> 0x0`, 'unmapAll: 0x4000 -> 0x3000'],
    iommufd_compat_type1v2: [`${EMPTY}: ENOENT -> 0x0`],
    iommufd: [],
    ioasid_compat: [`${EMPTY}: ENOENT -> 0x0`],
  },
};

for (const recordedIn of ['vfio_type1v2_iommu', 'iommufd'] as const) {
  const recSkip = modeSkip(recordedIn);
  describe(`trace: a ${recordedIn} recording replayed [${BACKEND}]`, () => {
    for (const mode of IOMMU_MODE_NAMES) {
      const skip = recSkip || modeSkip(mode);
      it.skipIf(!!skip)(`in ${mode}: the calls of the program run there, differing from the recording as the kernel does${why(skip)}`, async () => {
        const release = claimDevices([solo!]);
        try {
          const trace: TraceRecord[] = [];
          const recorded = await run(recordedIn, program, trace);
          const records = readTrace(formatTrace(trace));
          const plan = replayPlan(records);
          expect(plan.steps.map((s) => s.op)).toEqual(recorded.map((c) => c.op));
          expect(plan.buffers).toEqual([4 * P]);
          const replayed = await run(mode, traceScenario(records));
          expect(replayed).toEqual(await run(mode, program));
          expect(differences(recorded, replayed)).toEqual(EXPECTED[recordedIn][mode]);
        } finally {
          release();
        }
      });
    }
  });
}
