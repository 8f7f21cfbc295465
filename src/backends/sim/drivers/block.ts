/**
 * What the host's block layer does when a driver adds a disk (block/genhd.c add_disk and the
 * partition scan), at Linux's sysfs paths: the disk and its partitions with `dev`, `size`,
 * `holders/` (partitions: `partition`, `start`), and the /sys/class/block, /sys/dev/block and
 * /sys/block links. Shared by the host drivers in this folder, with the ida they number things by.
 */
import type { SimVfs } from '../kernel/vfs.js';

/** The lowest number not in `used` (ida_alloc). */
export function lowestFree(used: ReadonlySet<number>): number {
  let i = 0;
  while (used.has(i)) i++;
  return i;
}

/** A disk as the block layer adds it (add_disk): where, what, how many minors it reserves (0: extended devt). */
export interface DiskDesc {
  /** The disk's device directory (…/block/vda, …/nvme-subsys0/nvme0n1). */
  readonly dir: string;
  readonly name: string;
  /** 512-byte sectors. */
  readonly sectors: number;
  /** Partition sizes in sectors, in table order. */
  readonly partitions: readonly number[];
  /** The minors the disk reserves (virtio_blk 16; 0: each device takes an extended devt). */
  readonly minors: number;
}

/** A partition's name: the disk's, then "p" if that ends in a digit, then the number (disk_name). */
const partName = (disk: string, n: number): string => `${disk}${/\d$/.test(disk) ? 'p' : ''}${n}`;

/**
 * add_disk and the partition scan: the disk and its partitions with `dev`, `size`, `holders/`
 * (and `partition`, `start`), and their /sys/class/block, /sys/dev/block and /sys/block links.
 * `devt(n)` is partition n's "major:minor" (0: the disk). Every link goes to `published`.
 */
export function addDisk(vfs: SimVfs, d: DiskDesc, devt: (part: number) => string, published: string[]): void {
  const ro = (path: string, text: string): void => vfs.addAttr(path, { read: () => text });
  const blockDev = (path: string, name: string, part: number, size: number): void => {
    const dev = devt(part);
    ro(`${path}/dev`, `${dev}\n`);
    ro(`${path}/size`, `${size}\n`);
    vfs.addDir(`${path}/holders`);
    vfs.addRelativeLink(`/sys/class/block/${name}`, path);
    vfs.addRelativeLink(`/sys/dev/block/${dev}`, path);
    published.push(`/sys/class/block/${name}`, `/sys/dev/block/${dev}`);
  };
  blockDev(d.dir, d.name, 0, d.sectors);
  ro(`${d.dir}/range`, `${d.minors}\n`);
  vfs.addDir(`${d.dir}/slaves`);
  vfs.addRelativeLink(`/sys/block/${d.name}`, d.dir);
  published.push(`/sys/block/${d.name}`);
  let start = 2048;
  d.partitions.forEach((size, i) => {
    const pname = partName(d.name, i + 1);
    blockDev(`${d.dir}/${pname}`, pname, i + 1, size);
    ro(`${d.dir}/${pname}/partition`, `${i + 1}\n`);
    ro(`${d.dir}/${pname}/start`, `${start}\n`);
    start += size;
  });
}

