/**
 * The PCI core's view of a function (struct pci_dev): its name, IOMMU group and unit, driver
 * binding and sysfs place; and what the PCI core and its drivers reach of the machine (`PciHost`).
 */
import type { BoundDevice, IommuDriverOps, IommuGroup, SimDevice, SimIommuUnit } from '../iommu/iommu.js';
import { hardwareOps } from '../iommu/driver_ops.js';
import type { IommufdCtx } from '../iommufd/main.js';
import type { SimVfs } from '../kernel/vfs.js';
import type { IommuUnit } from '../hw/iommu.js';
import type { PciNode } from '../hw/pci.js';
import { PCI_COMMAND, PCI_COMMAND_MASTER, PCI_COMMAND_MEMORY, PCI_INTERRUPT_PIN, type PciFunction } from '../hw/pci_function.js';
import type { DriverCore, PciDriver } from './pci_driver.js';

/** The machine as the PCI core, sysfs and PCI drivers see it. */
export interface PciHost {
  readonly vfs: SimVfs;
  /** Every PCI function, in probe order. */
  readonly devices: readonly PciDevice[];
  readonly drivers: DriverCore;
  /** The hardware IOMMU unit (null when there is none). */
  readonly iommu: IommuUnit | null;
  /** The boot VGA device (vgaarb's default device, sysfs `boot_vga`), or null. */
  readonly bootVga: PciDevice | null;
  /** iommufd's half of VFIO_DEVICE_BIND_IOMMUFD (iommufd_device_bind). */
  bindDevice(ctx: IommufdCtx, dev: SimDevice): BoundDevice;
}

/** A PCI function as the kernel knows it: name, group, IOMMU, driver binding, sysfs place. */
export class PciDevice implements SimDevice {
  /** The driver bound to it. */
  boundDriver: PciDriver | null = null;
  driverOverride: string | null = null;
  /** pci_enable_device count (sysfs `enable`). */
  enableCount = 0;
  /** The bound driver's per-device state (vfio-pci's VfioPciDevice). */
  drvdata: unknown = null;
  /** Reset methods probed when the function was added (sysfs reset_method). */
  readonly resetMethods: readonly string[];
  /** The IOMMU driver's ops for this function (dev_iommu_ops). */
  readonly ops: IommuDriverOps;

  constructor(
    readonly node: PciNode,
    readonly group: IommuGroup,
    readonly iommu: SimIommuUnit,
    readonly sysfsPath: string,
    resetMethods: readonly string[],
    owner: object,
  ) {
    this.resetMethods = resetMethods;
    this.ops = hardwareOps(owner, iommu.caps);
  }

  get name(): string {
    return this.node.name;
  }

  get rid(): number {
    return this.node.rid;
  }

  get fn(): PciFunction {
    return this.node.fn;
  }

  /** Directories below /sys/devices/pci0000:00 (1 for a function on the root bus). */
  get depth(): number {
    let d = 1;
    for (let b = this.node.bus; !b.isRoot; b = b.parent!) d++;
    return d;
  }

  get irq(): number {
    return this.node.desc.irq ?? (this.fn.config[PCI_INTERRUPT_PIN] ? 10 : 0);
  }

  driver(): string | null {
    return this.boundDriver?.name ?? null;
  }

  /** pci_enable_device + pci_set_master, as a kernel driver's probe does (sysfs `enable` counts it). */
  enable(): void {
    this.enableCount++;
    this.fn.cfgWrite(PCI_COMMAND, 2, this.fn.command | PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER);
  }

  /** pci_clear_master + pci_disable_device, as the driver's remove does. */
  disable(): void {
    this.enableCount--;
    this.fn.cfgWrite(PCI_COMMAND, 2, this.fn.command & ~PCI_COMMAND_MASTER);
  }
}
