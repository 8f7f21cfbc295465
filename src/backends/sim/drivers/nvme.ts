/**
 * The host's NVMe driver (drivers/nvme/host/core.c, multipath.c, pci.c), with what it publishes
 * at Linux's sysfs paths.
 */
import { ERRNO } from '../../../ioasid/errors.js';
import { kerr } from '../kernel/errno.js';
import type { SimVfs } from '../kernel/vfs.js';
import type { PciDriver } from '../pci/pci_driver.js';
import type { PciDevice } from '../pci/pci_device.js';
import { NvmeFunction } from '../hw/nvme.js';
import { addDisk, lowestFree } from './block.js';

/** blkext: the major of extended devts (an NVMe disk and each partition take the lowest free minor). */
export const BLOCK_EXT_MAJOR = 259;

interface NvmeSubsys {
  readonly nqn: string;
  readonly instance: number;
  readonly dir: string;
  readonly ctrls: Set<number>;
  readonly heads: Map<number, NvmeHead>;
}

/** A multipath namespace head: the disk the host mounts, with one hidden path disk per controller. */
interface NvmeHead {
  readonly nsid: number;
  readonly paths: Set<string>;
  readonly published: string[];
  readonly minors: number[];
}

interface NvmeCtrl {
  readonly instance: number;
  readonly subsys: NvmeSubsys;
  readonly published: string[];
  readonly minors: number[];
  readonly paths: { readonly head: NvmeHead; readonly name: string }[];
}

/**
 * The `nvme` driver (drivers/nvme/host/core.c, multipath.c, pci.c) for class 0x010802:
 * controller `nvme<i>` in `<fn>/nvme/nvme<i>` (/sys/class/nvme), its subsystem
 * `/sys/devices/virtual/nvme-subsystem/nvme-subsys<s>` (s: the first controller's instance;
 * links to each controller). Namespaces, as with CONFIG_NVME_MULTIPATH=y and multipath=Y:
 * - a multi-controller subsystem (CMIC): the head disk `nvme<s>n<nsid>` and its partitions hang
 *   off the subsystem; each controller adds a hidden path disk `nvme<s>c<i>n<nsid>` (no `dev`) and
 *   a link to it in the head's `multipath/`; the head goes with its last path;
 * - otherwise: the disk `nvme<i>n<nsid>` under the controller.
 * Disks and partitions take blkext (259) minors.
 */
export class NvmePciDriver implements PciDriver {
  readonly name = 'nvme';
  readonly managedDma = false;
  private readonly ctrls = new Map<PciDevice, NvmeCtrl>();
  private readonly subsystems = new Map<string, NvmeSubsys>();
  private readonly extMinors = new Set<number>();

  constructor(private readonly vfs: SimVfs) {}

  /** nvme_id_table's class match: PCI_CLASS_STORAGE_EXPRESS (0x010802). */
  matchId(dev: PciDevice): boolean {
    return dev.fn.get32(8) >>> 8 === 0x010802;
  }

  probe(dev: PciDevice): void {
    if (!(dev.fn instanceof NvmeFunction)) kerr(ERRNO.ENODEV); // no NVMe registers to read
    const cfg = dev.fn.nvme;
    dev.enable();
    // nvme_instance_ida: a subsystem keeps its instance number while it lives.
    const instance = lowestFree(new Set([...[...this.ctrls.values()].map((c) => c.instance), ...[...this.subsystems.values()].map((x) => x.instance)]));
    const ctrlDir = `${dev.sysfsPath}/nvme/nvme${instance}`;
    const ctrl: NvmeCtrl = { instance, subsys: this.subsystem(cfg.nqn, instance), published: [`${dev.sysfsPath}/nvme`], minors: [], paths: [] };
    const vfs = this.vfs;
    vfs.addAttr(`${ctrlDir}/subsysnqn`, { read: () => `${cfg.nqn}\n` });
    vfs.addRelativeLink(`/sys/class/nvme/nvme${instance}`, ctrlDir);
    vfs.addRelativeLink(`${ctrl.subsys.dir}/nvme${instance}`, ctrlDir);
    ctrl.published.push(`/sys/class/nvme/nvme${instance}`, `${ctrl.subsys.dir}/nvme${instance}`);
    ctrl.subsys.ctrls.add(instance);
    for (const ns of cfg.namespaces) {
      const partitions = ns.partitions ?? [];
      if (!cfg.multiController) {
        const name = `nvme${instance}n${ns.nsid}`;
        addDisk(vfs, { dir: `${ctrlDir}/${name}`, name, sectors: ns.sectors, partitions, minors: 0 }, this.devt(ctrl.minors), ctrl.published);
        continue;
      }
      const s = ctrl.subsys;
      let head = s.heads.get(ns.nsid);
      if (!head) {
        head = { nsid: ns.nsid, paths: new Set(), published: [], minors: [] };
        const name = `nvme${s.instance}n${ns.nsid}`;
        head.published.push(`${s.dir}/${name}`);
        addDisk(vfs, { dir: `${s.dir}/${name}`, name, sectors: ns.sectors, partitions, minors: 0 }, this.devt(head.minors), head.published);
        s.heads.set(ns.nsid, head);
      }
      const path = `nvme${s.instance}c${instance}n${ns.nsid}`;
      vfs.addDir(`${ctrlDir}/${path}/holders`);
      vfs.addRelativeLink(`/sys/class/block/${path}`, `${ctrlDir}/${path}`);
      vfs.addRelativeLink(`${s.dir}/nvme${s.instance}n${ns.nsid}/multipath/${path}`, `${ctrlDir}/${path}`);
      ctrl.published.push(`/sys/class/block/${path}`, `${s.dir}/nvme${s.instance}n${ns.nsid}/multipath/${path}`);
      head.paths.add(path);
      ctrl.paths.push({ head, name: path });
    }
    this.ctrls.set(dev, ctrl);
  }

  remove(dev: PciDevice): void {
    const c = this.ctrls.get(dev);
    if (!c) return;
    for (const p of c.published) this.vfs.remove(p);
    this.freeMinors(c.minors);
    for (const { head, name } of c.paths) {
      head.paths.delete(name);
      if (head.paths.size) continue;
      for (const p of head.published) this.vfs.remove(p);
      this.freeMinors(head.minors);
      c.subsys.heads.delete(head.nsid);
    }
    c.subsys.ctrls.delete(c.instance);
    if (!c.subsys.ctrls.size) {
      this.vfs.remove(c.subsys.dir);
      this.vfs.remove(`/sys/class/nvme-subsystem/nvme-subsys${c.subsys.instance}`);
      this.subsystems.delete(c.subsys.nqn);
    }
    this.ctrls.delete(dev);
    dev.disable();
  }

  /** nvme_init_subsystem: the subsystem of that NQN, or a new one named after this controller. */
  private subsystem(nqn: string, instance: number): NvmeSubsys {
    let s = this.subsystems.get(nqn);
    if (s) return s;
    s = { nqn, instance, dir: `/sys/devices/virtual/nvme-subsystem/nvme-subsys${instance}`, ctrls: new Set(), heads: new Map() };
    this.vfs.addAttr(`${s.dir}/subsysnqn`, { read: () => `${nqn}\n` });
    this.vfs.addRelativeLink(`/sys/class/nvme-subsystem/nvme-subsys${instance}`, s.dir);
    this.subsystems.set(nqn, s);
    return s;
  }

  /** blk_alloc_ext_minor for each device of a disk, remembered in `owned` for freeing. */
  private devt(owned: number[]): (part: number) => string {
    return () => {
      const m = lowestFree(this.extMinors);
      this.extMinors.add(m);
      owned.push(m);
      return `${BLOCK_EXT_MAJOR}:${m}`;
    };
  }

  private freeMinors(minors: number[]): void {
    for (const m of minors.splice(0)) this.extMinors.delete(m);
  }
}

