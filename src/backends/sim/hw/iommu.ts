/**
 * One IOMMU hardware unit (a VT-d DMAR unit, an SMMUv3, the selftest's mock): a context table from
 * requester ID (and PASID) to the domain page table that translates its DMA, an IOTLB, and a fault
 * log. Every DMA a device issues goes through `port(rid)`: translated, checked, and on a fault
 * recorded and stopped before any byte moves.
 *
 * Hot path: IOVAs are bigint at the port only; pages are JS numbers inside (an IOVA page number
 * below 2^52 is exact). The IOTLB is direct-mapped over typed arrays; a hit allocates nothing.
 */
import type {
  DmaFault, DmaMemory, DmaPageWalk, DmaPort, DmaTarget, IommuCaps, SimIommuUnit,
} from '../include/iommu.js';

const IOTLB_ENTRIES = 1024;
const FAULT_LOG_MAX = 4096;

/** Counters the bench reads: pages translated, IOTLB hits and misses, faults. */
export interface IommuStats {
  translations: number;
  iotlbHits: number;
  iotlbMisses: number;
  faults: number;
}

export class IommuUnit implements SimIommuUnit {
  /** The fault log, oldest first; at FAULT_LOG_MAX entries further faults set `faultOverflow` only. */
  readonly faults: DmaFault[] = [];
  /** VT-d's PFO: a fault arrived while the log was full. */
  faultOverflow = false;
  readonly stats: IommuStats = { translations: 0, iotlbHits: 0, iotlbMisses: 0, faults: 0 };
  /** Turn the IOTLB off to measure page walks alone. */
  iotlbEnabled = true;
  /** log2 of the smallest page: the IOTLB's granule. */
  readonly pageShift: number;

  private readonly shiftN: bigint;
  private readonly maskN: bigint;
  private readonly pageSize: number;
  private readonly contexts = new Map<number, DmaTarget>();
  private readonly pasidContexts = new Map<number, Map<number, DmaTarget>>();
  private readonly ports = new Map<number, DmaPort>();

  // IOTLB: entry i caches page tlbPfn[i] of domain tlbTarget[i] at generation tlbGen[i].
  private readonly tlbPfn = new Float64Array(IOTLB_ENTRIES).fill(-1);
  private readonly tlbGen = new Float64Array(IOTLB_ENTRIES);
  private readonly tlbOff = new Float64Array(IOTLB_ENTRIES);
  private readonly tlbWritable = new Uint8Array(IOTLB_ENTRIES);
  private readonly tlbTarget: (DmaTarget | null)[] = new Array<DmaTarget | null>(IOTLB_ENTRIES).fill(null);
  private readonly tlbMemory: (DmaMemory | null)[] = new Array<DmaMemory | null>(IOTLB_ENTRIES).fill(null);
  private readonly walkOut: DmaPageWalk = { memory: null, offset: 0, writable: false };

  // Per-call segments (pass 1 translates all pages, pass 2 copies): grown, never shrunk.
  private segMemory: (DmaMemory | null)[] = [];
  private segOff = new Float64Array(16);
  private segLen = new Float64Array(16);

  constructor(
    readonly caps: IommuCaps,
    /** The unit's name as sysfs shows it under /sys/class/iommu ('dmar0', 'smmu3.0x...'). */
    readonly name: string,
  ) {
    let shift = 0;
    while (shift < 63 && !((caps.pgsizeBitmap >> BigInt(shift)) & 1n)) shift++;
    this.pageShift = shift;
    this.pageSize = 2 ** shift;
    this.shiftN = BigInt(shift);
    this.maskN = BigInt(this.pageSize - 1);
    const ap = caps.aperture;
    const aligned = (ap.start & this.maskN) === 0n && ((ap.last + 1n) & this.maskN) === 0n;
    this.apFirstPfn = aligned ? Number(ap.start >> this.shiftN) : -1;
    this.apLastPfn = aligned ? Number(ap.last >> this.shiftN) : -1;
  }

  /** The aperture in pages (checked without bigint when it is page aligned; -1 = use bigint). */
  private readonly apFirstPfn: number;
  private readonly apLastPfn: number;

  setTranslation(rid: number, pasid: number | null, target: DmaTarget | null): void {
    if (pasid === null) {
      if (target) this.contexts.set(rid, target);
      else this.contexts.delete(rid);
      return;
    }
    let m = this.pasidContexts.get(rid);
    if (target) {
      if (!m) this.pasidContexts.set(rid, (m = new Map()));
      m.set(pasid, target);
    } else if (m) {
      m.delete(pasid);
      if (!m.size) this.pasidContexts.delete(rid);
    }
  }

  /** The domain currently translating a requester (and PASID), or null when blocked. */
  translation(rid: number, pasid: number | null = null): DmaTarget | null {
    return (pasid === null ? this.contexts.get(rid) : this.pasidContexts.get(rid)?.get(pasid)) ?? null;
  }

  port(rid: number): DmaPort {
    let p = this.ports.get(rid);
    if (!p) {
      p = {
        read: (iova, dst, pasid) => this.dma(rid, pasid ?? null, iova, dst, false),
        write: (iova, src, pasid) => this.dma(rid, pasid ?? null, iova, src, true),
      };
      this.ports.set(rid, p);
    }
    return p;
  }

  flushIotlb(target?: DmaTarget): void {
    for (let i = 0; i < IOTLB_ENTRIES; i++) {
      if (target && this.tlbTarget[i] !== target) continue;
      this.tlbPfn[i] = -1;
      this.tlbTarget[i] = null;
      this.tlbMemory[i] = null;
    }
  }

  clearFaults(): void {
    this.faults.length = 0;
    this.faultOverflow = false;
  }

  /** This unit as one device sees it: same contexts and log, capabilities as reported for that device. */
  forDevice(caps: IommuCaps): SimIommuUnit {
    return new IommuDeviceView(this, caps);
  }

  /** One DMA: all pages translated and checked first, then the bytes move (or none do). */
  dma(rid: number, pasid: number | null, iova: bigint, buf: Uint8Array, write: boolean): DmaFault | null {
    const target = pasid === null ? this.contexts.get(rid) : this.pasidContexts.get(rid)?.get(pasid);
    if (!target) return this.fault({ iova, write, reason: 'blocked', rid, pasid });
    const len = buf.length;
    if (len === 0) return null;
    const pageSize = this.pageSize;
    let pfn = Number(iova >> this.shiftN);
    let off = Number(iova & this.maskN);
    const npages = Math.ceil((off + len) / pageSize);
    if (this.apFirstPfn < 0 || pfn < this.apFirstPfn || pfn + npages - 1 > this.apLastPfn) {
      const ap = this.caps.aperture;
      if (iova < ap.start) return this.fault({ iova, write, reason: 'aperture', rid, pasid });
      if (iova + BigInt(len - 1) > ap.last) return this.fault({ iova: ap.last + 1n, write, reason: 'aperture', rid, pasid });
    }
    const walk = target.walk;
    if (!walk) return this.copyThrough(target, rid, pasid, iova, buf, write);

    if (npages > this.segOff.length) this.growSegments(npages);
    const cache = this.iotlbEnabled && target.generation !== undefined;
    const gen = target.generation ?? 0;
    const out = this.walkOut;
    let done = 0;
    for (let i = 0; i < npages; i++, pfn++) {
      let memory: DmaMemory;
      let base: number;
      let writable: boolean;
      const e = pfn % IOTLB_ENTRIES;
      if (cache && this.tlbPfn[e] === pfn && this.tlbTarget[e] === target && this.tlbGen[e] === gen) {
        this.stats.iotlbHits++;
        memory = this.tlbMemory[e]!;
        base = this.tlbOff[e]!;
        writable = this.tlbWritable[e] === 1;
      } else {
        if (cache) this.stats.iotlbMisses++;
        const reason = walk.call(target, pfn, this.pageShift, out, write);
        if (reason) return this.fault({ iova: iova + BigInt(done), write, reason, rid, pasid });
        memory = out.memory!;
        base = out.offset;
        writable = out.writable;
        if (cache) {
          this.tlbPfn[e] = pfn;
          this.tlbTarget[e] = target;
          this.tlbGen[e] = gen;
          this.tlbMemory[e] = memory;
          this.tlbOff[e] = base;
          this.tlbWritable[e] = writable ? 1 : 0;
        }
      }
      if (write && !writable) return this.fault({ iova: iova + BigInt(done), write, reason: 'permission', rid, pasid });
      const n = Math.min(pageSize - off, len - done);
      this.segMemory[i] = memory;
      this.segOff[i] = base + off;
      this.segLen[i] = n;
      done += n;
      off = 0;
    }
    this.stats.translations += npages;
    // Pages that follow each other in one memory move in one copy (for a bridged program's pages,
    // one process_vm call).
    let pos = 0;
    for (let i = 0; i < npages; ) {
      const memory = this.segMemory[i]!;
      const o = this.segOff[i]!;
      let n = this.segLen[i]!;
      this.segMemory[i++] = null;
      while (i < npages && this.segMemory[i] === memory && this.segOff[i] === o + n) {
        n += this.segLen[i]!;
        this.segMemory[i++] = null;
      }
      memory.dmaCopy(write, o, buf, pos, n);
      pos += n;
    }
    return null;
  }

  /** A domain without a page walk: its own all-or-nothing copy. */
  private copyThrough(target: DmaTarget, rid: number, pasid: number | null, iova: bigint, buf: Uint8Array, write: boolean): DmaFault | null {
    const off = Number(iova & this.maskN);
    this.stats.translations += Math.ceil((off + buf.length) / this.pageSize);
    const f = write ? target.dmaWrite(iova, buf) : target.dmaRead(iova, buf);
    return f ? this.fault({ ...f, rid, pasid }) : null;
  }

  private fault(f: DmaFault): DmaFault {
    this.stats.faults++;
    if (this.faults.length < FAULT_LOG_MAX) this.faults.push(f);
    else this.faultOverflow = true;
    return f;
  }

  private growSegments(n: number): void {
    let size = this.segOff.length;
    while (size < n) size *= 2;
    this.segOff = new Float64Array(size);
    this.segLen = new Float64Array(size);
  }
}

/** A unit seen through one device's capabilities (the kernel's device_iommu_capable is per device). */
class IommuDeviceView implements SimIommuUnit {
  constructor(
    readonly unit: IommuUnit,
    readonly caps: IommuCaps,
  ) {}

  get faults(): readonly DmaFault[] {
    return this.unit.faults;
  }

  setTranslation(rid: number, pasid: number | null, target: DmaTarget | null): void {
    this.unit.setTranslation(rid, pasid, target);
  }

  port(rid: number): DmaPort {
    return this.unit.port(rid);
  }

  flushIotlb(target?: DmaTarget): void {
    this.unit.flushIotlb(target);
  }
}

/** Caps with some fields replaced (per-device PASID width, a mock device without dirty tracking). */
export function withCaps(caps: IommuCaps, over: Partial<Omit<IommuCaps, 'hwInfo'>>): IommuCaps {
  return { ...caps, ...over, hwInfo: caps.hwInfo };
}

