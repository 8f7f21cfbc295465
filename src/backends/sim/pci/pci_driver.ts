/**
 * The PCI driver core as sysfs exposes it: which driver a function is bound to, driver_override,
 * /sys/bus/pci/drivers_probe, and each driver's bind / unbind / new_id / remove_id files. The
 * rules are the kernel's (drivers/base/bus.c, dd.c, drivers/pci/pci-driver.c):
 *
 * - a driver matches a function by driver_override alone when one is set, else by its dynamic and
 *   static ID tables (pci_match_device);
 * - drivers_probe on an unbound function tries the first matching driver; a failing ->probe leaves
 *   the function unbound and the write still succeeds (really_probe), a failing DMA setup
 *   (iommu_device_use_default_domain: EBUSY in a group a user owns) fails the write;
 * - drivers/<drv>/bind fails with ENODEV when the driver does not match, EBUSY when bound, and the
 *   probe's own error otherwise; unbind needs the function bound to that driver (ENODEV).
 * - a driver that is not driver_managed_dma takes the group's default domain while bound: it holds
 *   the group's owner_cnt with no owner, which is what makes a user's DMA claim fail (EPERM).
 */
import { ERRNO } from '../../../ioasid/errors.js';
import { KernelErrno, kerr } from '../kernel/errno.js';
import type { SimVfs } from '../kernel/vfs.js';
import type { PciDevice } from './pci_device.js';

export interface PciDriver {
  readonly name: string;
  /** driver_managed_dma: binding it leaves the group's DMA ownership alone (vfio-pci, pcieport). */
  readonly managedDma: boolean;
  /** The driver's static ID table. */
  matchId(dev: PciDevice): boolean;
  /** ->probe; throws a KernelErrno to fail. */
  probe(dev: PciDevice): void;
  /** ->remove. The sim cannot block like the kernel does: a driver may refuse with a KernelErrno. */
  remove(dev: PciDevice): void;
}

/** A new_id entry: vendor, device and optionally subvendor/subdevice/class/class_mask (PCI_ANY_ID = -1). */
interface DynId {
  vendor: number;
  device: number;
  subvendor: number;
  subdevice: number;
  cls: number;
  clsMask: number;
}

const PCI_ANY_ID = 0xffffffff;
const PAGE_SIZE = 4096;

export class DriverCore {
  readonly drivers: PciDriver[] = [];
  private readonly dynids = new Map<PciDriver, DynId[]>();

  constructor(
    private readonly vfs: SimVfs,
    private readonly devices: () => readonly PciDevice[],
  ) {
    vfs.addAttr('/sys/bus/pci/drivers_probe', { write: (t) => this.driversProbe(t) });
    vfs.addAttr('/sys/bus/pci/drivers_autoprobe', { read: () => '1\n', write: () => {} });
  }

  register(drv: PciDriver): void {
    this.drivers.push(drv);
    this.dynids.set(drv, []);
    const dir = `/sys/bus/pci/drivers/${drv.name}`;
    this.vfs.addAttr(`${dir}/bind`, { write: (t) => this.bindStore(drv, t) });
    this.vfs.addAttr(`${dir}/unbind`, { write: (t) => this.unbindStore(drv, t) });
    this.vfs.addAttr(`${dir}/new_id`, { write: (t) => this.newIdStore(drv, t) });
    this.vfs.addAttr(`${dir}/remove_id`, { write: (t) => this.removeIdStore(drv, t) });
    this.vfs.addAttr(`${dir}/uevent`, { write: () => {} });
  }

  driver(name: string): PciDriver | undefined {
    return this.drivers.find((d) => d.name === name);
  }

  /** driver_override_store (__device_set_driver_override). */
  setDriverOverride(dev: PciDevice, text: string): void {
    if (text === '') return; // a write of 0 bytes never reaches the store
    if (text.length >= PAGE_SIZE - 1) kerr(ERRNO.EINVAL);
    let s = text;
    const nul = s.indexOf('\0');
    if (nul >= 0) s = s.slice(0, nul);
    const nl = s.indexOf('\n');
    if (nl >= 0) s = s.slice(0, nl);
    dev.driverOverride = s.length ? s : null;
  }

  /** pci_bus_match -> pci_match_device: driver_override decides alone; else dynamic ids, then the table. */
  matches(drv: PciDriver, dev: PciDevice): boolean {
    if (dev.driverOverride !== null) return dev.driverOverride === drv.name;
    return this.dynids.get(drv)!.some((id) => matchDynId(id, dev)) || drv.matchId(dev);
  }

  /** device_attach at boot or from drivers_probe: the first matching driver; true when bound. */
  attach(dev: PciDevice): boolean {
    if (dev.boundDriver) return true;
    for (const drv of this.drivers) {
      if (!this.matches(drv, dev)) continue;
      const r = this.reallyProbe(drv, dev);
      if (r.errno && !r.probeFailed) kerr(r.errno);
      return r.errno === 0;
    }
    return false;
  }

  /** Unbind whatever driver `dev` has (device_release_driver). */
  release(dev: PciDevice): void {
    const drv = dev.boundDriver;
    if (!drv) return;
    drv.remove(dev);
    if (!drv.managedDma) dev.group.ownerCount--;
    dev.boundDriver = null;
    this.vfs.remove(`${dev.sysfsPath}/driver`);
    this.vfs.remove(`/sys/bus/pci/drivers/${drv.name}/${dev.name}`);
  }

  private reallyProbe(drv: PciDriver, dev: PciDevice): { errno: number; probeFailed: boolean } {
    const group = dev.group;
    // pci_dma_configure -> iommu_device_use_default_domain for drivers that do not manage DMA.
    if (!drv.managedDma) {
      if (group.ownerCount && group.owner !== null) return { errno: ERRNO.EBUSY, probeFailed: false };
      group.ownerCount++;
    }
    try {
      drv.probe(dev);
    } catch (e) {
      if (!drv.managedDma) group.ownerCount--;
      if (e instanceof KernelErrno) return { errno: e.errno, probeFailed: true };
      throw e;
    }
    dev.boundDriver = drv;
    this.vfs.addLink(`${dev.sysfsPath}/driver`, `${'../'.repeat(dev.depth + 2)}bus/pci/drivers/${drv.name}`);
    this.vfs.addLink(`/sys/bus/pci/drivers/${drv.name}/${dev.name}`, `../../../..${dev.sysfsPath.slice('/sys'.length)}`);
    return { errno: 0, probeFailed: false };
  }

  /** bus_find_device_by_name: sysfs_streq tolerates one trailing newline. */
  private find(text: string): PciDevice | undefined {
    const name = text.endsWith('\n') ? text.slice(0, -1) : text;
    return this.devices().find((d) => d.name === name);
  }

  /** drivers_probe_store: any failure of bus_rescan_devices_helper is EINVAL (the VM answers so). */
  private driversProbe(text: string): void {
    const dev = this.find(text);
    if (!dev) kerr(ERRNO.ENODEV);
    try {
      this.attach(dev);
    } catch (e) {
      if (e instanceof KernelErrno) kerr(ERRNO.EINVAL);
      throw e;
    }
  }

  /** bind_store -> device_driver_attach */
  private bindStore(drv: PciDriver, text: string): void {
    const dev = this.find(text);
    if (!dev || !this.matches(drv, dev)) kerr(ERRNO.ENODEV);
    if (dev.boundDriver) kerr(ERRNO.EBUSY);
    const r = this.reallyProbe(drv, dev);
    if (r.errno) kerr(r.errno);
  }

  /** unbind_store */
  private unbindStore(drv: PciDriver, text: string): void {
    const dev = this.find(text);
    if (!dev || dev.boundDriver !== drv) kerr(ERRNO.ENODEV);
    this.release(dev);
  }

  /** new_id_store: "vendor device [subvendor subdevice [class class_mask]]" in hex, then driver_attach. */
  private newIdStore(drv: PciDriver, text: string): void {
    const f = text.trim().split(/\s+/).filter(Boolean).map((x) => parseInt(x, 16));
    if (f.length < 2 || f.some((x) => Number.isNaN(x))) kerr(ERRNO.EINVAL);
    const id: DynId = {
      vendor: f[0]! >>> 0, device: f[1]! >>> 0, subvendor: (f[2] ?? PCI_ANY_ID) >>> 0, subdevice: (f[3] ?? PCI_ANY_ID) >>> 0,
      cls: (f[4] ?? 0) >>> 0, clsMask: (f[5] ?? 0) >>> 0,
    };
    const ids = this.dynids.get(drv)!;
    if (ids.some((x) => x.vendor === id.vendor && x.device === id.device && x.subvendor === id.subvendor && x.subdevice === id.subdevice)) kerr(ERRNO.EEXIST);
    ids.push(id);
    // driver_attach: every unbound function the driver now matches.
    for (const dev of this.devices()) {
      if (dev.boundDriver || !this.matches(drv, dev)) continue;
      this.reallyProbe(drv, dev);
    }
  }

  /** remove_id_store: the exact vendor/device(/subvendor/subdevice) entry, else ENODEV. */
  private removeIdStore(drv: PciDriver, text: string): void {
    const f = text.trim().split(/\s+/).filter(Boolean).map((x) => parseInt(x, 16));
    if (f.length < 2 || f.some((x) => Number.isNaN(x))) kerr(ERRNO.EINVAL);
    const ids = this.dynids.get(drv)!;
    const sv = (f[2] ?? PCI_ANY_ID) >>> 0;
    const sd = (f[3] ?? PCI_ANY_ID) >>> 0;
    const i = ids.findIndex((x) => x.vendor === f[0] && x.device === f[1] && x.subvendor === sv && x.subdevice === sd);
    if (i < 0) kerr(ERRNO.ENODEV);
    ids.splice(i, 1);
  }
}

function matchDynId(id: DynId, dev: PciDevice): boolean {
  const c = dev.fn;
  const any = (want: number, have: number): boolean => want === PCI_ANY_ID || want === have;
  return any(id.vendor, c.get16(0)) && any(id.device, c.get16(2)) && any(id.subvendor, c.get16(0x2c)) &&
    any(id.subdevice, c.get16(0x2e)) && ((id.cls ^ (c.get32(8) >>> 8)) & id.clsMask) === 0;
}
