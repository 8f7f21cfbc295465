/**
 * What the host itself uses a PCI function for: the things that break when its driver is
 * unbound. Everything is read through the Binding from files any user can read:
 *
 * - block devices whose sysfs path lies under the function (/sys/class/block/* links:
 *   `…/0000:00:05.0/virtio2/block/vda/vda1`, `…/nvme/nvme0/nvme0n1p2`, a USB disk under its xHCI
 *   controller), or NVMe multipath heads all of whose paths do (`nvme-subsystem/…/nvme0n1` and its
 *   `multipath/` links), that are mounted (/proc/self/mountinfo, by major:minor or by
 *   `/dev/<name>` as the source), a swap area (/proc/swaps), or held by a stacked device
 *   (`holders/`: device-mapper, md, bcache);
 * - network interfaces under it (/sys/class/net/* links) that are up (IFF_UP in `flags`);
 * - virtio 9p and virtiofs shares it carries whose tag is a mounted file system's source
 *   (`virtioN/mount_tag`, /sys/fs/virtiofs/N/{tag,device});
 * - the kernel's consoles (/proc/consoles) whose tty lies under it (a PCI serial port);
 * - the boot VGA device (`boot_vga` = 1: the firmware's display, and usually the console's);
 * - processes holding its VFIO device open (vfioOpeners: /proc/<pid>/fd and fdinfo).
 */
import type { Binding } from '../backends/types.js';
import { IommuError } from '../ioasid/errors.js';
import { SYS_PCI_DEVICES, orMissing, pciFunctionOf, unescapeProcPath } from './sysfs.js';

export type HostUse =
  /** A block device (or a partition) on the function is mounted. */
  | { readonly kind: 'mount'; readonly bdf: string; readonly device: string; readonly mountPoint: string }
  /** A block device on the function is a swap area. */
  | { readonly kind: 'swap'; readonly bdf: string; readonly device: string }
  /** A block device on the function is held by a stacked device (dm-0, md0...). */
  | { readonly kind: 'holder'; readonly bdf: string; readonly device: string; readonly holder: string }
  /** A virtio 9p or virtiofs share of the function is mounted. */
  | { readonly kind: 'share'; readonly bdf: string; readonly tag: string; readonly mountPoint: string }
  /** A network interface of the function is up. */
  | { readonly kind: 'netdev'; readonly bdf: string; readonly interface: string }
  /** A kernel console (console=) is a tty of the function. */
  | { readonly kind: 'console'; readonly bdf: string; readonly console: string }
  /** The function is the boot VGA device. */
  | { readonly kind: 'boot-vga'; readonly bdf: string }
  /** A process holds the function's VFIO device open (the kernel's unbind waits until it closes it). */
  | { readonly kind: 'vfio-open'; readonly bdf: string; readonly pid: number; readonly comm: string };

/** One line of /proc/self/mountinfo, the fields that matter here. */
export interface MountInfo {
  /** "major:minor" of the mounted file system's device (block devices: the disk's `dev`). */
  readonly dev: string;
  readonly mountPoint: string;
  readonly fstype: string;
  readonly source: string;
}

/** /proc/self/mountinfo: `id parent major:minor root mountpoint options [optional...] - fstype source superoptions`. */
export function parseMountInfo(text: string): MountInfo[] {
  const out: MountInfo[] = [];
  for (const line of text.split('\n')) {
    const f = line.split(' ');
    const sep = f.indexOf('-', 6);
    if (sep < 0 || f.length < sep + 3) continue;
    out.push({ dev: f[2]!, mountPoint: unescapeProcPath(f[4]!), fstype: f[sep + 1]!, source: unescapeProcPath(f[sep + 2]!) });
  }
  return out;
}

/** The paths of /proc/swaps (the first column under the header). */
export function parseSwaps(text: string): string[] {
  return text.split('\n').slice(1).map((l) => l.split(/\s+/)[0]!).filter(Boolean).map(unescapeProcPath);
}

/** The console names of /proc/consoles ("ttyS0", "tty0"...). */
export function parseConsoles(text: string): string[] {
  return text.split('\n').map((l) => l.split(' ')[0]!).filter(Boolean);
}

const IFF_UP = 0x1;

/** The entries of /sys/class/<cls> whose device lies under one of `bdfs`, with that BDF. */
function classDevices(binding: Binding, dir: string, bdfs: ReadonlySet<string>): { name: string; bdf: string }[] {
  const out: { name: string; bdf: string }[] = [];
  for (const name of orMissing(() => binding.readdir(dir), [])) {
    const bdf = pciFunctionOf(orMissing(() => binding.readlink(`${dir}/${name}`), ''));
    if (bdf !== null && bdfs.has(bdf)) out.push({ name, bdf });
  }
  return out;
}

/**
 * The block devices (disks and partitions) that go away with `bdfs`: those whose device lies
 * under one of them, and NVMe multipath heads (with their partitions), which hang off the virtual
 * nvme-subsystem device and reach the controllers through the links in their `multipath/`: a
 * head goes with the functions when every one of its paths lies under them (another path keeps
 * it usable).
 */
function blockDevices(binding: Binding, bdfs: ReadonlySet<string>): { name: string; bdf: string }[] {
  const dir = '/sys/class/block';
  const out: { name: string; bdf: string }[] = [];
  const heads = new Map<string, string | null>();
  for (const name of orMissing(() => binding.readdir(dir), [])) {
    const target = orMissing(() => binding.readlink(`${dir}/${name}`), '');
    const bdf = pciFunctionOf(target);
    if (bdf !== null) {
      if (bdfs.has(bdf)) out.push({ name, bdf });
      continue;
    }
    const head = /\/nvme-subsystem\/[^/]+\/([^/]+)/.exec(target)?.[1];
    if (head === undefined) continue;
    if (!heads.has(head)) heads.set(head, multipathOwner(binding, `${dir}/${head}/multipath`, bdfs));
    const owner = heads.get(head);
    if (owner) out.push({ name, bdf: owner });
  }
  return out;
}

/** The function behind an NVMe head's paths when all of them lie under `bdfs`, else null. */
function multipathOwner(binding: Binding, dir: string, bdfs: ReadonlySet<string>): string | null {
  const owners = orMissing(() => binding.readdir(dir), []).map((p) => pciFunctionOf(orMissing(() => binding.readlink(`${dir}/${p}`), '')));
  return owners.length && owners.every((o) => o !== null && bdfs.has(o)) ? owners[0]! : null;
}

/** A sysfs attribute's text without its trailing newline or NUL (9p's mount_tag ends in one). */
function attr(binding: Binding, path: string): string | null {
  return orMissing(() => binding.readText(path).replace(/[\n\0]+$/, ''), null);
}

/**
 * Everything the host uses the functions `bdfs` for, in the order of `bdfs` (empty: nothing
 * breaks when their drivers go). Reads only what the functions have: the mount table only when one
 * of them carries a block device or a share.
 */
export function hostUses(binding: Binding, bdfs: readonly string[]): HostUse[] {
  const want = new Set(bdfs);
  const out: HostUse[] = [];
  let mounts: MountInfo[] | null = null;
  const mountTable = (): MountInfo[] =>
    (mounts ??= parseMountInfo(orMissing(() => binding.readText('/proc/self/mountinfo'), '')));

  const blocks = blockDevices(binding, want);
  if (blocks.length) {
    const swaps = parseSwaps(orMissing(() => binding.readText('/proc/swaps'), ''));
    for (const { name, bdf } of blocks) {
      const dir = `/sys/class/block/${name}`;
      const dev = attr(binding, `${dir}/dev`);
      for (const m of mountTable()) {
        if (m.dev === dev || m.source === `/dev/${name}`) out.push({ kind: 'mount', bdf, device: name, mountPoint: m.mountPoint });
      }
      if (swaps.includes(`/dev/${name}`)) out.push({ kind: 'swap', bdf, device: name });
      for (const holder of orMissing(() => binding.readdir(`${dir}/holders`), [])) out.push({ kind: 'holder', bdf, device: name, holder });
    }
  }

  for (const { name, bdf } of classDevices(binding, '/sys/class/net', want)) {
    const flags = Number(attr(binding, `/sys/class/net/${name}/flags`) ?? 0);
    if (flags & IFF_UP) out.push({ kind: 'netdev', bdf, interface: name });
  }

  const shares: { tag: string; bdf: string; fstype: string }[] = [];
  for (const { name, bdf } of classDevices(binding, '/sys/bus/virtio/devices', want)) {
    const tag = attr(binding, `/sys/bus/virtio/devices/${name}/mount_tag`);
    if (tag !== null) shares.push({ tag, bdf, fstype: '9p' });
  }
  for (const n of orMissing(() => binding.readdir('/sys/fs/virtiofs'), [])) {
    const bdf = pciFunctionOf(orMissing(() => binding.readlink(`/sys/fs/virtiofs/${n}/device`), ''));
    const tag = attr(binding, `/sys/fs/virtiofs/${n}/tag`);
    if (bdf !== null && want.has(bdf) && tag !== null) shares.push({ tag, bdf, fstype: 'virtiofs' });
  }
  for (const s of shares) {
    for (const m of mountTable()) {
      if (m.fstype === s.fstype && m.source === s.tag) out.push({ kind: 'share', bdf: s.bdf, tag: s.tag, mountPoint: m.mountPoint });
    }
  }

  for (const name of parseConsoles(orMissing(() => binding.readText('/proc/consoles'), ''))) {
    const bdf = pciFunctionOf(orMissing(() => binding.readlink(`/sys/class/tty/${name}`), ''));
    if (bdf !== null && want.has(bdf)) out.push({ kind: 'console', bdf, console: name });
  }

  for (const bdf of bdfs) {
    if (attr(binding, `${SYS_PCI_DEVICES}/${bdf}/boot_vga`) === '1') out.push({ kind: 'boot-vga', bdf });
  }
  const order = new Map(bdfs.map((b, i) => [b, i]));
  return out.sort((a, b) => order.get(a.bdf)! - order.get(b.bdf)!);
}

/** What a VFIO device fd's fdinfo names (vfio_device_show_fdinfo; kernels before it print none). */
const FDINFO_SYSPATH = /^vfio-device-syspath: (.*)$/m;

/**
 * The processes (this one included) that hold function `bdf`'s VFIO device open, from their
 * /proc/<pid>/fd links, in pid order: its cdev, or a device fd (`anon_inode:[vfio-device]`, got
 * from a group) whose fdinfo names the function; where the kernel's fdinfo does not name it, a
 * device fd held with the function's group node. What cannot be read (another user's fds without
 * privilege, a process exiting meanwhile) is passed over.
 */
export function vfioOpeners(binding: Binding, bdf: string, cdev: string | null, group: number | null): HostUse[] {
  const readable = <T>(f: () => T, fallback: T): T => {
    try {
      return f();
    } catch (e) {
      if (e instanceof IommuError) return fallback;
      throw e;
    }
  };
  const groupNode = group === null ? null : `/dev/vfio/${group}`;
  const out: HostUse[] = [];
  const pids = orMissing(() => binding.readdir('/proc'), []).filter((n) => /^\d+$/.test(n)).map(Number).sort((a, b) => a - b);
  for (const pid of pids) {
    const dir = `/proc/${pid}`;
    const links = readable(() => binding.readdir(`${dir}/fd`), []).map((fd) => [fd, readable(() => binding.readlink(`${dir}/fd/${fd}`), '')] as const);
    const holds = links.some(([fd, link]) => {
      if (link === cdev) return true;
      if (link !== 'anon_inode:[vfio-device]') return false;
      const path = FDINFO_SYSPATH.exec(readable(() => binding.readText(`${dir}/fdinfo/${fd}`), ''))?.[1];
      return path === undefined ? links.some(([, l]) => l === groupNode) : path.endsWith(`/${bdf}`);
    });
    if (holds) out.push({ kind: 'vfio-open', bdf, pid, comm: readable(() => binding.readText(`${dir}/comm`).trim(), '?') });
  }
  return out;
}

/** One line a person can act on. */
export function describeHostUse(u: HostUse): string {
  switch (u.kind) {
    case 'mount': return `${u.bdf}: block device ${u.device} is mounted on ${u.mountPoint}`;
    case 'swap': return `${u.bdf}: block device ${u.device} is a swap area`;
    case 'holder': return `${u.bdf}: block device ${u.device} is held by ${u.holder}`;
    case 'share': return `${u.bdf}: virtio share "${u.tag}" is mounted on ${u.mountPoint}`;
    case 'netdev': return `${u.bdf}: network interface ${u.interface} is up`;
    case 'console': return `${u.bdf}: ${u.console} is a kernel console`;
    case 'boot-vga': return `${u.bdf}: the boot VGA device (the firmware's display, usually the console's)`;
    case 'vfio-open': return `${u.bdf}: process ${u.pid} (${u.comm}) has its VFIO device open (the kernel's unbind waits until it closes it)`;
  }
}
