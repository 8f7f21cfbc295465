/**
 * The VFIO type1 IOMMU driver (drivers/vfio/vfio_iommu_type1.c): what a legacy container does once
 * VFIO_SET_IOMMU chose TYPE1 or TYPE1v2. It keeps its own list of DMA mappings (struct vfio_dma),
 * pins every page at MAP_DMA and charges it to the mapping process's locked_vm against
 * RLIMIT_MEMLOCK (once per mapping: the same page mapped twice is charged twice), and maps each
 * mapping into one IOMMU domain per IOMMU driver in use: an attached group joins a compatible
 * domain, or gets a new one that every existing mapping is replayed into.
 *
 * This is not iommufd's compat layer (../vfio_compat.ts) but the other side of each difference:
 * mappings are never split (v1 unmaps whole mappings or nothing, v2 refuses to bisect with EINVAL),
 * `dma_entry_limit` caps the mappings (ENOSPC) and DMA_AVAIL reports what is left, the IOVA ranges
 * narrow at SET_IOMMU, UPDATE_VADDR and dirty-page logging exist, and GET_INFO has the MIGRATION cap.
 */
import { ERRNO } from '../../../ioasid/errors.js';
import {
  DIRTY_PAGES_MINSZ, GET_INFO_MINSZ, MAP_DMA_MINSZ, UNMAP_DMA_MINSZ, VFIO_DMA_CC_IOMMU, VFIO_DMA_MAP_FLAG_READ,
  VFIO_DMA_MAP_FLAG_VADDR, VFIO_DMA_MAP_FLAG_WRITE, VFIO_DMA_UNMAP_FLAG_ALL, VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP,
  VFIO_DMA_UNMAP_FLAG_VADDR, VFIO_IOMMU_DIRTY_PAGES, VFIO_IOMMU_DIRTY_PAGES_FLAG_GET_BITMAP,
  VFIO_IOMMU_DIRTY_PAGES_FLAG_START, VFIO_IOMMU_DIRTY_PAGES_FLAG_STOP, VFIO_IOMMU_GET_INFO, VFIO_IOMMU_INFO_CAPS,
  VFIO_IOMMU_INFO_PGSIZES, VFIO_IOMMU_MAP_DMA, VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE,
  VFIO_IOMMU_TYPE1_INFO_CAP_MIGRATION, VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL, VFIO_IOMMU_UNMAP_DMA, VFIO_TYPE1_IOMMU,
  VFIO_TYPE1_NESTING_IOMMU, VFIO_TYPE1v2_IOMMU, VFIO_UNMAP_ALL, VFIO_UPDATE_VADDR, vfio_bitmap,
  vfio_iommu_type1_dirty_bitmap_get, vfio_iommu_type1_info,
} from '../../../ioasid/vfio_uapi.js';
import { SpanList } from '../iommufd/area_list.js';
import {
  IOMMU_READ, IOMMU_WRITE, iommuAttachGroup, iommuDetachGroup, type ResvRegion, type SimGroup,
} from '../iommu/iommu.js';
import type { DomainMapSource, PagingDomain } from '../iommu/domain.js';
import { kerr, KernelErrno } from '../kernel/errno.js';
import { PAGE_SIZE } from '../kernel/mm.js';
import { AccountMode, IoptPages } from '../iommufd/pages.js';
import { currentProcess, type SimProcess } from '../kernel/process.js';

const U64_MAX = 0xffff_ffff_ffff_ffffn;
const PAGE_MASK = U64_MAX & ~BigInt(PAGE_SIZE - 1);
const INFO_SIZE = vfio_iommu_type1_info.size;
/** DIRTY_BITMAP_SIZE_MAX: DIRTY_BITMAP_BYTES(INT_MAX), 256 MiB of bitmap. */
const DIRTY_BITMAP_SIZE_MAX = 1n << 28n;
/** The highest end access_ok() accepts: TASK_SIZE_MAX with 4-level paging (the sim's address space). */
const USER_PTR_MAX = 0x7fff_ffff_f000n;

/** The module's parameters (/sys/module/vfio_iommu_type1/parameters); the sim models dma_entry_limit. */
export interface Type1Params {
  /** Mappings per container (default U16_MAX); read when a container opens the driver. */
  dmaEntryLimit: number;
}

/** One user mapping (struct vfio_dma). Its pages are pinned for as long as a domain maps it. */
class VfioDma implements DomainMapSource {
  readonly pageIndex = 0;
  readonly pageOffset = 0;
  /** Mapped into the container's domains (and so pinned and charged). */
  iommuMapped = false;
  /** Invalidated by UNMAP_DMA with VFIO_DMA_UNMAP_FLAG_VADDR until MAP_DMA with FLAG_VADDR. */
  vaddrInvalid = false;
  /** Pages this mapping charged to its process's locked_vm (dma->locked_vm). */
  lockedVm = 0;
  /**
   * dma->bitmap while dirty pages are logged: one bit per smallest page, in u64 words plus one
   * spare word (DIRTY_BITMAP_BYTES(npages) + sizeof(u64)). update_user_bitmap shifts and ORs in
   * place, so bits past the mapping's own can linger between reports, as in the kernel.
   */
  bitmap: Uint8Array | null = null;
  readonly pages: IoptPages;

  constructor(
    public start: bigint,
    public last: bigint,
    public vaddr: bigint,
    readonly prot: number,
    /** The task and mm that mapped it (charged for its pins). */
    public proc: SimProcess,
    /** capable(CAP_IPC_LOCK) at map time: RLIMIT_MEMLOCK is not enforced. */
    public lockCap: boolean,
  ) {
    const npages = Number((last - start + 1n) / BigInt(PAGE_SIZE));
    this.pages = new IoptPages({ kind: 'user', proc, uptr: vaddr }, npages, (prot & IOMMU_WRITE) !== 0, proc);
    // type1 charges locked_vm itself (vfio_lock_acct) and never pinned_vm; it maps device pages
    // (VM_PFNMAP, a BAR's mmap) without pinning them (vfio_pin_pages_remote -> follow_fault_pfn).
    this.pages.accountMode = AccountMode.NONE;
    this.pages.pinnedVm = false;
    this.pages.followPfnmap = true;
  }

  get size(): bigint {
    return this.last - this.start + 1n;
  }
}

/** An IOMMU domain of the container and the groups attached to it (struct vfio_domain). */
interface VfioDomain {
  readonly domain: PagingDomain;
  /** Newest first (list_add). */
  readonly groups: SimGroup[];
  readonly enforceCacheCoherency: boolean;
}

/** One usable IOVA range (struct vfio_iova), `end` inclusive. */
interface VfioIova {
  start: bigint;
  end: bigint;
}

/** copy_from_user of a command's first `n` bytes: EFAULT when the user's buffer is shorter (or NULL). */
export function userStruct(arg: Uint8Array | null, n: number): DataView {
  if (!arg || arg.length < n) kerr(ERRNO.EFAULT);
  return new DataView(arg.buffer, arg.byteOffset, arg.length);
}

/** __ffs on a u64 (the lowest set bit's index); 64 for 0, as tzcnt gives. */
function ffs(v: bigint): number {
  if (!v) return 64;
  let n = 0;
  while (!((v >> BigInt(n)) & 1n)) n++;
  return n;
}

/** access_ok(ptr, size): the whole range lies in the user half and does not wrap. */
function accessOk(ptr: bigint, size: bigint): boolean {
  const sum = ptr + size;
  return sum <= USER_PTR_MAX;
}

/** verify_bitmap_size */
function verifyBitmapSize(npages: bigint, bitmapSize: bigint): void {
  if (!npages || !bitmapSize || bitmapSize > DIRTY_BITMAP_SIZE_MAX || bitmapSize < ((npages + 63n) / 64n) * 8n) kerr(ERRNO.EINVAL);
}

/** The driver's data for one container (struct vfio_iommu). */
export class VfioIommu {
  /** Newest first (list_add): the first is the one type1 reads physical addresses from. */
  readonly domains: VfioDomain[] = [];
  /** Sorted, disjoint. Empty until a group with a domain is attached. */
  iovaList: VfioIova[] = [];
  readonly dmas = new SpanList<VfioDma>();
  dmaAvail: number;
  vaddrInvalidCount = 0;
  pgsizeBitmap = PAGE_MASK;
  /** 1 << __ffs(pgsize_bitmap): the unit of every map, unmap and dirty bit. */
  minPageSize = BigInt(PAGE_SIZE);
  /** IOMMU-backed groups that do not report dirty pages through pinning: all of the sim's. */
  numNonPinnedGroups = 0;
  dirtyPageTracking = false;

  constructor(
    readonly v2: boolean,
    /** The process that opened the container. */
    readonly opener: SimProcess,
    params: Type1Params,
  ) {
    this.dmaAvail = params.dmaEntryLimit;
  }

  /** `current`: the process whose ioctl runs (vfio_dma_do_map pins and charges current->mm). */
  get proc(): SimProcess {
    return currentProcess(this.opener);
  }

  /** vfio_iommu_type1_ioctl (VFIO_CHECK_EXTENSION never gets here: the container answers it). */
  ioctl(request: number, arg: Uint8Array | null): number {
    switch (request) {
      case VFIO_IOMMU_GET_INFO: return this.getInfo(arg);
      case VFIO_IOMMU_MAP_DMA: return this.mapDmaIoctl(arg);
      case VFIO_IOMMU_UNMAP_DMA: return this.unmapDmaIoctl(arg);
      case VFIO_IOMMU_DIRTY_PAGES: return this.dirtyPages(arg);
      default: return kerr(ERRNO.ENOTTY);
    }
  }

  // ---- mappings ------------------------------------------------------------------------------

  /** vfio_find_dma: any mapping intersecting [start, start + size). */
  private findDma(start: bigint, size: bigint): VfioDma | undefined {
    return this.dmas.first(start, start + size - 1n);
  }

  /**
   * vfio_pin_pages_remote and vfio_lock_acct for a whole mapping: ENOMEM past RLIMIT_MEMLOCK, EFAULT
   * where pinning stops. Device memory (a VM_PFNMAP mapping of a BAR) is taken through
   * follow_fault_pfn: its pfns are reserved, so they are neither pinned nor charged.
   */
  private pin(dma: VfioDma): void {
    const n = dma.pages.npages;
    const write = (dma.prot & IOMMU_WRITE) !== 0;
    const mm = this.proc.mm;
    const rsvd = { pages: 0 };
    const found = mm.pinnablePages(Number(dma.vaddr), n, write, true, rsvd);
    const charged = found - rsvd.pages;
    const limit = Math.floor(this.proc.rlimitMemlock / PAGE_SIZE);
    if (charged && !dma.lockCap && mm.lockedVm + charged > limit) kerr(ERRNO.ENOMEM);
    if (found < n) kerr(ERRNO.EFAULT);
    dma.pages.pin(0, n - 1, write);
    mm.lockedVm += charged;
    dma.lockedVm += charged;
  }

  /** vfio_unmap_unpin: out of every domain, then the pages go and the charge with them. */
  private unmapUnpin(dma: VfioDma): void {
    if (!this.domains.length) return;
    for (const d of this.domains) d.domain.unmapRange(dma.start, dma.last);
    dma.pages.unpin(0, dma.pages.npages - 1);
    dma.proc.mm.lockedVm -= dma.lockedVm;
    dma.lockedVm = 0;
    dma.iommuMapped = false;
  }

  /** vfio_dma_bitmap_alloc: zeroed (no page is pinned outside the domains). */
  private bitmapAlloc(dma: VfioDma): void {
    dma.bitmap = new Uint8Array(bitmapBytes(Number(dma.size / this.minPageSize)) + 8);
  }

  /** vfio_remove_dma */
  private removeDma(dma: VfioDma): void {
    this.unmapUnpin(dma);
    this.dmas.remove(dma);
    if (dma.vaddrInvalid) this.vaddrInvalidCount--;
    this.dmaAvail++;
  }

  /** vfio_iommu_iova_dma_valid: inside one usable range (anything goes while there is none). */
  private iovaValid(start: bigint, end: bigint): boolean {
    if (!this.iovaList.length) return true;
    return this.iovaList.some((r) => start >= r.start && end <= r.end);
  }

  private mapDmaIoctl(arg: Uint8Array | null): number {
    const d = userStruct(arg, MAP_DMA_MINSZ);
    const mask = VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE | VFIO_DMA_MAP_FLAG_VADDR;
    const flags = d.getUint32(4, true);
    if (d.getUint32(0, true) < MAP_DMA_MINSZ || flags & ~mask) kerr(ERRNO.EINVAL);
    this.doMap(flags, d.getBigUint64(8, true), d.getBigUint64(16, true), d.getBigUint64(24, true));
    return 0;
  }

  /** vfio_dma_do_map */
  private doMap(flags: number, vaddr: bigint, iova: bigint, size: bigint): void {
    const setVaddr = (flags & VFIO_DMA_MAP_FLAG_VADDR) !== 0;
    if (!size) kerr(ERRNO.EINVAL);
    const iovaEnd = iova + size - 1n;
    if (iovaEnd > U64_MAX || vaddr + size - 1n > U64_MAX) kerr(ERRNO.EOVERFLOW);
    const prot = (flags & VFIO_DMA_MAP_FLAG_WRITE ? IOMMU_WRITE : 0) | (flags & VFIO_DMA_MAP_FLAG_READ ? IOMMU_READ : 0);
    if ((prot && setVaddr) || (!prot && !setVaddr)) kerr(ERRNO.EINVAL);
    const pgmask = this.minPageSize - 1n;
    if ((size | iova | vaddr) & pgmask) kerr(ERRNO.EINVAL);
    const found = this.findDma(iova, size);
    if (setVaddr) {
      if (!found) kerr(ERRNO.ENOENT);
      if (!found.vaddrInvalid || found.start !== iova || found.size !== size) kerr(ERRNO.EINVAL);
      this.changeDmaOwner(found);
      found.vaddr = vaddr;
      found.vaddrInvalid = false;
      this.vaddrInvalidCount--;
      return;
    }
    if (found) kerr(ERRNO.EEXIST);
    if (!this.dmaAvail) kerr(ERRNO.ENOSPC);
    if (!this.iovaValid(iova, iovaEnd)) kerr(ERRNO.EINVAL);
    const dma = new VfioDma(iova, iovaEnd, vaddr, prot, this.proc, this.proc.ipcLock);
    // Don't pin and map if the container has no IOMMU-capable domain.
    if (this.domains.length) this.pinMap(dma);
    if (this.dirtyPageTracking) this.bitmapAlloc(dma);
    this.dmas.insert(dma);
    this.dmaAvail--;
  }

  /** vfio_pin_map_dma: pin, then map into every domain (a failure undoes both). */
  private pinMap(dma: VfioDma): void {
    this.pin(dma);
    for (const d of this.domains) d.domain.mapArea(dma);
    dma.iommuMapped = true;
  }

  /** vfio_change_dma_owner: the same process keeps its charge (the sim has one mm per process). */
  private changeDmaOwner(dma: VfioDma): void {
    if (dma.proc === this.proc) return;
    const limit = Math.floor(this.proc.rlimitMemlock / PAGE_SIZE);
    const lockCap = this.proc.ipcLock;
    if (!lockCap && this.proc.mm.lockedVm + dma.lockedVm > limit) kerr(ERRNO.ENOMEM);
    this.proc.mm.lockedVm += dma.lockedVm;
    dma.proc.mm.lockedVm -= dma.lockedVm;
    dma.proc = this.proc;
    dma.lockCap = lockCap;
  }

  private unmapDmaIoctl(arg: Uint8Array | null): number {
    const d = userStruct(arg, UNMAP_DMA_MINSZ);
    const mask = VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP | VFIO_DMA_UNMAP_FLAG_VADDR | VFIO_DMA_UNMAP_FLAG_ALL;
    const argsz = d.getUint32(0, true);
    const flags = d.getUint32(4, true);
    if (argsz < UNMAP_DMA_MINSZ || flags & ~mask) kerr(ERRNO.EINVAL);
    const dirty = (flags & VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP) !== 0;
    if (dirty && flags & (VFIO_DMA_UNMAP_FLAG_ALL | VFIO_DMA_UNMAP_FLAG_VADDR)) kerr(ERRNO.EINVAL);
    const size = d.getBigUint64(16, true);
    let bitmap: UserBitmap | null = null;
    if (dirty) {
      if (argsz < UNMAP_DMA_MINSZ + vfio_bitmap.size) kerr(ERRNO.EINVAL);
      bitmap = readBitmap(userStruct(arg, UNMAP_DMA_MINSZ + vfio_bitmap.size), UNMAP_DMA_MINSZ, size);
    }
    const unmapped = this.doUnmap(flags, d.getBigUint64(8, true), size, bitmap);
    d.setBigUint64(16, unmapped, true);
    return 0;
  }

  /** vfio_dma_do_unmap: returns the bytes unmapped (written back only on success). */
  private doUnmap(flags: number, iova: bigint, size: bigint, bitmap: UserBitmap | null): bigint {
    const unmapAll = (flags & VFIO_DMA_UNMAP_FLAG_ALL) !== 0;
    const invalidateVaddr = (flags & VFIO_DMA_UNMAP_FLAG_VADDR) !== 0;
    const pgsize = this.minPageSize;
    if (iova & (pgsize - 1n)) kerr(ERRNO.EINVAL);
    let iovaEnd: bigint;
    if (unmapAll) {
      if (iova || size) kerr(ERRNO.EINVAL);
      iovaEnd = U64_MAX;
    } else {
      if (!size || size & (pgsize - 1n)) kerr(ERRNO.EINVAL);
      iovaEnd = iova + size - 1n;
      if (iovaEnd > U64_MAX) kerr(ERRNO.EOVERFLOW);
    }
    if (bitmap && (!this.dirtyPageTracking || bitmap.pgsize !== pgsize)) kerr(ERRNO.EINVAL);
    // v2: no mapping may be bisected by the request (v1 unmaps whole mappings from their first IOVA).
    if (this.v2 && !unmapAll) {
      const head = this.findDma(iova, 1n);
      if (head && head.start !== iova) kerr(ERRNO.EINVAL);
      const tail = this.findDma(iovaEnd, 1n);
      if (tail && tail.last !== iovaEnd) kerr(ERRNO.EINVAL);
    }
    let unmapped = 0n;
    const first = this.dmas.first(iova, iovaEnd);
    for (let dma = first; dma; ) {
      if (!this.v2 && iova > dma.start) break;
      const next = this.dmas.next(dma, iovaEnd);
      if (invalidateVaddr) {
        if (dma.vaddrInvalid) {
          for (let r = first; r && r !== dma; r = this.dmas.next(r, iovaEnd)) {
            r.vaddrInvalid = false;
            this.vaddrInvalidCount--;
          }
          kerr(ERRNO.EINVAL);
        }
        dma.vaddrInvalid = true;
        this.vaddrInvalidCount++;
        unmapped += dma.size;
      } else {
        if (bitmap) this.updateUserBitmap(bitmap, dma, iova);
        unmapped += dma.size;
        this.removeDma(dma);
      }
      dma = next;
    }
    return unmapped;
  }

  // ---- dirty page logging --------------------------------------------------------------------

  /**
   * update_user_bitmap: the mapping's bitmap, shifted in place to its bit offset from `base`,
   * goes to the user in whole u64 words; a mapping that does not start on a word first ORs in the
   * user's word there (in place too). Every page of a mapped mapping is dirty while a group that
   * cannot report dirty pages is attached (every vfio-pci group); the sim has no pinned-page
   * (mdev) dirty scope.
   */
  private updateUserBitmap(bitmap: UserBitmap, dma: VfioDma, base: bigint): void {
    const pgshift = BigInt(ffs(bitmap.pgsize));
    const nbits = Number(dma.size >> pgshift);
    const bitOffset = Number((dma.start - base) >> pgshift);
    const shift = bitOffset % 64;
    const at = Number(bitmap.data) + Math.floor(bitOffset / 64) * 8;
    const bm = dma.bitmap!;
    if (this.numNonPinnedGroups && dma.iommuMapped) setBits(bm, 0, nbits, true);
    const mm = this.proc.mm;
    if (shift) {
      shiftLeft(bm, shift, bitmapBytes(nbits + shift));
      const leftover = new Uint8Array(8);
      mm.read(at, leftover);
      for (let i = 0; i < 8; i++) bm[i]! |= leftover[i]!;
    }
    mm.write(at, bm.subarray(0, bitmapBytes(nbits + shift)));
  }

  /** VFIO_IOMMU_DIRTY_PAGES (vfio_iommu_type1_dirty_pages): START, STOP or GET_BITMAP, one at a time. */
  private dirtyPages(arg: Uint8Array | null): number {
    if (!this.v2) kerr(ERRNO.EACCES);
    const d = userStruct(arg, DIRTY_PAGES_MINSZ);
    const argsz = d.getUint32(0, true);
    const flags = d.getUint32(4, true);
    const mask = VFIO_IOMMU_DIRTY_PAGES_FLAG_START | VFIO_IOMMU_DIRTY_PAGES_FLAG_STOP | VFIO_IOMMU_DIRTY_PAGES_FLAG_GET_BITMAP;
    if (argsz < DIRTY_PAGES_MINSZ || flags & ~mask) kerr(ERRNO.EINVAL);
    if (flags & (flags - 1)) kerr(ERRNO.EINVAL);
    if (flags & VFIO_IOMMU_DIRTY_PAGES_FLAG_START) {
      if (!this.dirtyPageTracking) for (const dma of this.dmas.range(0n, U64_MAX)) this.bitmapAlloc(dma);
      this.dirtyPageTracking = true;
      return 0;
    }
    if (flags & VFIO_IOMMU_DIRTY_PAGES_FLAG_STOP) {
      if (this.dirtyPageTracking) for (const dma of this.dmas.range(0n, U64_MAX)) dma.bitmap = null;
      this.dirtyPageTracking = false;
      return 0;
    }
    if (!(flags & VFIO_IOMMU_DIRTY_PAGES_FLAG_GET_BITMAP)) kerr(ERRNO.EINVAL);
    const G = vfio_iommu_type1_dirty_bitmap_get;
    if (argsz - DIRTY_PAGES_MINSZ < G.size) kerr(ERRNO.EINVAL);
    const r = userStruct(arg, DIRTY_PAGES_MINSZ + G.size);
    const iova = r.getBigUint64(DIRTY_PAGES_MINSZ + G.off.iova!, true);
    const size = r.getBigUint64(DIRTY_PAGES_MINSZ + G.off.size!, true);
    if (!size) kerr(ERRNO.EINVAL);
    const iovaEnd = iova + size - 1n;
    if (iovaEnd > U64_MAX) kerr(ERRNO.EOVERFLOW);
    const bitmap = readBitmap(r, DIRTY_PAGES_MINSZ + G.off['bitmap.pgsize']!, size);
    const pgsize = this.minPageSize;
    if (bitmap.pgsize !== pgsize || iova & (pgsize - 1n) || size & (pgsize - 1n)) kerr(ERRNO.EINVAL);
    if (!this.dirtyPageTracking) kerr(ERRNO.EINVAL);
    // vfio_iova_dirty_bitmap: whole mappings only, then each one's bits.
    const head = this.findDma(iova, 1n);
    if (head && head.start !== iova) kerr(ERRNO.EINVAL);
    const tail = this.findDma(iovaEnd, 1n);
    if (tail && tail.last !== iovaEnd) kerr(ERRNO.EINVAL);
    for (const dma of this.dmas.range(iova, iovaEnd)) {
      if (dma.start < iova) continue;
      this.updateUserBitmap(bitmap, dma, iova);
      // Re-populated with the pages pinned outside the domains: none.
      setBits(dma.bitmap!, 0, Number(dma.size / pgsize), false);
    }
    return 0;
  }

  // ---- GET_INFO ------------------------------------------------------------------------------

  /** vfio_iommu_type1_get_info: the caps (MIGRATION, DMA_AVAIL, IOVA_RANGE) only when all of them fit. */
  private getInfo(arg: Uint8Array | null): number {
    const d = userStruct(arg, GET_INFO_MINSZ);
    const argsz = d.getUint32(0, true);
    if (argsz < GET_INFO_MINSZ) kerr(ERRNO.EINVAL);
    const caps = new CapChain();
    caps.add(VFIO_IOMMU_TYPE1_INFO_CAP_MIGRATION, 32, (v) => {
      v.setBigUint64(16, this.minPageSize, true);
      v.setBigUint64(24, DIRTY_BITMAP_SIZE_MAX, true);
    });
    caps.add(VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL, 12, (v) => v.setUint32(8, this.dmaAvail, true));
    const iovas = this.iovaList;
    if (iovas.length) {
      caps.add(VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE, 16 + 16 * iovas.length, (v) => {
        v.setUint32(8, iovas.length, true);
        iovas.forEach((r, i) => {
          v.setBigUint64(16 + 16 * i, r.start, true);
          v.setBigUint64(24 + 16 * i, r.end, true);
        });
      });
    }
    const info = new DataView(new ArrayBuffer(INFO_SIZE));
    info.setUint32(0, argsz, true);
    info.setUint32(4, VFIO_IOMMU_INFO_PGSIZES | VFIO_IOMMU_INFO_CAPS, true);
    info.setBigUint64(8, this.pgsizeBitmap, true);
    if (argsz < INFO_SIZE + caps.size) {
      info.setUint32(0, INFO_SIZE + caps.size, true);
    } else {
      const bytes = caps.bytes(INFO_SIZE);
      if (arg!.length < INFO_SIZE + bytes.length) kerr(ERRNO.EFAULT);
      arg!.set(bytes, INFO_SIZE);
      info.setUint32(16, INFO_SIZE, true);
    }
    const n = Math.min(argsz, INFO_SIZE);
    userStruct(arg, n);
    arg!.set(new Uint8Array(info.buffer, 0, n));
    return 0;
  }

  // ---- groups and domains --------------------------------------------------------------------

  private findGroup(group: SimGroup): VfioDomain | undefined {
    return this.domains.find((d) => d.groups.includes(group));
  }

  /** vfio_iommu_aper_conflict: a new aperture that misses the current ranges or leaves a mapping outside. */
  private aperConflict(start: bigint, end: bigint): boolean {
    const list = this.iovaList;
    if (!list.length) return false;
    const first = list[0]!;
    const last = list[list.length - 1]!;
    if (start > last.end || end < first.start) return true;
    if (start > first.start && this.findDma(first.start, start - first.start)) return true;
    if (end < last.end && this.findDma(end + 1n, last.end - end)) return true;
    return false;
  }

  /** vfio_iommu_resv_conflict */
  private resvConflict(resv: readonly ResvRegion[]): boolean {
    return resv.some((r) => r.type !== 'direct-relaxable' && this.findDma(r.start, r.last - r.start + 1n));
  }

  /**
   * vfio_iommu_type1_attach_group: a new domain for the group on its IOMMU, the ranges narrowed to
   * its aperture minus its reserved regions; then the group joins an existing domain of the same
   * driver and coherency, or the new domain is kept and every mapping replayed into it.
   */
  attachGroup(group: SimGroup): void {
    if (this.vaddrInvalidCount) kerr(ERRNO.EBUSY);
    if (this.findGroup(group)) kerr(ERRNO.EINVAL);
    const domain = group.devices[0]!.ops.allocPaging(0, null);
    iommuAttachGroup(domain, group);
    let iovas: VfioIova[];
    try {
      const { start, last } = domain.aperture;
      if (this.aperConflict(start, last)) kerr(ERRNO.EINVAL);
      const resv = groupResvRegions(group);
      if (this.resvConflict(resv)) kerr(ERRNO.EINVAL);
      iovas = this.iovaList.map((r) => ({ ...r }));
      aperResize(iovas, start, last);
      resvExclude(iovas, resv);
    } catch (e) {
      iommuDetachGroup(group);
      throw e;
    }
    const enforceCacheCoherency = domain.canEnforceCc;
    const same = this.domains.find((d) => d.domain.owner === domain.owner && d.enforceCacheCoherency === enforceCacheCoherency);
    if (same) {
      iommuAttachGroup(same.domain, group);
      same.groups.unshift(group);
    } else {
      try {
        this.replay(domain);
      } catch (e) {
        iommuDetachGroup(group);
        throw e;
      }
      this.domains.unshift({ domain, groups: [group], enforceCacheCoherency });
      this.updatePgsizeBitmap();
    }
    this.iovaList = iovas;
    this.numNonPinnedGroups++;
  }

  /** vfio_iommu_replay: every mapping into a new domain, pinning those no domain held yet. */
  private replay(domain: PagingDomain): void {
    const done: VfioDma[] = [];
    try {
      for (const dma of this.dmas.range(0n, U64_MAX)) {
        if (!dma.iommuMapped) this.pin(dma);
        done.push(dma);
        domain.mapArea(dma);
      }
    } catch (e) {
      for (const dma of done) {
        domain.unmapRange(dma.start, dma.last);
        if (!dma.iommuMapped && dma.lockedVm) {
          dma.pages.unpin(0, dma.pages.npages - 1);
          dma.proc.mm.lockedVm -= dma.lockedVm;
          dma.lockedVm = 0;
        }
      }
      throw e;
    }
    for (const dma of done) dma.iommuMapped = true;
  }

  /** vfio_update_pgsize_bitmap: the sizes every domain supports, sub-PAGE_SIZE ones shown as PAGE_SIZE. */
  private updatePgsizeBitmap(): void {
    let bitmap = U64_MAX;
    for (const d of this.domains) bitmap &= d.domain.pgsizeBitmap;
    if (bitmap & ~PAGE_MASK) bitmap = (bitmap & PAGE_MASK) | BigInt(PAGE_SIZE);
    this.pgsizeBitmap = bitmap;
    this.minPageSize = 1n << BigInt(ffs(bitmap));
  }

  /**
   * vfio_iommu_type1_detach_group: the group leaves its domain; a domain without groups goes, and
   * with the last domain every mapping. The ranges are rebuilt from the remaining apertures and
   * reserved regions.
   */
  detachGroup(group: SimGroup): void {
    const iovas = this.iovaList.map((r) => ({ ...r }));
    const i = this.domains.findIndex((d) => d.groups.includes(group));
    if (i >= 0) {
      const vd = this.domains[i]!;
      iommuDetachGroup(group);
      vd.groups.splice(vd.groups.indexOf(group), 1);
      if (!vd.groups.length) {
        if (this.domains.length === 1) this.unmapUnpinAll();
        this.domains.splice(i, 1);
        this.aperExpand(iovas);
        this.updatePgsizeBitmap();
      }
      // vfio_iommu_populate_bitmap_full: a group that could dirty memory leaves; all is dirty.
      this.numNonPinnedGroups--;
      if (this.dirtyPageTracking) for (const dma of this.dmas.range(0n, U64_MAX)) setBits(dma.bitmap!, 0, Number(dma.size / this.minPageSize), true);
    }
    const refreshed = this.resvRefresh(iovas);
    if (refreshed) this.iovaList = refreshed;
  }

  /** vfio_iommu_unmap_unpin_all */
  private unmapUnpinAll(): void {
    for (let dma = this.dmas.first(0n, U64_MAX); dma; dma = this.dmas.first(0n, U64_MAX)) this.removeDma(dma);
  }

  /** vfio_iommu_aper_expand: the ends of the list become the intersection of the remaining apertures. */
  private aperExpand(iovas: VfioIova[]): void {
    if (!iovas.length) return;
    let start = 0n;
    let end = U64_MAX;
    for (const d of this.domains) {
      if (d.domain.aperture.start > start) start = d.domain.aperture.start;
      if (d.domain.aperture.last < end) end = d.domain.aperture.last;
    }
    iovas[0]!.start = start;
    iovas[iovas.length - 1]!.end = end;
  }

  /** vfio_iommu_resv_refresh: null when the new list would be empty (the old one stays). */
  private resvRefresh(iovas: VfioIova[]): VfioIova[] | null {
    if (!iovas.length) return null;
    const resv = this.domains.flatMap((d) => d.groups.flatMap(groupResvRegions));
    const out: VfioIova[] = [];
    aperResize(out, iovas[0]!.start, iovas[iovas.length - 1]!.end);
    try {
      resvExclude(out, resv);
    } catch (e) {
      if (e instanceof KernelErrno) return null;
      throw e;
    }
    return out;
  }

  /** vfio_iommu_type1_release: the last group left the container. */
  release(): void {
    this.unmapUnpinAll();
    for (const d of this.domains) for (const g of d.groups) iommuDetachGroup(g);
    this.domains.length = 0;
  }
}

/** The u64 words of a user's dirty bitmap (struct vfio_bitmap, checked as the kernel does on entry). */
interface UserBitmap {
  readonly pgsize: bigint;
  readonly data: bigint;
}

/** Read a struct vfio_bitmap at `off` and check it against a range of `size` bytes (access_ok, verify_bitmap_size). */
function readBitmap(d: DataView, off: number, size: bigint): UserBitmap {
  const pgsize = d.getBigUint64(off + vfio_bitmap.off.pgsize!, true);
  const bytes = d.getBigUint64(off + vfio_bitmap.off.size!, true);
  const data = d.getBigUint64(off + vfio_bitmap.off.data!, true);
  if (!accessOk(data, bytes)) kerr(ERRNO.EINVAL);
  verifyBitmapSize(size >> BigInt(ffs(pgsize) & 63), bytes);
  return { pgsize, data };
}

/** DIRTY_BITMAP_BYTES: whole u64 words for `nbits` bits. */
function bitmapBytes(nbits: number): number {
  return Math.ceil(nbits / 64) * 8;
}

/** bitmap_set / bitmap_clear of bits [from, from + n) (u64 words little-endian: bit i is byte i >> 3). */
function setBits(bm: Uint8Array, from: number, n: number, on: boolean): void {
  let b = from;
  const end = from + n;
  for (; b < end && b & 7; b++) bm[b >> 3] = on ? bm[b >> 3]! | (1 << (b & 7)) : bm[b >> 3]! & ~(1 << (b & 7));
  for (; b + 8 <= end; b += 8) bm[b >> 3] = on ? 0xff : 0;
  for (; b < end; b++) bm[b >> 3] = on ? bm[b >> 3]! | (1 << (b & 7)) : bm[b >> 3]! & ~(1 << (b & 7));
}

/** __bitmap_shift_left in place over the first `nbytes` (whole words): bits pushed past them are lost, the rest is kept. */
function shiftLeft(bm: Uint8Array, shift: number, nbytes: number): void {
  const byteShift = shift >> 3;
  const bitShift = shift & 7;
  for (let j = nbytes - 1; j >= 0; j--) {
    const s = j - byteShift;
    const hi = s >= 0 ? bm[s]! << bitShift : 0;
    const lo = bitShift && s > 0 ? bm[s - 1]! >> (8 - bitShift) : 0;
    bm[j] = (hi | lo) & 0xff;
  }
}

/** iommu_get_group_resv_regions: what each member's driver reserves. */
function groupResvRegions(group: SimGroup): ResvRegion[] {
  return group.devices.flatMap((d) => [...d.ops.reservedRegions()]);
}

/** vfio_iommu_aper_resize: trim the list to [start, end] (a new list is the aperture itself). */
function aperResize(iovas: VfioIova[], start: bigint, end: bigint): void {
  if (!iovas.length) {
    iovas.push({ start, end });
    return;
  }
  while (iovas.length) {
    const node = iovas[0]!;
    if (start < node.start) break;
    if (start >= node.start && start < node.end) {
      node.start = start;
      break;
    }
    iovas.shift();
  }
  for (let i = 0; i < iovas.length; ) {
    const node = iovas[i]!;
    if (end > node.end) {
      i++;
      continue;
    }
    if (end > node.start && end <= node.end) {
      node.end = end;
      i++;
      continue;
    }
    iovas.splice(i, 1);
  }
}

/** vfio_iommu_resv_exclude: cut every reserved region (except relaxable direct ones) out; EINVAL if nothing is left. */
function resvExclude(iovas: VfioIova[], resv: readonly ResvRegion[]): void {
  for (const r of resv) {
    if (r.type === 'direct-relaxable') continue;
    for (let i = 0; i < iovas.length; ) {
      const n = iovas[i]!;
      if (r.start > n.end || r.last < n.start) {
        i++;
        continue;
      }
      const pieces: VfioIova[] = [];
      if (r.start > n.start) pieces.push({ start: n.start, end: r.start - 1n });
      if (r.last < n.end) pieces.push({ start: r.last + 1n, end: n.end });
      iovas.splice(i, 1, ...pieces);
      i += pieces.length;
    }
  }
  if (!iovas.length) kerr(ERRNO.EINVAL);
}

/** vfio_info_cap_add / vfio_info_cap_shift: capabilities padded to 8 bytes, chained by offset. */
class CapChain {
  private readonly caps: { id: number; size: number; fill: (v: DataView) => void }[] = [];
  size = 0;

  add(id: number, size: number, fill: (v: DataView) => void): void {
    this.caps.push({ id, size, fill });
    this.size += Math.ceil(size / 8) * 8;
  }

  /** The chain as it lands at byte `base` of the user's buffer. */
  bytes(base: number): Uint8Array {
    const out = new Uint8Array(this.size);
    let off = 0;
    this.caps.forEach((c, i) => {
      const v = new DataView(out.buffer, off, Math.ceil(c.size / 8) * 8);
      v.setUint16(0, c.id, true);
      v.setUint16(2, 1, true);
      const next = off + Math.ceil(c.size / 8) * 8;
      v.setUint32(4, i + 1 < this.caps.length ? base + next : 0, true);
      c.fill(v);
      off = next;
    });
    return out;
  }
}

/** vfio_iommu_type1_check_extension (iommu null: asked before any container chose the driver). */
export function type1CheckExtension(iommu: VfioIommu | null, arg: number): number {
  switch (arg) {
    case VFIO_TYPE1_IOMMU:
    case VFIO_TYPE1v2_IOMMU:
    case VFIO_UNMAP_ALL:
      return 1;
    case VFIO_UPDATE_VADDR:
      return iommu ? 1 : 0; // no emulated (mdev) groups on the sim
    case VFIO_DMA_CC_IOMMU:
      if (!iommu) return 0;
      return iommu.domains.every((d) => d.enforceCacheCoherency) ? 1 : 0;
    default:
      return 0;
  }
}

/** vfio_iommu_type1_open: TYPE1 is v1; TYPE1v2 (and the retired nesting type) v2; others EINVAL. */
export function type1Open(arg: number, proc: SimProcess, params: Type1Params): VfioIommu {
  if (arg === VFIO_TYPE1_IOMMU) return new VfioIommu(false, proc, params);
  if (arg === VFIO_TYPE1v2_IOMMU || arg === VFIO_TYPE1_NESTING_IOMMU) return new VfioIommu(true, proc, params);
  return kerr(ERRNO.EINVAL);
}
