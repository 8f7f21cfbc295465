/**
 * A recorded trace as a Scenario: its DMA-relevant calls replayed in any IOMMU mode through
 * IommuSession's calls (docs/trace.md, "Replay"). Container commands and native iommufd commands
 * both become session calls (map, unmap, unmapAll, iovaRanges, openDevice); the setup every mode
 * does its own way (SET_IOMMU, SET_CONTAINER, IOAS_ALLOC, ATTACH, ...) is folded into openDevice;
 * anything else is listed as skipped with the reason. Process memory is re-created per recorded
 * buffer, with the same sizes and offsets, so sub-range maps of one buffer stay sub-ranges.
 */
import { IommuError } from '../ioasid/errors.js';
import {
  IOMMU_IOAS_MAP_FIXED_IOVA, IOMMU_IOAS_MAP_READABLE, IOMMU_IOAS_MAP_WRITEABLE, U64_MAX,
} from '../ioasid/uapi.js';
import {
  VFIO_DMA_MAP_FLAG_READ, VFIO_DMA_MAP_FLAG_VADDR, VFIO_DMA_MAP_FLAG_WRITE, VFIO_DMA_UNMAP_FLAG_ALL,
} from '../ioasid/vfio_uapi.js';
import type { IommuSession, Scenario } from './modes.js';
import { isHeader, type TraceCall, type TraceRecord } from './trace.js';
import type { Decoded } from './trace_decode.js';
import type { UserMemory } from '../ioasid/memory.js';

/** One session call the replay makes. */
export type ReplayStep =
  | { readonly seq: number; readonly op: 'openDevice'; readonly bdf: string }
  | {
    readonly seq: number; readonly op: 'map'; readonly buffer: number; readonly offset: bigint;
    readonly iova: bigint; readonly size: bigint; readonly read: boolean; readonly write: boolean;
  }
  | { readonly seq: number; readonly op: 'unmap'; readonly iova: bigint; readonly size: bigint }
  | { readonly seq: number; readonly op: 'unmapAll' | 'iovaRanges' };

/** A recorded ioctl the replay does not make, and why. */
export interface SkippedCall {
  readonly seq: number;
  readonly name: string;
  readonly why: string;
}

export interface ReplayPlan {
  readonly steps: readonly ReplayStep[];
  /** The byte length of each buffer the replay allocates (steps name them by index). */
  readonly buffers: readonly number[];
  readonly skipped: readonly SkippedCall[];
}

const FOLDED = 'folded into openDevice: each mode sets up its container or IOAS its own way';
const WHY: Readonly<Record<string, string>> = {
  VFIO_GET_API_VERSION: FOLDED, VFIO_CHECK_EXTENSION: FOLDED, VFIO_SET_IOMMU: FOLDED, VFIO_GROUP_GET_STATUS: FOLDED,
  IOMMU_IOAS_ALLOC: FOLDED, VFIO_DEVICE_ATTACH_IOMMUFD_PT: FOLDED,
  IOMMU_VFIO_IOAS: 'the container\'s IOAS: a mode detail',
  VFIO_GROUP_UNSET_CONTAINER: 'teardown: the session closes what it opened',
  VFIO_DEVICE_DETACH_IOMMUFD_PT: 'teardown: the session closes what it opened',
  IOMMU_DESTROY: 'teardown: the session closes what it opened',
};
const DEVICE_COMMAND = 'a device command: the same in every mode, not part of the IOMMU mode';
const NO_EQUIVALENT = 'no equivalent in every mode';

/** A "0x…" or number field as a bigint (undefined when absent). */
function big(d: Decoded | null | undefined, field: string): bigint | undefined {
  const v = d?.[field];
  return typeof v === 'string' || typeof v === 'number' ? BigInt(v) : undefined;
}
const num = (d: Decoded | null | undefined, field: string): number => (typeof d?.[field] === 'number' ? (d[field] as number) : 0);

const BDF = /^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]/i;

/** A buffer of process memory as the trace saw it: a live mmap, or a cluster of mapped addresses. */
interface Buffer {
  start: bigint;
  end: bigint;
}

/**
 * Where replayed maps take their memory from. A recorded address inside a live recorded mmap
 * maps the same offset of a buffer of that mmap's length; other addresses are grouped into
 * clusters (overlapping or touching ranges, widened to pages), one buffer each.
 */
class Buffers {
  readonly lengths: number[] = [];
  private readonly live = new Map<string, { start: bigint; end: bigint; index: number }>();
  private readonly clusters = new Map<string, Buffer[]>();
  private readonly pending: { key: string; start: bigint; end: bigint; fix: (buffer: number, offset: bigint) => void }[] = [];

  constructor(private readonly page: bigint) {}

  mmap(addr: bigint, length: bigint): void {
    this.munmap(addr, length);
    this.live.set(addr.toString(), { start: addr, end: addr + length, index: -1 });
  }

  munmap(addr: bigint, length: bigint): void {
    for (const [k, m] of this.live) if (m.start < addr + length && addr < m.end) this.live.delete(k);
  }

  /** The buffer and offset for [addr, addr+size) in namespace `key`; `fix` gets them (at finish() for clusters). */
  place(key: string, addr: bigint, size: bigint, fix: (buffer: number, offset: bigint) => void): void {
    if (key === 'process') {
      for (const m of this.live.values()) {
        if (m.start > addr || addr + size > m.end) continue;
        if (m.index < 0) m.index = this.lengths.push(Number(m.end - m.start)) - 1;
        return fix(m.index, addr - m.start);
      }
    }
    const start = (addr / this.page) * this.page;
    const end = ((addr + (size > 0n ? size : 1n) + this.page - 1n) / this.page) * this.page;
    const list = this.clusters.get(key) ?? [];
    this.clusters.set(key, list);
    list.push({ start, end });
    this.pending.push({ key, start: addr, end, fix });
  }

  /** Merge the clusters and give each pending range its buffer. */
  finish(): void {
    const merged = new Map<string, { start: bigint; end: bigint; index: number }[]>();
    for (const [key, list] of this.clusters) {
      const sorted = [...list].sort((a, b) => (a.start < b.start ? -1 : a.start > b.start ? 1 : 0));
      const out: { start: bigint; end: bigint; index: number }[] = [];
      for (const r of sorted) {
        const last = out[out.length - 1];
        if (last && r.start <= last.end) last.end = r.end > last.end ? r.end : last.end;
        else out.push({ ...r, index: -1 });
      }
      for (const c of out) {
        c.index = this.lengths.length;
        this.lengths.push(Number(c.end - c.start));
      }
      merged.set(key, out);
    }
    for (const p of this.pending) {
      const c = merged.get(p.key)!.find((x) => x.start <= p.start && p.start < x.end)!;
      p.fix(c.index, p.start - c.start);
    }
  }
}

/** The PCI address a GET_DEVICE_FD asked for (the start of the name), or undefined. */
const deviceBdf = (r: TraceCall): string | undefined => BDF.exec(String(r.in?.name ?? ''))?.[0]?.toLowerCase();

/** The first GET_DEVICE_FD on the group fd of `setContainer`, before that fd is closed. */
function firstDeviceFd(calls: readonly TraceCall[], setContainer: TraceCall): TraceCall | undefined {
  for (const r of calls) {
    if (r.seq <= setContainer.seq || r.fd !== setContainer.fd) continue;
    if (r.syscall === 'close') return undefined;
    if (r.name === 'VFIO_GROUP_GET_DEVICE_FD') return r;
  }
  return undefined;
}

/** The PCI device behind a cdev path, from the trace's own sysfs reads (null when it has none). */
function cdevOwners(records: readonly TraceCall[]): Map<string, string> {
  const owners = new Map<string, string>();
  for (const r of records) {
    const m = r.syscall === 'readdir' && typeof r.path === 'string' ? /\/sys\/bus\/pci\/devices\/([^/]+)\/vfio-dev$/.exec(r.path) : null;
    if (m && Array.isArray(r.result)) for (const n of r.result) owners.set(`/dev/vfio/devices/${n}`, m[1]!);
    const l = r.syscall === 'readlink' && typeof r.path === 'string' ? /^\/sys\/class\/vfio-dev\/(vfio\d+)\/device$/.exec(r.path) : null;
    if (l && typeof r.result === 'string') owners.set(`/dev/vfio/devices/${l[1]}`, r.result.split('/').pop()!);
  }
  return owners;
}

/**
 * The replay of `records`: which session call each recorded ioctl becomes, the buffers to
 * allocate, and what is skipped. Native IOAS commands are replayed for one IOAS: the one the first
 * device was attached to (else the first one allocated); commands on others are skipped.
 */
export function replayPlan(records: readonly TraceRecord[]): ReplayPlan {
  const header = records.find(isHeader);
  const calls = records.filter((r): r is TraceCall => !isHeader(r));
  const buffers = new Buffers(BigInt(header?.page_size ?? 4096));
  const owners = cdevOwners(calls);
  const steps: (ReplayStep | null)[] = [];
  const skipped: SkippedCall[] = [];
  const ioas = replayedIoas(calls);
  /** GET_DEVICE_FD seq -> the SET_CONTAINER seq its openDevice was made at. */
  const folded = new Map<number, number>();
  const skip = (r: TraceCall, why: string): void => void skipped.push({ seq: r.seq, name: r.name ?? `ioctl(0x${(r.request ?? 0).toString(16)})`, why });

  for (const r of calls) {
    if (r.syscall === 'mmap' && r.errno === null && typeof r.result === 'string') buffers.mmap(BigInt(r.result), BigInt(r.length as number));
    if (r.syscall === 'munmap' && r.errno === null) buffers.munmap(BigInt(r.addr as string), BigInt(r.length as number));
    if (r.syscall !== 'ioctl') continue;
    const name = r.name ?? '';
    const ind = r.in;
    const onIoas = (): boolean => {
      if (ioas === null || (ioas.fd === r.fd && ioas.id === num(ind, 'ioas_id'))) return true;
      skip(r, `IOAS ${num(ind, 'ioas_id')}: not the IOAS the replay follows (${ioas.id})`);
      return false;
    };
    const map = (key: string, addr: bigint, iova: bigint, size: bigint, read: boolean, write: boolean): void => {
      const i = steps.push(null) - 1;
      buffers.place(key, addr, size, (buffer, offset) => {
        steps[i] = { seq: r.seq, op: 'map', buffer, offset, iova, size, read, write };
      });
    };
    switch (name) {
      case 'VFIO_IOMMU_MAP_DMA': {
        const flags = num(ind, 'flags');
        if (flags & VFIO_DMA_MAP_FLAG_VADDR) skip(r, 'VFIO_DMA_MAP_FLAG_VADDR (UPDATE_VADDR): type1 only');
        else map('process', big(ind, 'vaddr') ?? 0n, big(ind, 'iova') ?? 0n, big(ind, 'size') ?? 0n,
          (flags & VFIO_DMA_MAP_FLAG_READ) !== 0, (flags & VFIO_DMA_MAP_FLAG_WRITE) !== 0);
        break;
      }
      case 'VFIO_IOMMU_UNMAP_DMA': {
        const flags = num(ind, 'flags');
        if (flags === VFIO_DMA_UNMAP_FLAG_ALL) steps.push({ seq: r.seq, op: 'unmapAll' });
        else if (flags) skip(r, `UNMAP_DMA flags 0x${flags.toString(16)} (dirty bitmap, VADDR): ${NO_EQUIVALENT}`);
        else steps.push({ seq: r.seq, op: 'unmap', iova: big(ind, 'iova') ?? 0n, size: big(ind, 'size') ?? 0n });
        break;
      }
      case 'VFIO_IOMMU_GET_INFO':
        // argsz raised past what was given: the first half of a size probe, asked again with room for the capabilities
        if (r.errno === null && num(r.out, 'argsz') > num(ind, 'argsz')) skip(r, 'a size probe: the next GET_INFO is the call');
        else steps.push({ seq: r.seq, op: 'iovaRanges' });
        break;
      case 'VFIO_GROUP_SET_CONTAINER': {
        // the group's devices can do DMA from here: its first device is opened now
        const get = r.errno === null ? firstDeviceFd(calls, r) : undefined;
        const bdf = get && deviceBdf(get);
        if (!bdf) skip(r, FOLDED);
        else {
          steps.push({ seq: r.seq, op: 'openDevice', bdf });
          folded.set(get!.seq, r.seq);
        }
        break;
      }
      case 'VFIO_GROUP_GET_DEVICE_FD': {
        const bdf = deviceBdf(r);
        if (folded.has(r.seq)) skip(r, `folded into openDevice at the group's SET_CONTAINER (seq ${folded.get(r.seq)})`);
        else if (bdf) steps.push({ seq: r.seq, op: 'openDevice', bdf });
        else skip(r, `device ${JSON.stringify(ind?.name)} is not a PCI address`);
        break;
      }
      case 'VFIO_DEVICE_BIND_IOMMUFD': {
        const bdf = owners.get(String(r.path)) ?? (typeof r.path === 'string' && r.path.startsWith('/dev/vfio/devices/') ? `cdev:${r.path}` : null);
        if (bdf) steps.push({ seq: r.seq, op: 'openDevice', bdf });
        else skip(r, 'BIND on a device fd that is not a cdev');
        break;
      }
      case 'IOMMU_IOAS_MAP':
      case 'IOMMU_IOAS_MAP_FILE': {
        if (!onIoas()) break;
        const flags = num(ind, 'flags');
        const fixed = (flags & IOMMU_IOAS_MAP_FIXED_IOVA) !== 0;
        const iova = fixed ? big(ind, 'iova') : r.errno === null ? big(r.out, 'iova') : undefined;
        if (iova === undefined) {
          skip(r, 'a map without FIXED_IOVA that the kernel refused: no IOVA to replay it at');
          break;
        }
        const file = name === 'IOMMU_IOAS_MAP_FILE';
        const fdPath = file ? pathAt(calls, num(ind, 'fd'), r.seq) : null;
        map(file ? `file:${fdPath ?? num(ind, 'fd')}` : 'process', big(ind, file ? 'start' : 'user_va') ?? 0n, iova,
          big(ind, 'length') ?? 0n, (flags & IOMMU_IOAS_MAP_READABLE) !== 0, (flags & IOMMU_IOAS_MAP_WRITEABLE) !== 0);
        break;
      }
      case 'IOMMU_IOAS_UNMAP': {
        if (!onIoas()) break;
        const iova = big(ind, 'iova') ?? 0n;
        const length = big(ind, 'length') ?? 0n;
        steps.push(iova === 0n && length === U64_MAX ? { seq: r.seq, op: 'unmapAll' } : { seq: r.seq, op: 'unmap', iova, size: length });
        break;
      }
      case 'IOMMU_IOAS_IOVA_RANGES':
        if (!onIoas()) break;
        if (r.errno === 'EMSGSIZE') skip(r, 'a size probe: the next IOVA_RANGES is the call');
        else steps.push({ seq: r.seq, op: 'iovaRanges' });
        break;
      default:
        skip(r, WHY[name] ?? (name.startsWith('VFIO_DEVICE_') ? DEVICE_COMMAND : NO_EQUIVALENT));
    }
  }
  buffers.finish();
  return { steps: steps.filter((s): s is ReplayStep => s !== null), buffers: buffers.lengths, skipped };
}

/** The path fd `fd` referred to just before `seq`: the last call that named it or made it. */
function pathAt(calls: readonly TraceCall[], fd: number, seq: number): string | null {
  for (let i = calls.length - 1; i >= 0; i--) {
    const c = calls[i]!;
    if (c.seq >= seq) continue;
    if (c.fd === fd && typeof c.path === 'string') return c.path;
    if (c.result === fd && c.errno === null && ['open', 'memfd_create'].includes(c.syscall)) return typeof c.path === 'string' ? c.path : null;
  }
  return null;
}

/** The IOAS native commands are replayed on: (iommufd fd, id) of the first device's attach, else of the first IOAS_ALLOC. */
function replayedIoas(calls: readonly TraceCall[]): { fd: number; id: number } | null {
  const ok = (r: TraceCall, name: string): boolean => r.syscall === 'ioctl' && r.name === name && r.errno === null;
  const allocs = calls.filter((r) => ok(r, 'IOMMU_IOAS_ALLOC'));
  const attach = calls.find((r) => ok(r, 'VFIO_DEVICE_ATTACH_IOMMUFD_PT') && allocs.some((a) => num(a.out, 'out_ioas_id') === num(r.in, 'pt_id')));
  const alloc = attach ? allocs.find((a) => num(a.out, 'out_ioas_id') === num(attach.in, 'pt_id')) : allocs[0];
  return alloc ? { fd: alloc.fd!, id: num(alloc.out, 'out_ioas_id') } : null;
}

/** The PCI address of a cdev, through the replaying machine's sysfs. */
function cdevBdf(s: IommuSession, cdev: string): string {
  const name = cdev.split('/').pop()!;
  return s.binding.readlink(`/sys/class/vfio-dev/${name}/device`).split('/').pop()!;
}

/**
 * A Scenario replaying `records` (see replayPlan): each step is the session's call, its refusal
 * (an IommuError, which the session has reported) does not stop the replay.
 */
export function traceScenario(records: readonly TraceRecord[]): Scenario {
  const plan = replayPlan(records);
  return (s) => {
    const mems: (UserMemory | undefined)[] = [];
    for (const step of plan.steps) {
      try {
        switch (step.op) {
          case 'openDevice':
            s.openDevice(step.bdf.startsWith('cdev:') ? cdevBdf(s, step.bdf.slice(5)) : step.bdf);
            break;
          case 'map': {
            const mem = (mems[step.buffer] ??= s.alloc(plan.buffers[step.buffer]!));
            s.map({ vaddr: mem.addr + step.offset, iova: step.iova, size: step.size, read: step.read, write: step.write });
            break;
          }
          case 'unmap':
            s.unmap({ iova: step.iova, size: step.size });
            break;
          case 'unmapAll':
            s.unmapAll();
            break;
          case 'iovaRanges':
            s.iovaRanges();
            break;
        }
      } catch (e) {
        if (!(e instanceof IommuError)) throw e;
      }
    }
  };
}
