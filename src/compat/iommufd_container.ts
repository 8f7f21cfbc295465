/**
 * The `iommufd` mode's container: drivers/iommu/iommufd/vfio_compat.c written as a client of the
 * Ioas API, so that the legacy container works where the kernel has no /dev/vfio/vfio and no
 * group nodes (cdev-only and confidential-computing hosts). One IOAS per container, made when the
 * first group joins (iommufd_vfio_compat_ioas_create); every command checks what the kernel checks,
 * in the kernel's order, with the kernel's errno, and answers what the kernel answers.
 *
 * Where vfio_compat.c reads the io_pagetable directly, this file uses what the Ioas API gives: the
 * IOAS's area record (Ioas.trackAreas) for partial and empty unmaps and TYPE1's cuts, IOMMU_OPTION
 * HUGE_PAGES for TYPE1, IOMMU_IOAS_IOVA_RANGES for the usable ranges and the alignment, and the
 * page sizes and cache coherency of the devices' domains (domain_caps.ts). What cannot be
 * expressed (docs/compat.md): before a device is attached, a MAP_DMA with neither READ nor WRITE
 * (EINVAL here, a no-access mapping in the kernel) and a one-byte map at IOVA 2^64-1; and TYPE1's
 * in-place area split (done here with IOMMU_IOAS_COPY through a scratch IOAS: the pieces are
 * briefly unmapped).
 */
import type { Binding } from '../backends/types.js';
import type { IoasArea, UnmapWalk } from '../ioasid/areas.js';
import { ERRNO, IommuError, fail } from '../ioasid/errors.js';
import type { Ioas } from '../ioasid/ioas.js';
import type { Iommufd } from '../ioasid/iommufd.js';
import { U64_MAX } from '../ioasid/uapi.js';
import {
  GET_INFO_MINSZ, MAP_DMA_MINSZ, UNMAP_DMA_MINSZ, VFIO_API_VERSION, VFIO_CHECK_EXTENSION, VFIO_DMA_CC_IOMMU,
  VFIO_DMA_MAP_FLAG_READ, VFIO_DMA_MAP_FLAG_WRITE, VFIO_DMA_UNMAP_FLAG_ALL, VFIO_GET_API_VERSION,
  VFIO_IOMMU_GET_INFO, VFIO_IOMMU_INFO_CAPS, VFIO_IOMMU_INFO_PGSIZES, VFIO_IOMMU_MAP_DMA,
  VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE, VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL, VFIO_IOMMU_UNMAP_DMA, VFIO_NOIOMMU_IOMMU,
  VFIO_SET_IOMMU, VFIO_TYPE1_IOMMU, VFIO_TYPE1v2_IOMMU, VFIO_UNMAP_ALL, vfio_iommu_type1_info,
} from '../ioasid/vfio_uapi.js';
import type { DomainCaps } from './domain_caps.js';
import type { VfioFile } from './vfio_file.js';

const MAX = U64_MAX;
const RW = VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE;
const INFO_SIZE = vfio_iommu_type1_info.size;
/** Built in when the vfio module has its noiommu parameter (CONFIG_VFIO_NOIOMMU). */
const NOIOMMU_PARAM = '/sys/module/vfio/parameters/enable_unsafe_noiommu_mode';

/** The struct behind a pointer argument: EFAULT when it is NULL or shorter than what is read. */
function view(arg: Uint8Array | null, minsz: number): DataView {
  if (!arg || arg.length < minsz) throw new IommuError(ERRNO.EFAULT, 'copy_from_user');
  return new DataView(arg.buffer, arg.byteOffset, arg.length);
}

/** The containers of this mode by iommufd fd, for VFIO_GROUP_SET_CONTAINER with a raw fd. */
const byFd = new WeakMap<Binding, Map<number, IommufdContainer>>();

export class IommufdContainer implements VfioFile {
  /** ictx->vfio_ioas. */
  private compat: Ioas | null = null;
  /** Where TYPE1's cuts keep an area's pages while it is re-laid (made at the first cut). */
  private scratch: Ioas | null = null;
  /** The paging domains of the devices opened through this container's groups, one per open device. */
  private readonly domains = new Set<DomainCaps>();
  private noiommu: boolean | null = null;

  constructor(readonly ctx: Iommufd) {
    let m = byFd.get(ctx.binding);
    if (!m) byFd.set(ctx.binding, (m = new Map()));
    m.set(ctx.fd, this);
  }

  /** The container of this mode whose fd is `fd`, if any. */
  static fromFd(binding: Binding, fd: number): IommufdContainer | null {
    return byFd.get(binding)?.get(fd) ?? null;
  }

  get fd(): number {
    return this.ctx.fd;
  }

  /** The container's IOAS, once a group has joined. */
  get ioas(): Ioas | null {
    return this.compat;
  }

  /** iommufd_vfio_compat_ioas_create: the one IOAS, made once and kept (it records its areas). */
  ioasCreate(): Ioas {
    if (!this.compat) {
      this.compat = this.ctx.allocIoas();
      this.compat.trackAreas();
    }
    return this.compat;
  }

  /** A device's domain joins the container's IOAS; the returned function takes it out again. */
  addDomain(caps: DomainCaps): () => void {
    const entry = { ...caps };
    this.domains.add(entry);
    return () => this.domains.delete(entry);
  }

  close(): void {
    byFd.get(this.ctx.binding)?.delete(this.ctx.fd);
    this.ctx.close();
  }

  /** get_compat_ioas */
  private compatIoas(): Ioas {
    if (!this.compat) fail(ERRNO.ENODEV, 'get_compat_ioas');
    return this.compat;
  }

  // ---- iommufd_vfio_ioctl ----------------------------------------------------------------------

  ioctl(request: number, arg: Uint8Array | null): number {
    switch (request) {
      case VFIO_IOMMU_GET_INFO:
        return this.getInfo(arg);
      case VFIO_IOMMU_MAP_DMA:
        return this.mapDma(arg);
      case VFIO_IOMMU_UNMAP_DMA:
        return this.unmapDma(arg);
      case VFIO_GET_API_VERSION:
      case VFIO_CHECK_EXTENSION:
      case VFIO_SET_IOMMU:
        // The pointer's value is the integer argument: never a type or extension number.
        return this.ioctlInt(request, -1);
      default:
        return fail(ERRNO.ENOTTY, 'ioctl');
    }
  }

  ioctlInt(request: number, value: number): number {
    switch (request) {
      case VFIO_GET_API_VERSION:
        return VFIO_API_VERSION;
      case VFIO_CHECK_EXTENSION:
        return this.checkExtension(value);
      case VFIO_SET_IOMMU:
        return this.setIommu(value);
      case VFIO_IOMMU_GET_INFO:
      case VFIO_IOMMU_MAP_DMA:
      case VFIO_IOMMU_UNMAP_DMA:
        return fail(ERRNO.EFAULT, 'copy_from_user'); // an integer is no pointer to a struct
      default:
        return fail(ERRNO.ENOTTY, 'ioctl');
    }
  }

  /** iommufd_vfio_check_extension (this mode never enters no-iommu mode). */
  private checkExtension(type: number): number {
    switch (type) {
      case VFIO_TYPE1_IOMMU:
      case VFIO_TYPE1v2_IOMMU:
      case VFIO_UNMAP_ALL:
        return 1;
      case VFIO_NOIOMMU_IOMMU:
        return this.noiommuBuiltIn() ? 1 : 0;
      case VFIO_DMA_CC_IOMMU:
        this.compatIoas();
        for (const d of this.domains) if (!d.enforceCacheCoherency) return 0;
        return 1;
      default:
        return 0; // the reserved NESTING type, UPDATE_VADDR and anything unknown
    }
  }

  private noiommuBuiltIn(): boolean {
    if (this.noiommu === null) {
      try {
        this.ctx.binding.readText(NOIOMMU_PARAM);
        this.noiommu = true;
      } catch {
        this.noiommu = false;
      }
    }
    return this.noiommu;
  }

  /** iommufd_vfio_set_iommu: TYPE1 turns large pages off (iopt_disable_large_pages); TYPE1v2 changes nothing. */
  private setIommu(type: number): number {
    if (type !== VFIO_TYPE1_IOMMU && type !== VFIO_TYPE1v2_IOMMU) fail(ERRNO.EINVAL, 'VFIO_SET_IOMMU');
    const ioas = this.compatIoas();
    if (type === VFIO_TYPE1_IOMMU) ioas.setHugePages(false);
    return 0;
  }

  /** iommufd_vfio_map_dma: always at the given IOVA. */
  private mapDma(arg: Uint8Array | null): number {
    const d = view(arg, MAP_DMA_MINSZ);
    const flags = d.getUint32(4, true);
    if (d.getUint32(0, true) < MAP_DMA_MINSZ || flags & ~RW) fail(ERRNO.EINVAL, 'VFIO_IOMMU_MAP_DMA');
    const ioas = this.compatIoas();
    const vaddr = d.getBigUint64(8, true);
    const iova = d.getBigUint64(16, true);
    const size = d.getBigUint64(24, true);
    if (!(flags & RW)) fail(ERRNO.EINVAL, 'VFIO_IOMMU_MAP_DMA', 'IOMMU_IOAS_MAP cannot make a mapping without READ or WRITE');
    if (iova === MAX || size === MAX) fail(this.mapAtTheEdge(ioas, vaddr, iova, size), 'VFIO_IOMMU_MAP_DMA');
    ioas.mapUser(vaddr, size, { iova, readable: (flags & VFIO_DMA_MAP_FLAG_READ) !== 0, writeable: (flags & VFIO_DMA_MAP_FLAG_WRITE) !== 0 });
    return 0;
  }

  /**
   * IOMMU_IOAS_MAP refuses an IOVA or length of 2^64-1 with EOVERFLOW before anything else, where
   * vfio_compat.c hands them to iopt_map_user_pages: its checks, in its order.
   */
  private mapAtTheEdge(ioas: Ioas, vaddr: bigint, iova: bigint, size: bigint): number {
    if (size === MAX) return vaddr ? ERRNO.EOVERFLOW : ERRNO.EINVAL; // iopt_alloc_user_pages, iopt_alloc_pages
    if (vaddr + size > MAX) return ERRNO.EOVERFLOW;
    if (!size || size > MAX - BigInt(this.ctx.binding.pageSize)) return ERRNO.EINVAL;
    const { ranges, alignment } = ioas.iovaRanges();
    if (size % alignment || iova % alignment) return ERRNO.EINVAL; // iopt_alloc_area_pages, iopt_check_iova
    if (size > 1n) return ERRNO.EOVERFLOW;
    if (!ranges.some((r) => r.last === MAX)) return ERRNO.EINVAL; // reserved
    if (ioas.areas!.containing(MAX)) return ERRNO.EEXIST;
    return ERRNO.EOVERFLOW; // the one-byte area at 2^64-1 that only vfio_compat.c can make
  }

  /** iommufd_vfio_unmap_dma: the bytes unmapped are written back even when the unmap fails part way. */
  private unmapDma(arg: Uint8Array | null): number {
    const d = view(arg, UNMAP_DMA_MINSZ);
    const flags = d.getUint32(4, true);
    if (d.getUint32(0, true) < UNMAP_DMA_MINSZ || flags & ~VFIO_DMA_UNMAP_FLAG_ALL) fail(ERRNO.EINVAL, 'VFIO_IOMMU_UNMAP_DMA');
    const ioas = this.compatIoas();
    const iova = d.getBigUint64(8, true);
    const size = d.getBigUint64(16, true);
    let unmapped: bigint;
    let errno = 0;
    if (flags & VFIO_DMA_UNMAP_FLAG_ALL) {
      if (iova || size) fail(ERRNO.EINVAL, 'VFIO_IOMMU_UNMAP_DMA');
      unmapped = ioas.unmapAll();
    } else {
      // TYPE1: cut the areas at the first and last IOVA, so exactly the range goes.
      if (!ioas.getHugePages()) this.cutIova(ioas, iova ? [BigInt.asUintN(64, iova + size - 1n), iova - 1n] : [BigInt.asUintN(64, iova + size - 1n)]);
      ({ unmapped, errno } = this.unmapIova(ioas, iova, size));
    }
    d.setBigUint64(16, unmapped, true);
    if (errno) fail(errno, 'VFIO_IOMMU_UNMAP_DMA');
    return 0;
  }

  /** iopt_unmap_iova: the whole areas of [iova, iova + size) go, in order, until one sticks out (ENOENT). */
  private unmapIova(ioas: Ioas, iova: bigint, size: bigint): { unmapped: bigint; errno: number } {
    if (!size) return { unmapped: 0n, errno: ERRNO.EINVAL };
    if (iova + size - 1n > MAX) return { unmapped: 0n, errno: ERRNO.EOVERFLOW };
    const walk = ioas.areas!.walk(iova, iova + size - 1n);
    if (walk.count) this.removeAreas(ioas, walk);
    return { unmapped: walk.unmapped, errno: walk.blocked ? ERRNO.ENOENT : 0 };
  }

  /**
   * Unmap the whole areas a walk found: one IOMMU_IOAS_UNMAP over their span, or one per area when
   * the span cannot be expressed (a length of 2^64-1). The kernel must agree with the record.
   */
  private removeAreas(ioas: Ioas, walk: UnmapWalk): void {
    const areas = ioas.areas!.all().slice(walk.index, walk.index + walk.count);
    const first = areas[0]!.iova;
    const last = areas[areas.length - 1]!.last;
    let done = 0n;
    if (first === 0n && last === MAX) done = ioas.unmapAll();
    else if (last - first + 1n < MAX) done = ioas.unmap(first, last - first + 1n);
    else for (const a of areas) done += ioas.unmap(a.iova, a.last - a.iova + 1n);
    if (done !== walk.unmapped) throw new Error(`IOAS ${ioas.id} was changed outside the container's Ioas handle: its area record is stale`);
  }

  /** iopt_cut_iova: split the areas holding these IOVAs so that each IOVA ends an area. */
  private cutIova(ioas: Ioas, iovas: readonly bigint[]): void {
    for (const at of iovas) {
      const area = ioas.areas!.containing(at);
      if (area) this.splitArea(ioas, area, at);
    }
  }

  /**
   * iopt_area_split after `at`. The kernel splits the area in place; here its pages are held by a
   * scratch IOAS (IOMMU_IOAS_COPY: no new pin, no new charge) while it is unmapped and copied back
   * as two areas, so the device briefly cannot reach the two pieces.
   */
  private splitArea(ioas: Ioas, area: IoasArea, at: bigint): void {
    if (at === area.iova || at === area.last) return;
    if ((at + 1n) % ioas.iovaRanges().alignment) fail(ERRNO.EINVAL, 'VFIO_IOMMU_UNMAP_DMA');
    const scratch = (this.scratch ??= this.ctx.allocIoas());
    const perm = { readable: area.readable, writeable: area.writeable };
    const length = area.last - area.iova + 1n;
    const whole = { ...perm, iova: area.iova };
    scratch.copyFrom(ioas, area.iova, length, whole);
    try {
      ioas.unmap(area.iova, length);
      try {
        ioas.copyFrom(scratch, area.iova, at - area.iova + 1n, whole);
        ioas.copyFrom(scratch, at + 1n, area.last - at, { ...perm, iova: at + 1n });
      } catch (e) {
        // Put the area back as it was (its pages are still held by the scratch IOAS).
        if (ioas.areas!.containing(area.iova)) ioas.unmap(area.iova, at - area.iova + 1n);
        ioas.copyFrom(scratch, area.iova, length, whole);
        throw e;
      }
    } finally {
      scratch.unmapAll();
    }
  }

  /** iommufd_get_pagesizes: what every domain can map, at least PAGE_SIZE and the IOAS alignment. */
  private pageSizes(alignment: bigint): bigint {
    let bitmap = MAX;
    for (const d of this.domains) bitmap &= d.pgsizeBitmap ?? MAX & ~(alignment - 1n);
    const page = BigInt(this.ctx.binding.pageSize);
    if (bitmap & (page - 1n)) bitmap = (bitmap & ~(page - 1n) & MAX) | page;
    return bitmap > alignment ? bitmap : alignment;
  }

  /**
   * iommufd_vfio_iommu_get_info: the page sizes, then the DMA_AVAIL and IOVA_RANGE capabilities.
   * With a short argsz the capabilities that fit are written, cap_offset stays 0 and argsz comes
   * back as the size needed.
   */
  private getInfo(arg: Uint8Array | null): number {
    const d = view(arg, GET_INFO_MINSZ);
    const argsz = d.getUint32(0, true);
    if (argsz < GET_INFO_MINSZ) fail(ERRNO.EINVAL, 'VFIO_IOMMU_GET_INFO');
    const ioas = this.compatIoas();
    const { ranges, alignment } = ioas.iovaRanges();
    const out = arg!;
    const put = (off: number, bytes: Uint8Array): void => {
      if (off + bytes.length > out.length) fail(ERRNO.EFAULT, 'copy_to_user');
      out.set(bytes, off);
    };
    const caps: Uint8Array[] = [capDmaAvail(), capIovaRange(ranges)];
    const sizes = [12, 16 + 16 * ranges.length];
    let total = INFO_SIZE;
    let lastCap = -1;
    caps.forEach((cap, i) => {
      const avail = argsz > total ? argsz - total : 0;
      if (i === 1) {
        // iommufd_fill_cap_iova writes each range that fits, then the header if all of them do.
        for (let n = 0; n < ranges.length; n++) if (avail >= 16 + 16 * (n + 1)) put(total + 16 + 16 * n, cap.subarray(16 + 16 * n, 32 + 16 * n));
        if (avail >= sizes[i]!) put(total, cap.subarray(0, 16));
      } else if (avail >= sizes[i]!) put(total, cap);
      if (lastCap >= 0 && argsz >= total) put(lastCap + 4, u32(total));
      lastCap = total;
      total += Math.ceil(sizes[i]! / 8) * 8;
    });
    const info = new Uint8Array(INFO_SIZE);
    const iv = new DataView(info.buffer);
    iv.setUint32(0, total, true);
    iv.setUint32(4, VFIO_IOMMU_INFO_PGSIZES | VFIO_IOMMU_INFO_CAPS, true);
    iv.setBigUint64(8, this.pageSizes(alignment), true);
    iv.setUint32(16, argsz >= total ? INFO_SIZE : 0, true);
    put(0, info.subarray(0, Math.min(argsz, INFO_SIZE)));
    return 0;
  }
}

function u32(v: number): Uint8Array {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, v, true);
  return b;
}

function capHeader(dv: DataView, id: number): void {
  dv.setUint16(0, id, true);
  dv.setUint16(2, 1, true);
}

/** iommufd has no per-mapping limit: avail is U32_MAX (vfio_compat.c's comment explains why not U16_MAX). */
function capDmaAvail(): Uint8Array {
  const b = new Uint8Array(12);
  const dv = new DataView(b.buffer);
  capHeader(dv, VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL);
  dv.setUint32(8, 0xffff_ffff, true);
  return b;
}

/** The IOAS's usable ranges (the holes between reserved ranges), `end` inclusive. */
function capIovaRange(ranges: readonly { start: bigint; last: bigint }[]): Uint8Array {
  const b = new Uint8Array(16 + 16 * ranges.length);
  const dv = new DataView(b.buffer);
  capHeader(dv, VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE);
  dv.setUint32(8, ranges.length, true);
  ranges.forEach((r, n) => {
    dv.setBigUint64(16 + 16 * n, r.start, true);
    dv.setBigUint64(24 + 16 * n, r.last, true);
  });
  return b;
}
