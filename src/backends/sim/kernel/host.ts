/**
 * What the host's userspace did after boot (mounts, swap, device-mapper devices, interfaces
 * brought up), and the consoles its command line named, published where Linux shows them:
 *
 *   /proc/self/mountinfo, /proc/consoles, /proc/swaps (with `swaps`)
 *   /sys/devices/virtual/block/dm-N with slaves/, and holders/dm-N in the devices it sits on
 *   /sys/class/tty/ttyS0..3: the PC's COM1 (pnp0/00:02) and the 8250 core's placeholder ports
 *
 * The texts follow the kernel's formats (fs/proc_namespace.c show_mountinfo, mm/swapfile.c
 * swap_show, fs/proc/consoles.c). A mount keeps the device number it was mounted with, as a
 * superblock does: taking a mounted disk away leaves the mount behind.
 */
import type { SimVfs } from './vfs.js';

export interface HostMount {
  /**
   * A block device by name ('vda1', 'dm-0'; the mount shows `/dev/<name>` and its major:minor),
   * a virtio 9p/virtiofs tag (fstype '9p' or 'virtiofs'), or any name for a pseudo file system.
   */
  readonly source: string;
  readonly target: string;
  readonly fstype: string;
  /** A bind mount: this directory of the file system an earlier mount of `source` mounted. */
  readonly root?: string;
}

export interface HostDesc {
  /** Device-mapper devices dm-0, dm-1... in order, each stacked on the block devices named. */
  readonly dm?: readonly (readonly string[])[];
  /** File systems mounted after boot, in order. */
  readonly mounts?: readonly HostMount[];
  /** Swap areas: block devices by name. Absent: a kernel without CONFIG_SWAP (no /proc/swaps, as in the VM). */
  readonly swaps?: readonly string[];
  /** Interfaces brought up (IFF_UP through their sysfs `flags`). */
  readonly up?: readonly string[];
}

const DM_MAJOR = 253;
/** The first anonymous device minor (get_anon_bdev) the sim hands out (the VM's root 9p got 0:17). */
const ANON_MINOR0 = 17;
/** The root mount's id in the VM's mountinfo. */
const MOUNT_ID0 = 19;

interface Mount {
  readonly id: number;
  readonly parent: number;
  readonly dev: string;
  readonly root: string;
  readonly target: string;
  readonly fstype: string;
  readonly source: string;
}

/** seq_path's escapes for mountinfo and swaps: space, tab, newline, backslash as octal. */
const mangle = (s: string): string => s.replace(/[ \t\n\\]/g, (c) => `\\${c.charCodeAt(0).toString(8).padStart(3, '0')}`);

export class SimHost {
  private readonly mounts: Mount[] = [];
  private readonly swaps: { path: string; kib: number }[] = [];
  private readonly consoles: { name: string; dev: string }[] = [];
  private nextAnon = ANON_MINOR0;

  constructor(
    private readonly vfs: SimVfs,
    desc: HostDesc,
    /** The kernel's command line: its `console=` ttys that exist become the consoles. */
    cmdline: string,
  ) {
    vfs.addAttr('/proc/self/mountinfo', { read: () => this.mountinfo() });
    if (desc.swaps) vfs.addAttr('/proc/swaps', { read: () => this.swapsText() });
    vfs.addAttr('/proc/consoles', { read: () => this.consolesText() });
    for (let i = 0; i < 4; i++) {
      // ttyS0 is the PC's COM1 (ACPI PNP0501), the rest are the 8250 core's placeholders (as in the VM).
      const port = i === 0 ? '/sys/devices/pnp0/00:02/00:02:0/00:02:0.0' : `/sys/devices/platform/serial8250/serial8250:0/serial8250:0.${i}`;
      vfs.addAttr(`${port}/tty/ttyS${i}/dev`, { read: () => `4:${64 + i}\n` });
      vfs.addRelativeLink(`/sys/class/tty/ttyS${i}`, `${port}/tty/ttyS${i}`);
    }
    desc.dm?.forEach((on, i) => this.dmCreate(i, on));
    for (const m of desc.mounts ?? []) this.mount(m);
    for (const s of desc.swaps ?? []) this.swapon(s);
    for (const i of desc.up ?? []) vfs.writeText(`/sys/class/net/${i}/flags`, '0x1003');
    for (const w of cmdline.split(/\s+/)) {
      const name = /^console=([^,]+)/.exec(w)?.[1];
      const dev = name ? this.sysTextOrNull(`/sys/class/tty/${name}/dev`) : null;
      if (name && dev) this.consoles.push({ name, dev });
    }
  }

  private sysTextOrNull(path: string): string | null {
    try {
      return this.vfs.readText(path).trim();
    } catch {
      return null;
    }
  }

  private sysText(path: string, what: string): string {
    const t = this.sysTextOrNull(path);
    if (t === null) throw new Error(`host setup: ${what}`);
    return t;
  }

  /** mount(2): a block device by its name, a share by its tag, or a pseudo file system. */
  mount(m: HostMount): void {
    let dev: string;
    let source = m.source;
    const block = this.sysTextOrNull(`/sys/class/block/${m.source}/dev`);
    if (block !== null) {
      dev = block;
      source = `/dev/${m.source}`;
    } else {
      if ((m.fstype === '9p' || m.fstype === 'virtiofs') && !this.shareTags().includes(m.source)) throw new Error(`host setup: no virtio share tagged ${m.source}`);
      const bound = m.root === undefined ? undefined : this.mounts.find((p) => p.source === source && p.fstype === m.fstype);
      if (m.root !== undefined && !bound) throw new Error(`host setup: bind mount of ${m.source}, which is not mounted`);
      dev = bound?.dev ?? `0:${this.nextAnon++}`;
    }
    const parent = [...this.mounts].reverse().find((p) => m.target === p.target || m.target.startsWith(p.target === '/' ? '/' : `${p.target}/`));
    this.mounts.push({ id: MOUNT_ID0 + this.mounts.length, parent: parent?.id ?? 1, dev, root: m.root ?? '/', target: m.target, fstype: m.fstype, source });
  }

  /** swapon(2) of a block device. */
  swapon(name: string): void {
    const sectors = Number(this.sysText(`/sys/class/block/${name}/size`, `no block device ${name}`));
    this.swaps.push({ path: `/dev/${name}`, kib: sectors / 2 - 4 });
  }

  private shareTags(): string[] {
    const tags: string[] = [];
    for (const v of this.dirOrEmpty('/sys/bus/virtio/devices')) {
      try {
        tags.push(this.vfs.readText(`/sys/bus/virtio/devices/${v}/mount_tag`).replace(/\0$/, ''));
      } catch {
        // not a 9p device
      }
    }
    return tags;
  }

  private dirOrEmpty(path: string): string[] {
    try {
      return this.vfs.readdir(path);
    } catch {
      return [];
    }
  }

  /** A device-mapper device dm-<i> over block devices (LVM, dm-crypt): it holds each of them. */
  private dmCreate(i: number, on: readonly string[]): void {
    const name = `dm-${i}`;
    const path = `/sys/devices/virtual/block/${name}`;
    let sectors = 0;
    for (const b of on) {
      sectors += Number(this.sysText(`/sys/class/block/${b}/size`, `no block device ${b}`));
      const real = this.vfs.resolve(`/sys/class/block/${b}`);
      this.vfs.addRelativeLink(`${real}/holders/${name}`, path);
      this.vfs.addRelativeLink(`${path}/slaves/${b}`, real);
    }
    this.vfs.addAttr(`${path}/dev`, { read: () => `${DM_MAJOR}:${i}\n` });
    this.vfs.addAttr(`${path}/size`, { read: () => `${sectors}\n` });
    this.vfs.addDir(`${path}/holders`);
    this.vfs.addRelativeLink(`/sys/class/block/${name}`, path);
    this.vfs.addRelativeLink(`/sys/block/${name}`, path);
  }

  /** show_mountinfo: `id parent major:minor root mountpoint options optional - fstype source superoptions`. */
  private mountinfo(): string {
    return this.mounts.map((m) => `${m.id} ${m.parent} ${m.dev} ${mangle(m.root)} ${mangle(m.target)} rw,relatime - ${m.fstype} ${mangle(m.source)} rw\n`).join('');
  }

  /** swap_show: the path padded to column 40, then type, size and use in KiB, priority. */
  private swapsText(): string {
    const head = 'Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n';
    return head + this.swaps.map((s, i) => {
      const p = mangle(s.path);
      return `${p}${' '.repeat(p.length < 40 ? 40 - p.length : 1)}partition\t${s.kib}\t${s.kib < 10000000 ? '\t' : ''}0\t\t${-2 - i}\n`;
    }).join('');
  }

  /** show_console_dev for an 8250 console (an nbcon in 7.3): name padded to 20, "-W- (EC Np a)", major:minor; the last console= is /dev/console (C). */
  private consolesText(): string {
    return this.consoles.map((c, i) => {
      const [maj, min] = c.dev.split(':');
      return `${c.name.padEnd(20)} -W- (E${i === this.consoles.length - 1 ? 'C' : ' '} Np a) ${maj!.padStart(4)}:${min}\n`;
    }).join('');
  }
}
