/**
 * A paging iommu_domain: the I/O page table an IOMMU walks for the devices attached to it. The
 * iommufd core fills it from the IOAS's areas (io_pagetable.ts); devices' DMA is translated by
 * it (DmaTarget). Each entry maps one smallest-page unit (2 KiB on the kernel's mock, 4 KiB on
 * VT-d/SMMUv3) to a byte offset in a page store, with R/W permission and a dirty bit.
 *
 * Storage is a radix of 512-entry leaves keyed by IOVA >> (shift + 9), like one level of a real
 * table: no per-page objects. Unit indexes are JS numbers (IOVA >> 11 < 2^53).
 */
import { ERRNO } from '../../../ioasid/errors.js';
import type { DmaFault, DmaFaultReason, DmaPageWalk, DmaTarget } from '../include/iommu.js';
import { IOMMU_READ, IOMMU_WRITE, type UserArray } from './iommu.js';
import { kerr } from '../kernel/errno.js';
import { shouldFailPage, shouldFailSlab } from '../kernel/fault_inject.js';
import { PAGE_SIZE, type PageStore } from '../kernel/mm.js';

/**
 * What iopt_area_fill_domain hands a domain to map: an area's IOVA range and protection, and its
 * pinned pages (iommufd's io_pagetable Area is one).
 */
export interface DomainMapSource {
  readonly start: bigint;
  readonly last: bigint;
  /** The page of `start` in the pages (iopt_area_index), and `start`'s offset in that page. */
  readonly pageIndex: number;
  readonly pageOffset: number;
  /** IOMMU_READ | IOMMU_WRITE */
  readonly prot: number;
  readonly pages: {
    /** The store pinned page `i` lives in (null: not pinned). */
    storeOf(i: number): PageStore | null;
    /** Page `i`'s index in its store. */
    pageIndexOf(i: number): number;
  };
}

const LEAF = 512;
const TWO_53 = 2 ** 53;
export const PTE_DIRTY = 4;

class Leaf {
  readonly stores: (PageStore | null)[] = new Array<PageStore | null>(LEAF).fill(null);
  readonly offsets = new Float64Array(LEAF);
  /** IOMMU_READ | IOMMU_WRITE | PTE_DIRTY; 0 = not present. The dirty bit lives on a PTE's first unit. */
  readonly flags = new Uint8Array(LEAF);
  /** log2 of the size of the IOPTE this unit belongs to (a huge or contiguous entry covers many units). */
  readonly pteLg2 = new Uint8Array(LEAF);
  used = 0;
}

export interface DomainConfig {
  /** Who made it (an IOMMU driver's ops): a nested domain's parent and a device must share it. */
  readonly owner: object;
  readonly pgsizeBitmap: bigint;
  readonly aperture: { readonly start: bigint; readonly last: bigint };
  /** The domain can track dirty pages (dirty_ops present). */
  readonly dirtyOps: boolean;
  /** enforce_cache_coherency() succeeds. */
  readonly enforceCacheCoherency?: boolean;
}

export class PagingDomain implements DmaTarget {
  readonly kind = 'paging' as const;
  readonly owner: object;
  readonly pgsizeBitmap: bigint;
  /** 1 << __ffs(pgsize_bitmap): the smallest page, the unit of every entry. */
  readonly pageSize: number;
  readonly shift: number;
  private readonly shiftN: bigint;
  /** log2 of every page size above the smallest, ascending (the IOPTE sizes iommu_map may pick). */
  private readonly largerSizes: number[] = [];
  readonly aperture: { readonly start: bigint; readonly last: bigint };
  readonly dirtyOps: boolean;
  readonly canEnforceCc: boolean;
  /** IOMMU_HWPT_SET_DIRTY_TRACKING state. */
  dirtyTracking = false;
  private readonly leaves = new Map<number, Leaf>();
  /** Entries present. */
  mapped = 0;
  /** Empty leaves kept for reuse (a table page freed and allocated again on the next map). */
  private readonly spare: Leaf[] = [];
  /** IOTLB invalidations issued (iotlb_sync / flush), for tests and benchmarks. */
  flushes = 0;
  private gen = 0;

  /** Raised by every unmap: IOTLB entries filled before it are stale. Undefined while dirty tracking (see DmaTarget). */
  get generation(): number | undefined {
    return this.dirtyTracking ? undefined : this.gen;
  }

  /** The driver's domain_alloc_paging: ENOMEM when fault injection fails its allocation. */
  constructor(cfg: DomainConfig) {
    if (shouldFailSlab()) kerr(ERRNO.ENOMEM);
    this.owner = cfg.owner;
    this.pgsizeBitmap = cfg.pgsizeBitmap;
    const low = cfg.pgsizeBitmap & -cfg.pgsizeBitmap;
    this.pageSize = Number(low);
    this.shift = 31 - Math.clz32(this.pageSize);
    this.shiftN = BigInt(this.shift);
    for (let cand = this.shift + 1; cand < 53; cand++) if (cfg.pgsizeBitmap & (1n << BigInt(cand))) this.largerSizes.push(cand);
    this.aperture = cfg.aperture;
    this.dirtyOps = cfg.dirtyOps;
    this.canEnforceCc = cfg.enforceCacheCoherency ?? true;
  }

  /** IOVA -> unit index; plain number arithmetic below 2^53 (exact there), BigInt above. */
  private unitOf(iova: bigint): number {
    const n = Number(iova);
    return n < TWO_53 ? Math.floor(n / this.pageSize) : Number(iova >> this.shiftN);
  }

  /**
   * Map every unit of an area (iopt_area_fill_domain); its pages must be pinned. Physically
   * contiguous runs go in the largest IOPTEs iommu_map would pick (page sizes of the bitmap that
   * IOVA and address alignment and the remaining length allow), or in PAGE_SIZE IOPTEs when the
   * IOAS disabled large pages (batch_iommu_map_small). A map with neither READ nor WRITE is
   * EINVAL (generic_pt's map_range, like io-pgtable-arm): VFIO_IOMMU_MAP_DMA with flags 0 makes one.
   */
  mapArea(area: DomainMapSource, smallOnly = false): void {
    if (!(area.prot & (IOMMU_READ | IOMMU_WRITE))) kerr(ERRNO.EINVAL);
    const pages = area.pages;
    const size = this.pageSize;
    let u = this.unitOf(area.start);
    const last = this.unitOf(area.last);
    const page0 = area.pageIndex;
    let byte = area.pageOffset; // from the start of page0: a pinned area's offsets are exact numbers
    while (u <= last) {
      // one physically contiguous run: same store, consecutive offsets
      const pi = page0 + Math.floor(byte / PAGE_SIZE);
      const store = pages.storeOf(pi);
      if (!store) kerr(ERRNO.EFAULT); // not pinned: a core bug, never silently mapped
      const off0 = pages.pageIndexOf(pi) * PAGE_SIZE + (byte % PAGE_SIZE);
      let n = 1;
      for (;;) {
        if (u + n > last) break;
        const b = byte + n * size;
        const pj = page0 + Math.floor(b / PAGE_SIZE);
        if (pages.storeOf(pj) !== store || pages.pageIndexOf(pj) * PAGE_SIZE + (b % PAGE_SIZE) !== off0 + n * size) break;
        n++;
      }
      this.mapRun(u, n, store, off0, area.prot, smallOnly ? PAGE_SIZE : Infinity);
      u += n;
      byte += n * size;
    }
  }

  /** iommu_map of one contiguous run of `n` units at unit `u`, chunked by iommu_pgsize's rules. */
  private mapRun(u: number, n: number, store: PageStore, off: number, prot: number, maxChunk: number): void {
    const size = this.pageSize;
    while (n > 0) {
      let lg2 = this.shift;
      for (const cand of this.largerSizes) {
        const span = 2 ** (cand - this.shift);
        if (span > n || 2 ** cand > maxChunk || u % span || off % 2 ** cand) break;
        lg2 = cand;
      }
      const span = 2 ** (lg2 - this.shift);
      for (let k = 0; k < span; k++) this.setUnit(u + k, store, off + k * size, prot, lg2);
      u += span;
      off += span * size;
      n -= span;
    }
  }

  private release(key: number, leaf: Leaf): void {
    this.leaves.delete(key);
    if (this.spare.length < 16) this.spare.push(leaf);
  }

  private setUnit(u: number, store: PageStore, off: number, prot: number, lg2: number): void {
    const key = Math.floor(u / LEAF);
    let leaf = this.leaves.get(key);
    if (!leaf) {
      if (shouldFailPage()) kerr(ERRNO.ENOMEM); // a table page (fault injection)
      this.leaves.set(key, (leaf = this.spare.pop() ?? new Leaf()));
    }
    const slot = u - key * LEAF;
    if (!leaf.flags[slot]) {
      leaf.used++;
      this.mapped++;
    }
    leaf.stores[slot] = store;
    leaf.offsets[slot] = off;
    leaf.flags[slot] = prot;
    leaf.pteLg2[slot] = lg2;
  }

  /** The first unit of the IOPTE holding unit `u`, and the IOPTE's unit count (0 if not present). */
  private pteOf(u: number): [number, number] {
    const leaf = this.leaves.get(Math.floor(u / LEAF));
    const slot = u % LEAF;
    if (!leaf || !leaf.flags[slot]) return [u, 0];
    const span = 2 ** (leaf.pteLg2[slot]! - this.shift);
    return [u - (u % span), span];
  }

  private flagsRef(u: number): [Leaf, number] | null {
    const leaf = this.leaves.get(Math.floor(u / LEAF));
    const slot = u % LEAF;
    return leaf && leaf.flags[slot] ? [leaf, slot] : null;
  }

  /** The IOPTE size holding `iova`, in bytes (0 if not mapped). */
  pteSizeAt(iova: bigint): number {
    const [, span] = this.pteOf(this.unitOf(iova));
    return span * this.pageSize;
  }

  /** Unmap [start, last] (iopt_area_unmap_domain); absent entries are skipped. */
  unmapRange(start: bigint, last: bigint): void {
    let u = this.unitOf(start);
    const end = this.unitOf(last);
    while (u <= end) {
      const key = Math.floor(u / LEAF);
      const leaf = this.leaves.get(key);
      const stop = Math.min(end, key * LEAF + LEAF - 1);
      if (leaf) {
        for (let s = u - key * LEAF, e = stop - key * LEAF; s <= e; s++) {
          if (!leaf.flags[s]) continue;
          leaf.flags[s] = 0;
          leaf.stores[s] = null;
          leaf.used--;
          this.mapped--;
        }
        if (!leaf.used) this.release(key, leaf);
      }
      u = stop + 1;
    }
    this.flushes++;
    this.gen++;
  }

  /**
   * The present entries as IOVA runs [first, last] of equal permission, ascending (what a walk of
   * the whole table finds; for tests that compare a domain before and after a refused command).
   */
  mappedRuns(): { first: bigint; last: bigint; prot: number }[] {
    const runs: { first: bigint; last: bigint; prot: number }[] = [];
    const size = BigInt(this.pageSize);
    let prev = -2;
    for (const key of [...this.leaves.keys()].sort((a, b) => a - b)) {
      const leaf = this.leaves.get(key)!;
      for (let s = 0; s < LEAF; s++) {
        const prot = leaf.flags[s]! & (IOMMU_READ | IOMMU_WRITE);
        if (!prot) continue;
        const u = key * LEAF + s;
        const last = runs[runs.length - 1];
        if (last && u === prev + 1 && last.prot === prot) last.last = BigInt(u + 1) * size - 1n;
        else runs.push({ first: BigInt(u) * size, last: BigInt(u + 1) * size - 1n, prot });
        prev = u;
      }
    }
    return runs;
  }

  /** iova_to_phys: the store and byte offset an IOVA translates to, or null if not mapped. */
  iovaToPhys(iova: bigint): { store: PageStore; offset: number } | null {
    const u = this.unitOf(iova);
    const leaf = this.leaves.get(Math.floor(u / LEAF));
    const slot = u % LEAF;
    if (!leaf || !leaf.flags[slot]) return null;
    const within = Number(iova & BigInt(this.pageSize - 1));
    return { store: leaf.stores[slot]!, offset: leaf.offsets[slot]! + within };
  }

  /** Entry flags of the unit holding `iova` (0 = not present). */
  flagsAt(iova: bigint): number {
    const u = this.unitOf(iova);
    return this.leaves.get(Math.floor(u / LEAF))?.flags[u % LEAF] ?? 0;
  }

  /** Set the dirty bit of the IOPTE holding `iova` (the mock's set_dirty); false if not mapped. */
  markDirty(iova: bigint): boolean {
    return this.markDirtyUnit(this.unitOf(iova));
  }

  /** markDirty by unit index (the DMA paths already have it: no BigInt round trip per write). */
  private markDirtyUnit(u: number): boolean {
    const [first, span] = this.pteOf(u);
    if (!span) return false;
    const r = this.flagsRef(first)!;
    r[0].flags[r[1]]! |= PTE_DIRTY;
    return true;
  }

  /**
   * read_and_clear_dirty over [start, last]: calls `report(iova, length)` for each dirty IOPTE
   * (its whole span), clearing the bit unless `noClear`.
   */
  readAndClearDirty(start: bigint, last: bigint, noClear: boolean, report: (iova: bigint, length: bigint) => void): void {
    let u = this.unitOf(start);
    const end = this.unitOf(last);
    while (u <= end) {
      const [first, span] = this.pteOf(u);
      if (!span) {
        u++;
        continue;
      }
      const r = this.flagsRef(first)!;
      if (r[0].flags[r[1]]! & PTE_DIRTY) {
        if (!noClear) r[0].flags[r[1]]! &= ~PTE_DIRTY;
        report(BigInt(first) << BigInt(this.shift), BigInt(span * this.pageSize));
      }
      u = first + span;
    }
  }

  // ---- DMA (the machine's devices translate through here) ---------------------------------------

  /**
   * The IOMMU's page walk for one unit page (`pageShift` = the unit's smallest page): where its
   * bytes are and whether DMA may write them. A unit page larger than this domain's entries must
   * be backed contiguously; a write walk with dirty tracking on sets the IOPTE's dirty bit.
   */
  walk(pfn: number, pageShift: number, out: DmaPageWalk, write = false): DmaFaultReason | null {
    const iova = pfn * 2 ** pageShift;
    if (iova < Number(this.aperture.start) || iova + 2 ** pageShift - 1 > Number(this.aperture.last)) return 'aperture';
    const first = Math.floor(iova / this.pageSize);
    const n = Math.max(1, 2 ** (pageShift - this.shift));
    const r = this.flagsRef(first);
    if (!r) return 'not-present';
    const [leaf, slot] = r;
    const flags = leaf.flags[slot]!;
    if (!(flags & IOMMU_READ)) return 'permission';
    const store = leaf.stores[slot]!;
    const off = leaf.offsets[slot]! + (iova % this.pageSize);
    for (let k = 1; k < n; k++) {
      const rk = this.flagsRef(first + k);
      if (!rk) return 'not-present';
      const [l2, s2] = rk;
      if (l2.stores[s2] !== store || l2.offsets[s2] !== off + k * this.pageSize || (l2.flags[s2]! & 3) !== (flags & 3)) return 'not-present';
    }
    out.memory = store;
    out.offset = off;
    out.writable = (flags & IOMMU_WRITE) !== 0;
    if (write && out.writable && this.dirtyTracking) {
      for (let k = 0; k < n; k++) this.markDirtyUnit(first + k);
    }
    return null;
  }

  dmaRead(iova: bigint, dst: Uint8Array): Omit<DmaFault, 'rid' | 'pasid'> | null {
    return this.dma(iova, dst, false);
  }

  dmaWrite(iova: bigint, src: Uint8Array): Omit<DmaFault, 'rid' | 'pasid'> | null {
    return this.dma(iova, src, true);
  }

  /**
   * Translate every unit first (a fault moves no byte), then copy: units that follow each other
   * in one store move in one copy (for a bridged program's pages, one process_vm call).
   */
  private dma(iova: bigint, buf: Uint8Array, write: boolean): Omit<DmaFault, 'rid' | 'pasid'> | null {
    if (!buf.length) return null;
    const lastIova = iova + BigInt(buf.length - 1);
    if (iova < this.aperture.start || lastIova > this.aperture.last) return { iova, write, reason: 'aperture' };
    const need = write ? IOMMU_WRITE : IOMMU_READ;
    const size = this.pageSize;
    const first = this.unitOf(iova);
    const last = this.unitOf(lastIova);
    for (let u = first; u <= last; u++) {
      const leaf = this.leaves.get(Math.floor(u / LEAF));
      const f = leaf ? leaf.flags[u % LEAF]! : 0;
      if (!(f & (IOMMU_READ | IOMMU_WRITE))) return { iova: u === first ? iova : BigInt(u) << BigInt(this.shift), write, reason: 'not-present' };
      if (!(f & need)) return { iova: u === first ? iova : BigInt(u) << BigInt(this.shift), write, reason: 'permission' };
    }
    let done = 0;
    let within = Number(iova & BigInt(size - 1));
    let run: PageStore | null = null;
    let runOff = 0;
    let runLen = 0;
    for (let u = first; u <= last; u++) {
      const leaf = this.leaves.get(Math.floor(u / LEAF))!;
      const slot = u % LEAF;
      const n = Math.min(size - within, buf.length - done);
      const store = leaf.stores[slot]!;
      const off = leaf.offsets[slot]! + within;
      if (write && this.dirtyTracking) this.markDirtyUnit(u);
      if (store === run && off === runOff + runLen) runLen += n;
      else {
        run?.dmaCopy(write, runOff, buf, done - runLen, runLen);
        run = store;
        runOff = off;
        runLen = n;
      }
      done += n;
      within = 0;
    }
    run!.dmaCopy(write, runOff, buf, done - runLen, runLen);
    return null;
  }
}

/**
 * A nested (stage-1) domain on a nest-parent paging domain: the guest's table is opaque to the
 * host; the sim translates stage 1 as identity, so DMA goes straight to the parent (stage 2).
 * Drivers keep their stage-1 state (the mock's IOTLB slots) in `data` and answer
 * IOMMU_HWPT_INVALIDATE through `invalidate`.
 */
export class NestedDomain implements DmaTarget {
  readonly kind = 'nested' as const;
  /** The vIOMMU it was allocated on, if any. */
  viommu: object | null = null;
  constructor(
    readonly owner: object,
    readonly parent: PagingDomain,
    /** cache_invalidate_user: entries are the user's entry_len-byte records (read on demand); returns how many were handled, throws KernelErrno with `done` set on the first bad one. */
    readonly invalidate: ((type: number, entries: UserArray) => number) | null,
    readonly data: Uint32Array = new Uint32Array(0),
  ) {
    if (shouldFailSlab()) kerr(ERRNO.ENOMEM); // the driver's domain_alloc_nested
  }

  dmaRead(iova: bigint, dst: Uint8Array): Omit<DmaFault, 'rid' | 'pasid'> | null {
    return this.parent.dmaRead(iova, dst);
  }

  dmaWrite(iova: bigint, src: Uint8Array): Omit<DmaFault, 'rid' | 'pasid'> | null {
    return this.parent.dmaWrite(iova, src);
  }
}
