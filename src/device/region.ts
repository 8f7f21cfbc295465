/**
 * A region of a VFIO device (a PCI BAR, the config space, the ROM...): what
 * VFIO_DEVICE_GET_REGION_INFO reports, and access to it at its file offset in the device fd
 * (`index << 40` for vfio-pci) with pread/pwrite, or by mmap when the region allows it. Each
 * access of 1, 2, 4 or 8 bytes is one pread/pwrite of that size, which vfio-pci turns into one
 * MMIO access of that width (what devices like edu require).
 */
import { MAP_SHARED, PROT_READ, PROT_WRITE } from '../backends/types.js';
import { IommuError } from '../ioasid/errors.js';
import { UserMemory } from '../ioasid/memory.js';
import type { InfoCap } from './info_caps.js';
import type { VfioDevice } from './vfio_device.js';
import {
  VFIO_REGION_INFO_CAP_MSIX_MAPPABLE, VFIO_REGION_INFO_CAP_SPARSE_MMAP, VFIO_REGION_INFO_CAP_TYPE,
  VFIO_REGION_INFO_FLAG_MMAP, VFIO_REGION_INFO_FLAG_READ, VFIO_REGION_INFO_FLAG_WRITE,
} from './uapi.js';

/** What VFIO_DEVICE_GET_REGION_INFO says about one region. */
export interface RegionInfo {
  readonly index: number;
  /** VFIO_REGION_INFO_FLAG_*: READ 1, WRITE 2, MMAP 4, CAPS 8. */
  readonly flags: number;
  /** Bytes; 0 = not implemented (an absent BAR). */
  readonly size: bigint;
  /** Where the region starts in the device fd (pread/pwrite/mmap offset). */
  readonly offset: bigint;
  readonly caps: readonly InfoCap[];
  /** VFIO_REGION_INFO_CAP_SPARSE_MMAP: only these parts may be mmap'd. */
  readonly sparseMmap: readonly { offset: bigint; size: bigint }[] | null;
  /** VFIO_REGION_INFO_CAP_TYPE: a device-specific region's type and subtype. */
  readonly type: { type: number; subtype: number } | null;
  /** VFIO_REGION_INFO_CAP_MSIX_MAPPABLE: the MSI-X table may be mmap'd too. */
  readonly msixMappable: boolean;
}

/** Decode the capabilities of a region info buffer into RegionInfo's fields. */
export function regionCaps(caps: readonly InfoCap[]): Pick<RegionInfo, 'sparseMmap' | 'type' | 'msixMappable'> {
  let sparseMmap: { offset: bigint; size: bigint }[] | null = null;
  let type: { type: number; subtype: number } | null = null;
  for (const c of caps) {
    const dv = new DataView(c.bytes.buffer, c.bytes.byteOffset, c.bytes.byteLength);
    if (c.id === VFIO_REGION_INFO_CAP_SPARSE_MMAP && c.bytes.length >= 16) {
      const n = dv.getUint32(8, true);
      sparseMmap = [];
      for (let i = 0; i < n && 16 + i * 16 + 16 <= c.bytes.length; i++) {
        sparseMmap.push({ offset: dv.getBigUint64(16 + i * 16, true), size: dv.getBigUint64(24 + i * 16, true) });
      }
    } else if (c.id === VFIO_REGION_INFO_CAP_TYPE && c.bytes.length >= 16) {
      type = { type: dv.getUint32(8, true), subtype: dv.getUint32(12, true) };
    }
  }
  return { sparseMmap, type, msixMappable: caps.some((c) => c.id === VFIO_REGION_INFO_CAP_MSIX_MAPPABLE) };
}

export class VfioRegion {
  private readonly scratch = new Uint8Array(8);
  private readonly dv = new DataView(this.scratch.buffer);
  private readonly base: number;

  constructor(
    readonly device: VfioDevice,
    readonly info: RegionInfo,
  ) {
    this.base = Number(info.offset);
  }

  get index(): number {
    return this.info.index;
  }
  get size(): bigint {
    return this.info.size;
  }
  get readable(): boolean {
    return (this.info.flags & VFIO_REGION_INFO_FLAG_READ) !== 0;
  }
  get writable(): boolean {
    return (this.info.flags & VFIO_REGION_INFO_FLAG_WRITE) !== 0;
  }
  get mmappable(): boolean {
    return (this.info.flags & VFIO_REGION_INFO_FLAG_MMAP) !== 0;
  }

  /** pread `length` bytes at `offset` within the region. */
  read(offset: number, length: number): Uint8Array {
    const buf = new Uint8Array(length);
    const n = this.device.binding.pread(this.device.fd, buf, this.base + offset);
    if (n !== length) throw new IommuError(5 /* EIO */, 'pread', `short read: ${n} of ${length} bytes`);
    return buf;
  }

  /** pwrite `bytes` at `offset` within the region. */
  write(offset: number, bytes: Uint8Array): void {
    const n = this.device.binding.pwrite(this.device.fd, bytes, this.base + offset);
    if (n !== bytes.length) throw new IommuError(5 /* EIO */, 'pwrite', `short write: ${n} of ${bytes.length} bytes`);
  }

  private readN(offset: number, width: number): DataView {
    const b = this.scratch.subarray(0, width);
    const n = this.device.binding.pread(this.device.fd, b, this.base + offset);
    if (n !== width) throw new IommuError(5, 'pread', `short read: ${n} of ${width} bytes`);
    return this.dv;
  }

  private writeN(offset: number, width: number): void {
    const n = this.device.binding.pwrite(this.device.fd, this.scratch.subarray(0, width), this.base + offset);
    if (n !== width) throw new IommuError(5, 'pwrite', `short write: ${n} of ${width} bytes`);
  }

  read8(offset: number): number {
    return this.readN(offset, 1).getUint8(0);
  }
  read16(offset: number): number {
    return this.readN(offset, 2).getUint16(0, true);
  }
  read32(offset: number): number {
    return this.readN(offset, 4).getUint32(0, true);
  }
  read64(offset: number): bigint {
    return this.readN(offset, 8).getBigUint64(0, true);
  }
  write8(offset: number, v: number): void {
    this.dv.setUint8(0, v);
    this.writeN(offset, 1);
  }
  write16(offset: number, v: number): void {
    this.dv.setUint16(0, v, true);
    this.writeN(offset, 2);
  }
  write32(offset: number, v: number): void {
    this.dv.setUint32(0, v >>> 0, true);
    this.writeN(offset, 4);
  }
  write64(offset: number, v: bigint): void {
    this.dv.setBigUint64(0, v, true);
    this.writeN(offset, 8);
  }

  /**
   * mmap the region (or `length` bytes of it from `offset`) MAP_SHARED; the kernel refuses
   * regions without the MMAP flag (EINVAL). Close the returned mapping to munmap it.
   */
  mmap(offset = 0, length = Number(this.info.size) - offset, opts: { readonly?: boolean } = {}): UserMemory {
    const prot = opts.readonly ? PROT_READ : PROT_READ | PROT_WRITE;
    const addr = this.device.binding.mmap(0n, length, prot, MAP_SHARED, this.device.fd, this.base + offset);
    return new UserMemory(this.device.binding, addr, length);
  }
}
