/**
 * The legacy VFIO container for TypeScript users, in three modes chosen with one argument:
 *
 * - `type1`: the kernel's legacy container, /dev/vfio/vfio with the type1 IOMMU driver.
 * - `kernel-compat`: an iommufd (/dev/iommu) used as the container, as the kernel's vfio selftests
 *   do: the kernel's vfio_compat.c answers, on the compat IOAS the first group makes.
 * - `iommufd`: the library's own re-expression (iommufd_container.ts): one IOAS per container,
 *   groups resolved through sysfs, devices through their cdevs. Works where the kernel has no
 *   legacy container and no group nodes.
 *
 * `kernel-compat` and `iommufd` expose the container's Iommufd and Ioas, so new-style code can
 * share the address space and a tool can move to the new API one call at a time. Every command
 * also exists raw (`ioctl`, `ioctlInt`) with the kernel's struct bytes; every refusal is an
 * IommuError carrying the kernel's errno and the VFIO ioctl's name.
 */
import { openBinding } from '../backends/index.js';
import { O_CLOEXEC, O_RDWR, type BackendName, type Binding } from '../backends/types.js';
import { parseCaps, type InfoCap } from '../device/info_caps.js';
import { IommuError } from '../ioasid/errors.js';
import type { Ioas, IovaRange } from '../ioasid/ioas.js';
import { Iommufd } from '../ioasid/iommufd.js';
import type { UserMemory } from '../ioasid/memory.js';
import {
  VFIO_CHECK_EXTENSION, VFIO_CONTAINER_GROUP_IOCTL_NAMES, VFIO_DMA_MAP_FLAG_READ, VFIO_DMA_MAP_FLAG_WRITE,
  VFIO_DMA_UNMAP_FLAG_ALL, VFIO_GET_API_VERSION, VFIO_IOMMU_GET_INFO, VFIO_IOMMU_INFO_CAPS, VFIO_IOMMU_MAP_DMA,
  VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE, VFIO_IOMMU_TYPE1_INFO_CAP_MIGRATION, VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL,
  VFIO_IOMMU_UNMAP_DMA, VFIO_SET_IOMMU, VFIO_TYPE1_IOMMU, VFIO_TYPE1v2_IOMMU, vfio_iommu_type1_dma_map,
  vfio_iommu_type1_dma_unmap, vfio_iommu_type1_info,
} from '../ioasid/vfio_uapi.js';
import { IommufdContainer } from './iommufd_container.js';
import { KernelFile, type VfioFile } from './vfio_file.js';

export type CompatMode = 'type1' | 'kernel-compat' | 'iommufd';
export type IommuType = 'type1' | 'type1v2';

export interface ContainerOptions {
  /** Default 'type1'. */
  mode?: CompatMode;
  /** What setIommu() with no argument selects (default 'type1v2'). */
  iommuType?: IommuType;
}

/** What VFIO_IOMMU_GET_INFO reports, capabilities decoded. */
export interface IommuInfo {
  /** VFIO_IOMMU_INFO_PGSIZES 1, VFIO_IOMMU_INFO_CAPS 2. */
  readonly flags: number;
  /** iova_pgsizes: the page sizes every mapping can use. */
  readonly pageSizes: bigint;
  /** VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE, as inclusive ranges; null without the capability. */
  readonly iovaRanges: readonly IovaRange[] | null;
  /** VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL: how many more MAP_DMA calls may succeed; null without it. */
  readonly dmaAvail: number | null;
  /** VFIO_IOMMU_TYPE1_INFO_CAP_MIGRATION (type1 only). */
  readonly migration: { readonly flags: number; readonly pgsizeBitmap: bigint; readonly maxDirtyBitmapSize: bigint } | null;
  readonly caps: readonly InfoCap[];
}

export interface DmaMapOptions {
  /** Bytes to map (default: the whole UserMemory; required with a raw address). */
  size?: bigint;
  /** VFIO_DMA_MAP_FLAG_READ (default true): the device may read. */
  read?: boolean;
  /** VFIO_DMA_MAP_FLAG_WRITE (default true): the device may write. */
  write?: boolean;
}

const MAP = vfio_iommu_type1_dma_map;
const UNMAP = vfio_iommu_type1_dma_unmap;
const TYPES: Record<IommuType, number> = { type1: VFIO_TYPE1_IOMMU, type1v2: VFIO_TYPE1v2_IOMMU };

/** Run one command; a refusal becomes IommuError(errno, <the VFIO ioctl's name>). */
export function vfioCall<T>(request: number, fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    if (e instanceof IommuError) throw new IommuError(e.errno, VFIO_CONTAINER_GROUP_IOCTL_NAMES.get(request) ?? e.syscall);
    throw e;
  }
}

export class VfioContainer implements Disposable {
  /** The iommufd that is the container (kernel-compat, iommufd), else null. */
  readonly iommufd: Iommufd | null;
  private readonly file: VfioFile;
  private readonly emulated: IommufdContainer | null;
  private compatIoas: Ioas | null = null;
  private closed = false;
  private readonly mapBuf = new Uint8Array(MAP.size);
  private readonly mapDv = new DataView(this.mapBuf.buffer);
  private readonly unmapBuf = new Uint8Array(UNMAP.size);
  private readonly unmapDv = new DataView(this.unmapBuf.buffer);

  private constructor(
    readonly binding: Binding,
    readonly mode: CompatMode,
    readonly iommuType: IommuType,
  ) {
    if (mode === 'type1') {
      this.iommufd = null;
      this.emulated = null;
      this.file = new KernelFile(binding, binding.open('/dev/vfio/vfio', O_RDWR | O_CLOEXEC));
    } else {
      const ctx = new Iommufd(binding);
      this.iommufd = ctx;
      this.emulated = mode === 'iommufd' ? new IommufdContainer(ctx) : null;
      this.file = this.emulated ?? new KernelFile(binding, ctx.fd, () => ctx.close());
    }
    this.mapDv.setUint32(0, MAP.size, true);
    this.unmapDv.setUint32(0, UNMAP.size, true);
  }

  /** Open a container on a backend (default: the sim, or IOASID_BACKEND) in the given mode. */
  static open(backend?: Binding | BackendName, opts: ContainerOptions = {}): VfioContainer {
    return new VfioContainer(openBinding(backend), opts.mode ?? 'type1', opts.iommuType ?? 'type1v2');
  }

  /** The container's fd: /dev/vfio/vfio's, or the iommufd's. */
  get fd(): number {
    return this.file.fd!;
  }

  /** @internal the re-expression behind an iommufd-mode container. */
  get iommufdContainer(): IommufdContainer | null {
    return this.emulated;
  }

  /**
   * The container's IOAS (kernel-compat: the compat IOAS the kernel made, IOMMU_VFIO_IOAS; iommufd:
   * the library's), once a group has joined; null before, and always in type1 mode.
   */
  get ioas(): Ioas | null {
    if (this.emulated) return this.emulated.ioas;
    const id = this.iommufd?.getVfioIoas() ?? null;
    if (id === null) return null;
    if (this.compatIoas?.id !== id) this.compatIoas = this.iommufd!.ioas(id);
    return this.compatIoas;
  }

  // ---- raw commands ---------------------------------------------------------------------------

  /** A container command with a struct argument, as the kernel takes it. */
  ioctl(request: number, arg: Uint8Array | null): number {
    return vfioCall(request, () => this.file.ioctl(request, arg));
  }

  /** A container command with an integer argument. */
  ioctlInt(request: number, value: number): number {
    return vfioCall(request, () => this.file.ioctlInt(request, value));
  }

  // ---- the legacy calls -----------------------------------------------------------------------

  /** VFIO_GET_API_VERSION (VFIO_API_VERSION, 0). */
  apiVersion(): number {
    return this.ioctlInt(VFIO_GET_API_VERSION, 0);
  }

  /** VFIO_CHECK_EXTENSION: > 0 when supported (VFIO_TYPE1v2_IOMMU, VFIO_UNMAP_ALL, ...). */
  checkExtension(extension: number): number {
    return this.ioctlInt(VFIO_CHECK_EXTENSION, extension);
  }

  /** VFIO_SET_IOMMU (default: the iommuType the container was opened with). */
  setIommu(type: IommuType | number = this.iommuType): void {
    this.ioctlInt(VFIO_SET_IOMMU, typeof type === 'number' ? type : TYPES[type]);
  }

  /** VFIO_IOMMU_GET_INFO, asked again with the argsz the kernel wants so every capability comes back. */
  info(): IommuInfo {
    let buf = new Uint8Array(vfio_iommu_type1_info.size);
    new DataView(buf.buffer).setUint32(0, buf.length, true);
    this.ioctl(VFIO_IOMMU_GET_INFO, buf);
    const want = new DataView(buf.buffer).getUint32(0, true);
    if (want > buf.length) {
      buf = new Uint8Array(want);
      new DataView(buf.buffer).setUint32(0, want, true);
      this.ioctl(VFIO_IOMMU_GET_INFO, buf);
    }
    return decodeInfo(buf);
  }

  /**
   * VFIO_IOMMU_MAP_DMA of process memory (a UserMemory, or a raw address with `size`) at `iova`,
   * readable and writeable by the device unless told otherwise.
   */
  mapDma(mem: UserMemory | bigint, iova: bigint, opts: DmaMapOptions = {}): void {
    const dv = this.mapDv;
    const vaddr = typeof mem === 'bigint' ? mem : mem.addr;
    const size = opts.size ?? (typeof mem === 'bigint' ? undefined : mem.byteLength);
    if (size === undefined) throw new TypeError('VfioContainer.mapDma: a raw address needs opts.size');
    dv.setUint32(4, (opts.read === false ? 0 : VFIO_DMA_MAP_FLAG_READ) | (opts.write === false ? 0 : VFIO_DMA_MAP_FLAG_WRITE), true);
    dv.setBigUint64(MAP.off.vaddr!, vaddr, true);
    dv.setBigUint64(MAP.off.iova!, iova, true);
    dv.setBigUint64(MAP.off.size!, size, true);
    this.ioctl(VFIO_IOMMU_MAP_DMA, this.mapBuf);
  }

  /** VFIO_IOMMU_UNMAP_DMA of [iova, iova + size): the bytes unmapped (0 when nothing was mapped there). */
  unmapDma(iova: bigint, size: bigint): bigint {
    return this.unmap(0, iova, size);
  }

  /** VFIO_IOMMU_UNMAP_DMA with VFIO_DMA_UNMAP_FLAG_ALL: every mapping; the bytes unmapped. */
  unmapAllDma(): bigint {
    return this.unmap(VFIO_DMA_UNMAP_FLAG_ALL, 0n, 0n);
  }

  private unmap(flags: number, iova: bigint, size: bigint): bigint {
    const dv = this.unmapDv;
    dv.setUint32(4, flags, true);
    dv.setBigUint64(UNMAP.off.iova!, iova, true);
    dv.setBigUint64(UNMAP.off.size!, size, true);
    this.ioctl(VFIO_IOMMU_UNMAP_DMA, this.unmapBuf);
    return dv.getBigUint64(UNMAP.off.size!, true);
  }

  /** Close the container (the kernel keeps what open devices and groups still use). */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.file.close();
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

/** A VFIO_IOMMU_GET_INFO reply, its capability chain decoded. */
export function decodeInfo(buf: Uint8Array): IommuInfo {
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const flags = dv.getUint32(4, true);
  const capOffset = dv.getUint32(vfio_iommu_type1_info.off.cap_offset!, true);
  const caps = flags & VFIO_IOMMU_INFO_CAPS && capOffset ? parseCaps(buf, capOffset) : [];
  let iovaRanges: IovaRange[] | null = null;
  let dmaAvail: number | null = null;
  let migration: IommuInfo['migration'] = null;
  for (const c of caps) {
    const v = new DataView(c.bytes.buffer, c.bytes.byteOffset, c.bytes.byteLength);
    if (c.id === VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE) {
      const n = v.getUint32(8, true);
      iovaRanges = [];
      for (let i = 0; i < n; i++) iovaRanges.push({ start: v.getBigUint64(16 + 16 * i, true), last: v.getBigUint64(24 + 16 * i, true) });
    } else if (c.id === VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL) {
      dmaAvail = v.getUint32(8, true);
    } else if (c.id === VFIO_IOMMU_TYPE1_INFO_CAP_MIGRATION) {
      migration = { flags: v.getUint32(8, true), pgsizeBitmap: v.getBigUint64(16, true), maxDirtyBitmapSize: v.getBigUint64(24, true) };
    }
  }
  return { flags, pageSizes: dv.getBigUint64(8, true), iovaRanges, dmaAvail, migration, caps };
}
