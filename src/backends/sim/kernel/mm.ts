/**
 * The simulated process: its address space (VMAs over page stores), memfd files and the
 * per-page pin counts that iommufd's pinning raises (what the kernel's page refcount shows and
 * IOMMU_TEST_OP_MD_CHECK_REFS reads). Addresses are bigint at the edge and JS numbers inside:
 * user VAs live below 2^47, so they are exact doubles.
 */
import { ERRNO } from '../../../ioasid/errors.js';
import { MAP_ANONYMOUS, MAP_FIXED, MAP_HUGETLB, MAP_SHARED, PROT_READ, PROT_WRITE } from '../../types.js';
import { kerr } from './errno.js';
import { shouldFail } from './fault_inject.js';

export const PAGE_SIZE = 4096;
export const PAGE_SHIFT = 12;
const TASK_SIZE = 2 ** 47;
const MMAP_TOP = 0x7f00_0000_0000;
const HPAGE = 2 * 1024 * 1024;

/** Backing memory: an anonymous mapping's own pages or a memfd's page cache. */
export class PageStore {
  bytes: Uint8Array;
  /** Pins per page (pin_user_pages), as page_ref_count / GUP_PIN_COUNTING_BIAS shows. */
  pins: Uint32Array;

  constructor(npages: number) {
    this.bytes = new Uint8Array(npages * PAGE_SIZE);
    this.pins = new Uint32Array(npages);
  }

  get npages(): number {
    return this.pins.length;
  }

  resize(npages: number): void {
    if (npages === this.pins.length) return;
    const bytes = new Uint8Array(npages * PAGE_SIZE);
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

  truncate(size: number): void {
    if (size < 0 || !Number.isSafeInteger(size)) kerr(ERRNO.EINVAL);
    this.store.resize(Math.ceil(size / PAGE_SIZE));
    // Bytes past the new end of the last page are zero, like shmem.
    this.store.bytes.fill(0, size);
    this.size = size;
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
}

/** vm_operations_struct's open (a piece split off the VMA) and close (a VMA goes away). */
export interface VmaOps {
  open(): void;
  close(): void;
}

/** What a driver's f_op->mmap hands the VMA: the pages it maps, and its vm_ops. */
export interface DeviceMapping {
  store: PageStore;
  ops: VmaOps;
}

export class SimMm {
  /** Sorted, non-overlapping. */
  private vmas: Vma[] = [];
  private top = MMAP_TOP;
  /** Pages currently charged to this mm (mm->locked_vm / pinned_vm) by iommufd accounting. */
  lockedVm = 0;
  pinnedVm = 0;

  mmap(addrHint: number, length: number, prot: number, flags: number, file: SimMemfd | null, offset: number): number {
    if (length <= 0 || offset % PAGE_SIZE) kerr(ERRNO.EINVAL);
    const huge = (flags & MAP_HUGETLB) !== 0;
    if (huge && (file || (flags & MAP_FIXED && addrHint % HPAGE))) kerr(ERRNO.EINVAL);
    // hugetlb mappings are whole 2 MiB pages, naturally aligned (a page store is "physically" so)
    const len = Math.ceil(length / (huge ? HPAGE : PAGE_SIZE)) * (huge ? HPAGE : PAGE_SIZE);
    const shared = (flags & MAP_SHARED) !== 0;
    if (!file && !(flags & MAP_ANONYMOUS)) kerr(ERRNO.EBADF);
    const start = this.place(addrHint, len, flags);
    if (flags & MAP_FIXED) this.munmap(start, len);
    let store: PageStore;
    let pgoff = 0;
    if (file && (shared || prot === PROT_READ)) {
      store = file.store;
      pgoff = offset / PAGE_SIZE;
      if (store.npages < pgoff + len / PAGE_SIZE) store.resize(pgoff + len / PAGE_SIZE);
    } else {
      store = new PageStore(len / PAGE_SIZE);
      if (file) store.bytes.set(file.store.bytes.subarray(offset, offset + len));
    }
    this.insert({ start, end: start + len, prot, shared, store, pgoff, file });
    return start;
  }

  /**
   * mmap of a device file: the generic checks, then the driver's f_op->mmap (`driverMmap`) sees
   * the page-rounded length and may refuse; its pages are mapped shared, at offset 0 of them.
   */
  mmapDevice(addrHint: number, length: number, prot: number, flags: number, offset: number, driverMmap: (len: number) => DeviceMapping): number {
    if (length <= 0 || offset % PAGE_SIZE) kerr(ERRNO.EINVAL);
    const len = Math.ceil(length / PAGE_SIZE) * PAGE_SIZE;
    const start = this.place(addrHint, len, flags);
    const { store, ops } = driverMmap(len);
    if (flags & MAP_FIXED) this.munmap(start, len);
    this.insert({ start, end: start + len, prot, shared: true, store, pgoff: 0, file: null, ops });
    return start;
  }

  /** Where a new mapping of `len` bytes goes: the fixed address (checked) or a free range. */
  private place(addrHint: number, len: number, flags: number): number {
    if (!(flags & MAP_FIXED)) return this.findFree(len);
    if (addrHint % PAGE_SIZE || addrHint + len > TASK_SIZE) kerr(ERRNO.EINVAL);
    return addrHint;
  }

  munmap(addr: number, length: number): void {
    if (addr % PAGE_SIZE || length <= 0) kerr(ERRNO.EINVAL);
    const end = addr + Math.ceil(length / PAGE_SIZE) * PAGE_SIZE;
    const out: Vma[] = [];
    const closed: VmaOps[] = [];
    for (const v of this.vmas) {
      if (v.end <= addr || v.start >= end) {
        out.push(v);
        continue;
      }
      const pieces: Vma[] = [];
      if (v.start < addr) pieces.push({ ...v, end: addr });
      if (v.end > end) pieces.push({ ...v, start: end, pgoff: v.pgoff + (end - v.start) / PAGE_SIZE });
      out.push(...pieces);
      // a VMA with nothing left is closed; a hole in the middle leaves one more VMA (opened)
      if (v.ops && pieces.length === 0) closed.push(v.ops);
      if (v.ops && pieces.length === 2) v.ops.open();
    }
    this.vmas = out;
    for (const ops of closed) ops.close();
  }

  private findFree(len: number): number {
    const align = len >= HPAGE ? HPAGE : PAGE_SIZE;
    let start = Math.floor((this.top - len) / align) * align;
    while (this.overlaps(start, start + len)) start = Math.floor((start - len) / align) * align;
    this.top = start;
    return start;
  }

  private overlaps(start: number, end: number): boolean {
    return this.vmas.some((v) => v.start < end && v.end > start);
  }

  private insert(v: Vma): void {
    let i = 0;
    while (i < this.vmas.length && this.vmas[i]!.start < v.start) i++;
    this.vmas.splice(i, 0, v);
  }

  find(addr: number): Vma | undefined {
    const vmas = this.vmas;
    let lo = 0;
    let hi = vmas.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (vmas[mid]!.end <= addr) lo = mid + 1;
      else hi = mid;
    }
    const v = vmas[lo];
    return v && v.start <= addr ? v : undefined;
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
      if (!v || (v.prot & prot) !== prot) kerr(ERRNO.EFAULT);
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
    if (!v || addr + len > v.end) kerr(ERRNO.EFAULT);
    const off = v.pgoff * PAGE_SIZE + (addr - v.start);
    return v.store.bytes.subarray(off, off + len);
  }

  /**
   * pin_user_pages for page-aligned `addr`: the backing page of each of `n` pages goes to
   * stores[at+k] / index[at+k] and its pin count rises. All or nothing: EFAULT pins nothing.
   * Write pins need a writable mapping (FOLL_WRITE).
   */
  pinInto(addr: number, n: number, write: boolean, stores: (PageStore | null)[], index: Float64Array, at: number): void {
    if (this.pinnablePages(addr, n, write) < n) kerr(ERRNO.EFAULT);
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
   */
  pinnablePages(addr: number, n: number, write: boolean): number {
    const prot = write ? PROT_READ | PROT_WRITE : PROT_READ;
    let k = 0;
    while (k < n) {
      const v = this.find(addr + k * PAGE_SIZE);
      if (!v || v.ops || (v.prot & prot) !== prot) break;
      const first = v.pgoff + (addr + k * PAGE_SIZE - v.start) / PAGE_SIZE;
      const run = Math.min(n - k, (v.end - addr - k * PAGE_SIZE) / PAGE_SIZE, v.store.npages - first);
      if (run <= 0) break;
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
