/**
 * The sim's vfio-pci driver (drivers/vfio/pci/vfio_pci.c, vfio_pci_core.c): binding a function
 * registers a VFIO device (vfio-dev/vfioN in sysfs, /dev/vfio/devices/vfioN); opening the device
 * through a bound file enables the function and virtualises its config space; the device ioctls
 * (GET_INFO, GET_REGION_INFO, GET_IRQ_INFO, SET_IRQS, RESET, hot reset info/reset) and region
 * reads/writes answer with the kernel's validation order and errnos.
 *
 * Registering a device also puts it in its IOMMU group's VFIO group (group.ts), through
 * which a legacy user opens it instead of the cdev.
 *
 * BARs of memory mmap (vfio_pci_core_mmap) into VM_IO | VM_PFNMAP mappings of the BAR's pages,
 * which type1 can map for DMA and iommufd cannot pin; the sim cannot trap loads and stores to
 * them (a typed-array view cannot), so the process reaches the registers by pread/pwrite only.
 *
 * Not modelled: VGA and ROM contents, MSI-X, IOEVENTFD,
 * device features other than their generic validation (low power, DMA_BUF answer ENOTTY here).
 */
import { ERRNO } from '../../../ioasid/errors.js';
import type { BoundDevice } from '../iommu/iommu.js';
import type { IommufdCtx } from '../iommufd/main.js';
import { compatIoasGetId } from '../iommufd/vfio_compat.js';
import { kerr } from '../kernel/errno.js';
import { PAGE_SIZE, PageStore, type DeviceMapping } from '../kernel/mm.js';
import type { SimProcess } from '../kernel/process.js';
import type { PciDriver } from '../pci/pci_driver.js';
import type { PciDevice, PciHost } from '../pci/pci_device.js';
import { PCI_COMMAND, PCI_COMMAND_INTX_DISABLE, PCI_COMMAND_IO, PCI_COMMAND_MASTER, PCI_COMMAND_MEMORY, PCI_HEADER_TYPE } from '../hw/pci_function.js';
import { VfioGroupFile, type Vfio, type VfioGroup } from './group.js';
import { VfioDeviceFile } from './vfio_device_file.js';
import { VfioPciConfig, type VfioConfigHost } from './vfio_pci_config.js';
import { VfioPciIrqs } from './vfio_pci_intrs.js';
import {
  VFIO_DEVICE_IOCTLS as IOC, VFIO_DEVICE_FLAGS_PCI, VFIO_DEVICE_FLAGS_RESET, VFIO_IRQ_INFO_AUTOMASKED,
  VFIO_IRQ_INFO_EVENTFD, VFIO_IRQ_INFO_MASKABLE, VFIO_IRQ_INFO_NORESIZE, VFIO_IRQ_SET_ACTION_TYPE_MASK,
  VFIO_IRQ_SET_DATA_BOOL, VFIO_IRQ_SET_DATA_EVENTFD, VFIO_IRQ_SET_DATA_NONE, VFIO_IRQ_SET_DATA_TYPE_MASK,
  VFIO_PCI_CONFIG_REGION_INDEX, VFIO_PCI_DEVID_NOT_OWNED, VFIO_PCI_DEVID_OWNED, VFIO_PCI_ERR_IRQ_INDEX,
  VFIO_PCI_HOT_RESET_FLAG_DEV_ID, VFIO_PCI_HOT_RESET_FLAG_DEV_ID_OWNED, VFIO_PCI_INTX_IRQ_INDEX,
  VFIO_PCI_MSI_IRQ_INDEX, VFIO_PCI_MSIX_IRQ_INDEX, VFIO_PCI_NUM_IRQS, VFIO_PCI_NUM_REGIONS,
  VFIO_PCI_REQ_IRQ_INDEX, VFIO_PCI_ROM_REGION_INDEX, VFIO_PCI_VGA_REGION_INDEX, VFIO_REGION_INFO_FLAG_READ,
  VFIO_REGION_INFO_FLAG_MMAP, VFIO_REGION_INFO_FLAG_WRITE,
} from '../../../device/uapi.js';
import { MAP_SHARED, VFIO_REGION_OFFSET_SHIFT } from '../../types.js';

const VFIO_DEV_MAJOR = 252;
const OFFSET_MASK = 2 ** VFIO_REGION_OFFSET_SHIFT;

/** The vfio-pci PCI driver: matches only through driver_override or new_id; takes normal functions. */
export class VfioPciDriver implements PciDriver {
  readonly name = 'vfio-pci';
  readonly managedDma = true;
  private readonly indexes = new Set<number>();

  constructor(
    readonly machine: PciHost,
    /** The VFIO core its devices register with (their groups). */
    readonly vfio: Vfio,
  ) {}

  matchId(): boolean {
    return false;
  }

  /** vfio_pci_probe -> vfio_pci_core_register_device -> vfio_register_group_dev */
  probe(dev: PciDevice): void {
    if ((dev.fn.config[PCI_HEADER_TYPE]! & 0x7f) !== 0) kerr(ERRNO.EINVAL);
    if (dev.group.id < 0) kerr(ERRNO.EINVAL); // no IOMMU group and no noiommu mode
    let index = 0;
    while (this.indexes.has(index)) index++;
    this.indexes.add(index);
    const vdev = new VfioPciDevice(this.machine, dev, index);
    vdev.vfioGroup = this.vfio.addDevice(vdev);
    dev.drvdata = vdev;
    vdev.publish();
  }

  /** vfio_pci_remove: the kernel waits (signalling the request eventfd) until users close the device; the sim cannot wait. */
  remove(dev: PciDevice): void {
    const vdev = dev.drvdata as VfioPciDevice;
    if (vdev.openCount) {
      vdev.irqs.reqTrigger?.signal();
      kerr(ERRNO.EBUSY);
    }
    this.vfio.removeDevice(vdev);
    vdev.unpublish();
    this.indexes.delete(vdev.index);
    dev.drvdata = null;
  }
}

/** vfio_pci_core_device: one function bound to vfio-pci. */
export class VfioPciDevice implements VfioConfigHost {
  /** vfio_device.open_count: a cdev opens (binds) it once; a group's device fds may open it again. */
  openCount = 0;
  /** The file whose open opened the device (its process resolves the eventfds of SET_IRQS). */
  opener: VfioDeviceFile | null = null;
  /** The VFIO group it was registered in (null in a kernel without CONFIG_VFIO_GROUP). */
  vfioGroup: VfioGroup | null = null;
  /** device->cdev_opened: opened through its cdev (hot reset then speaks devids). */
  cdevOpened = false;
  /** vdev->iommufd_device with vdev->iommufd_attached and vdev->pasids, while bound to an iommufd. */
  idev: { readonly ctx: IommufdCtx; readonly bound: BoundDevice; attached: boolean; readonly pasids: Set<number> } | null = null;
  vconfig: VfioPciConfig | null = null;
  resetWorks = false;
  /** vdev->bar_mmap_supported, probed when the device is enabled. */
  private barMmapSupported: boolean[] = [];
  /** The pages behind each BAR's mmaps (the BAR's pfns: every mapping of it shares them). */
  private readonly barPages: (PageStore | undefined)[] = [];
  readonly irqs: VfioPciIrqs;
  private savedState: Uint8Array | null = null;

  constructor(
    readonly machine: PciHost,
    readonly dev: PciDevice,
    /** N in vfioN (the device minor). */
    readonly index: number,
  ) {
    this.irqs = new VfioPciIrqs(dev.fn, (fd) => this.opener?.proc.fileOrNull(fd));
  }

  get fn(): PciDevice['fn'] {
    return this.dev.fn;
  }

  get cdevPath(): string {
    return `/dev/vfio/devices/vfio${this.index}`;
  }

  // ---- VfioConfigHost ------------------------------------------------------------------------

  get irqType(): number {
    return this.irqs.irqType;
  }

  get msiQmax(): number {
    return this.irqs.msiQmax;
  }

  get virqDisabled(): boolean {
    return this.irqs.virqDisabled;
  }

  set virqDisabled(v: boolean) {
    this.irqs.virqDisabled = v;
  }

  intxMask(): void {
    this.irqs.intxMask();
  }

  intxUnmask(): void {
    this.irqs.intxUnmask();
  }

  /** pci_try_reset_function with the methods probed at add time (FLR; bus reset when alone on the bus). */
  tryResetFunction(): boolean {
    const dev = this.dev;
    const flr = dev.resetMethods.includes('flr') && dev.fn.flrCapable;
    const bus = dev.resetMethods.includes('bus') && dev.node.bus.devices.length === 1;
    if (!flr && !bus) return false;
    // pci_dev_save_and_disable, reset, pci_dev_restore: the device's own state resets, config comes back.
    const saved = dev.fn.saveState();
    dev.fn.reset();
    dev.fn.restoreState(saved);
    return true;
  }

  // ---- iommufd (drivers/vfio/iommufd.c, the physical device ops) -------------------------------

  /** vfio_iommufd_physical_bind */
  iommufdBind(ctx: IommufdCtx): void {
    this.idev = { ctx, bound: this.machine.bindDevice(ctx, this.dev), attached: false, pasids: new Set() };
  }

  /** vfio_iommufd_physical_unbind: iommufd's unbind detaches whatever is attached. */
  iommufdUnbind(): void {
    this.idev!.bound.unbind();
    this.idev = null;
  }

  /** vfio_iommufd_physical_attach_ioas / _pasid_attach_ioas: attach, or replace once attached; the pt_id in use. */
  iommufdAttach(ptId: number, pasid?: number): number {
    const idev = this.idev!;
    const out = pasid === undefined ? idev.bound.attach(ptId) : idev.bound.attach(ptId, pasid);
    if (pasid === undefined) idev.attached = true;
    else idev.pasids.add(pasid);
    return out;
  }

  /** vfio_iommufd_physical_detach_ioas / _pasid_detach_ioas: nothing attached, nothing to do. */
  iommufdDetach(pasid?: number): void {
    const idev = this.idev!;
    if (pasid !== undefined) {
      if (idev.pasids.delete(pasid)) idev.bound.detach(pasid);
      return;
    }
    if (!idev.attached) return;
    idev.bound.detach();
    idev.attached = false;
  }

  /** vfio_iommufd_compat_attach_ioas: a group's device joins the iommufd's compat IOAS (ENODEV without one). */
  compatAttachIoas(ctx: IommufdCtx): void {
    this.iommufdAttach(compatIoasGetId(ctx));
  }

  // ---- sysfs / dev ---------------------------------------------------------------------------

  publish(): void {
    const vfs = this.machine.vfs;
    const dir = `${this.dev.sysfsPath}/vfio-dev/vfio${this.index}`;
    vfs.addAttr(`${dir}/dev`, { read: () => `${VFIO_DEV_MAJOR}:${this.index}\n` });
    vfs.addAttr(`${dir}/uevent`, { read: () => `MAJOR=${VFIO_DEV_MAJOR}\nMINOR=${this.index}\nDEVNAME=vfio/devices/vfio${this.index}\n` });
    vfs.addLink(`${dir}/device`, `../../../${this.dev.name}`);
    vfs.addLink(`${dir}/subsystem`, `${'../'.repeat(this.dev.depth + 4)}class/vfio-dev`);
    vfs.addLink(`/sys/class/vfio-dev/vfio${this.index}`, `../../devices${dir.slice('/sys/devices'.length)}`);
    vfs.addCharDev(this.cdevPath, (proc) => {
      if (this.dev.drvdata !== this) kerr(ERRNO.ENODEV);
      return new VfioDeviceFile(this, proc);
    });
  }

  unpublish(): void {
    const vfs = this.machine.vfs;
    vfs.remove(`${this.dev.sysfsPath}/vfio-dev`);
    vfs.remove(`/sys/class/vfio-dev/vfio${this.index}`);
    vfs.remove(this.cdevPath);
    // devtmpfs drops the directories it made for a node once they are empty.
    for (const dir of ['/dev/vfio/devices', '/dev/vfio']) if (isEmptyDir(vfs, dir)) vfs.remove(dir);
  }

  // ---- open / close (vfio_pci_core_enable / _disable) ----------------------------------------

  /** vfio_pci_open_device on the first open. */
  enable(): void {
    const fn = this.fn;
    fn.cfgWrite(PCI_COMMAND, 2, fn.command & ~PCI_COMMAND_MASTER);
    this.dev.enableCount++;
    let cmd = fn.command;
    for (const bar of fn.bars) if (bar) cmd |= bar.type === 'io' ? PCI_COMMAND_IO : PCI_COMMAND_MEMORY;
    fn.cfgWrite(PCI_COMMAND, 2, cmd);
    this.resetWorks = this.tryResetFunction();
    this.probeMmaps();
    this.savedState = fn.saveState();
    if (fn.command & PCI_COMMAND_INTX_DISABLE) fn.cfgWrite(PCI_COMMAND, 2, fn.command & ~PCI_COMMAND_INTX_DISABLE);
    this.vconfig = new VfioPciConfig(this);
    fn.irqSink = this.irqs;
  }

  /**
   * vfio_pci_probe_mmaps: memory BARs of at least a page, or smaller ones starting on a page
   * (the rest of that page is reserved for them), may be mmapped.
   */
  private probeMmaps(): void {
    const fn = this.fn;
    this.barMmapSupported = fn.bars.map((bar, i) =>
      !!bar && bar.type !== 'io' && fn.barAddress(i) !== 0 && (bar.size >= PAGE_SIZE || fn.barAddress(i) % PAGE_SIZE === 0));
  }

  /**
   * vfio_pci_core_mmap for `len` bytes at the device file's `offset`: a BAR whose mmap is
   * supported, mapped shared and within the BAR's page-aligned length (EINVAL otherwise). The
   * BAR's pages from the offset, as device memory, whose loads and stores reach its registers.
   */
  mmapBar(len: number, flags: number, offset: number): Pick<DeviceMapping, 'store' | 'pgoff' | 'io'> {
    const index = Math.floor(offset / OFFSET_MASK);
    if (index >= VFIO_PCI_NUM_REGIONS || !(flags & MAP_SHARED)) kerr(ERRNO.EINVAL);
    if (index >= VFIO_PCI_ROM_REGION_INDEX || !this.barMmapSupported[index]) kerr(ERRNO.EINVAL);
    const physLen = Math.ceil(this.fn.bars[index]!.size / PAGE_SIZE) * PAGE_SIZE;
    const reqStart = offset % OFFSET_MASK;
    if (reqStart + len > physLen) kerr(ERRNO.EINVAL);
    const store = (this.barPages[index] ??= new PageStore(physLen / PAGE_SIZE));
    return { store, pgoff: reqStart / PAGE_SIZE, io: (buf, at, write) => this.rw(buf, index * OFFSET_MASK + at, write) };
  }

  /** vfio_pci_mmap_huge_fault: VM_FAULT_SIGBUS unless memory decode is on in the virtual command register. */
  barFault(): boolean {
    return this.vconfig?.memoryEnabled ?? false;
  }

  /** vfio_pci_core_close_device -> vfio_pci_core_disable */
  disable(): void {
    const fn = this.fn;
    fn.cfgWrite(PCI_COMMAND, 2, fn.command & ~PCI_COMMAND_MASTER);
    this.irqs.disableAll();
    fn.irqSink = null;
    this.vconfig = null;
    this.barMmapSupported = []; // probed again at the next enable (nothing reads it while disabled)
    fn.cfgWrite(PCI_COMMAND, 2, PCI_COMMAND_INTX_DISABLE);
    if (this.resetWorks) this.tryResetFunction();
    if (this.savedState) fn.restoreState(this.savedState);
    this.savedState = null;
    if (--this.dev.enableCount === 0) fn.cfgWrite(PCI_COMMAND, 2, fn.command & ~PCI_COMMAND_MASTER);
  }

  // ---- device ioctls (vfio_pci_core_ioctl and vfio_get_region_info) ----------------------------

  /** IOC.GET_INFO.request: PCI, RESET when a function reset works; 9 regions, 5 IRQ indexes; no caps here. */
  getInfo(arg: Uint8Array): void {
    const dv = need(arg, IOC.GET_INFO.minSize);
    const argsz = dv.getUint32(0, true);
    if (argsz < IOC.GET_INFO.minSize) kerr(ERRNO.EINVAL);
    // The kernel's info starts zeroed and goes back as min(argsz, sizeof): cap_offset and pad are 0.
    const out = new DataView(new ArrayBuffer(24));
    out.setUint32(0, argsz, true);
    out.setUint32(4, VFIO_DEVICE_FLAGS_PCI | (this.resetWorks ? VFIO_DEVICE_FLAGS_RESET : 0), true);
    out.setUint32(8, VFIO_PCI_NUM_REGIONS, true);
    out.setUint32(12, VFIO_PCI_NUM_IRQS, true);
    const n = Math.min(argsz, 24);
    if (arg.length < n) kerr(ERRNO.EFAULT);
    arg.set(new Uint8Array(out.buffer, 0, n), 0);
  }

  /** IOC.GET_REGION_INFO.request: the user's struct comes back with flags, size and offset set. */
  getRegionInfo(arg: Uint8Array): void {
    const dv = need(arg, IOC.GET_REGION_INFO.minSize);
    if (dv.getUint32(0, true) < IOC.GET_REGION_INFO.minSize) kerr(ERRNO.EINVAL);
    const index = dv.getUint32(8, true);
    const fn = this.fn;
    let flags = 0;
    let size = 0;
    if (index === VFIO_PCI_CONFIG_REGION_INDEX) {
      size = fn.cfgSize;
      flags = VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE;
    } else if (index < VFIO_PCI_ROM_REGION_INDEX) {
      const bar = fn.bars[index];
      size = bar && fn.barAddress(index) ? bar.size : 0;
      flags = size ? VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE : 0;
      if (size && this.barMmapSupported[index]) flags |= VFIO_REGION_INFO_FLAG_MMAP;
    } else if (index === VFIO_PCI_ROM_REGION_INDEX) {
      size = 0;
      flags = 0;
    } else {
      // VGA needs a VGA device; there are no device-specific regions.
      kerr(ERRNO.EINVAL);
    }
    dv.setUint32(4, flags, true);
    dv.setBigUint64(16, BigInt(size), true);
    dv.setBigUint64(24, BigInt(index) * BigInt(OFFSET_MASK), true);
  }

  /** IOC.GET_IRQ_INFO.request */
  getIrqInfo(arg: Uint8Array): void {
    const dv = need(arg, IOC.GET_IRQ_INFO.minSize);
    const index = dv.getUint32(8, true);
    if (dv.getUint32(0, true) < IOC.GET_IRQ_INFO.minSize || index >= VFIO_PCI_NUM_IRQS) kerr(ERRNO.EINVAL);
    let flags = VFIO_IRQ_INFO_EVENTFD;
    if (index === VFIO_PCI_INTX_IRQ_INDEX) flags |= VFIO_IRQ_INFO_MASKABLE | VFIO_IRQ_INFO_AUTOMASKED;
    else flags |= VFIO_IRQ_INFO_NORESIZE;
    dv.setUint32(4, flags, true);
    dv.setUint32(12, this.irqCount(index), true);
  }

  /** vfio_pci_get_irq_count */
  irqCount(index: number): number {
    const fn = this.fn;
    switch (index) {
      case VFIO_PCI_INTX_IRQ_INDEX:
        return this.vconfig!.interruptPin ? 1 : 0;
      case VFIO_PCI_MSI_IRQ_INDEX:
        return fn.msiCap ? 1 << ((fn.cfgRead(fn.msiCap + 2, 2) & 0xe) >> 1) : 0;
      case VFIO_PCI_MSIX_IRQ_INDEX:
        return 0;
      case VFIO_PCI_ERR_IRQ_INDEX:
      case VFIO_PCI_REQ_IRQ_INDEX:
        return 1;
      default:
        return 0;
    }
  }

  /** IOC.SET_IRQS.request: vfio_set_irqs_validate_and_prepare, then the per-index handlers. */
  setIrqs(arg: Uint8Array): void {
    const dv = need(arg, IOC.SET_IRQS.minSize);
    const argsz = dv.getUint32(0, true);
    const flags = dv.getUint32(4, true);
    const index = dv.getUint32(8, true);
    const start = dv.getUint32(12, true);
    const count = dv.getUint32(16, true);
    const max = this.irqCount(index);
    if (argsz < IOC.SET_IRQS.minSize || index >= VFIO_PCI_NUM_IRQS || count >= 0xffffffff - start ||
      flags & ~(VFIO_IRQ_SET_DATA_TYPE_MASK | VFIO_IRQ_SET_ACTION_TYPE_MASK)) kerr(ERRNO.EINVAL);
    if (start >= max || start + count > max) kerr(ERRNO.EINVAL);
    let size: number;
    switch (flags & VFIO_IRQ_SET_DATA_TYPE_MASK) {
      case VFIO_IRQ_SET_DATA_NONE: size = 0; break;
      case VFIO_IRQ_SET_DATA_BOOL: size = 1; break;
      case VFIO_IRQ_SET_DATA_EVENTFD: size = 4; break;
      default: kerr(ERRNO.EINVAL);
    }
    let data: Uint8Array | null = null;
    if (size) {
      if (argsz - IOC.SET_IRQS.minSize < count * size) kerr(ERRNO.EINVAL);
      if (arg.length < IOC.SET_IRQS.minSize + count * size) kerr(ERRNO.EFAULT);
      data = arg.slice(IOC.SET_IRQS.minSize, IOC.SET_IRQS.minSize + count * size);
    }
    this.irqs.setIrqs(flags, index, start, count, data);
  }

  /** VFIO_DEVICE_RESET */
  reset(): void {
    if (!this.resetWorks) kerr(ERRNO.EINVAL);
    this.tryResetFunction();
  }

  /** Can a slot or bus reset reach this function? (pci_probe_reset_slot / pci_probe_reset_bus) */
  private hotResetScope(): PciDevice[] {
    const bus = this.dev.node.bus;
    if (bus.isRoot || !bus.self) kerr(ERRNO.ENODEV);
    const out: PciDevice[] = [];
    const walk = (b: typeof bus): void => {
      for (const n of b.devices) {
        const d = this.machine.devices.find((x) => x.node === n)!;
        out.push(d);
        if (n.subordinate) walk(n.subordinate);
      }
    };
    walk(bus);
    return out;
  }

  /** IOC.GET_PCI_HOT_RESET_INFO.request (cdev users get devids). */
  getHotResetInfo(arg: Uint8Array): void {
    const dv = need(arg, IOC.GET_PCI_HOT_RESET_INFO.minSize);
    const argsz = dv.getUint32(0, true);
    if (argsz < IOC.GET_PCI_HOT_RESET_INFO.minSize) kerr(ERRNO.EINVAL);
    const devs = this.hotResetScope();
    if (argsz < 12 + 8 * devs.length) {
      dv.setUint32(4, 0, true);
      dv.setUint32(8, devs.length, true);
      kerr(ERRNO.ENOSPC);
    }
    if (arg.length < 12 + 8 * devs.length) kerr(ERRNO.EFAULT);
    let flags = this.cdevOpened ? VFIO_PCI_HOT_RESET_FLAG_DEV_ID | VFIO_PCI_HOT_RESET_FLAG_DEV_ID_OWNED : 0;
    devs.forEach((d, i) => {
      const at = 12 + 8 * i;
      let id: number;
      if (flags & VFIO_PCI_HOT_RESET_FLAG_DEV_ID) {
        id = this.devidFor(d);
        if (id === VFIO_PCI_DEVID_NOT_OWNED) flags &= ~VFIO_PCI_HOT_RESET_FLAG_DEV_ID_OWNED;
      } else {
        id = d.group.id;
      }
      dv.setUint32(at, id >>> 0, true);
      dv.setUint16(at + 4, 0, true);
      dv.setUint8(at + 6, d.node.bus.number);
      dv.setUint8(at + 7, d.node.devfn);
    });
    dv.setUint32(4, flags, true);
    dv.setUint32(8, devs.length, true);
  }

  /** What hot reset info reports for an affected device, seen from this device's iommufd. */
  private devidFor(d: PciDevice): number {
    const other = d.drvdata instanceof VfioPciDevice ? d.drvdata : null;
    if (!other) return VFIO_PCI_DEVID_NOT_OWNED;
    const ictx = this.idev!.ctx;
    if (other.idev && other.idev.ctx === ictx) return other.idev.bound.devId;
    return d.group.owner === ictx ? VFIO_PCI_DEVID_OWNED : VFIO_PCI_DEVID_NOT_OWNED;
  }

  /**
   * IOC.PCI_HOT_RESET.request: a cdev-opened device passes an empty fd array (ownership through its
   * iommufd); a group-opened one passes the fds of groups covering every affected device.
   */
  hotReset(arg: Uint8Array, proc: SimProcess): void {
    const dv = need(arg, IOC.PCI_HOT_RESET.minSize);
    if (dv.getUint32(0, true) < IOC.PCI_HOT_RESET.minSize || dv.getUint32(4, true)) kerr(ERRNO.EINVAL);
    const count = dv.getUint32(8, true);
    if ((count !== 0) === this.cdevOpened) kerr(ERRNO.EINVAL);
    const devs = this.hotResetScope();
    const groups = count ? this.hotResetGroups(dv, count, devs.length, proc) : null;
    // vfio_pci_dev_set_resettable: every affected function is in the dev_set (bound to vfio-pci).
    if (devs.some((d) => !(d.drvdata instanceof VfioPciDevice))) kerr(ERRNO.EINVAL);
    if (groups) {
      // vfio_dev_in_groups: each affected device's group is among those given.
      for (const d of devs) if (!groups.has((d.drvdata as VfioPciDevice).vfioGroup!)) kerr(ERRNO.EINVAL);
    } else {
      // Each is owned: opened on this iommufd (a devid) or its group owned by it (-ENOENT).
      for (const d of devs) if (this.devidFor(d) === VFIO_PCI_DEVID_NOT_OWNED) kerr(ERRNO.EPERM);
    }
    for (const d of devs) {
      const saved = d.fn.saveState();
      d.fn.reset();
      d.fn.restoreState(saved);
    }
  }

  /** vfio_pci_ioctl_pci_hot_reset_groups: no more fds than affected devices; each a VFIO group file (EBADF, EINVAL). */
  private hotResetGroups(dv: DataView, count: number, max: number, proc: SimProcess): Set<VfioGroup> {
    if (count > max) kerr(ERRNO.EINVAL);
    if (dv.byteLength < IOC.PCI_HOT_RESET.minSize + 4 * count) kerr(ERRNO.EFAULT);
    const groups = new Set<VfioGroup>();
    for (let i = 0; i < count; i++) {
      const f = proc.fileOrNull(dv.getInt32(IOC.PCI_HOT_RESET.minSize + 4 * i, true));
      if (!f) kerr(ERRNO.EBADF);
      if (!(f instanceof VfioGroupFile)) kerr(ERRNO.EINVAL);
      groups.add(f.group);
    }
    return groups;
  }

  // ---- region access (vfio_pci_rw) -----------------------------------------------------------

  /** pread/pwrite at `index << 40 | offset`: config space through vconfig, BARs through their MMIO. */
  rw(buf: Uint8Array, pos: number, write: boolean): number {
    if (!buf.length) return 0;
    const index = Math.floor(pos / OFFSET_MASK);
    const off = pos % OFFSET_MASK;
    if (index >= VFIO_PCI_NUM_REGIONS) kerr(ERRNO.EINVAL);
    if (index === VFIO_PCI_CONFIG_REGION_INDEX) return this.vconfig!.rw(buf, off, write);
    if (index === VFIO_PCI_VGA_REGION_INDEX) kerr(ERRNO.EINVAL);
    if (index === VFIO_PCI_ROM_REGION_INDEX) {
      if (write) kerr(ERRNO.EINVAL);
      kerr(ERRNO.EINVAL); // no ROM BAR and no shadow ROM on these functions
    }
    return this.barRw(index, buf, off, write);
  }

  /** vfio_pci_bar_rw -> vfio_pci_core_do_io_rw: naturally aligned 8/4/2/1-byte accesses, memory enable checked. */
  private barRw(index: number, buf: Uint8Array, pos: number, write: boolean): number {
    const fn = this.fn;
    const bar = fn.bars[index];
    if (!bar || !fn.barAddress(index)) kerr(ERRNO.EINVAL);
    const end = bar.size;
    if (pos >= end) kerr(ERRNO.EINVAL);
    const count = Math.min(buf.length, end - pos);
    const dv = new DataView(buf.buffer, buf.byteOffset, buf.length);
    let done = 0;
    while (done < count) {
      const left = count - done;
      const off = pos + done;
      const size = left >= 8 && !(off % 8) ? 8 : left >= 4 && !(off % 4) ? 4 : left >= 2 && !(off % 2) ? 2 : 1;
      if (bar.type !== 'io' && !this.vconfig!.memoryEnabled) kerr(ERRNO.EIO);
      if (write) {
        const v = size === 8 ? dv.getBigUint64(done, true) : BigInt(size === 4 ? dv.getUint32(done, true) : size === 2 ? dv.getUint16(done, true) : dv.getUint8(done));
        fn.mmioWrite(index, off, size, v);
      } else {
        const v = fn.mmioRead(index, off, size);
        if (size === 8) dv.setBigUint64(done, v, true);
        else if (size === 4) dv.setUint32(done, Number(v), true);
        else if (size === 2) dv.setUint16(done, Number(v), true);
        else dv.setUint8(done, Number(v));
      }
      done += size;
    }
    return count;
  }
}

function isEmptyDir(vfs: PciHost['vfs'], dir: string): boolean {
  try {
    return vfs.readdir(dir).length === 0;
  } catch {
    return false;
  }
}

/** copy_from_user of a command's fixed part: EFAULT when the user's buffer is shorter. */
function need(arg: Uint8Array, n: number): DataView {
  if (arg.length < n) kerr(ERRNO.EFAULT);
  return new DataView(arg.buffer, arg.byteOffset, arg.length);
}

