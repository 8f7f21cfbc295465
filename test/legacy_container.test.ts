/**
 * The legacy VFIO container, /dev/vfio/vfio, with the kernel's type1 driver
 * (drivers/vfio/container.c, vfio_iommu_type1.c), driven with raw ioctls on both backends: the
 * container's ordering rules, SET_IOMMU, GET_INFO and its caps, TYPE1 vs TYPE1v2 unmap rules,
 * dma_entry_limit, locked_vm accounting, dirty-page logging, UPDATE_VADDR, two groups in one
 * container, and DMA from QEMU's edu device through a container.
 *
 * Expected values are what Linux 7.3 does in the test VM (legacy container on, the three edus
 * bound to vfio-pci: 00:01.0 alone in its group, 01:01.0 and 01:02.0 behind a PCIe-to-PCI bridge
 * sharing one group). The VM's VT-d has a 39-bit aperture, 4K/2M/1G pages, no snoop control, and
 * reserves the MSI window 0xfee00000-0xfeefffff.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { beforeEach, describe, expect, it } from 'vitest';
import type { Iommufd, UserMemory } from '../src/index.js';
import * as V from '../src/ioasid/vfio_uapi.js';
import { BACKEND, P, PAGE_SIZE, U64_MAX, expectErrno } from './helpers.js';
import { deviceMachine } from './drivers/devices.js';
import { EDU_MAX_CHUNK, EduDriver } from './drivers/edu.js';
import { Legacy, RW, useLegacy } from './drivers/legacy.js';
import { restrictPinning, vmCounters } from './privileges.js';

const machine = deviceMachine();
const skip = !machine.soloEdu || !machine.groupedEdus;
const reason = machine.noSoloReason || machine.noGroupReason;
const PG = PAGE_SIZE;
const APERTURE_LAST = (1n << 39n) - 1n;
const MSI_START = 0xfee0_0000n;
const MSI_LAST = 0xfeef_ffffn;
/** VT-d's 4K | 2M | 1G. */
const VTD_PGSIZES = 0x4020_1000n;
const DMA_ENTRY_LIMIT = '/sys/module/vfio_iommu_type1/parameters/dma_entry_limit';

describe.skipIf(skip)(`the legacy container with vfio_iommu_type1 [${BACKEND}]${skip ? ` (skipped: ${reason})` : ''}`, () => {
  const f = useLegacy(machine);
  const { solo, pair, keep, closeFd, mem } = f;
  let ctx: Iommufd;
  let L: Legacy;
  beforeEach(() => ({ ctx, L } = f));

  /** A container with the solo edu's group in it, and the driver set to `type` (0: not set). */
  function setup(type: number = V.VFIO_TYPE1v2_IOMMU): { c: number; g: number } {
    const c = keep(L.container());
    const g = keep(L.group(f.soloGroup));
    L.setContainer(g, c);
    if (type) L.setIommu(c, type);
    return { c, g };
  }
  /** Both groups in one container, then SET_IOMMU(type). */
  function twoGroups(type: number): { c: number; g1: number; g2: number } {
    const c = keep(L.container());
    const g1 = keep(L.group(f.soloGroup));
    const g2 = keep(L.group(f.pairGroup));
    L.setContainer(g1, c);
    L.setContainer(g2, c);
    L.setIommu(c, type);
    return { c, g1, g2 };
  }
  /** DMA_AVAIL: how many more mappings the container takes. */
  const avail = (c: number): number => L.info(c).dmaAvail!;

  describe('before VFIO_SET_IOMMU', () => {
    it('GET_API_VERSION is 0; CHECK_EXTENSION asks type1 without a container: TYPE1, TYPE1v2, UNMAP_ALL only', () => {
      const c = keep(L.container());
      expect(L.apiVersion(c)).toBe(V.VFIO_API_VERSION);
      const exts = [V.VFIO_TYPE1_IOMMU, V.VFIO_SPAPR_TCE_IOMMU, V.VFIO_TYPE1v2_IOMMU, V.VFIO_DMA_CC_IOMMU, V.VFIO_EEH,
        V.VFIO_TYPE1_NESTING_IOMMU, V.VFIO_SPAPR_TCE_v2_IOMMU, V.VFIO_NOIOMMU_IOMMU, V.VFIO_UNMAP_ALL, V.VFIO_UPDATE_VADDR, 1000];
      expect(exts.map((e) => L.checkExtension(c, e))).toEqual([1, 0, 1, 0, 0, 0, 0, 0, 1, 0, 0]);
    });

    it('without a driver every other container ioctl is EINVAL; SET_IOMMU needs a group (EINVAL)', () => {
      const c = keep(L.container());
      expectErrno(() => L.setIommu(c, V.VFIO_TYPE1v2_IOMMU), 'EINVAL');
      expectErrno(() => L.info(c), 'EINVAL');
      const m = mem(4 * P);
      expectErrno(() => L.map(c, m.addr, 0x100000n, PG), 'EINVAL');
      expectErrno(() => L.unmap(c, 0x100000n, PG), 'EINVAL');
      expectErrno(() => L.dirty(c, V.VFIO_IOMMU_DIRTY_PAGES_FLAG_START), 'EINVAL');
      expectErrno(() => ctx.binding.ioctl(c, (0x3b << 8) | 0x7f, null), 'EINVAL');
      // With a group but no driver yet: the same.
      const g = keep(L.group(f.soloGroup));
      L.setContainer(g, c);
      expectErrno(() => L.map(c, m.addr, 0x100000n, PG), 'EINVAL');
      expectErrno(() => L.info(c), 'EINVAL');
    });

    it('SET_IOMMU: types no driver offers ENODEV, UNMAP_ALL (an extension, not a type) EINVAL, TYPE1v2 once', () => {
      const { c } = setup(0);
      for (const t of [V.VFIO_SPAPR_TCE_IOMMU, V.VFIO_TYPE1_NESTING_IOMMU, V.VFIO_NOIOMMU_IOMMU, V.VFIO_UPDATE_VADDR, 0, 1000]) {
        expectErrno(() => L.setIommu(c, t), 'ENODEV');
      }
      expectErrno(() => L.setIommu(c, V.VFIO_UNMAP_ALL), 'EINVAL');
      L.setIommu(c, V.VFIO_TYPE1v2_IOMMU);
      expectErrno(() => L.setIommu(c, V.VFIO_TYPE1v2_IOMMU), 'EINVAL');
      expectErrno(() => L.setIommu(c, V.VFIO_TYPE1_IOMMU), 'EINVAL');
      // With the driver set, UPDATE_VADDR is offered; the VM's VT-d cannot enforce coherency; unknown ioctls ENOTTY.
      expect([V.VFIO_TYPE1_IOMMU, V.VFIO_TYPE1v2_IOMMU, V.VFIO_UNMAP_ALL, V.VFIO_UPDATE_VADDR, V.VFIO_DMA_CC_IOMMU].map((e) => L.checkExtension(c, e)))
        .toEqual([1, 1, 1, 1, 0]);
      expectErrno(() => ctx.binding.ioctl(c, (0x3b << 8) | 0x7f, null), 'ENOTTY');
    });
  });

  describe('VFIO_IOMMU_GET_INFO', () => {
    it('the domain page sizes, then MIGRATION, DMA_AVAIL and IOVA_RANGE (the aperture minus the MSI window)', () => {
      const { c } = setup();
      const info = L.info(c);
      expect(info.flags).toBe(V.VFIO_IOMMU_INFO_PGSIZES | V.VFIO_IOMMU_INFO_CAPS);
      expect(info.pgsizes).toBe(VTD_PGSIZES);
      expect(info.argsz).toBe(256);
      expect(info.capOffset).toBe(24);
      expect(info.capIds).toEqual([V.VFIO_IOMMU_TYPE1_INFO_CAP_MIGRATION, V.VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL, V.VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE]);
      expect(info.migration).toEqual({ flags: 0, pgsizeBitmap: PG, maxDirtyBitmapSize: 1n << 28n });
      expect(info.dmaAvail).toBe(65535);
      expect(info.iovaRanges).toEqual([[0n, MSI_START - 1n], [MSI_LAST + 1n, APERTURE_LAST]]);
      // The chain: 24 + 32 (MIGRATION) + 16 (DMA_AVAIL, padded) + 16 + 2 * 16 (IOVA_RANGE) = 120 bytes.
      const d = new DataView(info.raw.buffer);
      expect([d.getUint32(24 + 4, true), d.getUint32(56 + 4, true), d.getUint32(72 + 4, true)]).toEqual([56, 72, 0]);
      expect(info.raw.subarray(120).every((b) => b === 0xa5)).toBe(true);
    });

    it('too small for the caps: argsz says what is needed, cap_offset 0, no cap written; below 16 EINVAL', () => {
      const { c } = setup();
      const short = L.info(c, 24, 128);
      expect(short).toMatchObject({ argsz: 120, flags: 3, pgsizes: VTD_PGSIZES, capOffset: 0, capIds: [] });
      expect(short.raw.subarray(24).every((b) => b === 0xa5)).toBe(true);
      const tiny = L.info(c, 16, 64);
      expect(tiny).toMatchObject({ argsz: 120, flags: 3, pgsizes: VTD_PGSIZES });
      expect(tiny.raw.subarray(16).every((b) => b === 0xa5)).toBe(true);
      expect(L.info(c, 119, 128).capOffset).toBe(0);
      expect(L.info(c, 120, 128).capOffset).toBe(24);
      expectErrno(() => L.info(c, 15, 64), 'EINVAL');
      expectErrno(() => ctx.binding.ioctl(c, V.VFIO_IOMMU_GET_INFO, null), 'EFAULT');
    });
  });

  describe('MAP_DMA and UNMAP_DMA', () => {
    it('TYPE1v2: whole mappings only (a bisecting unmap is EINVAL), nothing there is 0 bytes, UNMAP_ALL', () => {
      const { c } = setup();
      const m = mem(16 * P);
      L.map(c, m.addr, 0x100000n, 4n * PG);
      L.map(c, m.addr + 4n * PG, 0x104000n, 2n * PG);
      expect(avail(c)).toBe(65533);
      expectErrno(() => L.map(c, m.addr, 0x103000n, 2n * PG), 'EEXIST');
      expectErrno(() => L.unmap(c, 0x101000n, PG), 'EINVAL'); // inside the first
      expectErrno(() => L.unmap(c, 0x100000n, PG), 'EINVAL'); // its head only
      expectErrno(() => L.unmap(c, 0x100000n, 5n * PG), 'EINVAL'); // bisects the second at its end
      expect(L.unmap(c, 0x200000n, 4n * PG)).toBe(0n);
      expect(avail(c)).toBe(65533);
      expect(L.unmap(c, 0xff000n, 5n * PG)).toBe(4n * PG); // the first whole, from below it
      expect(avail(c)).toBe(65534);
    });

    it('UNMAP_ALL needs iova = size = 0 and unmaps everything', () => {
      const { c } = setup();
      const m = mem(16 * P);
      L.map(c, m.addr, 0x100000n, 4n * PG);
      L.map(c, m.addr, 0x300000n, 8n * PG);
      expectErrno(() => L.unmap(c, PG, 0n, V.VFIO_DMA_UNMAP_FLAG_ALL), 'EINVAL');
      expectErrno(() => L.unmap(c, 0n, PG, V.VFIO_DMA_UNMAP_FLAG_ALL), 'EINVAL');
      expect(L.unmap(c, 0n, 0n, V.VFIO_DMA_UNMAP_FLAG_ALL)).toBe(12n * PG);
      expect(avail(c)).toBe(65535);
      expect(L.unmap(c, 0n, 0n, V.VFIO_DMA_UNMAP_FLAG_ALL)).toBe(0n);
    });

    it('TYPE1 (v1): an unmap starting inside a mapping unmaps nothing; one covering its first IOVA unmaps all of it', () => {
      const { c } = setup(V.VFIO_TYPE1_IOMMU);
      const m = mem(16 * P);
      L.map(c, m.addr, 0x100000n, 4n * PG);
      L.map(c, m.addr, 0x200000n, 2n * PG);
      L.map(c, m.addr, 0x202000n, 2n * PG);
      expect(L.unmap(c, 0x101000n, PG)).toBe(0n);
      expect(L.unmap(c, 0x101000n, 0x200000n)).toBe(0n); // starts inside: stops at once, later mappings too
      expect(avail(c)).toBe(65532);
      expect(L.unmap(c, 0x100000n, PG)).toBe(4n * PG);
      expect(L.unmap(c, 0x200000n, 3n * PG)).toBe(4n * PG); // both whole, the second bisected at its end
      expect(avail(c)).toBe(65535);
      expect(L.info(c).pgsizes).toBe(VTD_PGSIZES);
    });

    it('MAP_DMA refusals in the kernel order: argsz/flags, size, overflow, R/W vs VADDR, alignment, overlap, range, pinning', () => {
      const { c } = setup();
      const m = mem(8 * P);
      expectErrno(() => L.map(c, m.addr, 0x100000n, PG, RW, 31), 'EINVAL');
      expectErrno(() => L.map(c, m.addr, 0x100000n, PG, RW | 8), 'EINVAL');
      expectErrno(() => ctx.binding.ioctl(c, V.VFIO_IOMMU_MAP_DMA, null), 'EFAULT');
      expectErrno(() => L.map(c, m.addr, 0x100000n, 0n), 'EINVAL');
      expectErrno(() => L.map(c, m.addr, U64_MAX - PG + 1n, 2n * PG), 'EOVERFLOW');
      expectErrno(() => L.map(c, U64_MAX - PG + 1n, 0x100000n, 2n * PG), 'EOVERFLOW');
      expectErrno(() => L.map(c, m.addr, 0x100000n, PG, 0), 'EINVAL');
      expectErrno(() => L.map(c, m.addr, 0x100000n, PG, RW | V.VFIO_DMA_MAP_FLAG_VADDR), 'EINVAL');
      expectErrno(() => L.map(c, m.addr + 8n, 0x100000n, PG), 'EINVAL');
      expectErrno(() => L.map(c, m.addr, 0x100800n, PG), 'EINVAL');
      expectErrno(() => L.map(c, m.addr, 0x100000n, 0x800n), 'EINVAL');
      expectErrno(() => L.map(c, m.addr, MSI_START, PG), 'EINVAL'); // reserved
      expectErrno(() => L.map(c, m.addr, MSI_START - PG, 2n * PG), 'EINVAL'); // straddles it
      expectErrno(() => L.map(c, m.addr, APERTURE_LAST + 1n, PG), 'EINVAL'); // past the aperture
      expectErrno(() => L.map(c, 0x1000n, 0x100000n, PG), 'EFAULT'); // nothing mapped there
      const ro = mem(2 * P, true);
      expectErrno(() => L.map(c, ro.addr, 0x100000n, PG), 'EFAULT'); // FOLL_WRITE on read-only memory
      L.map(c, ro.addr, 0x100000n, PG, V.VFIO_DMA_MAP_FLAG_READ);
      expectErrno(() => L.map(c, m.addr, 0x100000n, PG), 'EEXIST');
      expect(avail(c)).toBe(65534);
      // The last page below the MSI window and the top of the aperture are mappable.
      L.map(c, m.addr, MSI_START - PG, PG);
      L.map(c, m.addr, APERTURE_LAST - PG + 1n, PG);
    });

    it('UNMAP_DMA refusals: argsz/flags, GET_DIRTY_BITMAP with ALL or VADDR, alignment, size, overflow', () => {
      const { c } = setup();
      const m = mem(4 * P);
      L.map(c, m.addr, 0x100000n, 4n * PG);
      expectErrno(() => L.unmap(c, 0x100000n, 4n * PG, 0, undefined, 23), 'EINVAL');
      expectErrno(() => L.unmap(c, 0x100000n, 4n * PG, 8), 'EINVAL');
      expectErrno(() => L.unmap(c, 0n, 0n, V.VFIO_DMA_UNMAP_FLAG_ALL | V.VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP), 'EINVAL');
      expectErrno(() => L.unmap(c, 0x100000n, 4n * PG, V.VFIO_DMA_UNMAP_FLAG_VADDR | V.VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP), 'EINVAL');
      expectErrno(() => L.unmap(c, 0x100800n, PG), 'EINVAL');
      expectErrno(() => L.unmap(c, 0x100000n, 0n), 'EINVAL');
      expectErrno(() => L.unmap(c, 0x100000n, 0x800n), 'EINVAL');
      expectErrno(() => L.unmap(c, U64_MAX - PG + 1n, 2n * PG), 'EOVERFLOW');
      expectErrno(() => ctx.binding.ioctl(c, V.VFIO_IOMMU_UNMAP_DMA, null), 'EFAULT');
      expect(L.unmap(c, 0x100000n, 4n * PG)).toBe(4n * PG);
    });
  });

  describe('resources: dma_entry_limit and locked_vm', () => {
    it('dma_entry_limit (a module parameter, read at SET_IOMMU): DMA_AVAIL counts down, then ENOSPC', () => {
      const write = (v: string) => (BACKEND === 'sim' ? ctx.binding.writeText(DMA_ENTRY_LIMIT, v) : writeFileSync(DMA_ENTRY_LIMIT, v));
      const read = () => (BACKEND === 'sim' ? ctx.binding.readText(DMA_ENTRY_LIMIT) : readFileSync(DMA_ENTRY_LIMIT, 'utf8'));
      expect(read()).toBe('65535\n');
      const { c } = setup(0);
      write('3\n');
      try {
        L.setIommu(c, V.VFIO_TYPE1v2_IOMMU);
      } finally {
        write('65535');
      }
      expect(read()).toBe('65535\n');
      const m = mem(4 * P);
      expect(avail(c)).toBe(3);
      for (let i = 0n; i < 3n; i++) L.map(c, m.addr, 0x100000n + i * PG, PG);
      expect(avail(c)).toBe(0);
      expectErrno(() => L.map(c, m.addr, 0x200000n, PG), 'ENOSPC');
      expectErrno(() => L.map(c, m.addr, 0x100000n, PG), 'EEXIST'); // overlap is checked first
      expect(L.unmap(c, 0x101000n, PG)).toBe(PG);
      L.map(c, m.addr, 0x200000n, PG);
      expect(avail(c)).toBe(0);
      // Other containers opened later get the default again.
      const other = keep(L.container());
      const g2 = keep(L.group(f.pairGroup));
      L.setContainer(g2, other);
      L.setIommu(other, V.VFIO_TYPE1v2_IOMMU);
      expect(avail(other)).toBe(65535);
    });

    it('MAP_DMA pins and charges locked_vm per mapping (the same pages twice are charged twice); UNMAP gives it back', () => {
      const { c } = setup();
      const m = mem(8 * P);
      const base = vmCounters(ctx.binding).locked;
      L.map(c, m.addr, 0x100000n, 8n * PG);
      L.map(c, m.addr, 0x200000n, 8n * PG);
      expect(vmCounters(ctx.binding).locked - base).toBe(16);
      expect(L.unmap(c, 0x100000n, 8n * PG)).toBe(8n * PG);
      expect(vmCounters(ctx.binding).locked - base).toBe(8);
      expect(L.unmap(c, 0n, 0n, V.VFIO_DMA_UNMAP_FLAG_ALL)).toBe(8n * PG);
      expect(vmCounters(ctx.binding).locked).toBe(base);
    });

    /** Run `fn` with CAP_IPC_LOCK as given and RLIMIT_MEMLOCK at what is locked now plus `pages`; the pages locked by it. */
    function limited(ipcLock: boolean, pages: number, fn: (c: number, m: UserMemory) => void): number {
      const { c } = setup();
      const m = mem(16 * P);
      const base = vmCounters(ctx.binding).locked;
      const undo = restrictPinning(ctx.binding, { ipcLock, memlockBytes: (base + pages) * P });
      try {
        fn(c, m);
      } finally {
        undo();
      }
      return vmCounters(ctx.binding).locked - base;
    }

    it('RLIMIT_MEMLOCK without CAP_IPC_LOCK: a map past it is ENOMEM and changes nothing', () => {
      const locked = limited(false, 12, (c, m) => {
        L.map(c, m.addr, 0x100000n, 8n * PG);
        expectErrno(() => L.map(c, m.addr, 0x200000n, 8n * PG), 'ENOMEM');
        expect(avail(c)).toBe(65534);
        expect(L.unmap(c, 0x200000n, 8n * PG)).toBe(0n);
        L.map(c, m.addr, 0x200000n, 4n * PG); // exactly up to the limit
      });
      expect(locked).toBe(12);
    });

    it('CAP_IPC_LOCK skips the limit but locked_vm is still charged', () => {
      expect(limited(true, 2, (c, m) => L.map(c, m.addr, 0x100000n, 16n * PG))).toBe(16);
    });

    it('closing the container fd keeps its mappings (the group holds it); the last group leaving drops them all', () => {
      const { c, g } = setup();
      const m = mem(4 * P);
      const base = vmCounters(ctx.binding).locked;
      L.map(c, m.addr, 0x100000n, 4n * PG);
      closeFd(c);
      expect(vmCounters(ctx.binding).locked - base).toBe(4);
      expect(L.status(g)).toBe(V.VFIO_GROUP_FLAGS_VIABLE | V.VFIO_GROUP_FLAGS_CONTAINER_SET);
      L.unsetContainer(g);
      expect(vmCounters(ctx.binding).locked).toBe(base);
    });
  });

  describe('two groups in one container', () => {
    it('the second group joins the same domain: ranges and page sizes stay; SET_IOMMU attaches every group', () => {
      const { c, g1, g2 } = twoGroups(V.VFIO_TYPE1v2_IOMMU);
      const m = mem(4 * P);
      L.map(c, m.addr, 0x100000n, 4n * PG);
      expect(L.info(c).iovaRanges).toEqual([[0n, MSI_START - 1n], [MSI_LAST + 1n, APERTURE_LAST]]);
      L.unsetContainer(g1);
      expect(avail(c)).toBe(65534); // one group is left: the mappings stay
      L.unsetContainer(g2);
      expectErrno(() => L.info(c), 'EINVAL'); // the last one took the driver with it
      L.setContainer(g2, c);
      L.setIommu(c, V.VFIO_TYPE1_IOMMU); // a fresh driver, of either type
      expect(avail(c)).toBe(65535);
    });

    it('a group joining a container that has mappings gets them replayed into its domain', () => {
      const { c } = setup();
      const m = mem(4 * P);
      L.map(c, m.addr, 0x100000n, 4n * PG);
      const g2 = keep(L.group(f.pairGroup));
      L.setContainer(g2, c);
      expect(avail(c)).toBe(65534);
      expect(L.unmap(c, 0x100000n, 4n * PG)).toBe(4n * PG);
    });
  });

  describe('dirty page logging (VFIO_IOMMU_DIRTY_PAGES)', () => {
    const bits = (b: Uint8Array, n: number) => Array.from({ length: n }, (_, i) => (b[i >> 3]! >> (i & 7)) & 1).join('');
    /** A TYPE1v2 container with mappings of `pages` pages at each IOVA, and an 8-byte bitmap at 4K pages in user memory. */
    function mapped(...maps: [bigint, bigint][]) {
      const { c } = setup();
      const m = mem(8 * P);
      const bm = mem(P);
      for (const [iova, pages] of maps) L.map(c, m.addr, iova, pages * PG);
      return { c, bm, bitmap: { pgsize: PG, size: 8n, data: bm.addr } };
    }

    it('TYPE1 (v1): EACCES for every request', () => {
      const { c } = setup(V.VFIO_TYPE1_IOMMU);
      expectErrno(() => L.dirty(c, V.VFIO_IOMMU_DIRTY_PAGES_FLAG_START), 'EACCES');
      expectErrno(() => ctx.binding.ioctl(c, V.VFIO_IOMMU_DIRTY_PAGES, null), 'EACCES');
    });

    it('START, GET_BITMAP and STOP; every mapped page of a vfio-pci group is reported dirty', () => {
      const { c, bm, bitmap } = mapped([0x100000n, 4n], [0x106000n, 2n]);
      expectErrno(() => L.dirtyBitmap(c, 0x100000n, 8n * PG, bitmap), 'EINVAL'); // not logging
      L.dirty(c, V.VFIO_IOMMU_DIRTY_PAGES_FLAG_START);
      L.dirty(c, V.VFIO_IOMMU_DIRTY_PAGES_FLAG_START); // again: nothing changes
      bm.bytes.fill(0);
      L.dirtyBitmap(c, 0x100000n, 8n * PG, bitmap);
      expect(bits(bm.bytes, 16)).toBe('1111001100000000');
      // A range starting lower: the bits move with it. type1 shifts each mapping's bitmap in place
      // and ORs the user's word into it, so the second mapping still carries the first report's
      // bits of the word it shared (0-3, moved up by 9: 9-12) and its own earlier shift (6-7: 15-16).
      bm.bytes.fill(0);
      L.dirtyBitmap(c, 0xfd000n, 16n * PG, { ...bitmap, size: 8n });
      expect(bits(bm.bytes, 24)).toBe('000111100111100110000000');
      L.dirty(c, V.VFIO_IOMMU_DIRTY_PAGES_FLAG_STOP);
      L.dirty(c, V.VFIO_IOMMU_DIRTY_PAGES_FLAG_STOP);
      expectErrno(() => L.dirtyBitmap(c, 0x100000n, 8n * PG, bitmap), 'EINVAL');
    });

    it('GET_BITMAP refusals: one flag at a time, argsz, size, overflow, bitmap size and pgsize, alignment, bisected mappings', () => {
      const { c, bitmap } = mapped([0x100000n, 4n]);
      L.dirty(c, V.VFIO_IOMMU_DIRTY_PAGES_FLAG_START);
      expectErrno(() => L.dirty(c, 0), 'EINVAL');
      expectErrno(() => L.dirty(c, V.VFIO_IOMMU_DIRTY_PAGES_FLAG_START | V.VFIO_IOMMU_DIRTY_PAGES_FLAG_STOP), 'EINVAL');
      expectErrno(() => L.dirty(c, 8), 'EINVAL');
      expectErrno(() => L.dirtyBitmap(c, 0x100000n, 4n * PG, bitmap, 47), 'EINVAL');
      expectErrno(() => L.dirtyBitmap(c, 0x100000n, 0n, bitmap), 'EINVAL');
      expectErrno(() => L.dirtyBitmap(c, U64_MAX - PG + 1n, 2n * PG, bitmap), 'EOVERFLOW');
      expectErrno(() => L.dirtyBitmap(c, 0x100000n, 4n * PG, { ...bitmap, data: 1n << 63n }), 'EINVAL'); // access_ok
      expectErrno(() => L.dirtyBitmap(c, 0x100000n, 4n * PG, { ...bitmap, size: 0n }), 'EINVAL');
      expectErrno(() => L.dirtyBitmap(c, 0x100000n, 65n * 64n * PG, bitmap), 'EINVAL'); // 8 bytes hold 64 pages
      expectErrno(() => L.dirtyBitmap(c, 0x100000n, 4n * PG, { ...bitmap, pgsize: 2n * PG }), 'EINVAL');
      expectErrno(() => L.dirtyBitmap(c, 0x100800n, 4n * PG, bitmap), 'EINVAL');
      expectErrno(() => L.dirtyBitmap(c, 0x101000n, PG, bitmap), 'EINVAL'); // inside the mapping
      expectErrno(() => L.dirtyBitmap(c, 0x100000n, 2n * PG, bitmap), 'EINVAL'); // its head only
      expectErrno(() => L.dirtyBitmap(c, 0x100000n, 4n * PG, { ...bitmap, data: 0x1000n }), 'EFAULT');
      L.dirtyBitmap(c, 0x100000n, 4n * PG, bitmap);
    });

    it('UNMAP_DMA with GET_DIRTY_BITMAP: the bits of what it unmapped (only while logging, at the smallest page size)', () => {
      const { c, bm, bitmap } = mapped([0x100000n, 2n], [0x103000n, 3n]);
      const F = V.VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP;
      expectErrno(() => L.unmap(c, 0x100000n, 8n * PG, F, bitmap), 'EINVAL'); // not logging
      L.dirty(c, V.VFIO_IOMMU_DIRTY_PAGES_FLAG_START);
      expectErrno(() => L.unmap(c, 0x100000n, 8n * PG, F, bitmap, 47), 'EINVAL'); // argsz leaves no vfio_bitmap
      expectErrno(() => L.unmap(c, 0x100000n, 8n * PG, F, { ...bitmap, pgsize: 2n * PG }), 'EINVAL');
      expectErrno(() => L.unmap(c, 0x100000n, 8n * PG, F, { ...bitmap, size: 0n }), 'EINVAL');
      expectErrno(() => L.unmap(c, 0x100000n, 8n * PG, F, { ...bitmap, data: 1n << 63n }), 'EINVAL');
      bm.bytes.fill(0);
      expect(L.unmap(c, 0x100000n, 8n * PG, F, bitmap)).toBe(5n * PG);
      expect(bits(bm.bytes, 8)).toBe('11011100');
      expect(avail(c)).toBe(65535);
    });
  });

  describe('UPDATE_VADDR', () => {
    it('UNMAP with VADDR invalidates the vaddrs of whole mappings, MAP with VADDR gives them new ones', () => {
      const { c } = setup();
      const m = mem(8 * P);
      const other = mem(4 * P);
      const VA = V.VFIO_DMA_MAP_FLAG_VADDR;
      const UVA = V.VFIO_DMA_UNMAP_FLAG_VADDR;
      L.map(c, m.addr, 0x100000n, 4n * PG); // A
      L.map(c, m.addr + 4n * PG, 0x104000n, 2n * PG); // B
      expectErrno(() => L.map(c, other.addr, 0x100000n, 4n * PG, VA), 'EINVAL'); // A's vaddr is valid
      expect(L.unmap(c, 0x104000n, 2n * PG, UVA)).toBe(2n * PG);
      // A range holding an invalid mapping: EINVAL, and A (invalidated on the way) is valid again.
      expectErrno(() => L.unmap(c, 0x100000n, 6n * PG, UVA), 'EINVAL');
      expectErrno(() => L.map(c, other.addr, 0x100000n, 4n * PG, VA), 'EINVAL');
      expect(avail(c)).toBe(65533); // both still mapped
      expectErrno(() => L.map(c, other.addr, 0x104000n, 2n * PG), 'EEXIST');
      expectErrno(() => L.map(c, other.addr, 0x200000n, 2n * PG, VA), 'ENOENT');
      expectErrno(() => L.map(c, other.addr, 0x104000n, PG, VA), 'EINVAL'); // not the whole mapping
      expectErrno(() => L.map(c, other.addr, 0x104000n, 2n * PG, VA | V.VFIO_DMA_MAP_FLAG_READ), 'EINVAL');
      L.map(c, other.addr, 0x104000n, 2n * PG, VA);
      expectErrno(() => L.map(c, other.addr, 0x104000n, 2n * PG, VA), 'EINVAL'); // valid again
      expect(L.unmap(c, 0x100000n, 6n * PG)).toBe(6n * PG);
    });

    it('while a vaddr is invalid no group can join the container (EBUSY)', () => {
      const { c } = setup();
      const m = mem(4 * P);
      L.map(c, m.addr, 0x100000n, 4n * PG);
      L.unmap(c, 0x100000n, 4n * PG, V.VFIO_DMA_UNMAP_FLAG_VADDR);
      const g2 = keep(L.group(f.pairGroup));
      expectErrno(() => L.setContainer(g2, c), 'EBUSY');
      expect(L.status(g2)).toBe(V.VFIO_GROUP_FLAGS_VIABLE);
      L.map(c, m.addr, 0x100000n, 4n * PG, V.VFIO_DMA_MAP_FLAG_VADDR);
      L.setContainer(g2, c);
    });
  });

  describe('DMA from edu through a legacy container', () => {
    const SRC = 0x10_0000n;
    const DST = 0x20_0000n;

    function edu(g: number, name: string): { dev: ReturnType<Legacy['device']>; drv: EduDriver } {
      const dev = L.device(keep(L.deviceFd(g, name)));
      const drv = new EduDriver(dev);
      drv.init();
      return { dev, drv };
    }

    it('TYPE1v2: RAM -> edu -> RAM through the mappings; after UNMAP the IOVA reaches nothing', () => {
      const { c, g } = setup();
      const src = mem(P);
      const dst = mem(P);
      for (let i = 0; i < P; i++) src.bytes[i] = (i * 7 + 3) & 0xff;
      dst.bytes.fill(0xee);
      L.map(c, src.addr, SRC, PG, V.VFIO_DMA_MAP_FLAG_READ);
      L.map(c, dst.addr, DST, PG);
      const { drv } = edu(g, solo);
      drv.memcpy(SRC, DST, EDU_MAX_CHUNK);
      expect([...dst.bytes.subarray(0, EDU_MAX_CHUNK)]).toEqual([...src.bytes.subarray(0, EDU_MAX_CHUNK)]);
      expect(dst.bytes.subarray(EDU_MAX_CHUNK).every((b) => b === 0xee)).toBe(true);
      // A device write to the read-only mapping changes nothing.
      const before = src.bytes.slice();
      drv.toRam(SRC, 64);
      expect(src.bytes).toEqual(before);
      // Unmapped: the DMA to DST no longer arrives.
      expect(L.unmap(c, DST, PG)).toBe(PG);
      dst.bytes.fill(0x11);
      drv.toRam(DST, 64);
      expect(dst.bytes.every((b) => b === 0x11)).toBe(true);
      drv.remove();
    });

    it('two groups, one container: both groups\' edus DMA through the same mappings; the group path opens a device twice', () => {
      const { c, g1, g2 } = twoGroups(V.VFIO_TYPE1_IOMMU);
      const src = mem(P);
      const dst = mem(P);
      for (let i = 0; i < P; i++) src.bytes[i] = (i * 13 + 1) & 0xff;
      L.map(c, src.addr, SRC, PG);
      L.map(c, dst.addr, DST, PG);
      const a = edu(g1, solo);
      const b = edu(g2, pair[1]);
      a.drv.toDevice(SRC, 256);
      a.drv.toRam(DST, 256);
      expect([...dst.bytes.subarray(0, 256)]).toEqual([...src.bytes.subarray(0, 256)]);
      dst.bytes.fill(0);
      b.drv.toDevice(SRC + 256n, 256);
      b.drv.toRam(DST + 256n, 256);
      expect([...dst.bytes.subarray(256, 512)]).toEqual([...src.bytes.subarray(256, 512)]);
      expect(dst.bytes.subarray(0, 256).every((x) => x === 0)).toBe(true);
      // A second fd for the same device: both work; closing one leaves the other open.
      const again = L.device(keep(L.deviceFd(g2, pair[1])));
      expect(again.info().pci).toBe(true);
      again.close();
      expect(b.dev.info().pci).toBe(true);
      a.drv.remove();
      b.drv.remove();
    });
  });
});
