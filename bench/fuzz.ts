/**
 * A seeded fuzzer of the sim's whole syscall surface: every ioctl of the uAPI tables (iommufd's,
 * the selftest command's ops, the VFIO type1 container commands on an iommufd, the VFIO device
 * commands on the machine's vfio-pci cdevs and on a group's device fd, the legacy container's type1
 * commands and the group commands on /dev/vfio/vfio and /dev/vfio/N) and every Binding syscall (read, write, pread, pwrite,
 * mmap, munmap, ftruncate, poll, close, open, eventfd, memfd_create, view) on every kind of
 * descriptor, with random and structurally plausible arguments: ids the sim handed out mixed with
 * garbage, sizes around the struct sizes, pointers into mapped and unmapped memory.
 *
 * Each call is checked: it may only throw IommuError; it must return within 1 s; and a refused
 * call must leave the sim's state exactly as it was (a fingerprint of every object reachable from
 * the kernel and the process, compared before and after). The few refusals Linux itself lets
 * change state are listed in PARTIAL_OK.
 *
 *   node dist/bench/fuzz.js [--seed N] [--count N] [--reset N]   (after `tsc -p tsconfig.json`)
 *
 * test/fuzz.test.ts runs a slice of it in the sim tier.
 */
import { pathToFileURL } from 'node:url';
import { sim, type SimBinding } from '../src/backends/sim/index.js';
import {
  EFD_NONBLOCK, MAP_ANONYMOUS, MAP_FIXED, MAP_HUGETLB, MAP_PRIVATE, MAP_SHARED, POLLIN, POLLOUT, PROT_READ, PROT_WRITE,
} from '../src/backends/types.js';
import { IommuError } from '../src/ioasid/errors.js';
import {
  IOCTLS, IOMMU_HWPT_DATA_SELFTEST, IOMMU_HWPT_INVALIDATE_DATA_SELFTEST, IOMMU_HW_INFO_TYPE_SELFTEST,
  IOMMU_HW_QUEUE_TYPE_SELFTEST, IOMMU_TEST_CMD, IOMMU_TEST_OP, IOMMU_VEVENTQ_TYPE_SELFTEST, IOMMU_VIOMMU_TYPE_SELFTEST,
  MOCK_APERTURE_START, U64_MAX, iommu_test_cmd_members, type IoctlDesc, type StructLayout,
} from '../src/ioasid/uapi.js';
import * as vfio from '../src/ioasid/vfio_uapi.js';
import { VFIO_DEVICE_IOCTLS, VFIO_DEVICE_IOEVENTFD, VFIO_DEVICE_RESET } from '../src/device/uapi.js';
import { PageStore } from '../src/backends/sim/kernel/mm.js';
import { SpanList } from '../src/backends/sim/iommufd/area_list.js';
import { IoptPages } from '../src/backends/sim/iommufd/pages.js';
import { Iommufd } from '../src/ioasid/iommufd.js';
import { IommufdTest } from '../src/testing.js';
import { VfioDevice } from '../src/device/vfio_device.js';

// ---- the seeded generator ----------------------------------------------------------------------

class Rng {
  constructor(private s: number) {}
  /** mulberry32 */
  u32(): number {
    let t = (this.s = (this.s + 0x6d2b79f5) | 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  }
  int(n: number): number {
    return this.u32() % n;
  }
  chance(p: number): boolean {
    return this.u32() / 2 ** 32 < p;
  }
  pick<T>(xs: readonly T[]): T {
    return xs[this.int(xs.length)]!;
  }
  u64(): bigint {
    return (BigInt(this.u32()) << 32n) | BigInt(this.u32());
  }
}

// ---- the command table -------------------------------------------------------------------------

/** One ioctl the fuzzer issues: its descriptor, the struct it lays out, and which fds take it. */
interface Cmd {
  readonly name: string;
  readonly request: number;
  readonly struct: StructLayout;
  readonly minSize: number;
  /** 'size' (iommufd) or 'argsz' (VFIO) leads the struct. */
  readonly sizeField: string;
  /** The kind of descriptor that takes it (the sim file's kind). */
  readonly target: 'iommufd' | 'vfio-device' | 'vfio-container' | 'vfio-group';
  /** For IOMMU_TEST_CMD: the op. */
  readonly op?: number;
}

const MEMBER_OF_OP: Record<keyof typeof IOMMU_TEST_OP, keyof typeof iommu_test_cmd_members | null> = {
  ADD_RESERVED: 'add_reserved', MOCK_DOMAIN: 'mock_domain', MD_CHECK_MAP: 'check_map', MD_CHECK_REFS: 'check_refs',
  CREATE_ACCESS: 'create_access', DESTROY_ACCESS_PAGES: 'destroy_access_pages', ACCESS_PAGES: 'access_pages',
  ACCESS_RW: 'access_rw', SET_TEMP_MEMORY_LIMIT: 'memory_limit', MOCK_DOMAIN_REPLACE: 'mock_domain_replace',
  ACCESS_REPLACE_IOAS: 'access_replace_ioas', MOCK_DOMAIN_FLAGS: 'mock_domain_flags', DIRTY: 'dirty',
  MD_CHECK_IOTLB: 'check_iotlb', TRIGGER_IOPF: 'trigger_iopf', DEV_CHECK_CACHE: 'check_dev_cache',
  TRIGGER_VEVENT: 'trigger_vevent', PASID_ATTACH: 'pasid_attach', PASID_REPLACE: 'pasid_replace',
  PASID_DETACH: 'pasid_detach', PASID_CHECK_HWPT: 'pasid_check', DMABUF_GET: 'dmabuf_get', DMABUF_REVOKE: 'dmabuf_revoke',
};

function table(): Cmd[] {
  const out: Cmd[] = [];
  const add = (d: IoctlDesc, sizeField: string, target: Cmd['target']): void => {
    out.push({ name: d.name, request: d.request, struct: d.struct, minSize: d.minSize, sizeField, target });
  };
  for (const d of Object.values(IOCTLS)) add(d, 'size', 'iommufd');
  for (const [op, n] of Object.entries(IOMMU_TEST_OP)) {
    const member = MEMBER_OF_OP[op as keyof typeof IOMMU_TEST_OP];
    const m = member ? iommu_test_cmd_members[member] : null;
    // the header, the op's union member, and `last` (the struct's full size)
    const fields = [...IOMMU_TEST_CMD.struct.fields.filter((f) => f.name !== '__union'), ...(m?.fields ?? [])];
    out.push({
      name: `IOMMU_TEST_OP_${op}`, request: IOMMU_TEST_CMD.request, minSize: IOMMU_TEST_CMD.minSize,
      struct: { ...IOMMU_TEST_CMD.struct, fields }, sizeField: 'size', target: 'iommufd', op: n,
    });
  }
  // the type1 container commands: on an iommufd (vfio_compat.c) and on /dev/vfio/vfio (vfio_iommu_type1.c)
  const v = (name: string, request: number, s: StructLayout, minSize: number): void => {
    for (const target of ['iommufd', 'vfio-container'] as const) out.push({ name, request, struct: s, minSize, sizeField: 'argsz', target });
  };
  v('VFIO_IOMMU_GET_INFO', vfio.VFIO_IOMMU_GET_INFO, vfio.vfio_iommu_type1_info, vfio.GET_INFO_MINSZ);
  v('VFIO_IOMMU_MAP_DMA', vfio.VFIO_IOMMU_MAP_DMA, vfio.vfio_iommu_type1_dma_map, vfio.MAP_DMA_MINSZ);
  v('VFIO_IOMMU_UNMAP_DMA', vfio.VFIO_IOMMU_UNMAP_DMA, vfio.vfio_iommu_type1_dma_unmap, vfio.UNMAP_DMA_MINSZ);
  v('VFIO_IOMMU_DIRTY_PAGES', vfio.VFIO_IOMMU_DIRTY_PAGES, vfio.vfio_iommu_type1_dma_unmap, 8);
  out.push({
    name: 'VFIO_GROUP_GET_STATUS', request: vfio.VFIO_GROUP_GET_STATUS, struct: vfio.vfio_group_status,
    minSize: vfio.GROUP_STATUS_MINSZ, sizeField: 'argsz', target: 'vfio-group',
  });
  for (const d of Object.values(VFIO_DEVICE_IOCTLS)) add(d, 'argsz', 'vfio-device');
  return out;
}

/** ioctl(fd, request, integer) commands: the VFIO container's and the device's argument-less ones. */
const INT_CMDS: readonly { name: string; request: number; target: Cmd['target'] }[] = [
  { name: 'VFIO_GET_API_VERSION', request: vfio.VFIO_GET_API_VERSION, target: 'iommufd' },
  { name: 'VFIO_CHECK_EXTENSION', request: vfio.VFIO_CHECK_EXTENSION, target: 'iommufd' },
  { name: 'VFIO_SET_IOMMU', request: vfio.VFIO_SET_IOMMU, target: 'iommufd' },
  { name: 'VFIO_GET_API_VERSION', request: vfio.VFIO_GET_API_VERSION, target: 'vfio-container' },
  { name: 'VFIO_CHECK_EXTENSION', request: vfio.VFIO_CHECK_EXTENSION, target: 'vfio-container' },
  { name: 'VFIO_SET_IOMMU', request: vfio.VFIO_SET_IOMMU, target: 'vfio-container' },
  { name: 'VFIO_GROUP_UNSET_CONTAINER', request: vfio.VFIO_GROUP_UNSET_CONTAINER, target: 'vfio-group' },
  { name: 'VFIO_DEVICE_RESET', request: VFIO_DEVICE_RESET, target: 'vfio-device' },
  { name: 'VFIO_DEVICE_IOEVENTFD', request: VFIO_DEVICE_IOEVENTFD, target: 'vfio-device' },
];

/**
 * Refusals Linux itself lets change state, and where: an unmap stops at the first area it cannot
 * remove after removing the earlier ones (iopt_unmap_iova_range, vfio_compat's UNMAP_DMA);
 * HWPT_INVALIDATE handles entries until the first bad one; an MSI SET_IRQS whose block fails
 * has already released the triggers it replaced (vfio_msi_set_vector_signal frees the old one
 * before it looks at the new fd, and vfio_msi_set_block releases the whole block).
 */
export const PARTIAL_OK: ReadonlyMap<string, RegExp> = new Map([
  ['IOMMU_IOAS_UNMAP', /./], ['VFIO_IOMMU_UNMAP_DMA', /./], ['IOMMU_HWPT_INVALIDATE', /./],
  ['VFIO_DEVICE_SET_IRQS', /\.msiCtx$/],
]);

// ---- the state fingerprint ---------------------------------------------------------------------

/**
 * Keys that hold scratch space, unobservable placement, constant tables, caches or statistics, not
 * state: the sysfs tree, the ioctl scratch copy, a file's wait queue (the process's pending polls),
 * the dispatch table, the IOMMU units' IOTLB (a cache: what it holds shows only through DMA, which
 * the tests check) and a domain's count of IOTLB flushes and its IOTLB generation (a refused map
 * that unwinds what it mapped flushes, in the kernel too).
 */
const SKIP_KEYS = new Set(['vfs', 'ucmd', 'wq', 'ops', 'flushes', 'gen', 'tlbTarget', 'tlbBytes', 'tlbPfn', 'tlbGen', 'tlbOff', 'tlbWritable']);

/** FNV-1a over a typed array's bytes, four at a time where aligned. */
function hashBytes(v: ArrayBufferView): number {
  let h = 0x811c9dc5;
  if (v.byteOffset % 4 === 0 && v.byteLength % 4 === 0) {
    const a = new Int32Array(v.buffer, v.byteOffset, v.byteLength / 4);
    for (let i = 0; i < a.length; i++) h = Math.imul(h ^ a[i]!, 0x01000193);
  } else {
    const a = new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
    for (let i = 0; i < a.length; i++) h = Math.imul(h ^ a[i]!, 0x01000193);
  }
  return h >>> 0;
}

/**
 * Every value reachable from `root`, flattened in a fixed walk order (objects by identity, so a
 * shared object appears once and then as a back reference). A PageStore contributes its pin
 * counts, not its bytes. With `paths`, the path of each token is recorded too (slower).
 */
export function fingerprint(root: unknown, paths?: string[]): unknown[] {
  const out: unknown[] = [];
  const seen = new Map<object, number>();
  const sub = (path: string, k: string): string => (paths ? `${path}${k}` : '');
  const token = (t: unknown, path: string): void => {
    out.push(t);
    paths?.push(path);
  };
  const walk = (v: unknown, path: string): void => {
    if (v === null || typeof v !== 'object') {
      if (typeof v !== 'function' && typeof v !== 'symbol') token(v, path);
      return;
    }
    const id = seen.get(v);
    if (id !== undefined) return token(`@${id}`, path);
    seen.set(v, seen.size);
    if (ArrayBuffer.isView(v)) return token(`${v.constructor.name}:${v.byteLength}:${hashBytes(v)}`, path);
    if (v instanceof PageStore) return walk(v.pins, sub(path, '.pins'));
    if (v instanceof IoptPages && v.npinned === 0) {
      // nothing pinned: its per-page tables (allocated at the first pin) say nothing
      token('IoptPages:unpinned', path);
      for (const k of ['refs', 'accountMode', 'npages', 'writable', 'source', 'owner'] as const) walk(v[k], sub(path, `.${k}`));
      return;
    }
    if (v instanceof SpanList) {
      // its spans, not how its chunks happen to be cut
      token(`SpanList:${v.size}`, path);
      for (const x of v.range(0n, U64_MAX)) walk(x, sub(path, '[]'));
      return;
    }
    if (v instanceof Map) {
      token(`Map:${v.size}`, path);
      for (const [k, x] of v) {
        walk(k, sub(path, '<key>'));
        walk(x, sub(path, `[${typeof k === 'object' ? '?' : String(k)}]`));
      }
      return;
    }
    if (v instanceof Set) {
      token(`Set:${v.size}`, path);
      for (const x of v) walk(x, sub(path, '{}'));
      return;
    }
    if (v instanceof WeakMap || v instanceof WeakSet || v instanceof Promise) return;
    token(v.constructor?.name ?? 'Object', path);
    for (const k of Object.keys(v)) if (!SKIP_KEYS.has(k)) walk((v as Record<string, unknown>)[k], sub(path, `.${k}`));
  };
  walk(root, '');
  return out;
}

function firstDiff(a: unknown[], b: unknown[]): number {
  const n = Math.max(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return i;
  return -1;
}

// ---- the world: one simulated machine with descriptors, memory and ids to aim at ---------------

const P = 4096;
const HUGE = 2 * 1024 * 1024;

class World {
  readonly b: SimBinding;
  /** Mappings the fuzzer made: [address, length]. */
  readonly maps: [bigint, number][] = [];
  /** Object ids the sim handed out, by kind (the out_ field's name), and all of them. */
  readonly ids = new Map<string, Set<number>>([['any', new Set([0, 1, 2, 3])]]);

  addId(kind: string, id: number): void {
    for (const k of [kind, 'any']) {
      let set = this.ids.get(k);
      if (!set) this.ids.set(k, (set = new Set()));
      set.add(id);
    }
  }
  /** A page of memory the fuzzer fills with structured arrays (IOVA ranges, invalidations, bitmaps). */
  readonly scratch: bigint;
  /** Paths of the sim's sysfs and /dev, for readText/writeText/readlink/readdir. */
  readonly paths: string[] = [];

  /**
   * The machine as a program using it would leave it: two iommufds, each with two IOASes (one
   * with a mapping and a mock domain, one with an access), the solo edu bound to the first and
   * attached, the other edus' cdevs open; memory of every kind; eventfds. With `legacy`, group 2
   * (the edus behind the bridge) goes through the legacy API instead (its cdevs then stay closed:
   * the group path excludes them): worlds alternate between the two.
   */
  constructor(legacy: boolean) {
    this.b = sim();
    const b = this.b;
    const m = b.memfdCreate('fuzz', 1);
    b.ftruncate(m, 16 * P);
    this.maps.push([b.mmap(0n, 16 * P, PROT_READ | PROT_WRITE, MAP_SHARED, m, 0), 16 * P]);
    this.scratch = b.mmap(0n, 4 * P, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    this.maps.push([this.scratch, 4 * P]);
    this.maps.push([b.mmap(0n, HUGE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0), HUGE]);
    this.maps.push([b.mmap(0n, 8 * P, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0), 8 * P]);
    this.maps.push([b.mmap(0n, HUGE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS | MAP_HUGETLB, -1, 0), HUGE]);
    b.eventfd(0, EFD_NONBLOCK);
    b.eventfd(1, 0);
    const ctxs = [new Iommufd(b), new Iommufd(b)];
    for (const ctx of ctxs) {
      const t = new IommufdTest(ctx);
      const a = ctx.allocIoas();
      const c = ctx.allocIoas();
      a.mapUser(this.maps[2]![0], 16n * BigInt(P), { iova: MOCK_APERTURE_START });
      const md = t.mockDomain(a.id);
      t.createAccess(c.id);
      this.addId('ioas', a.id);
      this.addId('ioas', c.id);
      this.addId('stdev', md.stdevId);
      this.addId('hwpt', md.hwptId);
      this.addId('dev', md.idevId);
      this.deepObjects(ctx, md.idevId, a.id);
      ctx.setVfioIoas(a); // the VFIO compat container commands reach an IOAS
    }
    if (legacy) this.legacyGroup(b);
    else for (const name of b.readdir('/dev/vfio/devices')) b.open(`/dev/vfio/devices/${name}`, 2);
    const solo = VfioDevice.open(b, '0000:00:01.0');
    this.addId('dev', solo.bind(ctxs[0]!));
    this.addId('hwpt', solo.attach(2));
    const todo = ['/sys/bus/pci', '/sys/kernel/iommu_groups', '/sys/class', '/dev'];
    while (todo.length && this.paths.length < 600) {
      const dir = todo.shift()!;
      this.paths.push(dir);
      let names: string[];
      try {
        names = b.readdir(dir);
      } catch {
        continue;
      }
      for (const n of names) todo.push(`${dir}/${n}`);
    }
  }

  /**
   * Group 2 through the legacy API: a type1 container holding it with one mapping, a device fd
   * from the group, and a second container with no group.
   */
  private legacyGroup(b: SimBinding): void {
    const group = b.open('/dev/vfio/2', 2);
    const container = b.open('/dev/vfio/vfio', 2);
    b.open('/dev/vfio/vfio', 2);
    const fdArg = new Uint8Array(4);
    new DataView(fdArg.buffer).setInt32(0, container, true);
    b.ioctl(group, vfio.VFIO_GROUP_SET_CONTAINER, fdArg);
    b.ioctlInt(container, vfio.VFIO_SET_IOMMU, vfio.VFIO_TYPE1v2_IOMMU);
    const map = new Uint8Array(vfio.vfio_iommu_type1_dma_map.size);
    const mv = new DataView(map.buffer);
    mv.setUint32(0, map.length, true);
    mv.setUint32(4, vfio.VFIO_DMA_MAP_FLAG_READ | vfio.VFIO_DMA_MAP_FLAG_WRITE, true);
    mv.setBigUint64(8, this.maps[0]![0], true);
    mv.setBigUint64(16, 0x10_0000n, true);
    mv.setBigUint64(24, BigInt(4 * P), true);
    b.ioctl(container, vfio.VFIO_IOMMU_MAP_DMA, map);
    b.ioctl(group, vfio.VFIO_GROUP_GET_DEVICE_FD, new TextEncoder().encode('0000:01:01.0\0'));
  }

  /**
   * What random commands rarely build: a nesting parent and a dirty-tracking HWPT, a fault queue,
   * a vIOMMU with a vDEVICE, a vEVENTQ, a nested HWPT and a HW queue.
   */
  private deepObjects(ctx: Iommufd, devId: number, ioasId: number): void {
    const run = (c: ReturnType<Iommufd['cmd']>, out: string, kind: string): number => {
      ctx.ioctl(c);
      const id = c.get32(out);
      this.addId(kind, id);
      return id;
    };
    const parent = run(ctx.cmd(IOCTLS.HWPT_ALLOC).u32('flags', 1).u32('dev_id', devId).u32('pt_id', ioasId), 'out_hwpt_id', 'hwpt');
    run(ctx.cmd(IOCTLS.HWPT_ALLOC).u32('flags', 2).u32('dev_id', devId).u32('pt_id', ioasId), 'out_hwpt_id', 'hwpt');
    run(ctx.cmd(IOCTLS.FAULT_QUEUE_ALLOC), 'out_fault_id', 'fault');
    const viommu = run(ctx.cmd(IOCTLS.VIOMMU_ALLOC).u32('type', IOMMU_VIOMMU_TYPE_SELFTEST).u32('dev_id', devId).u32('hwpt_id', parent), 'out_viommu_id', 'viommu');
    run(ctx.cmd(IOCTLS.VDEVICE_ALLOC).u32('viommu_id', viommu).u32('dev_id', devId).u64('virt_id', 1n), 'out_vdevice_id', 'vdevice');
    run(ctx.cmd(IOCTLS.VEVENTQ_ALLOC).u32('viommu_id', viommu).u32('type', IOMMU_VEVENTQ_TYPE_SELFTEST).u32('veventq_depth', 4), 'out_veventq_id', 'veventq');
    run(ctx.cmd(IOCTLS.HWPT_ALLOC).u32('dev_id', devId).u32('pt_id', viommu).u32('data_type', IOMMU_HWPT_DATA_SELFTEST)
      .u32('data_len', 4).u64('data_uptr', this.scratch), 'out_hwpt_id', 'hwpt');
    run(ctx.cmd(IOCTLS.HW_QUEUE_ALLOC).u32('viommu_id', viommu).u32('type', IOMMU_HW_QUEUE_TYPE_SELFTEST).u32('index', 0)
      .u64('nesting_parent_iova', MOCK_APERTURE_START).u64('length', BigInt(P)), 'out_hw_queue_id', 'hw_queue');
  }

  /** The process's open descriptors, by kind. */
  fds(kind?: string): number[] {
    const out: number[] = [];
    for (const [fd, f] of (this.b.proc as unknown as { fds: Map<number, { kind: string }> }).fds) if (!kind || f.kind === kind) out.push(fd);
    return out;
  }
}

// ---- argument generators -----------------------------------------------------------------------

const U32_EDGES = [0, 1, 2, 3, 4, 7, 8, 16, 0xff, 0x100, 0xffff, 0x7fffffff, 0x80000000, 0xfffffffe, 0xffffffff];
const U64_EDGES = [0n, 1n, 0xfffn, 0x1000n, 0x800n, 1n << 31n, 1n << 32n, 1n << 47n, 1n << 52n, 1n << 53n, 1n << 63n, U64_MAX - 0xfffn, U64_MAX - 1n, U64_MAX];

/** Flag values each command accepts (most of the time the fuzzer uses one of these). */
const GOOD_FLAGS: Record<string, readonly number[]> = {
  IOMMU_IOAS_MAP: [6, 7, 4, 5, 2, 3], IOMMU_IOAS_MAP_FILE: [6, 7, 4, 5, 2, 3], IOMMU_IOAS_COPY: [6, 7, 4, 5, 2, 3],
  IOMMU_HWPT_ALLOC: [0, 1, 2, 3, 4, 8], IOMMU_HWPT_SET_DIRTY_TRACKING: [0, 1], IOMMU_HWPT_GET_DIRTY_BITMAP: [0, 1],
  IOMMU_GET_HW_INFO: [0, 1], VFIO_IOMMU_MAP_DMA: [3, 1, 2], VFIO_IOMMU_UNMAP_DMA: [0, 2], VFIO_IOMMU_GET_INFO: [0],
  VFIO_DEVICE_SET_IRQS: [0x21, 0x22, 0x24, 0x24, 0x29, 0x31, 0x2a, 0x32], VFIO_DEVICE_ATTACH_IOMMUFD_PT: [0, 1],
  VFIO_DEVICE_DETACH_IOMMUFD_PT: [0, 1], VFIO_DEVICE_FEATURE: [0x10000, 0x20000, 0x40000, 0x50001],
  IOMMU_TEST_OP_CREATE_ACCESS: [0, 1], IOMMU_TEST_OP_ACCESS_PAGES: [0, 1], IOMMU_TEST_OP_ACCESS_RW: [0, 1, 4, 5],
  IOMMU_TEST_OP_MOCK_DOMAIN_FLAGS: [0, 1, 4, 5], IOMMU_TEST_OP_DIRTY: [0],
};

/** Which kinds of object an id field names (by the out_ field that hands them out). */
const ID_KINDS: Record<string, string[]> = {
  ioas_id: ['ioas'], src_ioas_id: ['ioas'], dst_ioas_id: ['ioas'], object_id: ['ioas'], pt_id: ['ioas', 'hwpt'],
  hwpt_id: ['hwpt'], dev_id: ['dev'], viommu_id: ['viommu'], fault_id: ['fault'], access_pages_id: ['access_pages'],
  id: ['ioas', 'hwpt', 'stdev', 'dev', 'viommu', 'vdevice', 'fault', 'veventq', 'hw_queue'],
};

/** The id kind an out_ field hands out. */
function outKind(field: string): string {
  const m = /^out_(.*?)_?id$/.exec(field);
  const k = m?.[1] ?? 'any';
  return k === 'dev' || k === 'idev' ? 'dev' : k;
}

class Gen {
  /** A mapping the current struct's address and length fields agree on (often). */
  private span: { addr: bigint; len: bigint } | null = null;

  constructor(
    readonly rng: Rng,
    readonly w: World,
  ) {}

  anyU32(): number {
    return this.rng.chance(0.5) ? this.rng.pick(U32_EDGES) : this.rng.u32();
  }

  anyU64(): bigint {
    return this.rng.chance(0.5) ? this.rng.pick(U64_EDGES) : this.rng.u64();
  }

  /** An id of one of `kinds` (often), any id the sim gave out, or garbage. */
  id(...kinds: string[]): number {
    const r = this.rng;
    const k = r.int(20);
    const pool = k < 17 && kinds.length ? this.w.ids.get(r.pick(kinds)) : k < 19 ? this.w.ids.get('any') : undefined;
    if (pool?.size) return r.pick([...pool]);
    return r.chance(0.5) ? r.int(16) : this.anyU32();
  }

  fd(kind?: string): number {
    const fds = this.w.fds(kind);
    if (fds.length && this.rng.chance(0.85)) return this.rng.pick(fds);
    return this.rng.pick([-1, -2, 0, 1, 2, 99, 1000, 0x7fffffff, ...this.w.fds()]);
  }

  /** A user address: inside a mapping (often its start), just outside, or anywhere. */
  addr(): bigint {
    const r = this.rng.int(10);
    if (r < 7 && this.w.maps.length) {
      const [a, len] = this.rng.pick(this.w.maps);
      const off = this.rng.chance(0.5) ? 0 : this.rng.chance(0.7) ? this.rng.int(len / P) * P : this.rng.int(len);
      return a + BigInt(off);
    }
    if (r < 9) return this.rng.pick([0n, 0x1000n, 0x10000n, 1n << 46n, (1n << 47n) - 0x1000n, 0x7f00_0000_0000n]);
    return this.anyU64();
  }

  length(): bigint {
    const r = this.rng.int(10);
    if (r < 6) return BigInt((1 + this.rng.int(16)) * P);
    if (r < 7) return BigInt(this.rng.pick([1, 0x800, P / 2, HUGE, 2 * HUGE, 16 * HUGE]));
    return this.anyU64();
  }

  iova(): bigint {
    const r = this.rng.int(10);
    if (r < 4) return BigInt(this.rng.int(64)) * 0x10000n;
    if (r < 6) return MOCK_APERTURE_START + BigInt(this.rng.int(64)) * 0x800n;
    if (r < 7) return BigInt(this.rng.int(8)) * BigInt(HUGE);
    return this.anyU64();
  }

  flags(): number {
    const r = this.rng.int(20);
    if (r < 8) return 0;
    if (r < 14) return this.rng.int(16);
    if (r < 18) return 1 << this.rng.int(32);
    return this.anyU32();
  }

  dataType(): number {
    if (this.rng.chance(0.4)) return 0;
    return this.rng.pick([1, 2, 3, IOMMU_HWPT_DATA_SELFTEST, IOMMU_HWPT_INVALIDATE_DATA_SELFTEST, IOMMU_HW_INFO_TYPE_SELFTEST,
      IOMMU_VIOMMU_TYPE_SELFTEST, IOMMU_VEVENTQ_TYPE_SELFTEST, IOMMU_HW_QUEUE_TYPE_SELFTEST, this.anyU32()]);
  }

  /** A value for a struct field, chosen by its name. */
  field(name: string, type: string, cmd: Cmd): number | bigint {
    const r = this.rng;
    if (name.startsWith('out_')) return r.chance(0.8) ? 0 : this.anyU32();
    const good = GOOD_FLAGS[cmd.name];
    if (good && /^(flags|dev_flags)$/.test(name) && r.chance(0.8)) return r.pick(good);
    const span = this.span;
    if (span && type === 'u64' && r.chance(0.7)) {
      if (/uptr|user_va|vaddr|^data$|^addr$/.test(name)) return span.addr;
      if (/^(length|size)$/.test(name)) return span.len;
    }
    if (/reserved|^pad$/.test(name)) return r.chance(0.9) ? 0 : this.anyU32();
    if (name === 'iommufd') return this.fd(r.chance(0.8) ? 'iommufd' : undefined);
    if (name === 'fd') return this.fd(r.chance(0.8) ? 'memfd' : undefined);
    if (/fd$/.test(name)) return this.fd();
    if (name === 'id' && cmd.op !== undefined && [IOMMU_TEST_OP.ACCESS_PAGES, IOMMU_TEST_OP.ACCESS_RW,
      IOMMU_TEST_OP.DESTROY_ACCESS_PAGES, IOMMU_TEST_OP.ACCESS_REPLACE_IOAS].includes(cmd.op as 7)) {
      return this.fd('selftest_access');
    }
    if (name === 'virt_id') return BigInt(r.chance(0.5) ? r.int(4) : this.id());
    if (/(^|_)id$/.test(name)) return this.id(...(ID_KINDS[name] ?? []));
    if (/flags$|^perm$/.test(name)) return this.flags();
    if (/^(type|data_type|hwpt_type)$/.test(name)) return this.dataType();
    if (/uptr|user_va|vaddr|^data$|allowed_iovas|_ptr$|^addr$/.test(name)) return type === 'u64' ? this.addr() : this.anyU32();
    if (/iova|^start$|^last$/.test(name)) return type === 'u64' ? this.iova() : this.anyU32();
    if (/length|^size$|page_size|pgsizes|^offset$/.test(name)) return type === 'u64' ? this.length() : r.pick([0, 1, 8, 16, P, this.anyU32()]);
    if (/len$/.test(name)) return r.chance(0.8) ? r.pick([0, 0, 4, 8, 16, 24, 32]) : this.anyU32();
    if (/num|count|depth/.test(name)) return r.chance(0.8) ? r.pick([0, 1, 1, 2, 4, 16]) : this.anyU32();
    if (/refs|limit|^index$|^cache$|^iotlb$/.test(name)) return r.chance(0.7) ? r.int(12) : this.anyU32();
    if (/pasid/.test(name)) return r.pick([0, 1, 2, 1024, (1 << 20) - 1, 1 << 20, this.anyU32()]);
    if (name === 'option_id' || name === 'op') return r.chance(0.8) ? r.int(3) : this.anyU32() & (type === 'u16' ? 0xffff : 0xffffffff);
    if (name === 'val64') return r.chance(0.7) ? BigInt(r.int(3)) : this.anyU64();
    return type === 'u64' ? this.anyU64() : this.anyU32();
  }

  /**
   * Field values that make `cmd` valid, or nearly (the ids and memory the world has), for the
   * commands that build the deeper objects: nested HWPTs, vIOMMUs and what hangs off them,
   * dirty tracking, copies, accesses, device interrupts.
   */
  recipe(cmd: Cmd): Record<string, number | bigint> | null {
    const r = this.rng;
    const id = (kind: string): number => this.id(kind);
    const scratch = this.w.scratch;
    switch (cmd.name) {
      case 'IOMMU_HWPT_ALLOC':
        return r.chance(0.5)
          ? { flags: r.pick([0, 1, 2, 3]), dev_id: id('dev'), pt_id: id('ioas'), data_type: 0, data_len: 0, data_uptr: 0n }
          : { flags: 0, dev_id: id('dev'), pt_id: this.id('hwpt', 'viommu'), data_type: IOMMU_HWPT_DATA_SELFTEST, data_len: 4, data_uptr: scratch };
      case 'IOMMU_VIOMMU_ALLOC':
        return { flags: 0, type: IOMMU_VIOMMU_TYPE_SELFTEST, dev_id: id('dev'), hwpt_id: id('hwpt'), data_len: 0, data_uptr: 0n };
      case 'IOMMU_VDEVICE_ALLOC':
        return { viommu_id: id('viommu'), dev_id: id('dev'), virt_id: BigInt(r.int(4)) };
      case 'IOMMU_VEVENTQ_ALLOC':
        return { flags: 0, viommu_id: id('viommu'), type: IOMMU_VEVENTQ_TYPE_SELFTEST, veventq_depth: 1 + r.int(8) };
      case 'IOMMU_HW_QUEUE_ALLOC':
        return { flags: 0, viommu_id: id('viommu'), type: IOMMU_HW_QUEUE_TYPE_SELFTEST, index: r.int(2), nesting_parent_iova: MOCK_APERTURE_START, length: BigInt(P) };
      case 'IOMMU_HWPT_INVALIDATE':
        return { hwpt_id: this.id('hwpt', 'viommu'), data_uptr: scratch, data_type: IOMMU_HWPT_INVALIDATE_DATA_SELFTEST, entry_len: 8, entry_num: r.int(4) };
      case 'IOMMU_HWPT_GET_DIRTY_BITMAP':
        return { hwpt_id: id('hwpt'), flags: r.int(2), iova: MOCK_APERTURE_START, length: BigInt(16 * P), page_size: BigInt(P), data: scratch };
      case 'IOMMU_HWPT_SET_DIRTY_TRACKING':
        return { flags: r.int(2), hwpt_id: id('hwpt') };
      case 'IOMMU_IOAS_COPY':
        return { flags: r.pick([6, 7, 4, 5]), dst_ioas_id: id('ioas'), src_ioas_id: id('ioas'), length: BigInt(P * (1 + r.int(16))), dst_iova: this.iova(), src_iova: MOCK_APERTURE_START };
      case 'IOMMU_TEST_OP_DIRTY':
        return { id: id('hwpt'), flags: 0, iova: MOCK_APERTURE_START, length: BigInt(16 * P), page_size: BigInt(P), uptr: scratch };
      case 'IOMMU_TEST_OP_ACCESS_PAGES':
        return { id: this.fd('selftest_access'), flags: r.int(2), iova: MOCK_APERTURE_START + BigInt(r.int(16) * P), length: BigInt(P * (1 + r.int(4))), uptr: 0n };
      case 'IOMMU_TEST_OP_ACCESS_RW':
        return { id: this.fd('selftest_access'), flags: r.pick([0, 1, 4, 5]), iova: MOCK_APERTURE_START + BigInt(r.int(64 * P)), length: BigInt(1 + r.int(64)), uptr: scratch };
      case 'IOMMU_TEST_OP_TRIGGER_IOPF':
        return { dev_id: id('dev'), pasid: r.int(3), grpid: r.int(4), perm: r.int(4), addr: MOCK_APERTURE_START };
      case 'IOMMU_TEST_OP_PASID_ATTACH':
      case 'IOMMU_TEST_OP_PASID_REPLACE':
        return { id: id('stdev'), pasid: 1 + r.int(4), pt_id: this.id('hwpt', 'ioas') };
      case 'VFIO_DEVICE_SET_IRQS':
        return r.chance(0.5)
          ? { flags: 0x24, index: r.int(2), start: 0, count: 1 }
          : { flags: 0x21, index: r.int(5), start: 0, count: r.int(2) };
      default:
        return null;
    }
  }

  /** The bytes of one command: a plausible struct (often), at a plausible size (often). */
  struct(cmd: Cmd): Uint8Array | null {
    const r = this.rng;
    if (r.chance(0.01)) return null;
    const recipe = r.chance(0.5) ? this.recipe(cmd) : null;
    // one field of a recipe left to chance now and then
    const mutated = recipe && r.chance(0.3) ? r.pick(Object.keys(recipe)) : null;
    const s = cmd.struct;
    let size = s.size;
    const k = r.int(40);
    if (k === 0) size = Math.max(0, cmd.minSize - 1 - r.int(4));
    else if (k === 1) size = cmd.minSize;
    else if (k === 2) size = s.size + 8 * (1 + r.int(4));
    else if (k === 3) size = r.int(8);
    else if (k === 4) size = cmd.minSize + r.int(Math.max(1, s.size - cmd.minSize));
    // VFIO_DEVICE_SET_IRQS carries its data after the header
    if (cmd.name === 'VFIO_DEVICE_SET_IRQS' && r.chance(0.7)) size = s.size + 4 * (recipe ? Number(recipe.count) : r.int(4));
    const buf = new Uint8Array(size);
    const dv = new DataView(buf.buffer);
    this.span = null;
    if (this.w.maps.length && r.chance(0.8)) {
      const [a, len] = r.pick(this.w.maps);
      const pages = len / P;
      const first = r.chance(0.6) ? 0 : r.int(pages);
      this.span = { addr: a + BigInt(first * P), len: BigInt((1 + r.int(pages - first)) * P) };
    }
    const put = (off: number, type: string, v: number | bigint): void => {
      const w = type === 'u64' ? 8 : type === 'u8' ? 1 : type === 'u16' ? 2 : 4;
      if (off + w > size) return;
      if (type === 'u64') dv.setBigUint64(off, BigInt.asUintN(64, BigInt(v)), true);
      else if (type === 'u16') dv.setUint16(off, Number(v) & 0xffff, true);
      else if (type === 'u8') dv.setUint8(off, Number(v) & 0xff);
      else dv.setUint32(off, Number(BigInt.asUintN(32, BigInt(v))), true);
    };
    for (const f of s.fields) {
      if (f.name === '__union') continue;
      const fixed = recipe && f.name !== mutated ? recipe[f.name] : undefined;
      for (let i = 0; i < f.count; i++) put(f.off + i * (f.type === 'u8' ? 1 : 4), f.type, fixed ?? this.field(f.name, f.type, cmd));
    }
    // the declared size: the buffer's (mostly), or one it does not match (a short buffer claiming more)
    const sizeVal = r.chance(0.85) ? size : r.pick([0, 4, cmd.minSize - 1, cmd.minSize, s.size, s.size + 8, size + 1 + r.int(16), 1 << 20, this.anyU32()]);
    put(0, 'u32', sizeVal);
    if (cmd.op !== undefined) put(4, 'u32', r.chance(0.95) ? cmd.op : this.anyU32());
    // a non-zero tail past the kernel's struct now and then (E2BIG)
    if (size > s.size && r.chance(0.3)) buf[s.size + r.int(size - s.size)] = 1 + r.int(255);
    // SET_IRQS data: eventfds or bools
    if (cmd.name === 'VFIO_DEVICE_SET_IRQS') for (let off = s.size; off + 4 <= size; off += 4) dv.setInt32(off, this.fd('eventfd'), true);
    return buf;
  }

  /** Fill the scratch pages with IOVA ranges, invalidation entries or noise. */
  fillScratch(): void {
    let view: Uint8Array;
    try {
      view = this.w.b.view(this.w.scratch, 4 * P);
    } catch {
      return; // a fuzzed munmap took it away
    }
    const dv = new DataView(view.buffer, view.byteOffset, view.length);
    const r = this.rng;
    const kind = r.int(3);
    if (kind === 0) {
      let at = BigInt(r.int(16)) * 0x10000n;
      for (let i = 0; i < 16; i++) {
        const len = BigInt(1 + r.int(8)) * 0x1000n;
        dv.setBigUint64(i * 16, at, true);
        dv.setBigUint64(i * 16 + 8, r.chance(0.9) ? at + len - 1n : this.anyU64(), true);
        at += len + BigInt(r.int(4)) * 0x1000n;
      }
    } else if (kind === 1) {
      for (let i = 0; i < 64; i++) dv.setUint32(i * 4, r.chance(0.5) ? r.int(4) : this.anyU32(), true);
    } else {
      view.fill(r.chance(0.5) ? 0 : r.int(256));
    }
  }
}

// ---- the run -----------------------------------------------------------------------------------

export interface FuzzDefect {
  call: number;
  op: string;
  what: string;
}

export interface FuzzReport {
  seed: number;
  calls: number;
  refused: number;
  /** Calls per ioctl name (only ioctls), and per syscall. */
  ioctls: Map<string, number>;
  syscalls: Map<string, number>;
  /** Calls that succeeded, per ioctl or syscall name. */
  granted: Map<string, number>;
  errnos: Map<string, number>;
  /** Refusals that changed state where Linux does too (PARTIAL_OK). */
  partial: number;
  slowest: { ms: number; op: string };
  elapsedMs: number;
  defects: FuzzDefect[];
}

export interface FuzzOptions {
  seed: number;
  count: number;
  /** Calls per fresh machine (default 2000). */
  reset?: number;
  /** Stop at the first defect. */
  stopAtFirst?: boolean;
  /** Slower than this (ms) is a defect (default 1000). */
  slowMs?: number;
}

const CMDS = table();

export function runFuzz(opts: FuzzOptions): FuzzReport {
  const rng = new Rng(opts.seed);
  const reset = opts.reset ?? 2000;
  const slowMs = opts.slowMs ?? 1000;
  const rep: FuzzReport = {
    seed: opts.seed, calls: 0, refused: 0, ioctls: new Map(), syscalls: new Map(), granted: new Map(), errnos: new Map(), partial: 0,
    slowest: { ms: 0, op: '' }, elapsedMs: 0, defects: [],
  };
  const bump = (m: Map<string, number>, k: string): void => {
    m.set(k, (m.get(k) ?? 0) + 1);
  };
  const t0 = performance.now();
  let worlds = 0;
  let w = new World(worlds++ % 2 === 1);
  let g = new Gen(rng, w);
  let state = fingerprint(w.b);
  for (let i = 0; i < opts.count; i++) {
    if (i > 0 && i % reset === 0) {
      w = new World(worlds++ % 2 === 1);
      g = new Gen(rng, w);
      state = fingerprint(w.b);
    }
    if (rng.chance(0.02)) g.fillScratch();
    const call = pickCall(g);
    let refused: IommuError | null = null;
    let result: unknown;
    const c0 = performance.now();
    try {
      result = call.run();
    } catch (e) {
      if (e instanceof IommuError) refused = e;
      else rep.defects.push({ call: i, op: call.desc, what: `threw ${e instanceof Error ? `${e.name}: ${e.message}` : String(e)}` });
    }
    const ms = performance.now() - c0;
    rep.calls++;
    if (call.ioctl) bump(rep.ioctls, call.ioctl);
    else bump(rep.syscalls, call.syscall);
    if (ms > rep.slowest.ms) rep.slowest = { ms, op: call.desc };
    if (ms > slowMs) rep.defects.push({ call: i, op: call.desc, what: `took ${ms.toFixed(0)} ms` });
    if (!refused) {
      bump(rep.granted, call.ioctl ?? call.syscall);
      call.harvest?.(result);
    }
    const next = fingerprint(w.b);
    if (refused) {
      rep.refused++;
      bump(rep.errnos, refused.code);
      if (process.env.FUZZ_TRACE && (call.ioctl ?? call.syscall) === process.env.FUZZ_TRACE) console.log(refused.code, call.desc);
      const d = firstDiff(state, next);
      if (d >= 0) {
        const paths: string[] = [];
        fingerprint(w.b, paths);
        if (call.ioctl && PARTIAL_OK.get(call.ioctl)?.test(paths[d]!)) rep.partial++;
        else rep.defects.push({ call: i, op: call.desc, what: `refused with ${refused.code} but changed state at ${paths[d]}: ${String(state[d])} -> ${String(next[d])}` });
      }
    }
    state = next;
    if (opts.stopAtFirst && rep.defects.length) break;
  }
  rep.elapsedMs = performance.now() - t0;
  return rep;
}

interface Call {
  desc: string;
  /** The ioctl's name, or null for a plain syscall. */
  ioctl: string | null;
  syscall: string;
  run(): unknown;
  harvest?(result: unknown): void;
}

const hex = (v: number | bigint): string => `0x${v.toString(16)}`;

function pickCall(g: Gen): Call {
  const { rng: r, w } = g;
  const b = w.b;
  const k = r.int(100);
  if (k < 70) {
    const cmd = r.pick(CMDS);
    const fd = r.chance(0.9) ? g.fd(cmd.target) : g.fd();
    const buf = g.struct(cmd);
    return {
      desc: `ioctl(${fd}, ${cmd.name}, [${buf ? Buffer.from(buf).toString('hex') : 'NULL'}])`,
      ioctl: cmd.name,
      syscall: 'ioctl',
      run: () => b.ioctl(fd, cmd.request, buf),
      harvest: () => {
        if (!buf) return;
        const dv = new DataView(buf.buffer);
        for (const f of cmd.struct.fields) {
          if (!/^out_.*id$/.test(f.name) || f.off + 4 > buf.length) continue;
          const v = dv.getUint32(f.off, true);
          if (v) w.addId(outKind(f.name), v);
        }
      },
    };
  }
  if (k < 73) {
    const c = r.pick(INT_CMDS);
    const fd = g.fd(c.target);
    const v = r.chance(0.8) ? r.int(12) : g.anyU32();
    return { desc: `ioctl(${fd}, ${c.name}, ${v})`, ioctl: c.name, syscall: 'ioctl', run: () => b.ioctlInt(fd, c.request, v) };
  }
  if (k < 77) return pickGroupCall(g);
  if (k < 79) {
    // an unknown request: random numbers and neighbours of real ones
    const fd = g.fd();
    const req = r.chance(0.5) ? (r.pick(CMDS).request + r.pick([-1, 1, 0x100, 0x4000_0000])) >>> 0 : r.u32();
    return { desc: `ioctl(${fd}, ${hex(req)}, 64 zero bytes)`, ioctl: 'unknown', syscall: 'ioctl', run: () => b.ioctl(fd, req, new Uint8Array(64)) };
  }
  return pickSyscall(g);
}

/** VFIO_GROUP_SET_CONTAINER (a pointer to an __s32 fd) and VFIO_GROUP_GET_DEVICE_FD (a device name). */
function pickGroupCall(g: Gen): Call {
  const { rng: r, w } = g;
  const b = w.b;
  const fd = r.chance(0.9) ? g.fd('vfio-group') : g.fd();
  let name: string;
  let request: number;
  let buf: Uint8Array | null;
  if (r.chance(0.5)) {
    name = 'VFIO_GROUP_SET_CONTAINER';
    request = vfio.VFIO_GROUP_SET_CONTAINER;
    buf = new Uint8Array(r.chance(0.9) ? 4 : r.int(4));
    const target = r.chance(0.8) ? g.fd(r.pick(['vfio-container', 'iommufd'])) : g.fd();
    if (buf.length === 4) new DataView(buf.buffer).setInt32(0, target, true);
  } else {
    name = 'VFIO_GROUP_GET_DEVICE_FD';
    request = vfio.VFIO_GROUP_GET_DEVICE_FD;
    const dev = r.pick(['0000:01:01.0', '0000:01:02.0', '0000:00:02.0', '0000:00:01.0', '0000:01:01.0 x', 'vfio0', '']);
    buf = new TextEncoder().encode(r.chance(0.9) ? `${dev}\0` : dev);
  }
  if (r.chance(0.02)) buf = null;
  return {
    desc: `ioctl(${fd}, ${name}, [${buf ? Buffer.from(buf).toString('hex') : 'NULL'}])`,
    ioctl: name,
    syscall: 'ioctl',
    run: () => b.ioctl(fd, request, buf),
  };
}

/** A number argument: mostly sane, sometimes one JS cannot pass to C. */
function num(g: Gen, sane: () => number): number {
  const r = g.rng;
  if (r.chance(0.9)) return sane();
  return r.pick([NaN, Infinity, -Infinity, 0.5, 4096.25, -1, -4096, 2 ** 53, 2 ** 60, 2 ** 31, -(2 ** 31) - 1, 2 ** 40, 2 ** 48]);
}

function pickSyscall(g: Gen): Call {
  const { rng: r, w } = g;
  const b = w.b;
  const buf = (): Uint8Array => new Uint8Array(r.pick([0, 1, 4, 7, 8, 9, 16, 32, 48, 64, 256, P]));
  const region = (): number => (r.chance(0.8) ? r.int(10) * 2 ** 40 + r.pick([0, 4, 8, 0x20, 0x24, 0x60, 0x64, 0x80, 0x98, r.int(0x100000)]) : r.int(2 ** 52));
  const which = r.int(16);
  const fd = num(g, () => g.fd());
  switch (which) {
    case 0: {
      const x = buf();
      return { desc: `read(${fd}, ${x.length})`, ioctl: null, syscall: 'read', run: () => b.read(fd, x) };
    }
    case 1: {
      const x = buf();
      if (x.length >= 8 && r.chance(0.5)) new DataView(x.buffer).setBigUint64(0, g.anyU64(), true);
      return { desc: `write(${fd}, ${x.length})`, ioctl: null, syscall: 'write', run: () => b.write(fd, x) };
    }
    case 2:
    case 3: {
      const x = buf();
      const off = num(g, region);
      const fdv = num(g, () => g.fd(r.chance(0.7) ? 'vfio-device' : undefined));
      if (which === 2) return { desc: `pread(${fdv}, ${x.length}, ${off})`, ioctl: null, syscall: 'pread', run: () => b.pread(fdv, x, off) };
      if (x.length) new DataView(x.buffer).setUint8(0, r.int(256));
      return { desc: `pwrite(${fdv}, ${x.length}, ${off})`, ioctl: null, syscall: 'pwrite', run: () => b.pwrite(fdv, x, off) };
    }
    case 4:
    case 5: {
      const len = num(g, () => r.pick([P, 2 * P, 16 * P, HUGE, 1, 0, 2 ** 31 + P]));
      const prot = num(g, () => r.pick([PROT_READ, PROT_READ | PROT_WRITE, 0, 4, 7]));
      const flags = num(g, () => r.pick([MAP_SHARED, MAP_PRIVATE, 3, 0]) | (r.chance(0.6) ? MAP_ANONYMOUS : 0)
        | (r.chance(0.1) ? MAP_FIXED : 0) | (r.chance(0.05) ? MAP_HUGETLB : 0) | (r.chance(0.05) ? 0x100000 : 0));
      const off = num(g, () => r.pick([0, P, 100, -P, 2 ** 40]));
      const addr = r.chance(0.8) ? 0n : g.addr();
      return {
        desc: `mmap(${hex(addr)}, ${len}, ${prot}, ${hex(flags)}, ${fd}, ${off})`, ioctl: null, syscall: 'mmap',
        run: () => b.mmap(addr, len, prot, flags, fd, off),
        harvest: (a) => {
          if (typeof a === 'bigint' && len <= 4 * HUGE) w.maps.push([a, len]);
          else if (typeof a === 'bigint') b.munmap(a, len); // keep the machine small
        },
      };
    }
    case 6: {
      const addr = g.addr();
      const len = num(g, () => Number(r.chance(0.7) ? BigInt(P * (1 + r.int(4))) : g.length() & 0xffff_ffffn));
      return {
        desc: `munmap(${hex(addr)}, ${len})`, ioctl: null, syscall: 'munmap', run: () => b.munmap(addr, len),
        harvest: () => {
          const i = w.maps.findIndex(([a]) => a === addr);
          if (i >= 0) w.maps.splice(i, 1);
        },
      };
    }
    case 7: {
      const len = num(g, () => r.pick([0, P, 16 * P, 100, 2 ** 31, 2 ** 31 + 1]));
      const f = num(g, () => g.fd('memfd'));
      return { desc: `ftruncate(${f}, ${len})`, ioctl: null, syscall: 'ftruncate', run: () => b.ftruncate(f, len) };
    }
    case 8: {
      const ev = num(g, () => r.pick([POLLIN, POLLOUT, POLLIN | POLLOUT, 0xffff, 0]));
      const t = num(g, () => r.pick([0, -1, 10]));
      return { desc: `poll(${fd}, ${ev}, ${t})`, ioctl: null, syscall: 'poll', run: () => b.poll(fd, ev, t) };
    }
    case 9: {
      // close rarely: descriptors are the fuzzer's targets
      if (r.chance(0.7)) return pickSyscall(g);
      return { desc: `close(${fd})`, ioctl: null, syscall: 'close', run: () => b.close(fd) };
    }
    case 10: {
      const path = r.pick(['/dev/iommu', '/dev/vfio/devices/vfio0', '/dev/vfio/devices/vfio1', '/dev/vfio/devices/vfio2',
        '/dev/vfio/devices/vfio9', '/dev/null', '/sys/bus/pci/devices', '/dev/vfio/vfio', '/dev/vfio/1', '/dev/vfio/2']);
      const flags = num(g, () => r.pick([0, 2, 0o2000002]));
      return { desc: `open(${path}, ${flags})`, ioctl: null, syscall: 'open', run: () => b.open(path, flags) };
    }
    case 11: {
      const init = num(g, () => r.pick([0, 1, 0xffffffff]));
      const flags = num(g, () => r.pick([0, EFD_NONBLOCK, 1, 0x100, EFD_NONBLOCK | 1]));
      return { desc: `eventfd(${init}, ${flags})`, ioctl: null, syscall: 'eventfd', run: () => b.eventfd(init, flags) };
    }
    case 12: {
      const flags = num(g, () => r.pick([0, 1, 2, 4, 0x18, 0x100]));
      const name = r.chance(0.9) ? 'fz' : 'n'.repeat(250);
      return { desc: `memfd_create(${name.length}, ${flags})`, ioctl: null, syscall: 'memfd_create', run: () => b.memfdCreate(name, flags) };
    }
    case 13: {
      const addr = g.addr();
      const len = num(g, () => r.pick([0, 1, P, 2 * P, HUGE]));
      return { desc: `view(${hex(addr)}, ${len})`, ioctl: null, syscall: 'view', run: () => b.view(addr, len) };
    }
    case 14: {
      const path = r.chance(0.95) ? r.pick(w.paths) : r.pick(['/nope', '/sys/bus/pci/devices/0000:00:01.0/../../..', '']);
      const op = r.int(4);
      if (op === 0) return { desc: `readText(${path})`, ioctl: null, syscall: 'readText', run: () => b.readText(path) };
      if (op === 1) return { desc: `readlink(${path})`, ioctl: null, syscall: 'readlink', run: () => b.readlink(path) };
      if (op === 2) return { desc: `readdir(${path})`, ioctl: null, syscall: 'readdir', run: () => b.readdir(path) };
      const text = r.pick(['vfio-pci', 'vfio-pci\n', '\n', '0000:00:01.0', '0000:01:01.0', '1234 11e8', '1', '0', 'x'.repeat(5000), 'pcieport']);
      return { desc: `writeText(${path}, ${JSON.stringify(text.slice(0, 20))})`, ioctl: null, syscall: 'writeText', run: () => b.writeText(path, text) };
    }
    default: {
      // a device interrupt source: ask an edu to raise its interrupt or compute, through BAR0
      const dev = g.fd('vfio-device');
      const x = new Uint8Array(4);
      new DataView(x.buffer).setUint32(0, r.chance(0.5) ? r.int(64) : r.u32(), true);
      const reg = r.pick([0x08, 0x20, 0x60, 0x64, 0x80, 0x88, 0x90, 0x98]);
      return { desc: `pwrite(${dev}, edu reg ${hex(reg)})`, ioctl: null, syscall: 'pwrite', run: () => b.pwrite(dev, x, reg) };
    }
  }
}

// ---- the command line --------------------------------------------------------------------------

export function formatReport(rep: FuzzReport): string {
  const top = (m: Map<string, number>): string => [...m].sort((a, b) => b[1] - a[1]).map(([k, v]) => `${k} ${v}`).join(', ');
  return [
    `seed ${rep.seed}: ${rep.calls} calls in ${(rep.elapsedMs / 1000).toFixed(1)} s, ${rep.refused} refused, ${rep.partial} partial refusals Linux allows`,
    `distinct ioctls: ${rep.ioctls.size} (${top(rep.ioctls)})`,
    `syscalls: ${top(rep.syscalls)}`,
    `granted: ${top(rep.granted)}`,
    `errnos: ${top(rep.errnos)}`,
    `slowest call: ${rep.slowest.ms.toFixed(1)} ms (${rep.slowest.op.slice(0, 120)})`,
    `defects: ${rep.defects.length}`,
    ...rep.defects.slice(0, 20).map((d) => `  #${d.call} ${d.op.slice(0, 200)}: ${d.what}`),
  ].join('\n');
}

function main(): void {
  const arg = (name: string, dflt: number): number => {
    const i = process.argv.indexOf(`--${name}`);
    return i >= 0 ? Number(process.argv[i + 1]) : dflt;
  };
  const rep = runFuzz({ seed: arg('seed', 1), count: arg('count', 200_000), reset: arg('reset', 2000), stopAtFirst: process.argv.includes('--stop') });
  console.log(formatReport(rep));
  process.exitCode = rep.defects.length ? 1 : 0;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) main();
