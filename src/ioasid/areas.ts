/**
 * A record of an IOAS's areas, kept by the `Ioas` handle that makes and removes them. iommufd has
 * no command that lists areas: the kernel keeps them private in the io_pagetable's interval tree,
 * and vfio_compat.c reads that tree directly (to report a partial unmap, to tell an empty range
 * from a refused one, to cut areas for TYPE1). A client that must answer as vfio_compat.c does
 * (src/compat's iommufd mode) keeps the same facts here: where each area starts and ends and
 * what the device may do there. The record is exact while every change to the IOAS goes through
 * the handle that keeps it.
 *
 * Areas never overlap; the list is sorted by IOVA, lookups are binary searches.
 */

export interface IoasArea {
  readonly iova: bigint;
  /** Inclusive. */
  readonly last: bigint;
  readonly readable: boolean;
  readonly writeable: boolean;
}

/** What iopt_unmap_iova_range does to [first, last]: the whole areas it removes, in order, until one sticks out. */
export interface UnmapWalk {
  /** Index of the first area removed; `count` areas from there go. */
  readonly index: number;
  readonly count: number;
  /** Bytes those areas cover. */
  readonly unmapped: bigint;
  /** The first area that sticks out of [first, last] (the kernel's ENOENT), or null. */
  readonly blocked: IoasArea | null;
}

export class IoasAreas {
  private readonly list: IoasArea[] = [];

  get length(): number {
    return this.list.length;
  }

  /** Every area, in IOVA order. */
  all(): readonly IoasArea[] {
    return this.list;
  }

  /** Index of the first area whose last IOVA is at or after `iova`. */
  private lowerBound(iova: bigint): number {
    let lo = 0;
    let hi = this.list.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.list[mid]!.last < iova) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /** The area holding `iova`, if any. */
  containing(iova: bigint): IoasArea | null {
    const a = this.list[this.lowerBound(iova)];
    return a && a.iova <= iova ? a : null;
  }

  /** Record a new area (the kernel accepted it, so it overlaps nothing). */
  add(area: IoasArea): void {
    this.list.splice(this.lowerBound(area.iova), 0, area);
  }

  /** iopt_unmap_iova_range's walk over [first, last], without changing the record. */
  walk(first: bigint, last: bigint): UnmapWalk {
    const index = this.lowerBound(first);
    let unmapped = 0n;
    let i = index;
    for (; i < this.list.length; i++) {
      const a = this.list[i]!;
      if (a.iova > last) break;
      if (a.iova < first || a.last > last) return { index, count: i - index, unmapped, blocked: a };
      unmapped += a.last - a.iova + 1n;
    }
    return { index, count: i - index, unmapped, blocked: null };
  }

  /** Drop the areas a walk removed. */
  remove(w: UnmapWalk): void {
    this.list.splice(w.index, w.count);
  }

  clear(): void {
    this.list.length = 0;
  }
}
