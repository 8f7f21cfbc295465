/**
 * A VFIO device opened through its cdev (/dev/vfio/devices/vfioN): bound to an iommufd, attached
 * to an IOAS or HWPT, and driven from userspace (regions, interrupts, reset). Until BIND the
 * kernel refuses every other ioctl (EINVAL); closing the fd unbinds it and releases the group's
 * DMA ownership. Every refusal is an IommuError carrying the kernel's errno and the ioctl's name.
 *
 * The same class serves devices got from a VFIO group (VFIO_GROUP_GET_DEVICE_FD, src/compat):
 * their fd is already usable, and the cdev-only ioctls (BIND, ATTACH, DETACH) are refused by the
 * kernel; the compat layer's iommufd mode hands out a cdev it has already bound and attached.
 */
import { O_CLOEXEC, O_RDWR, type Binding } from '../backends/types.js';
import { Command } from '../ioasid/codec.js';
import { IommuError } from '../ioasid/errors.js';
import type { Hwpt } from '../ioasid/hwpt.js';
import type { Ioas } from '../ioasid/ioas.js';
import type { HwInfo, Iommufd } from '../ioasid/iommufd.js';
import type { IoctlDesc } from '../ioasid/uapi.js';
import { EventFd } from './eventfd.js';
import { parseCaps, type InfoCap } from './info_caps.js';
import { PciConfig } from './pci_config.js';
import { PciDevice, noteDeviceOpen } from './pci.js';
import { VfioRegion, regionCaps, type RegionInfo } from './region.js';
import {
  IOMMU_HW_INFO_TYPE_INTEL_VTD, VFIO_DEVICE_ATTACH_PASID, VFIO_DEVICE_BIND_FLAG_TOKEN, VFIO_DEVICE_DETACH_PASID,
  VFIO_DEVICE_FLAGS_CAPS, VFIO_DEVICE_FLAGS_PCI, VFIO_DEVICE_FLAGS_RESET, VFIO_DEVICE_IOCTLS as IO,
  VFIO_DEVICE_RESET, VFIO_IRQ_INFO_AUTOMASKED, VFIO_IRQ_INFO_EVENTFD, VFIO_IRQ_INFO_MASKABLE,
  VFIO_IRQ_INFO_NORESIZE, VFIO_IRQ_SET_ACTION_MASK, VFIO_IRQ_SET_ACTION_TRIGGER, VFIO_IRQ_SET_ACTION_UNMASK,
  VFIO_IRQ_SET_DATA_BOOL, VFIO_IRQ_SET_DATA_EVENTFD, VFIO_IRQ_SET_DATA_NONE, VFIO_PCI_CONFIG_REGION_INDEX,
  vfio_irq_set,
} from './uapi.js';
import { decodeVtd, type VtdInfo } from './vtd.js';

/** What VFIO_DEVICE_GET_INFO reports. */
export interface DeviceInfo {
  /** VFIO_DEVICE_FLAGS_*: RESET 1, PCI 2, ..., CAPS 128. */
  readonly flags: number;
  readonly numRegions: number;
  readonly numIrqs: number;
  readonly reset: boolean;
  readonly pci: boolean;
  readonly caps: readonly InfoCap[];
}

/** What VFIO_DEVICE_GET_IRQ_INFO reports for one IRQ index. */
export interface IrqInfo {
  readonly index: number;
  /** VFIO_IRQ_INFO_*: EVENTFD 1, MASKABLE 2, AUTOMASKED 4, NORESIZE 8. */
  readonly flags: number;
  /** Vectors in this index; 0 = not implemented. */
  readonly count: number;
  readonly eventfd: boolean;
  readonly maskable: boolean;
  readonly automasked: boolean;
  readonly noresize: boolean;
}

/** A raw VFIO_DEVICE_SET_IRQS: one DATA_* and one ACTION_* flag, and the data they need. */
export interface IrqSet {
  flags: number;
  index: number;
  start: number;
  count: number;
  /** DATA_BOOL: one byte per vector; DATA_EVENTFD: one s32 fd per vector (-1 de-assigns). */
  data?: Uint8Array | readonly number[];
}

/** IOMMU_GET_HW_INFO for this device, with the VT-d payload decoded when the IOMMU is VT-d. */
export interface DeviceHwInfo extends HwInfo {
  readonly vtd: VtdInfo | null;
}

/** How a device fd was got. */
export type VfioDeviceOrigin = 'cdev' | 'group';

/** A device fd opened elsewhere (VFIO_GROUP_GET_DEVICE_FD, or a cdev the compat layer bound). */
export interface OpenedDeviceFd {
  readonly fd: number;
  readonly origin: VfioDeviceOrigin;
  /** The iommufd the fd is already bound to, and its device id. */
  readonly bound?: { readonly iommufd: Iommufd; readonly devId: number };
  /** What close() does instead of closing the fd (when several handles share it). */
  readonly release?: () => void;
}

export class VfioDevice implements Disposable {
  readonly fd: number;
  /** 'cdev' (/dev/vfio/devices/vfioN) or 'group' (VFIO_GROUP_GET_DEVICE_FD). */
  readonly origin: VfioDeviceOrigin;
  private readonly release: (() => void) | null;
  private closed = false;
  private readonly cmds = new Map<IoctlDesc, Command>();
  private _devId: number | null = null;
  private _iommufd: Iommufd | null = null;
  private _config: PciConfig | null = null;

  constructor(
    readonly binding: Binding,
    /** The node the fd came from: the cdev (/dev/vfio/devices/vfio0) or the group (/dev/vfio/1). */
    readonly path: string,
    /** The PCI function behind it, when known. */
    readonly pci: PciDevice | null = null,
    /** An fd opened elsewhere; without it the cdev at `path` is opened. */
    opened?: OpenedDeviceFd,
  ) {
    this.fd = opened ? opened.fd : binding.open(path, O_RDWR | O_CLOEXEC);
    this.origin = opened?.origin ?? 'cdev';
    this.release = opened?.release ?? null;
    if (opened?.bound) {
      this._iommufd = opened.bound.iommufd;
      this._devId = opened.bound.devId;
    }
    noteDeviceOpen(binding, pci?.bdf ?? path, 1);
  }

  /**
   * Open a device by cdev path ('/dev/vfio/devices/vfio0') or PCI address ('0000:00:01.0'); the
   * address is resolved through sysfs. ENODEV when the device has no VFIO cdev (no VFIO driver).
   */
  static open(binding: Binding, nameOrPath: string | PciDevice): VfioDevice {
    if (typeof nameOrPath === 'string' && nameOrPath.startsWith('/')) return new VfioDevice(binding, nameOrPath);
    const pci = typeof nameOrPath === 'string' ? new PciDevice(binding, nameOrPath) : nameOrPath;
    const cdev = pci.vfioCdev;
    if (!cdev) throw new IommuError(19 /* ENODEV */, 'open', `${pci.bdf} has no VFIO cdev (driver: ${pci.driver ?? 'none'})`);
    return new VfioDevice(binding, cdev, pci);
  }

  /** The iommufd DEVICE object id from BIND (null until bound). */
  get devId(): number | null {
    return this._devId;
  }

  /** The iommufd this device is bound to (null until bound, or when bound by raw fd). */
  get iommufd(): Iommufd | null {
    return this._iommufd;
  }

  private cmd(desc: IoctlDesc): Command {
    let c = this.cmds.get(desc);
    if (!c) this.cmds.set(desc, (c = new Command(desc)));
    return c.reset();
  }

  /** One device ioctl; a refusal becomes IommuError(errno, <the VFIO ioctl's name>). */
  private ioctl(name: string, request: number, arg: Uint8Array | null): number {
    try {
      return this.binding.ioctl(this.fd, request, arg);
    } catch (e) {
      if (e instanceof IommuError) throw new IommuError(e.errno, name);
      throw e;
    }
  }

  private run(c: Command): number {
    return this.ioctl(c.desc.name, c.desc.request, c.buf);
  }

  // ---- iommufd: bind / attach / detach ---------------------------------------------------------

  /**
   * VFIO_DEVICE_BIND_IOMMUFD: make this device an object of `iommufd` (claiming DMA ownership of
   * its whole IOMMU group) and return its device id. A raw fd may be passed to test refusals.
   */
  bind(iommufd: Iommufd | number, opts: { token?: Uint8Array } = {}): number {
    const fd = typeof iommufd === 'number' ? iommufd : iommufd.fd;
    const c = this.cmd(IO.BIND_IOMMUFD).s32('iommufd', fd);
    if (opts.token) {
      const mem = (typeof iommufd === 'number' ? null : iommufd)?.userScratch(16);
      if (!mem) throw new TypeError('a VF token needs an Iommufd (its user memory carries the UUID)');
      mem.bytes.set(opts.token.subarray(0, 16));
      c.u32('flags', VFIO_DEVICE_BIND_FLAG_TOKEN).u64('token_uuid_ptr', mem.addr);
    }
    this.run(c);
    this._devId = c.get32('out_devid');
    this._iommufd = typeof iommufd === 'number' ? null : iommufd;
    return this._devId;
  }

  /**
   * VFIO_DEVICE_ATTACH_IOMMUFD_PT to an IOAS or HWPT (by object or id). Attaching while attached
   * replaces the translation atomically. Returns the pt_id the kernel wrote back: the HWPT now in
   * use (for an IOAS, the automatic HWPT the kernel found or made).
   */
  attach(pt: Ioas | Hwpt | number, opts: { pasid?: number } = {}): number {
    const c = this.cmd(IO.ATTACH_IOMMUFD_PT).u32('pt_id', typeof pt === 'number' ? pt : pt.id);
    if (opts.pasid !== undefined) c.u32('flags', VFIO_DEVICE_ATTACH_PASID).u32('pasid', opts.pasid);
    this.run(c);
    return c.get32('pt_id');
  }

  /** VFIO_DEVICE_DETACH_IOMMUFD_PT: the device (or one PASID) blocks all DMA afterwards. */
  detach(opts: { pasid?: number } = {}): void {
    const c = this.cmd(IO.DETACH_IOMMUFD_PT);
    if (opts.pasid !== undefined) c.u32('flags', VFIO_DEVICE_DETACH_PASID).u32('pasid', opts.pasid);
    this.run(c);
  }

  /** IOMMU_GET_HW_INFO with this device's id on its iommufd; VT-d's payload decoded. */
  hwInfo(): DeviceHwInfo {
    if (!this._iommufd || this._devId === null) throw new Error('VfioDevice.hwInfo: bind the device to an Iommufd first');
    const info = this._iommufd.hwInfo(this._devId);
    return { ...info, vtd: info.type === IOMMU_HW_INFO_TYPE_INTEL_VTD ? decodeVtd(info.data) : null };
  }

  // ---- device information --------------------------------------------------------------------

  /** VFIO_DEVICE_GET_INFO, with the capability chain when the device has one. */
  info(): DeviceInfo {
    let buf = this.cmd(IO.GET_INFO).buf;
    this.ioctl(IO.GET_INFO.name, IO.GET_INFO.request, buf);
    let dv = new DataView(buf.buffer);
    const argsz = dv.getUint32(0, true);
    if (dv.getUint32(4, true) & VFIO_DEVICE_FLAGS_CAPS && argsz > buf.length) {
      buf = new Uint8Array(argsz);
      dv = new DataView(buf.buffer);
      dv.setUint32(0, argsz, true);
      this.ioctl(IO.GET_INFO.name, IO.GET_INFO.request, buf);
    }
    const flags = dv.getUint32(4, true);
    const capOffset = dv.getUint32(IO.GET_INFO.struct.off.cap_offset!, true);
    return {
      flags,
      numRegions: dv.getUint32(8, true),
      numIrqs: dv.getUint32(12, true),
      reset: (flags & VFIO_DEVICE_FLAGS_RESET) !== 0,
      pci: (flags & VFIO_DEVICE_FLAGS_PCI) !== 0,
      caps: flags & VFIO_DEVICE_FLAGS_CAPS && capOffset ? parseCaps(buf, capOffset) : [],
    };
  }

  /** VFIO_DEVICE_GET_REGION_INFO for one region index, capabilities included. */
  regionInfo(index: number): RegionInfo {
    const d = IO.GET_REGION_INFO;
    let buf = this.cmd(d).buf;
    new DataView(buf.buffer).setUint32(d.struct.off.index!, index, true);
    this.ioctl(d.name, d.request, buf);
    let dv = new DataView(buf.buffer);
    const argsz = dv.getUint32(0, true);
    if (argsz > buf.length) {
      buf = new Uint8Array(argsz);
      dv = new DataView(buf.buffer);
      dv.setUint32(0, argsz, true);
      dv.setUint32(d.struct.off.index!, index, true);
      this.ioctl(d.name, d.request, buf);
    }
    const capOffset = dv.getUint32(d.struct.off.cap_offset!, true);
    const caps = capOffset ? parseCaps(buf, capOffset) : [];
    return {
      index: dv.getUint32(d.struct.off.index!, true),
      flags: dv.getUint32(4, true),
      size: dv.getBigUint64(d.struct.off.size!, true),
      offset: dv.getBigUint64(d.struct.off.offset!, true),
      caps,
      ...regionCaps(caps),
    };
  }

  /** A region to read, write or mmap. */
  region(index: number): VfioRegion {
    return new VfioRegion(this, this.regionInfo(index));
  }

  /** PCI config space (vfio-pci's region 7). */
  get config(): PciConfig {
    return (this._config ??= new PciConfig(this.region(VFIO_PCI_CONFIG_REGION_INDEX)));
  }

  // ---- interrupts ----------------------------------------------------------------------------

  /** VFIO_DEVICE_GET_IRQ_INFO for one IRQ index (vfio-pci: INTX 0, MSI 1, MSIX 2, ERR 3, REQ 4). */
  irqInfo(index: number): IrqInfo {
    const c = this.cmd(IO.GET_IRQ_INFO).u32('index', index);
    this.run(c);
    const flags = c.get32('flags');
    return {
      index,
      flags,
      count: c.get32('count'),
      eventfd: (flags & VFIO_IRQ_INFO_EVENTFD) !== 0,
      maskable: (flags & VFIO_IRQ_INFO_MASKABLE) !== 0,
      automasked: (flags & VFIO_IRQ_INFO_AUTOMASKED) !== 0,
      noresize: (flags & VFIO_IRQ_INFO_NORESIZE) !== 0,
    };
  }

  /** VFIO_DEVICE_SET_IRQS as given (argsz covers the header and the data). */
  setIrqs(s: IrqSet): void {
    const o = vfio_irq_set.off;
    const isFds = (s.flags & VFIO_IRQ_SET_DATA_EVENTFD) !== 0;
    const data = s.data ?? [];
    const dataBytes = isFds ? data.length * 4 : data.length;
    const buf = new Uint8Array(vfio_irq_set.size + dataBytes);
    const dv = new DataView(buf.buffer);
    dv.setUint32(0, buf.length, true);
    dv.setUint32(o.flags!, s.flags, true);
    dv.setUint32(o.index!, s.index, true);
    dv.setUint32(o.start!, s.start, true);
    dv.setUint32(o.count!, s.count, true);
    for (let i = 0; i < data.length; i++) {
      if (isFds) dv.setInt32(vfio_irq_set.size + i * 4, data[i]!, true);
      else dv.setUint8(vfio_irq_set.size + i, data[i]!);
    }
    this.ioctl(IO.SET_IRQS.name, IO.SET_IRQS.request, buf);
  }

  /** Signal `eventfds` (one per vector from `start`; -1 skips or de-assigns) when the IRQs fire. */
  enableIrq(index: number, eventfds: readonly (EventFd | number)[], start = 0): void {
    const fds = eventfds.map((e) => (typeof e === 'number' ? e : e.fd));
    this.setIrqs({ flags: VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER, index, start, count: fds.length, data: fds });
  }

  /** Disable a whole IRQ index (DATA_NONE | ACTION_TRIGGER with count 0). */
  disableIrq(index: number): void {
    this.setIrqs({ flags: VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER, index, start: 0, count: 0 });
  }

  /** Loopback: the kernel fires the vectors' eventfds as if the device had (DATA_NONE | TRIGGER). */
  triggerIrq(index: number, start = 0, count = 1): void {
    this.setIrqs({ flags: VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER, index, start, count });
  }

  /** Unmask (e.g. an automasked INTx after handling it). */
  unmaskIrq(index: number, start = 0, count = 1): void {
    this.setIrqs({ flags: VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_UNMASK, index, start, count });
  }

  maskIrq(index: number, start = 0, count = 1): void {
    this.setIrqs({ flags: VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_MASK, index, start, count });
  }

  /** Mask or unmask selected vectors (DATA_BOOL). */
  maskIrqs(index: number, start: number, masked: readonly boolean[]): void {
    this.setIrqs({ flags: VFIO_IRQ_SET_DATA_BOOL | VFIO_IRQ_SET_ACTION_MASK, index, start, count: masked.length, data: masked.map(Number) });
  }

  /** A fresh non-blocking eventfd on this device's binding. */
  eventfd(): EventFd {
    return new EventFd(this.binding);
  }

  // ---- reset and teardown --------------------------------------------------------------------

  /** VFIO_DEVICE_RESET: EINVAL when the device has no usable reset (info().reset is false). */
  reset(): void {
    this.ioctl('VFIO_DEVICE_RESET', VFIO_DEVICE_RESET, null);
  }

  /**
   * Close the device fd: for a cdev the kernel detaches and unbinds the device and releases the
   * group; a group's device closes when its last fd does.
   */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this._devId = null;
    this._iommufd = null;
    noteDeviceOpen(this.binding, this.pci?.bdf ?? this.path, -1);
    if (this.release) this.release();
    else this.binding.close(this.fd);
  }

  [Symbol.dispose](): void {
    this.close();
  }
}
