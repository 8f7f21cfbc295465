/**
 * io_pagetable: the IOVA bookkeeping of one IOAS (io_pagetable.c). Areas map IOVA spans onto
 * slices of IoptPages; reserved spans (device regions, test reservations) and the allowed list
 * constrain where areas may go; the automatic allocator follows the kernel's rules exactly
 * (alignment guessed from the source address, first fit from the lowest hole, never IOVA 0,
 * the page offset of the source kept, allowed ranges that touch taken as one span). It never
 * sees object IDs or ioctl structs. Byte offsets into pages can pass 2^53, so an area keeps
 * the kernel's split (page index, offset in that page) and both stay exact JS numbers.
 */
import { ERRNO } from '../../../ioasid/errors.js';
import { SpanList, type Span } from './area_list.js';
import { kerr } from '../kernel/errno.js';
import { PAGE_SIZE } from '../kernel/mm.js';
import type { PagingDomain } from '../iommu/domain.js';
import { shouldFailSlab } from '../kernel/fault_inject.js';
import type { IoptPages } from './pages.js';

import { IOMMU_READ, IOMMU_WRITE } from '../iommu/iommu.js';

export { IOMMU_READ, IOMMU_WRITE };

const MAX = 0xffff_ffff_ffff_ffffn; // ULONG_MAX
const HALF_MAX = MAX / 2n;
const PAGE = BigInt(PAGE_SIZE);
const PAGE_MASK = PAGE - 1n;
const MAX_LESS_PAGE = MAX - PAGE;
/** Below this an offset inside an area plus a page offset is an exact JS number. */
const SAFE = BigInt(Number.MAX_SAFE_INTEGER - PAGE_SIZE);
/** HPAGE_SIZE on x86-64 with CONFIG_TRANSPARENT_HUGEPAGE (the test kernel has it). */
const MAX_AUTO_ALIGNMENT = 2n * 1024n * 1024n;

export interface Area extends Span {
  pages: IoptPages;
  /** iopt_area_index: the page of `pages` holding the area's first byte. */
  pageIndex: number;
  /** area->page_offset: that byte's offset inside its page. */
  pageOffset: number;
  prot: number;
  /** In-kernel access users pinning inside this area; unmap asks them to let go. */
  numAccesses: number;
  /** HW queues locking this area; unmap gets EBUSY. */
  numLocks: number;
  /** Its pages are pinned on behalf of the domains (storage_domain): once, however many domains. */
  domainPinned: boolean;
}

export interface Reserved extends Span {
  owner: unknown;
}

/** One slice of pages to place at consecutive IOVAs (iopt_pages_list; start_byte as page index + offset). */
export interface PagesSlice {
  pages: IoptPages;
  pageIndex: number;
  pageOffset: number;
  length: bigint;
}

/** iopt_area_start_byte(area, iova) / PAGE_SIZE: the page of area.pages holding the byte at `iova`. */
export function areaPage(a: Area, iova: bigint): number {
  const d = iova - a.start;
  if (d < SAFE) return a.pageIndex + Math.floor((a.pageOffset + Number(d)) / PAGE_SIZE);
  return a.pageIndex + Number((d + BigInt(a.pageOffset)) / PAGE);
}

/** iopt_area_start_byte(area, iova) % PAGE_SIZE: the byte's offset inside its page. */
export function areaPageOffset(a: Area, iova: bigint): number {
  const d = iova - a.start;
  if (d < SAFE) return (a.pageOffset + Number(d)) % PAGE_SIZE;
  return Number((d + BigInt(a.pageOffset)) & PAGE_MASK);
}

/** The source address of a slice's first byte (pages->uptr or file start + start_byte), which guesses the IOVA alignment. */
function sourceAddr(pages: IoptPages, pageIndex: number, pageOffset: number): bigint {
  if (pageIndex === 0) return pageOffset ? pages.base + BigInt(pageOffset) : pages.base;
  return pages.base + BigInt(pageIndex) * PAGE + BigInt(pageOffset);
}

/** The hook io_pagetable calls when an unmap meets an area that accesses still use. */
export interface AccessNotifier {
  notifyUnmap(iova: bigint, length: bigint): void;
}

export class IoPagetable {
  readonly areas = new SpanList<Area>();
  /** Sorted by start; may overlap (the kernel's reserved interval tree). */
  reserved: Reserved[] = [];
  /** Sorted, non-overlapping. */
  allowed: Span[] = [];
  iovaAlignment = 1n;
  disableLargePages = false;
  /** The domains this IOAS fills (iopt->domains): every area is mapped in each. */
  readonly domains: PagingDomain[] = [];
  readonly accessAlignments = new Map<object, bigint>();
  notifier: AccessNotifier | null = null;

  // ---- queries ---------------------------------------------------------------------------------

  private firstReserved(start: bigint, last: bigint): Reserved | undefined {
    let best: Reserved | undefined;
    for (const r of this.reserved) {
      if (r.start > last) break;
      if (r.last >= start && (!best || r.start < best.start)) best = r;
    }
    return best;
  }

  private intersectsAllowed(start: bigint, last: bigint): boolean {
    return this.allowed.some((a) => a.start <= last && a.last >= start);
  }

  /** Holes of the reserved spans inside [0, ULONG_MAX]: what IOMMU_IOAS_IOVA_RANGES reports. */
  usableRanges(): Span[] {
    const out: Span[] = [];
    let cursor = 0n;
    for (const r of this.reserved) {
      if (r.start > cursor) out.push({ start: cursor, last: r.start - 1n });
      if (r.last + 1n > cursor) cursor = r.last + 1n;
      if (cursor > MAX) return out;
    }
    out.push({ start: cursor, last: MAX });
    return out;
  }

  // ---- IOVA allocation (iopt_alloc_iova / iopt_check_iova) ------------------------------------

  allocIova(addr: bigint, length: bigint): bigint {
    const pageOffset = addr & PAGE_MASK;
    if (length === 0n || length >= HALF_MAX) kerr(ERRNO.EOVERFLOW);
    let align = roundupPowOfTwo(length);
    if (addr !== 0n) {
      const low = lowestSetBit(addr); // 1 << __ffs64(addr)
      if (low < align) align = low;
    }
    if (align >= MAX_AUTO_ALIGNMENT) align = MAX_AUTO_ALIGNMENT;
    if (align < this.iovaAlignment) kerr(ERRNO.EINVAL);
    const mask = align - 1n;
    const req: AllocRequest = { lengthM1: length - 1n, mask, notMask: ~mask, pageOffset };
    const allowed = this.allowed;
    if (!allowed.length) {
      const iova = this.allocIn(PAGE, MAX_LESS_PAGE, req);
      if (iova !== null) return iova;
    }
    // interval_tree_for_each_span: allowed ranges that touch (last + 1 == start) are one span
    for (let i = 0; i < allowed.length; ) {
      const start = allowed[i]!.start;
      let last = allowed[i]!.last;
      while (++i < allowed.length && allowed[i]!.start <= last + 1n) {
        if (allowed[i]!.last > last) last = allowed[i]!.last;
      }
      const s = start < PAGE ? PAGE : start;
      const l = last > MAX_LESS_PAGE ? MAX_LESS_PAGE : last;
      if (s > l) continue;
      const iova = this.allocIn(s, l, req);
      if (iova !== null) return iova;
    }
    return kerr(ERRNO.ENOSPC);
  }

  /** Inside one allowed span: walk the holes of (reserved ∪ areas); the first that fits wins. */
  private allocIn(start: bigint, last: bigint, req: AllocRequest): bigint | null {
    const from = fits(start, last, req);
    if (from === null) return null;
    let cursor: bigint = from;
    for (;;) {
      const r: Span | undefined = this.reserved.length ? this.firstReserved(cursor, last) : undefined;
      const a: Span | undefined = this.areas.first(cursor, last);
      const used: Span | undefined = !r ? a : !a ? r : a.start < r.start ? a : r;
      if (!used) return fits(cursor, last, req);
      if (used.start > cursor) {
        const got = fits(cursor, used.start - 1n, req);
        if (got !== null) return got;
      }
      if (used.last >= last) return null;
      if (used.last >= cursor) cursor = used.last + 1n;
    }
  }

  checkIova(iova: bigint, length: bigint): void {
    if (this.iovaAlignment !== 1n && iova & (this.iovaAlignment - 1n)) kerr(ERRNO.EINVAL);
    const last = iova + length - 1n;
    if (last > MAX) kerr(ERRNO.EOVERFLOW);
    if (this.firstReserved(iova, last)) kerr(ERRNO.EINVAL);
    if (this.areas.first(iova, last)) kerr(ERRNO.EEXIST);
  }

  // ---- map / copy / unmap ----------------------------------------------------------------------

  /** Where a new mapping of `length` goes: checked when fixed, else allocated from the source address. */
  private place(length: bigint, iova: bigint | null, pages: IoptPages, pageIndex: number, pageOffset: number): bigint {
    const align = this.iovaAlignment;
    if (length === 0n || (align !== 1n && length & (align - 1n))) kerr(ERRNO.EINVAL);
    if (iova === null) return this.allocIova(sourceAddr(pages, pageIndex, pageOffset), length);
    this.checkIova(iova, length);
    return iova;
  }

  /** iopt_insert_area's checks for one slice placed at `start`. */
  private newArea(start: bigint, pages: IoptPages, pageIndex: number, pageOffset: number, length: bigint, prot: number): Area {
    if (prot & IOMMU_WRITE && !pages.writable) kerr(ERRNO.EPERM);
    const align = this.iovaAlignment;
    if (align !== 1n && pageOffset & Number(align - 1n)) kerr(ERRNO.EINVAL);
    const last = start + length - 1n;
    if (last > MAX) kerr(ERRNO.EOVERFLOW);
    return { start, last, pages, pageIndex, pageOffset, prot, numAccesses: 0, numLocks: 0, domainPinned: false };
  }

  /** MAP / MAP_FILE: one new IoptPages at one area from its first page (mapPages without the arrays). */
  mapOne(pages: IoptPages, pageOffset: number, length: bigint, iova: bigint | null, prot: number): bigint {
    allocAreas(1);
    const at = this.place(length, iova, pages, 0, pageOffset);
    const area = this.newArea(at, pages, 0, pageOffset, length, prot);
    this.areas.insert(area);
    if (this.domains.length) this.fillDomainsOrAbort([area]);
    return at;
  }

  /**
   * iopt_map_pages: place the slices at consecutive IOVAs starting at `iova` (or an allocated
   * IOVA when `iova` is null). Either every area is inserted or none is. Returns the IOVA.
   */
  mapPages(slices: PagesSlice[], length: bigint, iova: bigint | null, prot: number): bigint {
    const first = slices[0]!;
    allocAreas(slices.length);
    const at = this.place(length, iova, first.pages, first.pageIndex, first.pageOffset);
    const areas: Area[] = [];
    let cur = at;
    for (const s of slices) {
      const a = this.newArea(cur, s.pages, s.pageIndex, s.pageOffset, s.length, prot);
      areas.push(a);
      cur = a.last + 1n;
    }
    for (const a of areas) this.areas.insert(a);
    if (this.domains.length) this.fillDomainsOrAbort(areas);
    return at;
  }

  /** iopt_fill_domains_pages: pin and map new areas into every domain, or take them all back out. */
  private fillDomainsOrAbort(areas: Area[]): void {
    const done: Area[] = [];
    try {
      for (const a of areas) {
        this.pinForDomains(a);
        done.push(a);
        for (const d of this.domains) d.mapArea(a, this.disableLargePages);
      }
    } catch (e) {
      for (const a of done) this.unfillArea(a);
      for (const a of areas) this.areas.remove(a);
      throw e;
    }
  }

  /** The page index range [first, last] of `pages` an area covers. */
  private pageRange(a: Area): [number, number] {
    return [a.pageIndex, areaPage(a, a.last)];
  }

  private pinForDomains(a: Area): void {
    if (a.domainPinned) return;
    const [f, l] = this.pageRange(a);
    a.pages.pin(f, l, a.pages.writable);
    a.domainPinned = true;
  }

  /** Unmap an area from every domain and drop its domain pin (iopt_area_unfill_domains). */
  private unfillArea(a: Area): void {
    for (const d of this.domains) d.unmapRange(a.start, a.last);
    if (a.domainPinned) {
      const [f, l] = this.pageRange(a);
      a.pages.unpin(f, l);
      a.domainPinned = false;
    }
  }

  // ---- domains (iopt_table_add_domain / iopt_table_remove_domain) -----------------------------

  /**
   * Start filling a domain: the IOVA alignment rises to its smallest page (EINVAL above
   * PAGE_SIZE, EADDRINUSE if an area breaks it), IOVAs outside its aperture become reserved
   * (EADDRINUSE if an area is there), and every area is pinned and mapped into it.
   */
  addDomain(domain: PagingDomain): void {
    const unit = BigInt(domain.pageSize);
    const align = unit > this.iovaAlignment ? unit : this.iovaAlignment;
    if (align > PAGE) kerr(ERRNO.EINVAL);
    if (align !== this.iovaAlignment) this.checkAlignment(align);
    try {
      if (domain.aperture.start !== 0n) this.reserve(0n, domain.aperture.start - 1n, domain);
      if (domain.aperture.last !== MAX) this.reserve(domain.aperture.last + 1n, MAX, domain);
      const filled: Area[] = [];
      const first = this.domains.length === 0;
      try {
        for (const a of this.areas.range(0n, MAX)) {
          if (first) this.pinForDomains(a);
          filled.push(a);
          domain.mapArea(a, this.disableLargePages);
        }
      } catch (e) {
        for (const a of filled) {
          domain.unmapRange(a.start, a.last);
          if (first) this.unfillArea(a);
        }
        throw e;
      }
    } catch (e) {
      this.removeReserved(domain);
      throw e;
    }
    this.iovaAlignment = align;
    this.domains.push(domain);
  }

  removeDomain(domain: PagingDomain): void {
    const i = this.domains.indexOf(domain);
    if (i < 0) return;
    this.domains.splice(i, 1);
    for (const a of this.areas.range(0n, MAX)) {
      domain.unmapRange(a.start, a.last);
      if (!this.domains.length) this.unfillArea(a);
    }
    this.removeReserved(domain);
    this.recalculateAlignment();
  }

  private checkAlignment(align: bigint): void {
    const mask = align - 1n;
    for (const a of this.areas.range(0n, MAX)) {
      if (a.start & mask || (a.last - a.start + 1n) & mask || BigInt(a.pageOffset) & mask) {
        kerr(ERRNO.EADDRINUSE);
      }
    }
  }

  /** iopt_get_pages: slices covering [iova, iova+length) of contiguous areas, each pages ref'd. */
  getPages(iova: bigint, length: bigint): PagesSlice[] {
    if (length === 0n) kerr(ERRNO.EINVAL);
    const last = iova + length - 1n;
    if (last > MAX) kerr(ERRNO.EOVERFLOW);
    const out: PagesSlice[] = [];
    let cur = iova;
    let area = this.areas.first(cur, cur);
    while (area && area.start <= cur) {
      const end = last < area.last ? last : area.last;
      if (shouldFailSlab()) kerr(ERRNO.ENOMEM); // the iopt_pages_list element
      out.push({ pages: area.pages, pageIndex: areaPage(area, cur), pageOffset: areaPageOffset(area, cur), length: end - cur + 1n });
      if (last <= area.last) {
        for (const s of out) s.pages.refs++;
        return out;
      }
      cur = area.last + 1n;
      area = this.areas.first(cur, cur);
    }
    return kerr(ERRNO.ENOENT);
  }

  /**
   * iopt_unmap_iova_range: remove every area inside [start, last]. An area that sticks out of the
   * range fails with ENOENT; like the kernel, areas already removed before that point stay removed.
   * Returns the bytes unmapped (0 when nothing was there).
   */
  unmapRange(start: bigint, last: bigint, onRemove: (a: Area) => void, progress?: { unmapped: bigint }): bigint {
    let unmapped = 0n;
    let tries = 0;
    let area: Area | undefined;
    while ((area = this.areas.first(start, last))) {
      if (area.numLocks) kerr(ERRNO.EBUSY);
      if (area.start < start || area.last > last) kerr(ERRNO.ENOENT);
      if (area.start !== start) tries = 0;
      if (area.numAccesses) {
        start = area.start;
        this.notifier?.notifyUnmap(area.start, area.last - area.start + 1n);
        if (++tries > 100) kerr(ERRNO.EDEADLK);
        continue;
      }
      this.areas.remove(area);
      if (this.domains.length || area.domainPinned) this.unfillArea(area);
      onRemove(area);
      unmapped += area.last - area.start + 1n;
      if (progress) progress.unmapped = unmapped;
      if (area.last >= last) break;
      start = area.last + 1n;
    }
    return unmapped;
  }

  /**
   * iopt_cut_iova: split the area holding each IOVA so that the IOVA becomes an area's last byte
   * (VFIO type1 lets userspace unmap inside a mapping; the compat layer cuts first).
   */
  cutIova(iovas: bigint[]): void {
    for (const iova of iovas) {
      const area = this.areas.first(iova, iova);
      if (area) this.splitArea(area, iova);
    }
  }

  private splitArea(area: Area, iova: bigint): void {
    if (iova === area.start || iova === area.last) return;
    const newStart = iova + 1n;
    const mask = this.iovaAlignment - 1n;
    const rhsOffset = areaPageOffset(area, newStart);
    if (newStart & mask || BigInt(rhsOffset) & mask) kerr(ERRNO.EINVAL);
    allocAreas(2);
    if (area.numAccesses) kerr(ERRNO.EINVAL);
    this.areas.remove(area);
    const common = { pages: area.pages, prot: area.prot, numAccesses: 0, numLocks: 0, domainPinned: area.domainPinned };
    const lhs: Area = { ...common, start: area.start, last: iova, pageIndex: area.pageIndex, pageOffset: area.pageOffset };
    const rhs: Area = { ...common, start: newStart, last: area.last, pageIndex: areaPage(area, newStart), pageOffset: rhsOffset };
    this.areas.insert(lhs);
    this.areas.insert(rhs);
    area.pages.refs++;
    // Each half holds its own domain pin; a page both halves cover is pinned once more.
    const shared = this.pageRange(lhs)[1];
    if (area.domainPinned && shared === this.pageRange(rhs)[0]) area.pages.pin(shared, shared, area.pages.writable);
  }

  // ---- allowed and reserved ranges -------------------------------------------------------------

  /** Replace the allowed list (already validated: start < last, no overlap, sorted). */
  setAllowed(ranges: Span[]): void {
    for (const a of ranges) if (this.firstReserved(a.start, a.last)) kerr(ERRNO.EADDRINUSE);
    this.allowed = ranges;
  }

  /** iopt_reserve_iova: EADDRINUSE over an area or an allowed range; ENOMEM (fault injection) for its node. */
  reserve(start: bigint, last: bigint, owner: unknown): void {
    if (this.areas.first(start, last) || this.intersectsAllowed(start, last)) kerr(ERRNO.EADDRINUSE);
    if (shouldFailSlab()) kerr(ERRNO.ENOMEM);
    let i = 0;
    while (i < this.reserved.length && this.reserved[i]!.start <= start) i++;
    this.reserved.splice(i, 0, { start, last, owner });
  }

  removeReserved(owner: unknown): void {
    this.reserved = this.reserved.filter((r) => r.owner !== owner);
  }

  // ---- alignment ---------------------------------------------------------------------------------

  /** iopt_calculate_iova_alignment: raise or lower the IOAS alignment; EADDRINUSE if areas break it. */
  recalculateAlignment(): void {
    let align = this.disableLargePages ? PAGE : 1n;
    for (const d of this.domains) if (BigInt(d.pageSize) > align) align = BigInt(d.pageSize);
    for (const a of this.accessAlignments.values()) if (a > align) align = a;
    if (align > this.iovaAlignment) {
      this.checkAlignment(align);
    }
    this.iovaAlignment = align;
  }

  setLargePages(enable: boolean): void {
    if (enable) {
      this.disableLargePages = false;
      this.recalculateAlignment();
      return;
    }
    if (this.disableLargePages) return;
    if (this.domains.length && this.areas.size) kerr(ERRNO.EINVAL);
    this.disableLargePages = true;
    try {
      this.recalculateAlignment();
    } catch (e) {
      this.disableLargePages = false;
      throw e;
    }
  }
}

/** iopt_alloc_area_pages' first loop: one iopt_area_alloc per slice, before any check (ENOMEM: fault injection). */
function allocAreas(n: number): void {
  for (let i = 0; i < n; i++) if (shouldFailSlab()) kerr(ERRNO.ENOMEM);
}

interface AllocRequest {
  lengthM1: bigint;
  mask: bigint;
  notMask: bigint;
  pageOffset: bigint;
}

/** __alloc_iova_check_range: the aligned start (with the page offset) if [start, last] can hold it. */
function fits(start: bigint, last: bigint, req: AllocRequest): bigint | null {
  const up = start + req.mask;
  if (up > MAX) return null;
  const aligned = (up & req.notMask) | req.pageOffset;
  if (aligned >= last || last - aligned < req.lengthM1) return null;
  return aligned;
}

const POW2: bigint[] = Array.from({ length: 65 }, (_, i) => 1n << BigInt(i));

function lowestSetBit(v: bigint): bigint {
  const lo = Number(v & 0xffff_ffffn);
  if (lo) return POW2[31 - Math.clz32(lo & -lo)]!;
  return v & -v;
}

function roundupPowOfTwo(n: bigint): bigint {
  if (n <= 0x1_0000_0000n) {
    const x = Number(n) - 1;
    return x <= 0 ? 1n : POW2[32 - Math.clz32(x)]!;
  }
  let p = 1n << 32n;
  while (p < n) p <<= 1n;
  return p;
}
