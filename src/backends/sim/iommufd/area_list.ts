/**
 * An ordered set of non-overlapping IOVA spans (the kernel's area interval tree for io_pagetable).
 * Spans are kept sorted by start in chunks of at most CHUNK entries, so insert/remove/seek stay
 * O(log n + CHUNK) at a million areas without rebalancing trees or per-node allocation beyond
 * the span itself.
 */

export interface Span {
  start: bigint;
  /** Inclusive. */
  last: bigint;
}

const CHUNK = 128;

export class SpanList<T extends Span> {
  private chunks: T[][] = [];
  private count = 0;

  get size(): number {
    return this.count;
  }

  /** Position of the first span whose last >= x. */
  private seek(x: bigint): [number, number] {
    if (this.count === 0) return [this.chunks.length, 0];
    const chunks = this.chunks;
    let lo = 0;
    let hi = chunks.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      const c = chunks[mid]!;
      if (c[c.length - 1]!.last < x) lo = mid + 1;
      else hi = mid;
    }
    if (lo === chunks.length) return [lo, 0];
    const c = chunks[lo]!;
    let a = 0;
    let b = c.length;
    while (a < b) {
      const mid = (a + b) >>> 1;
      if (c[mid]!.last < x) a = mid + 1;
      else b = mid;
    }
    return [lo, a];
  }

  /** The lowest span intersecting [start, last], if any. */
  first(start: bigint, last: bigint): T | undefined {
    const [ci, i] = this.seek(start);
    const s = this.chunks[ci]?.[i];
    return s && s.start <= last ? s : undefined;
  }

  /** The span after `s` if it intersects [.., last]. */
  next(s: T, last: bigint): T | undefined {
    if (s.last >= last) return undefined;
    return this.first(s.last + 1n, last);
  }

  /** All spans intersecting [start, last], in order. Do not mutate the list while iterating. */
  *range(start: bigint, last: bigint): Generator<T> {
    let [ci, i] = this.seek(start);
    const chunks = this.chunks;
    while (ci < chunks.length) {
      const c = chunks[ci]!;
      for (; i < c.length; i++) {
        const s = c[i]!;
        if (s.start > last) return;
        yield s;
      }
      ci++;
      i = 0;
    }
  }

  /** Insert a span that overlaps no existing span (the caller checked). */
  insert(s: T): void {
    const chunks = this.chunks;
    if (this.count++ === 0) {
      // Keep the last chunk of an emptied list: an IOAS mapping and unmapping one area reuses it.
      if (chunks.length === 0) chunks.push([s]);
      else chunks[0]!.push(s);
      return;
    }
    let [ci, i] = this.seek(s.start);
    if (ci === chunks.length) {
      ci = chunks.length - 1;
      i = chunks[ci]!.length;
    }
    const c = chunks[ci]!;
    c.splice(i, 0, s);
    if (c.length > CHUNK) chunks.splice(ci + 1, 0, c.splice(CHUNK >>> 1));
  }

  /** Remove exactly this span object. */
  remove(s: T): boolean {
    const [ci, i] = this.seek(s.start);
    const c = this.chunks[ci];
    if (!c || c[i] !== s) return false;
    c.splice(i, 1);
    this.count--;
    if (c.length === 0 && this.chunks.length > 1) this.chunks.splice(ci, 1);
    return true;
  }

  clear(): void {
    this.chunks = [];
    this.count = 0;
  }
}
