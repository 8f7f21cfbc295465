/**
 * Every container and group command of the legacy VFIO interface, fed bad input: the kernel's
 * errno, and no change of state. The snapshot is what userspace can observe: each group's status,
 * the container's GET_INFO (page sizes, DMA_AVAIL, IOVA ranges), which pages are mapped (the dirty
 * bitmap over the whole test range: type1 reports every mapped page of a vfio-pci group dirty),
 * VmLck, and whether the device opened through the group still answers.
 */
import { beforeEach, describe, expect, it } from 'vitest';
import type { ErrnoCode, Iommufd, UserMemory } from '../src/index.js';
import * as V from '../src/ioasid/vfio_uapi.js';
import { BACKEND, P, PAGE_SIZE, U64_MAX, expectErrno } from './helpers.js';
import { deviceMachine } from './drivers/devices.js';
import { Legacy, RW, mapCmd, useLegacy } from './drivers/legacy.js';
import { vmCounters } from './privileges.js';

const machine = deviceMachine();
const skip = !machine.soloEdu || !machine.groupedEdus;
const reason = machine.noSoloReason || machine.noGroupReason;
const PG = PAGE_SIZE;
const A = 0x100000n;
const B = 0x200000n;
/** The range the snapshot's bitmap covers: 1024 pages. */
const SPAN = 0x400000n;

describe.skipIf(skip)(`bad input to the legacy container and groups changes nothing [${BACKEND}]${skip ? ` (skipped: ${reason})` : ''}`, () => {
  const f = useLegacy(machine);
  const { solo, pair, keep, mem } = f;
  let ctx: Iommufd;
  let L: Legacy;
  /** The world: container c (TYPE1v2, dirty logging on) with the solo group g1 and its device d; g2 open, no container. */
  let c: number;
  let g1: number;
  let g2: number;
  let d: number;
  let m: UserMemory;
  let bm: UserMemory;

  beforeEach(() => {
    ({ ctx, L } = f);
    m = mem(8 * P);
    bm = mem(P);
    c = keep(L.container());
    g1 = keep(L.group(f.soloGroup));
    g2 = keep(L.group(f.pairGroup));
    L.setContainer(g1, c);
    L.setIommu(c, V.VFIO_TYPE1v2_IOMMU);
    L.map(c, m.addr, A, 4n * PG);
    L.map(c, m.addr + 4n * PG, B, 2n * PG, V.VFIO_DMA_MAP_FLAG_READ);
    L.dirty(c, V.VFIO_IOMMU_DIRTY_PAGES_FLAG_START);
    d = keep(L.deviceFd(g1, solo));
  });

  function snapshot() {
    bm.bytes.fill(0);
    L.dirtyBitmap(c, 0n, SPAN, { pgsize: PG, size: SPAN / PG / 8n, data: bm.addr });
    const mapped: string[] = [];
    for (let i = 0; i < Number(SPAN / PG); i++) if ((bm.bytes[i >> 3]! >> (i & 7)) & 1) mapped.push((BigInt(i) * PG).toString(16));
    const info = L.info(c);
    return {
      status: [L.status(g1), L.status(g2)],
      info: { pgsizes: info.pgsizes, dmaAvail: info.dmaAvail, ranges: info.iovaRanges },
      mapped,
      locked: vmCounters(ctx.binding).locked,
      device: L.device(d).info().numRegions,
    };
  }

  function refuse(code: ErrnoCode, fn: () => unknown): void {
    const before = snapshot();
    expectErrno(fn, code);
    expect(snapshot()).toEqual(before);
  }

  it('the world is what the snapshot shows', () => {
    const s = snapshot();
    expect(s.status).toEqual([3, 1]);
    expect(s.info.dmaAvail).toBe(65533);
    expect(s.mapped).toEqual(['100000', '101000', '102000', '103000', '200000', '201000']);
    expect(s.device).toBe(9);
  });

  it('VFIO_CHECK_EXTENSION and VFIO_GET_API_VERSION with odd arguments answer and change nothing', () => {
    const before = snapshot();
    expect(L.checkExtension(c, 0xffff_ffff)).toBe(0); // the arg is an unsigned long: -1 is refused before the kernel (syscall_args)
    expect(L.checkExtension(c, 0x7fffffff)).toBe(0);
    expect(ctx.binding.ioctlInt(c, V.VFIO_GET_API_VERSION, 12345)).toBe(0);
    expect(snapshot()).toEqual(before);
  });

  it('VFIO_SET_IOMMU: a driver is set (EINVAL), whatever the type', () => {
    for (const t of [V.VFIO_TYPE1v2_IOMMU, V.VFIO_TYPE1_IOMMU, V.VFIO_SPAPR_TCE_IOMMU, 99]) refuse('EINVAL', () => L.setIommu(c, t));
  });

  it('VFIO_IOMMU_GET_INFO: argsz below 16 EINVAL, NULL EFAULT', () => {
    refuse('EINVAL', () => L.info(c, 15, 64));
    refuse('EFAULT', () => ctx.binding.ioctl(c, V.VFIO_IOMMU_GET_INFO, null));
  });

  it('VFIO_IOMMU_MAP_DMA: every refusal', () => {
    const ro = mem(P, true);
    refuse('EFAULT', () => ctx.binding.ioctl(c, V.VFIO_IOMMU_MAP_DMA, null));
    refuse('EINVAL', () => L.map(c, m.addr, 0x300000n, PG, RW, 31));
    refuse('EINVAL', () => L.map(c, m.addr, 0x300000n, PG, RW | 0x10));
    refuse('EINVAL', () => L.map(c, m.addr, 0x300000n, 0n));
    refuse('EOVERFLOW', () => L.map(c, m.addr, U64_MAX - PG + 1n, 2n * PG));
    refuse('EOVERFLOW', () => L.map(c, U64_MAX, 0x300000n, 2n * PG));
    refuse('EINVAL', () => L.map(c, m.addr, 0x300000n, PG, 0));
    refuse('EINVAL', () => L.map(c, m.addr, 0x300000n, PG, V.VFIO_DMA_MAP_FLAG_WRITE | V.VFIO_DMA_MAP_FLAG_VADDR));
    refuse('EINVAL', () => L.map(c, m.addr + 1n, 0x300000n, PG));
    refuse('EINVAL', () => L.map(c, m.addr, 0x300001n, PG));
    refuse('EINVAL', () => L.map(c, m.addr, 0x300000n, PG + 1n));
    refuse('EEXIST', () => L.map(c, m.addr, A + 3n * PG, 2n * PG));
    refuse('EEXIST', () => L.map(c, m.addr, A - PG, 8n * PG));
    refuse('ENOENT', () => L.map(c, m.addr, 0x300000n, PG, V.VFIO_DMA_MAP_FLAG_VADDR));
    refuse('EINVAL', () => L.map(c, m.addr, A, 4n * PG, V.VFIO_DMA_MAP_FLAG_VADDR)); // its vaddr is valid
    refuse('EINVAL', () => L.map(c, m.addr, 0xfee00000n, PG));
    refuse('EINVAL', () => L.map(c, m.addr, 1n << 39n, PG));
    refuse('EFAULT', () => L.map(c, 0x1000n, 0x300000n, PG));
    const holed = mem(2 * P);
    ctx.binding.munmap(holed.addr + PG, P);
    refuse('EFAULT', () => L.map(c, holed.addr, 0x300000n, 2n * PG)); // its second page is gone
    refuse('EFAULT', () => L.map(c, ro.addr, 0x300000n, PG));
    expect(ctx.binding.ioctl(c, V.VFIO_IOMMU_MAP_DMA, mapCmd(32, RW, m.addr, 0x300000n, PG))).toBe(0);
  });

  it('VFIO_IOMMU_UNMAP_DMA: every refusal', () => {
    const F = V.VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP;
    const bitmap = { pgsize: PG, size: 8n, data: bm.addr };
    refuse('EFAULT', () => ctx.binding.ioctl(c, V.VFIO_IOMMU_UNMAP_DMA, null));
    refuse('EINVAL', () => L.unmap(c, A, 4n * PG, 0, undefined, 23));
    refuse('EINVAL', () => L.unmap(c, A, 4n * PG, 0x80));
    refuse('EINVAL', () => L.unmap(c, 0n, 0n, V.VFIO_DMA_UNMAP_FLAG_ALL | F, bitmap));
    refuse('EINVAL', () => L.unmap(c, A, 4n * PG, V.VFIO_DMA_UNMAP_FLAG_VADDR | F, bitmap));
    refuse('EINVAL', () => L.unmap(c, PG, 0n, V.VFIO_DMA_UNMAP_FLAG_ALL));
    refuse('EINVAL', () => L.unmap(c, 0n, PG, V.VFIO_DMA_UNMAP_FLAG_ALL));
    refuse('EINVAL', () => L.unmap(c, A + 1n, PG));
    refuse('EINVAL', () => L.unmap(c, A, 0n));
    refuse('EINVAL', () => L.unmap(c, A, PG - 1n));
    refuse('EOVERFLOW', () => L.unmap(c, U64_MAX - PG + 1n, 2n * PG));
    refuse('EINVAL', () => L.unmap(c, A + PG, PG)); // inside A
    refuse('EINVAL', () => L.unmap(c, A, 2n * PG)); // A's head
    refuse('EINVAL', () => L.unmap(c, A, B - A + PG)); // A whole, B's head
    refuse('EINVAL', () => L.unmap(c, A, 4n * PG, F, bitmap, 47));
    refuse('EINVAL', () => L.unmap(c, A, 4n * PG, F, { ...bitmap, data: 1n << 63n }));
    refuse('EINVAL', () => L.unmap(c, A, 4n * PG, F, { ...bitmap, size: 0n }));
    refuse('EINVAL', () => L.unmap(c, A, 4n * PG, F, { ...bitmap, pgsize: 2n * PG }));
    refuse('EFAULT', () => L.unmap(c, A, 4n * PG, F, { ...bitmap, data: 0x1000n })); // the first bitmap write fails before A goes
    refuse('EINVAL', () => L.unmap(c, A, 4n * PG, V.VFIO_DMA_UNMAP_FLAG_VADDR | 0x100));
  });

  it('VFIO_DMA_UNMAP_FLAG_VADDR over a range holding an invalid vaddr: EINVAL, the others it invalidated are restored', () => {
    expect(L.unmap(c, B, 2n * PG, V.VFIO_DMA_UNMAP_FLAG_VADDR)).toBe(2n * PG);
    refuse('EINVAL', () => L.unmap(c, A, B - A + 2n * PG, V.VFIO_DMA_UNMAP_FLAG_VADDR));
    expectErrno(() => L.map(c, m.addr, A, 4n * PG, V.VFIO_DMA_MAP_FLAG_VADDR), 'EINVAL'); // A's vaddr is valid
    L.map(c, m.addr + 4n * PG, B, 2n * PG, V.VFIO_DMA_MAP_FLAG_VADDR);
  });

  it('VFIO_IOMMU_DIRTY_PAGES: every refusal', () => {
    const bitmap = { pgsize: PG, size: 8n, data: bm.addr };
    refuse('EFAULT', () => ctx.binding.ioctl(c, V.VFIO_IOMMU_DIRTY_PAGES, null));
    refuse('EINVAL', () => L.dirty(c, 0));
    refuse('EINVAL', () => L.dirty(c, 0x10));
    refuse('EINVAL', () => L.dirty(c, V.VFIO_IOMMU_DIRTY_PAGES_FLAG_STOP | V.VFIO_IOMMU_DIRTY_PAGES_FLAG_GET_BITMAP));
    refuse('EINVAL', () => L.dirtyBitmap(c, A, 4n * PG, bitmap, 8));
    refuse('EINVAL', () => L.dirtyBitmap(c, A, 0n, bitmap));
    refuse('EOVERFLOW', () => L.dirtyBitmap(c, U64_MAX - PG + 1n, 2n * PG, bitmap));
    refuse('EINVAL', () => L.dirtyBitmap(c, A, 4n * PG, { ...bitmap, data: 1n << 63n }));
    refuse('EINVAL', () => L.dirtyBitmap(c, A, 4n * PG, { ...bitmap, size: 0n }));
    refuse('EINVAL', () => L.dirtyBitmap(c, A, 4n * PG, { ...bitmap, pgsize: PG * 2n }));
    refuse('EINVAL', () => L.dirtyBitmap(c, A + 1n, 4n * PG, bitmap));
    refuse('EINVAL', () => L.dirtyBitmap(c, A, 4n * PG + 1n, bitmap));
    refuse('EINVAL', () => L.dirtyBitmap(c, A + PG, PG, bitmap));
    refuse('EFAULT', () => L.dirtyBitmap(c, A, 4n * PG, { ...bitmap, data: 0x1000n }));
  });

  it('group commands: GET_STATUS, SET_CONTAINER, UNSET_CONTAINER, GET_DEVICE_FD, a second open', () => {
    const efd = keep(ctx.binding.eventfd(0, 0));
    refuse('EINVAL', () => L.status(g1, 4));
    refuse('EFAULT', () => ctx.binding.ioctl(g2, V.VFIO_GROUP_GET_STATUS, null));
    refuse('EINVAL', () => L.setContainer(g1, c));
    refuse('EINVAL', () => L.setContainer(g1, ctx.fd));
    refuse('EBADF', () => L.setContainer(g2, -1));
    refuse('EBADFD', () => L.setContainer(g2, efd));
    refuse('EFAULT', () => ctx.binding.ioctl(g2, V.VFIO_GROUP_SET_CONTAINER, null));
    refuse('EINVAL', () => L.unsetContainer(g2));
    refuse('EBUSY', () => L.unsetContainer(g1));
    refuse('EINVAL', () => L.deviceFd(g2, pair[0]));
    refuse('ENODEV', () => L.deviceFd(g1, pair[0]));
    refuse('ENODEV', () => L.deviceFd(g1, 'nothing'));
    refuse('EINVAL', () => L.deviceFd(g1, `${solo} vf_token=x`));
    refuse('EFAULT', () => ctx.binding.ioctl(g1, V.VFIO_GROUP_GET_DEVICE_FD, null));
    refuse('EBUSY', () => L.group(f.soloGroup));
    refuse('ENOTTY', () => ctx.binding.ioctl(g1, (0x3b << 8) | 0x80, null));
  });
});
