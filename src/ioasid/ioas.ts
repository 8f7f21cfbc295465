/**
 * An I/O address space: the IOVA -> memory mappings (areas) that devices attached to it see.
 * IOVAs and lengths are bigint; each call is one iommufd command and throws IommuError with the
 * kernel's errno, leaving the IOAS as the kernel leaves it.
 */
import { IoasAreas } from './areas.js';
import { u64 } from './codec.js';
import type { Iommufd } from './iommufd.js';
import type { MemFd, UserMemory } from './memory.js';
import {
  IOCTLS, IOMMU_IOAS_MAP_FIXED_IOVA, IOMMU_IOAS_MAP_READABLE, IOMMU_IOAS_MAP_WRITEABLE,
  IOMMU_OPTION_HUGE_PAGES, IOMMU_OPTION_OP_GET, IOMMU_OPTION_OP_SET, U64_MAX,
} from './uapi.js';
import { isErrno } from './errors.js';

export interface MapOptions {
  /** Map at exactly this IOVA (IOMMU_IOAS_MAP_FIXED_IOVA); otherwise the kernel picks one. */
  iova?: bigint;
  /** Default true. */
  readable?: boolean;
  /** Default true. */
  writeable?: boolean;
}

/** An inclusive IOVA range, as struct iommu_iova_range. */
export interface IovaRange {
  start: bigint;
  last: bigint;
}

export interface IovaRanges {
  ranges: IovaRange[];
  /** The alignment every MAP/COPY IOVA and length must have (out_iova_alignment). */
  alignment: bigint;
}

const DEFAULT_FLAGS = IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE;
const NO_OPTS: MapOptions = Object.freeze({});

function mapFlags(o: MapOptions): number {
  if (o.iova === undefined && o.readable === undefined && o.writeable === undefined) return DEFAULT_FLAGS;
  return (
    (o.iova !== undefined ? IOMMU_IOAS_MAP_FIXED_IOVA : 0) |
    (o.readable === false ? 0 : IOMMU_IOAS_MAP_READABLE) |
    (o.writeable === false ? 0 : IOMMU_IOAS_MAP_WRITEABLE)
  );
}

const MAP = IOCTLS.IOAS_MAP;
const MAP_OFF = MAP.struct.off as Record<'flags' | 'ioas_id' | '__reserved' | 'user_va' | 'length' | 'iova', number>;
const UNMAP = IOCTLS.IOAS_UNMAP;
const UNMAP_OFF = UNMAP.struct.off as Record<'ioas_id' | 'iova' | 'length', number>;

export class Ioas {
  /** The areas made through this handle, when it keeps a record (see trackAreas). */
  private record: IoasAreas | null = null;
  /** The hot path's own command buffers: MAP and UNMAP are written whole on every call. */
  private readonly mapBuf = new Uint8Array(MAP.struct.size);
  private readonly mapDv = new DataView(this.mapBuf.buffer);
  private readonly unmapBuf = new Uint8Array(UNMAP.struct.size);
  private readonly unmapDv = new DataView(this.unmapBuf.buffer);

  constructor(
    readonly ctx: Iommufd,
    readonly id: number,
  ) {
    this.mapDv.setUint32(0, MAP.struct.size, true);
    this.mapDv.setUint32(MAP_OFF.ioas_id, id, true);
    this.unmapDv.setUint32(0, UNMAP.struct.size, true);
    this.unmapDv.setUint32(UNMAP_OFF.ioas_id, id, true);
  }

  /** Map a whole UserMemory (or a window of it). Returns the IOVA. */
  map(mem: UserMemory, opts: MapOptions & { offset?: number; length?: number } = NO_OPTS): bigint {
    if (opts.offset === undefined && opts.length === undefined) return this.mapUser(mem.addr, mem.byteLength, opts);
    const offset = opts.offset ?? 0;
    return this.mapUser(mem.addr + BigInt(offset), BigInt(opts.length ?? mem.length - offset), opts);
  }

  /** IOMMU_IOAS_MAP of [userVa, userVa+length). Returns the IOVA. */
  mapUser(userVa: bigint, length: bigint, opts: MapOptions = NO_OPTS): bigint {
    const dv = this.mapDv;
    dv.setUint32(MAP_OFF.flags, mapFlags(opts), true);
    dv.setBigUint64(MAP_OFF.user_va, u64(userVa, 'userVa'), true);
    dv.setBigUint64(MAP_OFF.length, u64(length, 'length'), true);
    dv.setBigUint64(MAP_OFF.iova, opts.iova === undefined ? 0n : u64(opts.iova, 'iova'), true);
    this.ctx.binding.ioctl(this.ctx.fd, MAP.request, this.mapBuf);
    const iova = dv.getBigUint64(MAP_OFF.iova, true);
    if (this.record) this.note(iova, length, opts);
    return iova;
  }

  /** Add an area the kernel just made to the record. */
  private note(iova: bigint, length: bigint, opts: MapOptions): void {
    this.record!.add({ iova, last: iova + length - 1n, readable: opts.readable !== false, writeable: opts.writeable !== false });
  }

  /** IOMMU_IOAS_MAP_FILE of [start, start+length) of a memfd. Returns the IOVA. */
  mapFile(file: MemFd | number, start: bigint, length: bigint, opts: MapOptions = {}): bigint {
    const fd = typeof file === 'number' ? file : file.fd;
    const c = this.ctx.cmd(IOCTLS.IOAS_MAP_FILE);
    c.u32('flags', mapFlags(opts)).u32('ioas_id', this.id).s32('fd', fd).u64('start', u64(start, 'start')).u64('length', u64(length, 'length'));
    if (opts.iova !== undefined) c.u64('iova', u64(opts.iova, 'iova'));
    this.ctx.ioctl(c);
    if (this.record) this.note(c.get64('iova'), length, opts);
    return c.get64('iova');
  }

  /**
   * IOMMU_IOAS_COPY: map the pages behind [srcIova, srcIova+length) of `src` into this IOAS
   * without pinning or charging them again. Returns the IOVA in this IOAS.
   */
  copyFrom(src: Ioas, srcIova: bigint, length: bigint, opts: MapOptions = {}): bigint {
    const c = this.ctx.cmd(IOCTLS.IOAS_COPY);
    c.u32('flags', mapFlags(opts)).u32('dst_ioas_id', this.id).u32('src_ioas_id', src.id);
    c.u64('length', u64(length, 'length')).u64('src_iova', u64(srcIova, 'srcIova'));
    if (opts.iova !== undefined) c.u64('dst_iova', u64(opts.iova, 'iova'));
    this.ctx.ioctl(c);
    if (this.record) this.note(c.get64('dst_iova'), length, opts);
    return c.get64('dst_iova');
  }

  /**
   * IOMMU_IOAS_UNMAP: remove every area inside [iova, iova+length). Areas are never split: one
   * that sticks out gives ENOENT, and so does a range with nothing mapped. Returns bytes unmapped.
   */
  unmap(iova: bigint, length: bigint): bigint {
    const dv = this.unmapDv;
    dv.setBigUint64(UNMAP_OFF.iova, u64(iova, 'iova'), true);
    dv.setBigUint64(UNMAP_OFF.length, u64(length, 'length'), true);
    if (!this.record) {
      this.ctx.binding.ioctl(this.ctx.fd, UNMAP.request, this.unmapBuf);
      return dv.getBigUint64(UNMAP_OFF.length, true);
    }
    try {
      this.ctx.binding.ioctl(this.ctx.fd, UNMAP.request, this.unmapBuf);
    } catch (e) {
      // ENOENT comes from the walk, which removed the whole areas before the one sticking out.
      if (isErrno(e, 'ENOENT')) this.record.remove(this.record.walk(iova, iova + length - 1n));
      throw e;
    }
    const all = iova === 0n && length === U64_MAX;
    this.record.remove(this.record.walk(iova, all ? U64_MAX : iova + length - 1n));
    return dv.getBigUint64(UNMAP_OFF.length, true);
  }

  /** Unmap everything (iova 0, length U64_MAX); succeeds on an empty IOAS. Returns bytes unmapped. */
  unmapAll(): bigint {
    return this.unmap(0n, U64_MAX);
  }

  /**
   * Keep a record of this IOAS's areas from now on (map, mapFile, copyFrom and unmap through this
   * handle update it). iommufd cannot list areas, so the record is exact only for an IOAS that
   * had none when tracking began and that nothing else changes: the compat layer's container
   * IOAS, shared through the container's handle.
   */
  trackAreas(): IoasAreas {
    return (this.record ??= new IoasAreas());
  }

  /** The record kept since trackAreas(), or null. */
  get areas(): IoasAreas | null {
    return this.record;
  }

  /** IOMMU_IOAS_IOVA_RANGES: where IOVAs may be placed (ranges narrow as devices attach). */
  iovaRanges(): IovaRanges {
    let capacity = 4;
    for (;;) {
      const mem = this.ctx.userScratch(capacity * 16);
      const c = this.ctx.cmd(IOCTLS.IOAS_IOVA_RANGES);
      c.u32('ioas_id', this.id).u32('num_iovas', capacity).u64('allowed_iovas', mem.addr);
      try {
        this.ctx.ioctl(c);
      } catch (e) {
        if (!isErrno(e, 'EMSGSIZE')) throw e;
        capacity = c.get32('num_iovas');
        continue;
      }
      const n = c.get32('num_iovas');
      const dv = new DataView(mem.bytes.buffer, mem.bytes.byteOffset, n * 16);
      const ranges: IovaRange[] = [];
      for (let i = 0; i < n; i++) ranges.push({ start: dv.getBigUint64(i * 16, true), last: dv.getBigUint64(i * 16 + 8, true) });
      return { ranges, alignment: c.get64('out_iova_alignment') };
    }
  }

  /** IOMMU_IOAS_ALLOW_IOVAS: restrict automatic IOVAs to these ranges (empty list clears). */
  allowIovas(ranges: readonly IovaRange[]): void {
    const mem = this.ctx.userScratch(Math.max(16, ranges.length * 16));
    const dv = new DataView(mem.bytes.buffer, mem.bytes.byteOffset, mem.length);
    ranges.forEach((r, i) => {
      dv.setBigUint64(i * 16, u64(r.start, 'start'), true);
      dv.setBigUint64(i * 16 + 8, u64(r.last, 'last'), true);
    });
    const c = this.ctx.cmd(IOCTLS.IOAS_ALLOW_IOVAS);
    c.u32('ioas_id', this.id).u32('num_iovas', ranges.length).u64('allowed_iovas', mem.addr);
    this.ctx.ioctl(c);
  }

  /** IOMMU_OPTION_HUGE_PAGES of this IOAS. */
  getHugePages(): boolean {
    const c = this.ctx.cmd(IOCTLS.OPTION).u32('option_id', IOMMU_OPTION_HUGE_PAGES).u16('op', IOMMU_OPTION_OP_GET).u32('object_id', this.id);
    this.ctx.ioctl(c);
    return c.get64('val64') === 1n;
  }

  setHugePages(enable: boolean | bigint): void {
    const v = typeof enable === 'bigint' ? enable : enable ? 1n : 0n;
    this.ctx.ioctl(this.ctx.cmd(IOCTLS.OPTION).u32('option_id', IOMMU_OPTION_HUGE_PAGES).u16('op', IOMMU_OPTION_OP_SET).u32('object_id', this.id).u64('val64', v));
  }

  /** IOMMU_DESTROY of this IOAS (its mappings go with it; EBUSY while a HWPT uses it). */
  destroy(): void {
    this.ctx.destroy(this.id);
    this.record?.clear();
  }
}
