/**
 * Raw VFIO legacy ioctls (container /dev/vfio/vfio, groups /dev/vfio/N) through a Binding, for the
 * tests of the kernel's legacy side: each helper encodes one struct laid out in
 * src/ioasid/vfio_uapi.ts, makes the ioctl and decodes what came back. No policy: a refusal is the
 * binding's IommuError with the kernel's errno. (The typed legacy API for users is src/compat.)
 */
import { afterAll, afterEach, beforeAll, beforeEach } from 'vitest';
import type { Binding } from '../../src/backends/types.js';
import { O_CLOEXEC, O_RDWR } from '../../src/backends/types.js';
import { PciDevice } from '../../src/device/pci.js';
import { VfioDevice } from '../../src/device/vfio_device.js';
import * as V from '../../src/ioasid/vfio_uapi.js';
import { Iommufd, type UserMemory } from '../../src/index.js';
import { BACKEND, mapDmaBytes as mapCmd } from '../helpers.js';
import { claimDevices, type DeviceMachine } from './devices.js';

export const RW = V.VFIO_DMA_MAP_FLAG_READ | V.VFIO_DMA_MAP_FLAG_WRITE;

export interface Type1Info {
  argsz: number;
  flags: number;
  pgsizes: bigint;
  capOffset: number;
  /** MIGRATION: flags, pgsize_bitmap, max_dirty_bitmap_size. */
  migration?: { flags: number; pgsizeBitmap: bigint; maxDirtyBitmapSize: bigint };
  dmaAvail?: number;
  /** IOVA_RANGE: [start, end] inclusive. */
  iovaRanges?: [bigint, bigint][];
  /** Capability ids in chain order. */
  capIds: number[];
}

export class Legacy {
  constructor(readonly b: Binding) {}

  container(): number {
    return this.b.open('/dev/vfio/vfio', O_RDWR | O_CLOEXEC);
  }

  group(id: number): number {
    return this.b.open(`/dev/vfio/${id}`, O_RDWR | O_CLOEXEC);
  }

  close(fd: number): void {
    this.b.close(fd);
  }

  // ---- group ---------------------------------------------------------------------------------

  /** VFIO_GROUP_GET_STATUS: the flags (VIABLE 1, CONTAINER_SET 2). */
  status(group: number, argsz = V.vfio_group_status.size): number {
    const buf = new Uint8Array(V.vfio_group_status.size);
    new DataView(buf.buffer).setUint32(0, argsz, true);
    this.b.ioctl(group, V.VFIO_GROUP_GET_STATUS, buf);
    return new DataView(buf.buffer).getUint32(4, true);
  }

  setContainer(group: number, fd: number): void {
    const buf = new Uint8Array(4);
    new DataView(buf.buffer).setInt32(0, fd, true);
    this.b.ioctl(group, V.VFIO_GROUP_SET_CONTAINER, buf);
  }

  unsetContainer(group: number): void {
    this.b.ioctl(group, V.VFIO_GROUP_UNSET_CONTAINER, null);
  }

  /** VFIO_GROUP_GET_DEVICE_FD with a NUL-terminated name. */
  deviceFd(group: number, name: string): number {
    return this.b.ioctl(group, V.VFIO_GROUP_GET_DEVICE_FD, new TextEncoder().encode(`${name}\0`));
  }

  /** A VfioDevice over a device fd a group handed out (its close() closes that fd). */
  device(fd: number): VfioDevice {
    const b = this.b;
    const opened: Binding = new Proxy(b, {
      get: (t, p) => (p === 'open' ? () => fd : (Reflect.get(t, p) as unknown)),
    });
    return new VfioDevice(opened, `fd:${fd}`);
  }

  // ---- container -----------------------------------------------------------------------------

  apiVersion(c: number): number {
    return this.b.ioctlInt(c, V.VFIO_GET_API_VERSION, 0);
  }

  checkExtension(c: number, ext: number): number {
    return this.b.ioctlInt(c, V.VFIO_CHECK_EXTENSION, ext);
  }

  setIommu(c: number, type: number): void {
    this.b.ioctlInt(c, V.VFIO_SET_IOMMU, type);
  }

  /** VFIO_IOMMU_MAP_DMA (flags default READ|WRITE). */
  map(c: number, vaddr: bigint, iova: bigint, size: bigint, flags = RW, argsz = V.MAP_DMA_MINSZ): void {
    this.b.ioctl(c, V.VFIO_IOMMU_MAP_DMA, mapCmd(argsz, flags, vaddr, iova, size));
  }

  /** VFIO_IOMMU_UNMAP_DMA: the bytes unmapped. With `bitmap` it follows the struct (GET_DIRTY_BITMAP). */
  unmap(c: number, iova: bigint, size: bigint, flags = 0, bitmap?: { pgsize: bigint; size: bigint; data: bigint }, argsz?: number): bigint {
    const len = V.UNMAP_DMA_MINSZ + (bitmap ? V.vfio_bitmap.size : 0);
    const buf = new Uint8Array(len);
    const d = new DataView(buf.buffer);
    d.setUint32(0, argsz ?? len, true);
    d.setUint32(4, flags, true);
    d.setBigUint64(8, iova, true);
    d.setBigUint64(16, size, true);
    if (bitmap) {
      d.setBigUint64(24, bitmap.pgsize, true);
      d.setBigUint64(32, bitmap.size, true);
      d.setBigUint64(40, bitmap.data, true);
    }
    this.b.ioctl(c, V.VFIO_IOMMU_UNMAP_DMA, buf);
    return d.getBigUint64(16, true);
  }

  /** VFIO_IOMMU_DIRTY_PAGES with START or STOP (or any flags, to test refusals). */
  dirty(c: number, flags: number): void {
    const buf = new Uint8Array(V.vfio_iommu_type1_dirty_bitmap.size);
    const d = new DataView(buf.buffer);
    d.setUint32(0, buf.length, true);
    d.setUint32(4, flags, true);
    this.b.ioctl(c, V.VFIO_IOMMU_DIRTY_PAGES, buf);
  }

  /** VFIO_IOMMU_DIRTY_PAGES_FLAG_GET_BITMAP for [iova, iova+size) into user memory at `data`. */
  dirtyBitmap(c: number, iova: bigint, size: bigint, bitmap: { pgsize: bigint; size: bigint; data: bigint }, argsz?: number): void {
    const len = V.DIRTY_PAGES_MINSZ + V.vfio_iommu_type1_dirty_bitmap_get.size;
    const buf = new Uint8Array(len);
    const d = new DataView(buf.buffer);
    d.setUint32(0, argsz ?? len, true);
    d.setUint32(4, V.VFIO_IOMMU_DIRTY_PAGES_FLAG_GET_BITMAP, true);
    d.setBigUint64(8, iova, true);
    d.setBigUint64(16, size, true);
    d.setBigUint64(24, bitmap.pgsize, true);
    d.setBigUint64(32, bitmap.size, true);
    d.setBigUint64(40, bitmap.data, true);
    this.b.ioctl(c, V.VFIO_IOMMU_DIRTY_PAGES, buf);
  }

  /** VFIO_IOMMU_GET_INFO into a buffer of `len` bytes claiming `argsz`, decoded. Bytes past argsz are left 0xa5. */
  info(c: number, argsz = 256, len = Math.max(argsz, V.GET_INFO_MINSZ)): Type1Info & { raw: Uint8Array } {
    const raw = new Uint8Array(len).fill(0xa5);
    const d = new DataView(raw.buffer);
    d.setUint32(0, argsz, true);
    this.b.ioctl(c, V.VFIO_IOMMU_GET_INFO, raw);
    return { ...decodeInfo(raw.subarray(0, Math.max(argsz, V.GET_INFO_MINSZ))), raw };
  }
}

export { mapCmd };

/** A struct vfio_iommu_type1_info (as long as the caller's argsz) and the capability chain after it. */
export function decodeInfo(raw: Uint8Array): Type1Info {
  const d = new DataView(raw.buffer, raw.byteOffset, raw.length);
  const out: Type1Info = {
    argsz: d.getUint32(0, true),
    flags: d.getUint32(4, true),
    pgsizes: d.getBigUint64(8, true),
    capOffset: raw.length >= 20 ? d.getUint32(16, true) : 0,
    capIds: [],
  };
  for (let off = out.capOffset, hops = 0; off && hops < 16; off = d.getUint32(off + 4, true), hops++) {
    const id = d.getUint16(off, true);
    out.capIds.push(id);
    if (id === V.VFIO_IOMMU_TYPE1_INFO_CAP_MIGRATION) {
      out.migration = { flags: d.getUint32(off + 8, true), pgsizeBitmap: d.getBigUint64(off + 16, true), maxDirtyBitmapSize: d.getBigUint64(off + 24, true) };
    } else if (id === V.VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL) {
      out.dmaAvail = d.getUint32(off + 8, true);
    } else if (id === V.VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE) {
      const n = d.getUint32(off + 8, true);
      out.iovaRanges = Array.from({ length: n }, (_, i) => [d.getBigUint64(off + 16 + 16 * i, true), d.getBigUint64(off + 24 + 16 * i, true)]);
    }
  }
  return out;
}

/** What each legacy test gets: a fresh iommufd (its binding is the process), the helpers, the VM's edus and their groups. */
export interface LegacyFixture {
  ctx: Iommufd;
  L: Legacy;
  /** The edu alone in its group, and the two sharing one (behind the bridge). */
  solo: string;
  pair: [string, string];
  soloGroup: number;
  pairGroup: number;
  /** Close `fd` when the test ends (returns it). */
  keep(fd: number): number;
  /** Close a kept fd now. */
  closeFd(fd: number): void;
  /** Anonymous shared memory, unmapped when the test ends. */
  mem(len: number, readonly?: boolean): UserMemory;
}

/**
 * The legacy tests' harness: all three edus claimed for the file (other test files use them too),
 * a fresh iommufd per test, and every fd and mapping the test kept closed after it, newest first.
 */
export function useLegacy(machine: DeviceMachine): LegacyFixture {
  let release: () => void = () => {};
  let open: number[] = [];
  let mems: UserMemory[] = [];
  const f = {
    solo: machine.soloEdu!,
    pair: machine.groupedEdus!,
    keep: (fd: number) => (open.push(fd), fd),
    closeFd: (fd: number) => {
      open = open.filter((x) => x !== fd);
      f.ctx.binding.close(fd);
    },
    mem: (len: number, readonly = false) => {
      const m = f.ctx.mmap(len, { readonly });
      mems.push(m);
      return m;
    },
  } as LegacyFixture;
  beforeAll(() => {
    release = claimDevices([f.solo, ...f.pair]);
  });
  afterAll(() => release());
  beforeEach(() => {
    f.ctx = Iommufd.open({ backend: BACKEND });
    f.L = new Legacy(f.ctx.binding);
    f.soloGroup = new PciDevice(f.ctx.binding, f.solo).iommuGroup!;
    f.pairGroup = new PciDevice(f.ctx.binding, f.pair[0]).iommuGroup!;
  });
  afterEach(() => {
    for (const fd of open.reverse()) {
      try {
        f.ctx.binding.close(fd);
      } catch {
        // the test closed it
      }
    }
    open = [];
    for (const m of mems) m.close();
    mems = [];
    f.ctx.close();
  });
  return f;
}
