/**
 * The sim's file system namespace: the sysfs attributes, symlinks and /dev nodes that the device
 * layer discovers devices through. The simulated machine publishes its PCI devices, IOMMU groups
 * and VFIO nodes here; the Binding's readText/readlink/readdir/open read it the way Linux's do.
 * Paths are absolute and normalised ('/sys/bus/pci/devices/0000:00:01.0/vendor').
 */
import { ERRNO } from '../../../ioasid/errors.js';
import { kerr } from './errno.js';
import { shouldFailSlab } from './fault_inject.js';
import { O_ACCMODE, O_RDONLY } from '../../types.js';
import { DT_CHR, DT_DIR, DT_LNK, DT_REG, KernfsDirFile, KernfsOpenFile, type Dirent } from './kernfs.js';
import type { SimFile, SimProcess } from './process.js';

export interface SimAttr {
  /** The file's text at read time (sysfs attributes are computed). */
  read?(): string;
  /** The file's bytes, for a binary file (/proc/config.gz); absent: the UTF-8 of read(). */
  bytes?(): Uint8Array;
  /** A write; throws a KernelErrno to refuse (EINVAL, EBUSY...). Absent = read-only (EACCES). */
  write?(text: string): void;
}

/** A character device: open() makes a new file for the opening process. */
export type SimCharDev = (proc: SimProcess, flags: number) => SimFile;

type Node = { kind: 'attr'; attr: SimAttr } | { kind: 'link'; target: string } | { kind: 'chr'; open: SimCharDev; mode: number };

/** What stat(2) tells of a node (after following links): its type, permission bits and owner. */
export interface SimStat {
  type: 'file' | 'dir' | 'chr';
  /** Permission bits (0o660). */
  mode: number;
  uid: number;
  gid: number;
}

export class SimVfs {
  private readonly nodes = new Map<string, Node>();
  /** Directory path -> child names (kept as the union of every node's parents). */
  private readonly dirs = new Map<string, Set<string>>([['/', new Set()]]);

  addAttr(path: string, attr: SimAttr): void {
    this.add(path, { kind: 'attr', attr });
  }

  addLink(path: string, target: string): void {
    this.add(path, { kind: 'link', target });
  }

  /** A symlink at `path` to the absolute `target`, written relative from their common ancestor, as kernfs does. */
  addRelativeLink(path: string, target: string): void {
    const from = split(path).dir.split('/').filter(Boolean);
    const to = target.split('/').filter(Boolean);
    let i = 0;
    while (i < from.length && i < to.length && from[i] === to[i]) i++;
    this.addLink(path, '../'.repeat(from.length - i) + to.slice(i).join('/'));
  }

  /** An empty directory (sysfs has them: a disk's `holders/`); adding a node below keeps it. */
  addDir(path: string): void {
    if (!this.dirs.has(path)) this.dirs.set(path, new Set());
    this.linkParents(path);
  }

  /** A device node; `mode` as devtmpfs creates it (misc devices name theirs, the rest are 0600), owned by root. */
  addCharDev(path: string, open: SimCharDev, mode = 0o600): void {
    this.add(path, { kind: 'chr', open, mode });
  }

  /** Remove a node, or a whole directory tree. */
  remove(path: string): void {
    for (const p of [...this.nodes.keys()]) if (p === path || p.startsWith(path + '/')) this.nodes.delete(p);
    for (const d of [...this.dirs.keys()]) if (d === path || d.startsWith(path + '/')) this.dirs.delete(d);
    const { dir, name } = split(path);
    this.dirs.get(dir)?.delete(name);
  }

  private add(path: string, node: Node): void {
    this.nodes.set(path, node);
    this.linkParents(path);
  }

  /**
   * Make every directory above `path` list the next component. A directory that already lists it
   * is itself listed all the way up (remove() takes a directory out with everything below it).
   * (Called for each of the ~360 nodes a machine publishes at boot: no object per level.)
   */
  private linkParents(path: string): void {
    let p = path;
    while (p !== '/') {
      const i = p.lastIndexOf('/');
      const dir = i <= 0 ? '/' : p.slice(0, i);
      const name = p.slice(i + 1);
      let set = this.dirs.get(dir);
      if (!set) this.dirs.set(dir, (set = new Set()));
      else if (set.has(name)) return;
      set.add(name);
      p = dir;
    }
  }

  /** Follow symlinks in every component, as path lookup does. */
  resolve(path: string, depth = 0): string {
    if (depth > 40) kerr(ERRNO.ELOOP);
    return isNormal(path) ? this.resolveNormal(path, depth) : this.resolveParts(path, depth);
  }

  /**
   * resolve() of a normalised absolute path (what the device layer and the machine use): each
   * prefix is a slice of it, looked up as is.
   */
  private resolveNormal(path: string, depth: number): string {
    for (let end = path.indexOf('/', 1); ; end = path.indexOf('/', end + 1)) {
      const prefix = end < 0 ? path : path.slice(0, end);
      const node = this.nodes.get(prefix);
      if (node?.kind === 'link') return this.follow(prefix, node.target, end < 0 ? '' : path.slice(end + 1), depth);
      if (end < 0) return path;
    }
  }

  /** resolve() of any other path: '..' steps up from what was resolved so far, '.' and empty components are skipped. */
  private resolveParts(path: string, depth: number): string {
    const parts = path.split('/').filter(Boolean);
    let cur = '';
    for (let i = 0; i < parts.length; i++) {
      if (parts[i] === '.') continue;
      const next = parts[i] === '..' ? split(cur || '/').dir.replace(/^\/$/, '') : `${cur}/${parts[i]}`;
      const node = this.nodes.get(next);
      if (node?.kind === 'link') return this.follow(next, node.target, parts.slice(i + 1).join('/'), depth);
      cur = next;
    }
    return cur || '/';
  }

  /** The link at `at` (to `target`) followed, then the `rest` of the path after it. */
  private follow(at: string, target: string, rest: string, depth: number): string {
    const to = target.startsWith('/') ? target : `${split(at).dir}/${target}`;
    return this.resolve(normalise(rest ? `${to}/${rest}` : to), depth + 1);
  }

  readText(path: string): string {
    const node = this.nodes.get(this.resolve(path));
    if (!node) return this.dirs.has(this.resolve(path)) ? kerr(ERRNO.EISDIR) : kerr(ERRNO.ENOENT);
    if (node.kind === 'attr' && !node.attr.read && node.attr.bytes) return new TextDecoder().decode(node.attr.bytes());
    if (node.kind !== 'attr' || !node.attr.read) return kerr(node.kind === 'attr' ? ERRNO.EACCES : ERRNO.EINVAL);
    return node.attr.read();
  }

  /** The file's bytes (a binary file's own, else the UTF-8 of its text). */
  readBytes(path: string): Uint8Array {
    const node = this.nodes.get(this.resolve(path));
    if (node?.kind === 'attr' && node.attr.bytes) return node.attr.bytes();
    return new TextEncoder().encode(this.readText(path));
  }

  /** stat(2): attributes are 0444/0200/0644 by their read and write hooks, directories 0755. */
  stat(path: string): SimStat {
    const real = this.resolve(path);
    const node = this.nodes.get(real);
    if (!node) return this.dirs.has(real) ? { type: 'dir', mode: 0o755, uid: 0, gid: 0 } : kerr(ERRNO.ENOENT);
    if (node.kind === 'chr') return { type: 'chr', mode: node.mode, uid: 0, gid: 0 };
    if (node.kind !== 'attr') return kerr(ERRNO.ENOENT); // a link resolve() could not follow
    const { read, bytes, write } = node.attr;
    return { type: 'file', mode: (read || bytes ? 0o444 : 0) | (write ? 0o200 : 0), uid: 0, gid: 0 };
  }

  writeText(path: string, text: string): void {
    const node = this.nodes.get(this.resolve(path));
    if (!node) kerr(ERRNO.ENOENT);
    if (node.kind !== 'attr' || !node.attr.write) kerr(ERRNO.EACCES);
    node.attr.write(text);
  }

  readlink(path: string): string {
    const { dir, name } = split(path);
    const real = `${this.resolve(dir).replace(/\/$/, '')}/${name}`;
    const node = this.nodes.get(real);
    if (!node) kerr(ERRNO.ENOENT);
    if (node.kind !== 'link') kerr(ERRNO.EINVAL);
    return node.target;
  }

  readdir(path: string): string[] {
    const real = this.resolve(path);
    const set = this.dirs.get(real);
    if (!set) return this.nodes.has(real) ? kerr(ERRNO.ENOTDIR) : kerr(ERRNO.ENOENT);
    return [...set].sort();
  }

  /** getdents64's view of a directory: each entry with its d_type, sorted by name. */
  entries(path: string): Dirent[] {
    const real = this.resolve(path);
    return this.readdir(real).map((name) => {
      const child = `${real === '/' ? '' : real}/${name}`;
      const node = this.nodes.get(child);
      const type = !node ? DT_DIR : node.kind === 'link' ? DT_LNK : node.kind === 'chr' ? DT_CHR : DT_REG;
      return { name, type };
    });
  }

  /**
   * open(2): a device node opens its driver's file; an attribute or a directory opens as kernfs
   * does (kernfs.ts), with may_open's checks first: EISDIR for a directory opened to write,
   * ENOTDIR for O_DIRECTORY on a file.
   */
  open(path: string, proc: SimProcess, flags: number): SimFile {
    const real = this.resolve(path);
    const node = this.nodes.get(real);
    if (!node) {
      if (!this.dirs.has(real)) return kerr(ERRNO.ENOENT);
      if ((flags & O_ACCMODE) !== O_RDONLY) return kerr(ERRNO.EISDIR);
      if (!proc.mayAccess(0o555, 0, 4)) return kerr(ERRNO.EACCES);
      if (shouldFailSlab()) kerr(ERRNO.ENOMEM); // alloc_empty_file
      return new KernfsDirFile(real, () => this.entries(real));
    }
    if (node.kind === 'link') return kerr(ERRNO.ENOENT); // a dangling link
    if (flags & O_DIRECTORY) return kerr(ERRNO.ENOTDIR);
    const mode = node.kind === 'chr' ? node.mode : this.stat(real).mode;
    if (!proc.mayAccess(mode, 0, ACC_MODE[flags & 3]!)) return kerr(ERRNO.EACCES); // may_open
    if (shouldFailSlab()) kerr(ERRNO.ENOMEM); // alloc_empty_file (fault injection)
    if (node.kind === 'attr') return new KernfsOpenFile(real, node.attr, flags);
    const f = node.open(proc, flags);
    f.fmodePread = true;
    return f;
  }
}

/** O_DIRECTORY: open(2) fails with ENOTDIR unless the path is a directory. */
const O_DIRECTORY = 0o200000;

/** ACC_MODE: the MAY_READ (4) / MAY_WRITE (2) bits an open's O_ACCMODE asks for. */
const ACC_MODE = [4, 2, 6, 6];

function split(path: string): { dir: string; name: string } {
  const i = path.lastIndexOf('/');
  return { dir: i <= 0 ? '/' : path.slice(0, i), name: path.slice(i + 1) };
}

/** Whether `path` is absolute with no empty, '.' or '..' component (nor '.' starting one), and no trailing '/'. */
function isNormal(path: string): boolean {
  return path.charCodeAt(0) === 0x2f && !path.includes('//') && !path.includes('/.') && (path.length === 1 || !path.endsWith('/'));
}

function normalise(path: string): string {
  const out: string[] = [];
  for (const p of path.split('/')) {
    if (!p || p === '.') continue;
    if (p === '..') out.pop();
    else out.push(p);
  }
  return '/' + out.join('/');
}
