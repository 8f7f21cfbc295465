/**
 * 8250_pci's `serial` driver: any 16550-compatible function (class 0x0700xx); its port `ttyS<N>`
 * under the serial core's port device (`<bdf>/<bdf>:0/<bdf>:0.0/tty/ttySN`, as 7.3 lays out
 * ttyS0 under pnp0/00:02), with a /sys/class/tty link. N counts from 4, after the four legacy
 * lines; Linux reuses the first legacy line without hardware (ttyS1 in the VM).
 */
import { ERRNO } from '../../../ioasid/errors.js';
import { kerr } from '../kernel/errno.js';
import type { SimVfs } from '../kernel/vfs.js';
import type { PciDriver } from '../pci/pci_driver.js';
import type { PciDevice } from '../pci/pci_device.js';
import { lowestFree } from './block.js';

const TTY_MAJOR = 4;
const TTYS_MINOR0 = 64;

/** 8250_pci's "serial" driver: every 16550-compatible function (class 0x070002, mask 0xffff00). */
export class SerialPciDriver implements PciDriver {
  readonly name = 'serial';
  readonly managedDma = false;
  private readonly ports = new Map<PciDevice, number>();

  constructor(private readonly vfs: SimVfs) {}

  matchId(dev: PciDevice): boolean {
    return (dev.fn.get32(8) >>> 16) === 0x0700;
  }

  probe(dev: PciDevice): void {
    if (!this.matchId(dev)) kerr(ERRNO.ENODEV);
    dev.enable();
    const n = 4 + lowestFree(new Set([...this.ports.values()].map((p) => p - 4)));
    this.ports.set(dev, n);
    const path = `${dev.sysfsPath}/${dev.name}:0/${dev.name}:0.0/tty/ttyS${n}`;
    this.vfs.addAttr(`${path}/dev`, { read: () => `${TTY_MAJOR}:${TTYS_MINOR0 + n}\n` });
    this.vfs.addRelativeLink(`/sys/class/tty/ttyS${n}`, path);
  }

  remove(dev: PciDevice): void {
    const n = this.ports.get(dev);
    if (n === undefined) return;
    this.vfs.remove(`${dev.sysfsPath}/${dev.name}:0`);
    this.vfs.remove(`/sys/class/tty/ttyS${n}`);
    this.ports.delete(dev);
    dev.disable();
  }
}

