/**
 * A paging iommu_domain: the I/O page table an IOMMU walks for the devices attached to it. The
 * iommufd core fills it from the IOAS's areas (io_pagetable.ts); devices' DMA is translated by
 * it (DmaTarget). Each entry maps one smallest-page unit (2 KiB on the kernel's mock, 4 KiB on
 * VT-d/SMMUv3) to a byte offset in a page store, with R/W permission and a dirty bit.
 *
 * Storage is a radix of 512-entry leaves keyed by IOVA >> (shift + 9), like one level of a real
 * table: no per-page objects. Unit indexes are JS numbers (IOVA >> 11 < 2^53).
 */
import { ERRNO } from '../../ioasid/errors.js';
import type { DmaFault, DmaTarget } from './device.js';
import { kerr } from './errno.js';
import { IOMMU_READ, IOMMU_WRITE, type Area } from './io_pagetable.js';
import { PAGE_SIZE, type PageStore } from './mm.js';

const LEAF = 512;
export const PTE_DIRTY = 4;

class Leaf {
  readonly stores: (PageStore | null)[] = new Array<PageStore | null>(LEAF).fill(null);
  readonly offsets = new Float64Array(LEAF);
  /** IOMMU_READ | IOMMU_WRITE | PTE_DIRTY; 0 = not present. */
  readonly flags = new Uint8Array(LEAF);
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
  readonly aperture: { readonly start: bigint; readonly last: bigint };
  readonly dirtyOps: boolean;
  readonly canEnforceCc: boolean;
  /** IOMMU_HWPT_SET_DIRTY_TRACKING state. */
  dirtyTracking = false;
  private readonly leaves = new Map<number, Leaf>();
  /** Entries present. */
  mapped = 0;
  /** IOTLB invalidations issued (iotlb_sync / flush), for tests and benchmarks. */
  flushes = 0;

  constructor(cfg: DomainConfig) {
    this.owner = cfg.owner;
    this.pgsizeBitmap = cfg.pgsizeBitmap;
    const low = cfg.pgsizeBitmap & -cfg.pgsizeBitmap;
    this.pageSize = Number(low);
    this.shift = 31 - Math.clz32(this.pageSize);
    this.aperture = cfg.aperture;
    this.dirtyOps = cfg.dirtyOps;
    this.canEnforceCc = cfg.enforceCacheCoherency ?? true;
  }

  private unitOf(iova: bigint): number {
    return Number(iova >> BigInt(this.shift));
  }

  /** Map every unit of an area (iopt_area_fill_domain); its pages must be pinned. */
  mapArea(area: Area): void {
    const pages = area.pages;
    const size = this.pageSize;
    const prot = area.prot;
    let u = this.unitOf(area.start);
    const last = this.unitOf(area.last);
    let byte = area.startByte;
    for (; u <= last; u++, byte += size) {
      const pi = Math.floor(byte / PAGE_SIZE);
      const store = pages.storeOf(pi);
      if (!store) kerr(ERRNO.EFAULT); // not pinned: a core bug, never silently mapped
      const key = Math.floor(u / LEAF);
      let leaf = this.leaves.get(key);
      if (!leaf) this.leaves.set(key, (leaf = new Leaf()));
      const slot = u - key * LEAF;
      if (!leaf.flags[slot]) {
        leaf.used++;
        this.mapped++;
      }
      leaf.stores[slot] = store;
      leaf.offsets[slot] = pages.pageIndexOf(pi) * PAGE_SIZE + (byte % PAGE_SIZE);
      leaf.flags[slot] = prot;
    }
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
        if (!leaf.used) this.leaves.delete(key);
      }
      u = stop + 1;
    }
    this.flushes++;
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

  /** Set or clear dirty bits of present entries in [start, last] (the selftest's IOMMU_TEST_OP_DIRTY). */
  markDirty(iova: bigint): boolean {
    const u = this.unitOf(iova);
    const leaf = this.leaves.get(Math.floor(u / LEAF));
    const slot = u % LEAF;
    if (!leaf || !leaf.flags[slot]) return false;
    leaf.flags[slot]! |= PTE_DIRTY;
    return true;
  }

  /** read_and_clear_dirty for one unit: whether it was dirty; clears unless `noClear`. */
  testAndClearDirty(iova: bigint, noClear: boolean): boolean {
    const u = this.unitOf(iova);
    const leaf = this.leaves.get(Math.floor(u / LEAF));
    const slot = u % LEAF;
    if (!leaf || !(leaf.flags[slot]! & PTE_DIRTY)) return false;
    if (!noClear) leaf.flags[slot]! &= ~PTE_DIRTY;
    return true;
  }

  // ---- DMA (the machine's devices translate through here) ---------------------------------------

  dmaRead(iova: bigint, dst: Uint8Array): Omit<DmaFault, 'rid' | 'pasid'> | null {
    return this.dma(iova, dst, false);
  }

  dmaWrite(iova: bigint, src: Uint8Array): Omit<DmaFault, 'rid' | 'pasid'> | null {
    return this.dma(iova, src, true);
  }

  /** Translate every unit first (a fault moves no byte), then copy unit by unit. */
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
    for (let u = first; u <= last; u++) {
      const leaf = this.leaves.get(Math.floor(u / LEAF))!;
      const slot = u % LEAF;
      const n = Math.min(size - within, buf.length - done);
      const store = leaf.stores[slot]!;
      const off = leaf.offsets[slot]! + within;
      if (write) {
        store.bytes.set(buf.subarray(done, done + n), off);
        if (this.dirtyTracking) leaf.flags[slot]! |= PTE_DIRTY;
      } else {
        buf.set(store.bytes.subarray(off, off + n), done);
      }
      done += n;
      within = 0;
    }
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
  constructor(
    readonly owner: object,
    readonly parent: PagingDomain,
    /** cache_invalidate_user: entries are the user's entry_len-byte records; returns how many were handled, throws KernelErrno with `done` set on the first bad one. */
    readonly invalidate: ((type: number, entries: Uint8Array[]) => number) | null,
    readonly data: Uint32Array = new Uint32Array(0),
  ) {}

  dmaRead(iova: bigint, dst: Uint8Array): Omit<DmaFault, 'rid' | 'pasid'> | null {
    return this.parent.dmaRead(iova, dst);
  }

  dmaWrite(iova: bigint, src: Uint8Array): Omit<DmaFault, 'rid' | 'pasid'> | null {
    return this.parent.dmaWrite(iova, src);
  }
}
