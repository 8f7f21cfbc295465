/**
 * Toys for the sim machine's unit tests: a flat-map domain (IOVA page -> backing bytes) that
 * implements the DmaTarget seam the iommufd core's domains implement.
 */
import type { DmaFaultReason, DmaPageWalk, DmaTarget } from '../src/backends/sim/include/iommu.js';
import { PageStore } from '../src/backends/sim/kernel/mm.js';

type Fault = { iova: bigint; write: boolean; reason: DmaFaultReason };

/** A toy domain: IOVA page -> (backing, offset, writable), with a page walk and a generation. */
export class FlatMap implements DmaTarget {
  generation = 0;
  walks = 0;
  readonly pages = new Map<number, { memory: PageStore; offset: number; writable: boolean }>();
  /** The backing bytes as memory pages (one store per buffer, as RAM is one). */
  private readonly memories = new WeakMap<Uint8Array, PageStore>();
  constructor(readonly shift = 12) {}

  map(iova: bigint, bytes: Uint8Array, offset: number, len: number, writable = true): void {
    const ps = 1 << this.shift;
    let memory = this.memories.get(bytes);
    if (!memory) {
      this.memories.set(bytes, (memory = new PageStore(0)));
      memory.bytes = bytes;
    }
    for (let i = 0; i < len; i += ps) this.pages.set(Number(iova >> BigInt(this.shift)) + i / ps, { memory, offset: offset + i, writable });
  }

  unmap(iova: bigint, len: number): void {
    const ps = 1 << this.shift;
    for (let i = 0; i < len; i += ps) this.pages.delete(Number(iova >> BigInt(this.shift)) + i / ps);
    this.generation++;
  }

  walk(pfn: number, pageShift: number, out: DmaPageWalk): DmaFaultReason | null {
    this.walks++;
    const p = this.pages.get(Math.floor((pfn * 2 ** pageShift) / 2 ** this.shift));
    if (!p) return 'not-present';
    out.memory = p.memory;
    out.offset = p.offset + ((pfn * 2 ** pageShift) % 2 ** this.shift);
    out.writable = p.writable;
    return null;
  }

  dmaRead(iova: bigint, dst: Uint8Array): Fault | null {
    return this.copy(iova, dst, false);
  }

  dmaWrite(iova: bigint, src: Uint8Array): Fault | null {
    return this.copy(iova, src, true);
  }

  private copy(iova: bigint, buf: Uint8Array, write: boolean): Fault | null {
    const out: DmaPageWalk = { memory: null, offset: 0, writable: false };
    for (let i = 0; i < buf.length; i++) {
      const a = iova + BigInt(i);
      const r = this.walk(Number(a >> BigInt(this.shift)), this.shift, out);
      if (r) return { iova: a, write, reason: r };
      if (write && !out.writable) return { iova: a, write, reason: 'permission' };
    }
    for (let i = 0; i < buf.length; i++) {
      const a = iova + BigInt(i);
      this.walk(Number(a >> BigInt(this.shift)), this.shift, out);
      const o = out.offset + Number(a & BigInt((1 << this.shift) - 1));
      out.memory!.dmaCopy(write, o, buf, i, 1);
    }
    return null;
  }
}

