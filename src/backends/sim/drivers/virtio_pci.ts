/**
 * The host's virtio-pci driver (drivers/virtio/virtio_pci_*.c) and the virtio drivers that bind
 * what it registers, with what they publish at Linux's sysfs paths (what src/device/host_use.ts
 * looks for before a driver is taken away):
 *
 * - `virtio-pci` claims 1af4:1000-107f (else ENODEV), enables the function and registers a virtio
 *   device `virtioN` under it (/sys/bus/virtio/devices/virtioN), which the driver for its ID binds:
 * - `virtio_blk`: a disk `vd<a..>` (major 254, 16 minors per disk) and its partitions, in
 *   `virtioN/block/vda[/vda1]` (block.ts);
 * - `virtio_net`: an interface `eth<N>` in `virtioN/net/ethN` with `flags` (writable: IFF_UP
 *   brings it up, as `ip link set up` does), `operstate`, `address`; /sys/class/net link;
 * - `9pnet_virtio`: the share's `mount_tag` (the tag and a NUL, no newline, as the VM shows).
 *
 * Removing the driver removes what it published: the disk, the interface, the share.
 */
import { ERRNO } from '../../../ioasid/errors.js';
import { kerr } from '../kernel/errno.js';
import type { SimVfs } from '../kernel/vfs.js';
import type { PciDriver } from '../pci/pci_driver.js';
import type { PciDevice } from '../pci/pci_device.js';
import { VIRTIO_ID_9P, VIRTIO_ID_BLOCK, VIRTIO_ID_NET, VirtioFunction, type VirtioConfig } from '../hw/virtio.js';
import { addDisk, lowestFree } from './block.js';

/** virtblk's block major (register_blkdev(0, "virtblk") takes the highest free dynamic major). */
export const VIRTBLK_MAJOR = 254;
const PART_BITS = 4;
const IFF_UP = 0x1;
const IFF_BROADCAST = 0x2;
const IFF_MULTICAST = 0x1000;

/** The disk name for an index: vda ... vdz, vdaa ... (virtblk_name_format). */
export function virtblkName(index: number): string {
  let s = '';
  for (let i = index + 1; i > 0; i = Math.floor((i - 1) / 26)) s = String.fromCharCode(97 + ((i - 1) % 26)) + s;
  return `vd${s}`;
}

/** What virtio-pci's probe made for one function, so that remove undoes it. */
interface VirtioBinding {
  readonly index: number;
  /** The virtio device ID (VIRTIO_ID_*). */
  readonly virtioId: number;
  /** The disk index, interface number, or -1. */
  readonly unit: number;
  readonly published: string[];
}

const VIRTIO_DRIVERS: Record<number, string> = { [VIRTIO_ID_NET]: 'virtio_net', [VIRTIO_ID_BLOCK]: 'virtio_blk', [VIRTIO_ID_9P]: '9pnet_virtio' };

export class VirtioPciDriver implements PciDriver {
  readonly name = 'virtio-pci';
  readonly managedDma = false;
  private readonly bound = new Map<PciDevice, VirtioBinding>();
  private readonly disks = new Set<number>();
  private readonly ifaces = new Set<number>();
  private nextIfindex = 2;

  constructor(private readonly vfs: SimVfs) {
    for (const d of Object.values(VIRTIO_DRIVERS)) vfs.addAttr(`/sys/bus/virtio/drivers/${d}/uevent`, { write: () => {} });
  }

  /** virtio_pci_id_table: PCI_DEVICE(PCI_VENDOR_ID_REDHAT_QUMRANET, PCI_ANY_ID). */
  matchId(dev: PciDevice): boolean {
    return dev.fn.get16(0) === 0x1af4;
  }

  /** virtio_pci_probe: only 1000-107f are virtio ("leave the rest": ENODEV). */
  probe(dev: PciDevice): void {
    const id = dev.fn.get16(2);
    if (id < 0x1000 || id > 0x107f) kerr(ERRNO.ENODEV);
    dev.enable();
    const index = lowestFree(new Set([...this.bound.values()].map((b) => b.index)));
    const dir = `${dev.sysfsPath}/virtio${index}`;
    const cfg = dev.fn instanceof VirtioFunction ? dev.fn.virtio : null;
    const virtioId = id < 0x1040 ? dev.fn.get16(0x2e) : id - 0x1040;
    const driver = VIRTIO_DRIVERS[virtioId] ?? null;
    const published = [dir, `/sys/bus/virtio/devices/virtio${index}`];
    const h4 = (v: number): string => `0x${v.toString(16).padStart(4, '0')}\n`;
    this.vfs.addAttr(`${dir}/vendor`, { read: () => h4(0x1af4) });
    this.vfs.addAttr(`${dir}/device`, { read: () => h4(virtioId) });
    this.vfs.addAttr(`${dir}/modalias`, { read: () => `virtio:d${virtioId.toString(16).padStart(8, '0')}v00001AF4\n` });
    this.vfs.addRelativeLink(`${dir}/subsystem`, '/sys/bus/virtio');
    this.vfs.addRelativeLink(`/sys/bus/virtio/devices/virtio${index}`, dir);
    let unit = -1;
    if (driver && cfg?.id === virtioId) {
      this.vfs.addRelativeLink(`${dir}/driver`, `/sys/bus/virtio/drivers/${driver}`);
      this.vfs.addRelativeLink(`/sys/bus/virtio/drivers/${driver}/virtio${index}`, dir);
      published.push(`/sys/bus/virtio/drivers/${driver}/virtio${index}`);
      unit = this.publishFunction(dir, cfg, published);
    }
    this.bound.set(dev, { index, virtioId, unit, published });
  }

  remove(dev: PciDevice): void {
    const b = this.bound.get(dev);
    if (!b) return;
    for (const p of b.published) this.vfs.remove(p);
    if (b.virtioId === VIRTIO_ID_BLOCK) this.disks.delete(b.unit);
    if (b.virtioId === VIRTIO_ID_NET) this.ifaces.delete(b.unit);
    this.bound.delete(dev);
    dev.disable();
  }

  /** The virtio driver's probe: a disk, an interface or a share. Returns its unit number. */
  private publishFunction(dir: string, cfg: VirtioConfig, published: string[]): number {
    const vfs = this.vfs;
    const ro = (path: string, text: string): void => vfs.addAttr(path, { read: () => text });
    if (cfg.id === VIRTIO_ID_9P) {
      ro(`${dir}/mount_tag`, `${cfg.tag}\0`);
      return -1;
    }
    if (cfg.id === VIRTIO_ID_NET) {
      const n = lowestFree(this.ifaces);
      this.ifaces.add(n);
      const name = `eth${n}`;
      const net = `${dir}/net/${name}`;
      let flags = IFF_BROADCAST | IFF_MULTICAST;
      vfs.addAttr(`${net}/flags`, {
        read: () => `0x${flags.toString(16)}\n`,
        write: (t) => {
          const v = Number(t.trim());
          if (!Number.isInteger(v) || v < 0) kerr(ERRNO.EINVAL);
          flags = (flags & ~IFF_UP) | (v & IFF_UP);
        },
      });
      vfs.addAttr(`${net}/operstate`, { read: () => (flags & IFF_UP ? 'up\n' : 'down\n') });
      ro(`${net}/address`, `${cfg.mac}\n`);
      ro(`${net}/ifindex`, `${this.nextIfindex++}\n`);
      ro(`${net}/mtu`, '1500\n');
      vfs.addRelativeLink(`/sys/class/net/${name}`, net);
      published.push(`/sys/class/net/${name}`);
      return n;
    }
    const index = lowestFree(this.disks);
    this.disks.add(index);
    const name = virtblkName(index);
    addDisk(vfs, { dir: `${dir}/block/${name}`, name, sectors: cfg.sectors, partitions: cfg.partitions, minors: 1 << PART_BITS },
      (part) => `${VIRTBLK_MAJOR}:${(index << PART_BITS) + part}`, published);
    return index;
  }
}

