/**
 * The simulated process: its address space (VMAs over page stores), memfd files and the
 * per-page pin counts that iommufd's pinning raises (what the kernel's page refcount shows and
 * IOMMU_TEST_OP_MD_CHECK_REFS reads). Addresses are bigint at the edge and JS numbers inside:
 * user VAs live below 2^47, so they are exact doubles.
 */
import { ERRNO } from '../../../ioasid/errors.js';
import { MAP_FIXED, MAP_HUGETLB, MAP_SHARED, PROT_READ, PROT_WRITE } from '../../types.js';
import { kerr } from './errno.js';
import { shouldFail } from './fault_inject.js';
import type { DmaMemory } from '../include/iommu.js';

export const PAGE_SIZE = 4096;
export const PAGE_SHIFT = 12;
/** x86-64's TASK_SIZE with 4-level page tables: the top page below 2^47 is never mapped. */
const TASK_SIZE = 2 ** 47 - PAGE_SIZE;
const MMAP_TOP = 0x7f00_0000_0000;
/** mmap_min_addr: nothing is placed below it. */
const MMAP_MIN_ADDR = 0x10000;
const HPAGE = 2 * 1024 * 1024;
/** MAP_HUGE_SHIFT: the log2 of the huge page size asked for sits in flags bits 26-31 (0 = default, 21 = 2 MiB). */
const MAP_HUGE_SHIFT = 26;
const MAP_TYPE = 0x0f;
const MAP_SHARED_VALIDATE = 0x03;
const MAP_DROPPABLE = 0x08;
const MAP_FIXED_NOREPLACE = 0x100000;
/**
 * LEGACY_MAP_MASK: what MAP_SHARED_VALIDATE accepts. SHARED PRIVATE FIXED ANONYMOUS 32BIT ABOVE4G
 * GROWSDOWN DENYWRITE EXECUTABLE LOCKED NORESERVE POPULATE NONBLOCK STACK HUGETLB UNINITIALIZED,
 * and the 2 MiB / 1 GiB huge page sizes.
 */
const LEGACY_MAP_MASK = 0x7f9f3 | 0x4000000 | (21 << MAP_HUGE_SHIFT) | (30 << MAP_HUGE_SHIFT);
/** MAX_LFS_FILESIZE, a regular file's s_maxbytes (mmap's file_mmap_ok). */
const MAX_LFS_FILESIZE = (1n << 63n) - 1n;

/**
 * The most one mapping holds. The sim backs every page with real bytes, so it behaves like a
 * machine with 2 GiB of RAM and no swap (the test VM's): a bigger mapping is ENOMEM, what Linux's
 * overcommit heuristic answers for an accountable mapping beyond RAM + swap (Linux maps
 * MAP_NORESERVE and read-only private ones up to the address space).
 */
export const SIM_MAX_BACKING = 2 ** 31;
/**
 * The most one memfd holds, the sim's tmpfs s_maxbytes (Linux's is 2^63 - 1, sparse): beyond it
 * ftruncate and pwrite answer EFBIG, and a shared mapping reaching past it ENOMEM. Growing a
 * memfd copies its bytes, and 128 MiB keeps every such call well under a second.
 */
export const SIM_MAX_FILE = 2 ** 27;

/** Backing memory: an anonymous mapping's own pages or a memfd's page cache. */
export class PageStore implements DmaMemory {
  bytes: Uint8Array;
  /** Pins per page (pin_user_pages), as page_ref_count / GUP_PIN_COUNTING_BIAS shows. */
  pins: Uint32Array;

  constructor(npages: number) {
    this.bytes = allocBytes(npages * PAGE_SIZE);
    this.pins = new Uint32Array(npages);
  }

  get npages(): number {
    return this.pins.length;
  }

  /** A device's DMA to these pages once translated (DmaMemory): `n` bytes at byte `offset`, to or from buf[at]. */
  dmaCopy(write: boolean, offset: number, buf: Uint8Array, at: number, n: number): void {
    if (write) this.bytes.set(buf.subarray(at, at + n), offset);
    else buf.set(this.bytes.subarray(offset, offset + n), at);
  }

  resize(npages: number): void {
    if (npages === this.pins.length) return;
    const bytes = allocBytes(npages * PAGE_SIZE);
    bytes.set(this.bytes.subarray(0, Math.min(this.bytes.length, bytes.length)));
    const pins = new Uint32Array(npages);
    pins.set(this.pins.subarray(0, Math.min(npages, this.pins.length)));
    this.bytes = bytes;
    this.pins = pins;
  }
}

/** A memfd: a named, resizable shmem file. */
export class SimMemfd {
  readonly store = new PageStore(0);
  size = 0;
  constructor(readonly name: string) {}

  /** do_truncate: EINVAL for a negative size, EFBIG beyond what the sim's tmpfs holds. */
  truncate(size: number): void {
    if (size < 0 || !Number.isSafeInteger(size)) kerr(ERRNO.EINVAL);
    if (size > SIM_MAX_FILE) kerr(ERRNO.EFBIG);
    this.store.resize(Math.ceil(size / PAGE_SIZE));
    // Bytes past the new end of the last page are zero, like shmem.
    this.store.bytes.fill(0, size);
    this.size = size;
  }

  /** shmem read at `pos`: what lies before the end of the file. */
  read(buf: Uint8Array, pos: number): number {
    const n = Math.max(0, Math.min(buf.length, this.size - pos));
    buf.set(this.store.bytes.subarray(pos, pos + n));
    return n;
  }

  /** shmem write at `pos`: EFBIG at or past s_maxbytes, cut short up to it; the file grows. */
  write(buf: Uint8Array, pos: number): number {
    if (!buf.length) return 0;
    if (pos >= SIM_MAX_FILE) kerr(ERRNO.EFBIG);
    const n = Math.min(buf.length, SIM_MAX_FILE - pos);
    const need = Math.ceil((pos + n) / PAGE_SIZE);
    if (this.store.npages < need) this.store.resize(need);
    this.store.bytes.set(buf.subarray(0, n), pos);
    this.size = Math.max(this.size, pos + n);
    return n;
  }
}

export interface Vma {
  start: number;
  /** Exclusive. */
  end: number;
  prot: number;
  shared: boolean;
  store: PageStore;
  /** Page index of `start` inside `store`. */
  pgoff: number;
  file: SimMemfd | null;
  /** A driver's mapping (VM_IO | VM_PFNMAP): its vm_ops, and pin_user_pages refuses it. */
  ops?: VmaOps;
  /**
   * Device memory (a PCI BAR) rather than kernel pages: pfns without a struct page, which type1's
   * follow_fault_pfn maps without pinning. The sim cannot trap loads and stores to it, so the
   * process cannot touch its bytes (view, read and write answer EFAULT); use pread/pwrite.
   */
  mmio?: boolean;
}

/** vm_operations_struct's open (a piece split off the VMA) and close (a VMA goes away). */
export interface VmaOps {
  open(): void;
  close(): void;
  /** vm_ops->fault: false for VM_FAULT_SIGBUS (fixup_user_fault then fails EFAULT). Absent: always maps. */
  fault?(): boolean;
}

/** What a driver's f_op->mmap hands the VMA: the pages it maps from `pgoff` (default 0), and its vm_ops. */
export interface DeviceMapping {
  store: PageStore;
  ops: VmaOps;
  pgoff?: number;
  mmio?: boolean;
  /**
   * Device memory's registers (mmio): a load (or store, `write`) of buf.length bytes at byte `at`
   * of `store`'s pages reaches the device, as the region's read and write do. The sim's own
   * processes cannot make such accesses; a bridged program's are trapped (src/bridge/remote_mm.ts).
   */
  io?: (buf: Uint8Array, at: number, write: boolean) => number;
}

export class SimMm {
  /** Sorted, non-overlapping. */
  private vmas: Vma[] = [];
  private top = MMAP_TOP;
  /** Pages currently charged to this mm (mm->locked_vm / pinned_vm) by iommufd accounting. */
  lockedVm = 0;
  pinnedVm = 0;

  /**
   * mmap of anonymous memory (`file` null) or of a memfd: do_mmap's checks, then the pages. The
   * caller (sys_mmap) has refused an unaligned offset and looked the descriptor up already.
   */
  mmap(addrHint: number, length: number, prot: number, flags: number, file: SimMemfd | null, offset: number): number {
    const huge = (flags & MAP_HUGETLB) !== 0;
    // ksys_mmap_pgoff: only hugetlbfs files take MAP_HUGETLB; anonymous ones need a known size
    if (huge && (file || ![0, 21].includes((flags >>> MAP_HUGE_SHIFT) & 0x3f))) kerr(ERRNO.EINVAL);
    // hugetlb mappings are whole 2 MiB pages, naturally aligned (a page store is "physically" so)
    const { start, len } = this.checkMmap(addrHint, length, flags, huge ? HPAGE : PAGE_SIZE, file || huge ? 'file' : 'anon', offset);
    const shared = (flags & MAP_SHARED) !== 0;
    let store: PageStore;
    let pgoff = 0;
    if (file && (shared || prot === PROT_READ)) {
      store = file.store;
      pgoff = offset / PAGE_SIZE;
      const need = pgoff + len / PAGE_SIZE;
      if (need * PAGE_SIZE > SIM_MAX_FILE) kerr(ERRNO.ENOMEM);
      if (store.npages < need) store.resize(need);
    } else {
      store = new PageStore(len / PAGE_SIZE);
      if (file) store.bytes.set(file.store.bytes.subarray(offset, offset + len));
    }
    this.insert({ start, end: start + len, prot, shared, store, pgoff, file }, flags);
    return start;
  }

  /**
   * mmap of a device file: do_mmap's checks, then the driver's f_op->mmap (`driverMmap`) sees
   * the page-rounded length and may refuse; its pages are mapped shared, at offset 0 of them.
   * A file without f_op->mmap passes a driverMmap that answers ENODEV.
   */
  mmapDevice(addrHint: number, length: number, prot: number, flags: number, offset: number, driverMmap: (len: number) => DeviceMapping): number {
    const { start, len } = this.checkMmap(addrHint, length, flags, PAGE_SIZE, 'device', offset);
    const { store, ops, pgoff = 0, mmio = false } = driverMmap(len);
    this.insert({ start, end: start + len, prot, shared: true, store, pgoff, file: null, ops, mmio }, flags);
    return start;
  }

  /**
   * do_mmap up to the driver, in its order: a zero length EINVAL; a length beyond the address
   * space ENOMEM; the address (get_unmapped_area: a fixed one past TASK_SIZE ENOMEM, unaligned
   * EINVAL; MAP_FIXED_NOREPLACE over a mapping EEXIST; no room ENOMEM); file_mmap_ok (EOVERFLOW:
   * an offset that wraps, which only a negative one does); the map type (EINVAL, unknown flags
   * with MAP_SHARED_VALIDATE EOPNOTSUPP); then what one mapping the sim can back (ENOMEM).
   */
  private checkMmap(addrHint: number, length: number, flags: number, unit: number, kind: 'anon' | 'file' | 'device', offset: number): { start: number; len: number } {
    if (length <= 0) kerr(ERRNO.EINVAL);
    const len = Math.ceil(length / unit) * unit;
    if (len > TASK_SIZE) kerr(ERRNO.ENOMEM);
    const start = this.place(addrHint, len, flags, unit);
    if (offset < 0 && kind !== 'anon' && (kind === 'file' || offset + len >= 0)) kerr(ERRNO.EOVERFLOW);
    const type = flags & MAP_TYPE;
    if (kind === 'anon' ? type !== MAP_SHARED && type !== 0x02 && type !== MAP_DROPPABLE : type !== MAP_SHARED && type !== 0x02 && type !== MAP_SHARED_VALIDATE) kerr(ERRNO.EINVAL);
    if (type === MAP_SHARED_VALIDATE && flags & ~LEGACY_MAP_MASK) kerr(ERRNO.EOPNOTSUPP);
    if (kind !== 'device' && len > SIM_MAX_BACKING) kerr(ERRNO.ENOMEM);
    return { start, len };
  }

  /** Where a new mapping of `len` bytes goes: the fixed address (checked) or a free range. */
  private place(addrHint: number, len: number, flags: number, unit: number): number {
    if (!(flags & (MAP_FIXED | MAP_FIXED_NOREPLACE))) return this.findFree(len);
    if (addrHint > TASK_SIZE - len) kerr(ERRNO.ENOMEM);
    if (addrHint % unit) kerr(ERRNO.EINVAL);
    if (flags & MAP_FIXED_NOREPLACE && this.overlaps(addrHint, addrHint + len)) kerr(ERRNO.EEXIST);
    return addrHint;
  }

  /** do_vmi_munmap: an unaligned start, a range past TASK_SIZE or a zero length is EINVAL. */
  munmap(addr: number, length: number): void {
    if (addr % PAGE_SIZE || addr > TASK_SIZE || length > TASK_SIZE - addr || length <= 0) kerr(ERRNO.EINVAL);
    const end = addr + Math.ceil(length / PAGE_SIZE) * PAGE_SIZE;
    const { kept, closed } = unmapRanges(this.vmas, addr, end, (v) => ({ ...v, start: end, pgoff: v.pgoff + (end - v.start) / PAGE_SIZE }));
    this.vmas = kept;
    for (const ops of closed) ops.close();
  }

  /** Top-down below the last placement; ENOMEM when it would go under mmap_min_addr. */
  private findFree(len: number): number {
    const align = len >= HPAGE ? HPAGE : PAGE_SIZE;
    let start = Math.floor((this.top - len) / align) * align;
    while (start >= MMAP_MIN_ADDR && this.overlaps(start, start + len)) start = Math.floor((start - len) / align) * align;
    if (start < MMAP_MIN_ADDR) kerr(ERRNO.ENOMEM);
    return start;
  }

  private overlaps(start: number, end: number): boolean {
    return this.vmas.some((v) => v.start < end && v.end > start);
  }

  /** Place a new mapping (MAP_FIXED replaces what was there); the next free search starts below it. */
  private insert(v: Vma, flags: number): void {
    if (flags & MAP_FIXED) this.munmap(v.start, v.end - v.start);
    else if (!(flags & MAP_FIXED_NOREPLACE)) this.top = v.start;
    let i = 0;
    while (i < this.vmas.length && this.vmas[i]!.start < v.start) i++;
    this.vmas.splice(i, 0, v);
  }

  find(addr: number): Vma | undefined {
    return rangeAt(this.vmas, addr);
  }

  /**
   * Call fn for each VMA piece of [addr, addr+len) with the store offset; EFAULT if any byte is
   * unmapped or lacks `prot`.
   */
  private walk(addr: number, len: number, prot: number, fn: (v: Vma, storeOff: number, n: number, done: number) => void): void {
    if (!(addr >= 0 && addr + len <= TASK_SIZE)) kerr(ERRNO.EFAULT);
    let done = 0;
    while (done < len) {
      const a = addr + done;
      const v = this.find(a);
      if (!v || (v.prot & prot) !== prot || v.mmio) kerr(ERRNO.EFAULT);
      const n = Math.min(len - done, v.end - a);
      const storeOff = v.pgoff * PAGE_SIZE + (a - v.start);
      if (storeOff + n > v.store.bytes.length) kerr(ERRNO.EFAULT); // beyond a truncated file
      fn(v, storeOff, n, done);
      done += n;
    }
  }

  /** Read process memory (EFAULT where unmapped or unreadable). The kernel's own user copies are copyFromUser. */
  read(addr: number, dst: Uint8Array): void {
    this.walk(addr, dst.length, PROT_READ, (v, off, n, done) => dst.set(v.store.bytes.subarray(off, off + n), done));
  }

  /** Write process memory (EFAULT where unmapped or read-only). */
  write(addr: number, src: Uint8Array): void {
    this.walk(addr, src.length, PROT_WRITE, (v, off, n, done) => v.store.bytes.set(src.subarray(done, done + n), off));
  }

  /** copy_from_user: a fault-injection point (fail_usercopy, EFAULT), then the read. */
  copyFromUser(addr: number, dst: Uint8Array): void {
    if (shouldFail()) kerr(ERRNO.EFAULT);
    this.read(addr, dst);
  }

  /** copy_to_user: a fault-injection point (fail_usercopy, EFAULT), then the write. */
  copyToUser(addr: number, src: Uint8Array): void {
    if (shouldFail()) kerr(ERRNO.EFAULT);
    this.write(addr, src);
  }

  /** A live view for the process itself (no permission check beyond being mapped). */
  view(addr: number, len: number): Uint8Array {
    const v = this.find(addr);
    if (!v || addr + len > v.end || v.mmio) kerr(ERRNO.EFAULT);
    const off = v.pgoff * PAGE_SIZE + (addr - v.start);
    return v.store.bytes.subarray(off, off + len);
  }

  /**
   * pin_user_pages for page-aligned `addr`: the backing page of each of `n` pages goes to
   * stores[at+k] / index[at+k] and its pin count rises. All or nothing: EFAULT pins and records nothing.
   * Write pins need a writable mapping (FOLL_WRITE). With `pfnmap` (type1's vaddr_get_pfns),
   * pages of device memory are taken too, as follow_fault_pfn finds them.
   */
  pinInto(addr: number, n: number, write: boolean, stores: (PageStore | null)[], index: Float64Array, at: number, pfnmap = false): void {
    if (this.pinnablePages(addr, n, write, pfnmap) < n) kerr(ERRNO.EFAULT);
    let k = 0;
    while (k < n) {
      const a = addr + k * PAGE_SIZE;
      const v = this.find(a)!;
      const first = v.pgoff + (a - v.start) / PAGE_SIZE;
      const run = Math.min(n - k, (v.end - a) / PAGE_SIZE);
      for (let j = 0; j < run; j++) {
        stores[at + k + j] = v.store;
        index[at + k + j] = first + j;
      }
      k += run;
    }
    for (let j = 0; j < n; j++) stores[at + j]!.pins[index[at + j]!]!++;
  }

  /**
   * How many of the `n` pages from page-aligned `addr` pin_user_pages would pin before it fails:
   * pages of ordinary mappings with the access (FOLL_WRITE: writable), up to the first that is not.
   * With `pfnmap`, pages of device memory count too where follow_fault_pfn finds them (the VMA
   * has the access and its fault handler maps); `mmio.pages` then counts those among them.
   */
  pinnablePages(addr: number, n: number, write: boolean, pfnmap = false, mmio?: { pages: number }): number {
    const prot = write ? PROT_READ | PROT_WRITE : PROT_READ;
    let k = 0;
    while (k < n) {
      const v = this.find(addr + k * PAGE_SIZE);
      if (!v || (v.ops && !(pfnmap && v.mmio && (v.ops.fault?.() ?? true))) || (v.prot & prot) !== prot) break;
      const first = v.pgoff + (addr + k * PAGE_SIZE - v.start) / PAGE_SIZE;
      const run = Math.min(n - k, (v.end - addr - k * PAGE_SIZE) / PAGE_SIZE, v.store.npages - first);
      if (run <= 0) break;
      if (v.mmio && mmio) mmio.pages += run;
      k += run;
    }
    return k;
  }

  /** The store and byte offset backing user address `addr` (get_user_pages + page_to_phys), EFAULT if unmapped. */
  phys(addr: number): { store: PageStore; offset: number } {
    const v = this.find(addr);
    if (!v) kerr(ERRNO.EFAULT);
    const offset = v.pgoff * PAGE_SIZE + (addr - v.start);
    if (offset >= v.store.bytes.length) kerr(ERRNO.EFAULT);
    return { store: v.store, offset };
  }

  /** Pin count of the page backing `addr` (EFAULT if unmapped). */
  pinCount(addr: number): number {
    const v = this.find(addr);
    if (!v) kerr(ERRNO.EFAULT);
    return v.store.pins[v.pgoff + Math.floor((addr - v.start) / PAGE_SIZE)] ?? 0;
  }
}

/**
 * do_vmi_munmap's cut of [addr, end) out of mappings: what is left of each (`tail` makes the piece
 * after `end`, which starts further into its pages). A hole in the middle leaves one more mapping
 * (its vm_ops open, here); those with nothing left are returned for the caller to close once its
 * list is updated.
 */
export function unmapRanges<T extends { start: number; end: number; ops?: VmaOps }>(ranges: readonly T[], addr: number, end: number, tail: (v: T) => T): { kept: T[]; closed: VmaOps[] } {
  const out: T[] = [];
  const closed: VmaOps[] = [];
  for (const v of ranges) {
    if (v.end <= addr || v.start >= end) {
      out.push(v);
      continue;
    }
    const pieces: T[] = [];
    if (v.start < addr) pieces.push({ ...v, end: addr });
    if (v.end > end) pieces.push(tail(v));
    out.push(...pieces);
    if (v.ops && pieces.length === 0) closed.push(v.ops);
    if (v.ops && pieces.length === 2) v.ops.open();
  }
  return { kept: out, closed };
}

/** The range of a sorted, non-overlapping list that holds `addr` (find_vma's walk), by bisection. */
export function rangeAt<T extends { start: number; end: number }>(ranges: readonly T[], addr: number): T | undefined {
  let lo = 0;
  let hi = ranges.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (ranges[mid]!.end <= addr) lo = mid + 1;
    else hi = mid;
  }
  const r = ranges[lo];
  return r && r.start <= addr ? r : undefined;
}

/** Zeroed bytes for a page store; ENOMEM when the host cannot give them. */
function allocBytes(n: number): Uint8Array {
  try {
    return new Uint8Array(n);
  } catch (e) {
    if (e instanceof RangeError) kerr(ERRNO.ENOMEM);
    throw e;
  }
}
