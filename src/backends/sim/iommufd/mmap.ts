/**
 * The iommufd's mmap-able regions (ictx->mt_mmap): a driver registers pages of one of its objects
 * (driver.c's _iommufd_alloc_mmap / _iommufd_destroy_mmap; the mock vIOMMU's two pages) and
 * hands userspace the offset; mmap(2) of the iommufd fd (main.c's iommufd_fops_mmap) maps exactly
 * that region. Every mapping, and every piece a munmap splits off it, holds the owning object
 * (DESTROY answers EBUSY) and the iommufd file, as the VMA's vm_file does.
 */
import { ERRNO } from '../../../ioasid/errors.js';
import { MAP_SHARED } from '../../types.js';
import { kerr } from '../kernel/errno.js';
import { shouldFailSlab } from '../kernel/fault_inject.js';
import type { IommufdCtx } from './main.js';
import { PAGE_SIZE, type PageStore, type SimMm, type VmaOps } from '../kernel/mm.js';

const PROT_EXEC = 0x4;

/** struct iommufd_mmap: the region at [start, start + length) of the offset space. */
interface IommufdMmap {
  readonly start: number;
  readonly length: number;
  /** The object the region belongs to (immap->owner). */
  readonly ownerId: number;
  /** The pages behind it (immap->mmio_addr). */
  readonly store: PageStore;
}

export class IommufdMmaps {
  /** Sorted by start, never overlapping. */
  private regions: IommufdMmap[] = [];

  constructor(private readonly ctx: IommufdCtx) {}

  /** _iommufd_alloc_mmap: the lowest free range from PAGE_SIZE (offset 0 is never handed out). */
  alloc(ownerId: number, store: PageStore, length: number): number {
    if (!length || length % PAGE_SIZE) kerr(ERRNO.EINVAL);
    if (shouldFailSlab()) kerr(ERRNO.ENOMEM); // the immap and its maple tree range (fault injection)
    let start = PAGE_SIZE;
    let i = 0;
    for (; i < this.regions.length; i++) {
      const r = this.regions[i]!;
      if (r.start - start >= length) break;
      start = r.start + r.length;
    }
    this.regions.splice(i, 0, { start, length, ownerId, store });
    return start;
  }

  /** _iommufd_destroy_mmap */
  destroy(offset: number): void {
    this.regions = this.regions.filter((r) => r.start !== offset);
  }

  /** iommufd_fops_mmap: only the exact region, shared and not executable. */
  mmap(mm: SimMm, addr: number, length: number, prot: number, flags: number, offset: number): number {
    return mm.mmapDevice(addr, length, prot, flags, offset, (len) => {
      if (!(flags & MAP_SHARED)) kerr(ERRNO.EINVAL);
      if (prot & PROT_EXEC) kerr(ERRNO.EPERM);
      // mtree_load finds the region holding the offset; only its start and whole length map
      const r = this.regions.find((x) => x.start <= offset && offset < x.start + x.length);
      if (!r || r.start !== offset || r.length !== len) kerr(ERRNO.ENXIO);
      const ops = this.vmaOps(r.ownerId);
      ops.open();
      return { store: r.store, ops };
    });
  }

  /** iommufd_vma_ops: each VMA holds the owner and the file; the last close may release the context. */
  private vmaOps(ownerId: number): VmaOps {
    const ctx = this.ctx;
    return {
      open(): void {
        ctx.ref(ownerId, 1);
        ctx.hold();
      },
      close(): void {
        ctx.ref(ownerId, -1);
        ctx.release();
      },
    };
  }
}
