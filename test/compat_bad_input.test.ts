/**
 * Every container and group command of the legacy API, fed bad input, in every mode: the
 * kernel's errno, and no change of state. The snapshot is what a legacy user can observe:
 * VFIO_IOMMU_GET_INFO (ranges, page sizes, DMA_AVAIL), the group's status, and which IOVAs hold a
 * mapping (probed with a one-page MAP_DMA that is undone). Expected errnos are what Linux 7.3
 * answered in the test VM: type1 (drivers/vfio/container.c, vfio_iommu_type1.c) and iommufd's
 * compat (vfio_compat.c, which the iommufd mode re-expresses) differ in places, each noted.
 */
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { openBinding } from '../src/backends/index.js';
import type { Binding } from '../src/backends/types.js';
import { Iommufd, VfioContainer, VfioGroup, containerUapi as V, type ErrnoCode, type UserMemory, type VfioDevice } from '../src/index.js';
import { BACKEND, P, expectErrno, mapDmaBytes, unmapDmaBytes } from './helpers.js';
import { claimDevices } from './drivers/devices.js';
import { machine, modeCase, probeMappings, why } from './compat_modes.js';

const bdf = machine.soloEdu ?? '0000:00:01.0';
const PG = BigInt(P);
const A = 0x10_0000n;
const B = 0x20_0000n;
const PROBES = [A, A + PG, A + 3n * PG, A + 4n * PG, B, 0x30_0000n];
const RW = V.VFIO_DMA_MAP_FLAG_READ | V.VFIO_DMA_MAP_FLAG_WRITE;



function structBuf(argsz: number, bytes = 8): Uint8Array {
  const b = new Uint8Array(Math.max(bytes, 4));
  new DataView(b.buffer).setUint32(0, argsz, true);
  return b;
}

/** One bad call: what it sends, and the errno per family of modes (type1, and iommufd's compat). */
interface Bad {
  what: string;
  call: (w: World) => unknown;
  type1: ErrnoCode | null;
  compat: ErrnoCode | null;
}

interface World {
  b: Binding;
  c: VfioContainer;
  g: VfioGroup;
  mem: UserMemory;
  page: UserMemory;
  dev: VfioDevice | null;
}

const CONTAINER: Bad[] = [
  { what: 'MAP_DMA argsz 31', call: (w) => w.c.ioctl(V.VFIO_IOMMU_MAP_DMA, mapDmaBytes(31, RW, w.mem.addr, 0x30_0000n, PG)), type1: 'EINVAL', compat: 'EINVAL' },
  { what: 'MAP_DMA an unknown flag', call: (w) => w.c.ioctl(V.VFIO_IOMMU_MAP_DMA, mapDmaBytes(32, RW | 8, w.mem.addr, 0x30_0000n, PG)), type1: 'EINVAL', compat: 'EINVAL' },
  { what: 'MAP_DMA VADDR with READ|WRITE', call: (w) => w.c.ioctl(V.VFIO_IOMMU_MAP_DMA, mapDmaBytes(32, RW | V.VFIO_DMA_MAP_FLAG_VADDR, w.mem.addr, 0x30_0000n, PG)), type1: 'EINVAL', compat: 'EINVAL' },
  { what: 'MAP_DMA NULL', call: (w) => w.c.ioctl(V.VFIO_IOMMU_MAP_DMA, null), type1: 'EFAULT', compat: 'EFAULT' },
  { what: 'MAP_DMA overlapping A', call: (w) => w.c.mapDma(w.mem.addr, A + 2n * PG, { size: 4n * PG }), type1: 'EEXIST', compat: 'EEXIST' },
  { what: 'MAP_DMA size 0', call: (w) => w.c.mapDma(w.mem.addr, 0x30_0000n, { size: 0n }), type1: 'EINVAL', compat: 'EINVAL' },
  { what: 'MAP_DMA unaligned IOVA', call: (w) => w.c.mapDma(w.mem.addr, 0x30_0800n, { size: PG }), type1: 'EINVAL', compat: 'EINVAL' },
  { what: 'MAP_DMA unaligned size', call: (w) => w.c.mapDma(w.mem.addr, 0x30_0000n, { size: PG + 8n }), type1: 'EINVAL', compat: 'EINVAL' },
  { what: 'MAP_DMA in the interrupt window', call: (w) => w.c.mapDma(w.mem.addr, 0xfee0_0000n, { size: PG }), type1: 'EINVAL', compat: 'EINVAL' },
  { what: 'MAP_DMA two pages at ~0 & ~(page-1)', call: (w) => w.c.mapDma(w.mem.addr, 0xffff_ffff_ffff_f000n, { size: 2n * PG }), type1: 'EOVERFLOW', compat: 'EOVERFLOW' },
  { what: 'UNMAP_DMA argsz 23', call: (w) => w.c.ioctl(V.VFIO_IOMMU_UNMAP_DMA, unmapDmaBytes(23, 0, A, 4n * PG)), type1: 'EINVAL', compat: 'EINVAL' },
  { what: 'UNMAP_DMA an unknown flag', call: (w) => w.c.ioctl(V.VFIO_IOMMU_UNMAP_DMA, unmapDmaBytes(24, 8, A, 4n * PG)), type1: 'EINVAL', compat: 'EINVAL' },
  { what: 'UNMAP_DMA NULL', call: (w) => w.c.ioctl(V.VFIO_IOMMU_UNMAP_DMA, null), type1: 'EFAULT', compat: 'EFAULT' },
  { what: 'UNMAP_DMA ALL with an IOVA', call: (w) => w.c.ioctl(V.VFIO_IOMMU_UNMAP_DMA, unmapDmaBytes(24, V.VFIO_DMA_UNMAP_FLAG_ALL, A, 0n)), type1: 'EINVAL', compat: 'EINVAL' },
  { what: 'UNMAP_DMA size 0', call: (w) => w.c.unmapDma(A, 0n), type1: 'EINVAL', compat: 'EINVAL' },
  // type1 v2 refuses to bisect a mapping with EINVAL; iopt_unmap_iova with ENOENT.
  { what: 'UNMAP_DMA bisecting A', call: (w) => w.c.unmapDma(A + PG, PG), type1: 'EINVAL', compat: 'ENOENT' },
  // type1 checks the alignment; iommufd finds A sticking out of the range.
  { what: 'UNMAP_DMA unaligned', call: (w) => w.c.unmapDma(A + 0x800n, PG), type1: 'EINVAL', compat: 'ENOENT' },
  { what: 'UNMAP_DMA overflowing', call: (w) => w.c.unmapDma(0xffff_ffff_ffff_f000n, 2n * PG), type1: 'EOVERFLOW', compat: 'EOVERFLOW' },
  { what: 'UNMAP_DMA GET_DIRTY_BITMAP without tracking', call: (w) => w.c.ioctl(V.VFIO_IOMMU_UNMAP_DMA, unmapDmaBytes(24, V.VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP, A, 4n * PG)), type1: 'EINVAL', compat: 'EINVAL' },
  { what: 'GET_INFO argsz 15', call: (w) => w.c.ioctl(V.VFIO_IOMMU_GET_INFO, structBuf(15, 24)), type1: 'EINVAL', compat: 'EINVAL' },
  { what: 'GET_INFO NULL', call: (w) => w.c.ioctl(V.VFIO_IOMMU_GET_INFO, null), type1: 'EFAULT', compat: 'EFAULT' },
  { what: 'SET_IOMMU SPAPR_TCE', call: (w) => w.c.setIommu(V.VFIO_SPAPR_TCE_IOMMU), type1: 'EINVAL', compat: 'EINVAL' },
  // type1 has its driver already; iommufd's compat may be asked again (and succeeds).
  { what: 'SET_IOMMU TYPE1v2 again', call: (w) => w.c.setIommu('type1v2'), type1: 'EINVAL', compat: null },
  // iommufd's compat does not offer dirty tracking through the container at all.
  { what: 'DIRTY_PAGES with no flag', call: (w) => w.c.ioctl(V.VFIO_IOMMU_DIRTY_PAGES, structBuf(8)), type1: 'EINVAL', compat: 'ENOTTY' },
  { what: 'an unknown container ioctl', call: (w) => w.c.ioctl(V.VFIO_IOMMU_DIRTY_PAGES + 10, structBuf(8)), type1: 'ENOTTY', compat: 'ENOTTY' },
];

const GROUP: Bad[] = [
  { what: 'GROUP_GET_STATUS argsz 4', call: (w) => w.g.ioctl(V.VFIO_GROUP_GET_STATUS, structBuf(4)), type1: 'EINVAL', compat: 'EINVAL' },
  { what: 'GROUP_GET_STATUS NULL', call: (w) => w.g.ioctl(V.VFIO_GROUP_GET_STATUS, null), type1: 'EFAULT', compat: 'EFAULT' },
  { what: 'GROUP_SET_CONTAINER fd -1', call: (w) => w.g.setContainer(-1), type1: 'EBADF', compat: 'EBADF' },
  { what: 'GROUP_SET_CONTAINER NULL', call: (w) => w.g.ioctl(V.VFIO_GROUP_SET_CONTAINER, null), type1: 'EFAULT', compat: 'EFAULT' },
  { what: 'GROUP_SET_CONTAINER again', call: (w) => w.g.setContainer(w.c), type1: 'EINVAL', compat: 'EINVAL' },
  { what: 'GROUP_GET_DEVICE_FD of no such device', call: (w) => w.g.getDevice('0000:00:1f.7'), type1: 'ENODEV', compat: 'ENODEV' },
  { what: 'GROUP_GET_DEVICE_FD name + junk', call: (w) => w.g.getDevice(`${bdf} junk`), type1: 'EINVAL', compat: 'EINVAL' },
  { what: 'GROUP_GET_DEVICE_FD a vf_token for a device without VFs', call: (w) => w.g.getDevice(`${bdf} vf_token=bd8d9d2b-5a5f-4f5a-a211-f591514ba1f3`), type1: 'EINVAL', compat: 'EINVAL' },
  { what: 'GROUP_GET_DEVICE_FD NULL', call: (w) => w.g.ioctl(V.VFIO_GROUP_GET_DEVICE_FD, null), type1: 'EFAULT', compat: 'EFAULT' },
  // type1 keeps its users counted: a group with an open device cannot leave (iommufd's path can).
  { what: 'GROUP_UNSET_CONTAINER with a device open', call: (w) => w.g.unsetContainer(), type1: 'EBUSY', compat: null },
  { what: 'an unknown group ioctl', call: (w) => w.g.ioctl(V.VFIO_GET_API_VERSION + 26, structBuf(8)), type1: 'ENOTTY', compat: 'ENOTTY' },
];

/** Before SET_CONTAINER: a group alone. */
const LONE_GROUP: Bad[] = [
  { what: 'GROUP_SET_CONTAINER an eventfd', call: (w) => w.g.setContainer(w.b.eventfd(0, 0)), type1: 'EBADFD', compat: 'EBADFD' },
  { what: 'GROUP_UNSET_CONTAINER without one', call: (w) => w.g.unsetContainer(), type1: 'EINVAL', compat: 'EINVAL' },
  { what: 'GROUP_GET_DEVICE_FD without a container', call: (w) => w.g.getDevice(bdf), type1: 'EINVAL', compat: 'EINVAL' },
];

function snapshot(w: World) {
  const info = w.c.info();
  return {
    ranges: info.iovaRanges,
    pageSizes: info.pageSizes,
    dmaAvail: info.dmaAvail,
    status: w.g.status().flags,
    mapped: probeMappings(w.c, w.page, PROBES),
  };
}

for (const mode of ['type1', 'kernel-compat', 'iommufd'] as const) {
  const m = modeCase(mode, 'type1v2');
  const family = mode === 'type1' ? 'type1' : 'compat';
  describe.skipIf(m.skip !== '')(`${mode}: bad input gets the kernel's errno and changes nothing [${BACKEND}]${why(m.skip)}`, () => {
    let release: () => void = () => {};
    let w: World;
    beforeAll(() => {
      if (machine.soloEdu) release = claimDevices([machine.soloEdu]);
    });
    afterAll(() => release());
    beforeEach(() => {
      const b = openBinding(BACKEND);
      const mm = new Iommufd(b);
      w = { b, c: VfioContainer.open(b, { mode }), g: VfioGroup.forDevice(b, bdf, { mode }), mem: mm.mmap(16 * P), page: mm.mmap(P), dev: null };
      mm.close();
    });
    afterEach(() => {
      w.dev?.close();
      w.g.close();
      w.c.close();
      w.mem.close();
      w.page.close();
    });

    /** The container set up as a tool leaves it: a group, TYPE1v2, two mappings, the device open. */
    function settle(): void {
      w.g.setContainer(w.c);
      w.c.setIommu('type1v2');
      w.c.mapDma(w.mem, A, { size: 4n * PG });
      w.c.mapDma(w.mem.addr + PG, B, { size: PG, write: false });
      w.dev = w.g.getDevice(bdf);
    }

    for (const bad of [...CONTAINER, ...GROUP]) {
      const code = bad[family];
      if (code === null) continue;
      it(`${bad.what}: ${code}`, () => {
        settle();
        const before = snapshot(w);
        expect(expectErrno(() => bad.call(w), code).syscall).toMatch(/^VFIO_|^ioctl/);
        expect(snapshot(w)).toEqual(before);
      });
    }

    for (const bad of LONE_GROUP) {
      it(`a group alone: ${bad.what}: ${bad[family]}`, () => {
        const status = w.g.status().flags;
        expectErrno(() => bad.call(w), bad[family]!);
        expect(w.g.status().flags).toBe(status);
        expect(w.c.checkExtension(V.VFIO_TYPE1v2_IOMMU)).toBe(1);
      });
    }
  });
}
