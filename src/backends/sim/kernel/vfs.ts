/**
 * The sim's file system namespace: the sysfs attributes, symlinks and /dev nodes that the device
 * layer discovers devices through. The simulated machine publishes its PCI devices, IOMMU groups
 * and VFIO nodes here; the Binding's readText/readlink/readdir/open read it the way Linux's do.
 * Paths are absolute and normalised ('/sys/bus/pci/devices/0000:00:01.0/vendor').
 */
import { ERRNO } from '../../../ioasid/errors.js';
import { kerr } from './errno.js';
import { shouldFail } from './fault_inject.js';
import type { SimFile, SimProcess } from './process.js';

export interface SimAttr {
  /** The file's text at read time (sysfs attributes are computed). */
  read?(): string;
  /** A write; throws a KernelErrno to refuse (EINVAL, EBUSY...). Absent = read-only (EACCES). */
  write?(text: string): void;
}

/** A character device: open() makes a new file for the opening process. */
export type SimCharDev = (proc: SimProcess, flags: number) => SimFile;

type Node = { kind: 'attr'; attr: SimAttr } | { kind: 'link'; target: string } | { kind: 'chr'; open: SimCharDev };

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

  addCharDev(path: string, open: SimCharDev): void {
    this.add(path, { kind: 'chr', open });
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
    let p = path;
    while (p !== '/') {
      const { dir, name } = split(p);
      let set = this.dirs.get(dir);
      if (!set) this.dirs.set(dir, (set = new Set()));
      set.add(name);
      p = dir;
    }
  }

  /** Follow symlinks in every component, as path lookup does. */
  resolve(path: string, depth = 0): string {
    if (depth > 40) kerr(ERRNO.ELOOP);
    const parts = path.split('/').filter(Boolean);
    let cur = '';
    for (let i = 0; i < parts.length; i++) {
      const next = parts[i] === '..' ? split(cur || '/').dir.replace(/^\/$/, '') : `${cur}/${parts[i]}`;
      const node = this.nodes.get(next);
      if (node?.kind === 'link') {
        const target = node.target.startsWith('/') ? node.target : `${split(next).dir}/${node.target}`;
        const rest = parts.slice(i + 1).join('/');
        return this.resolve(normalise(rest ? `${target}/${rest}` : target), depth + 1);
      }
      cur = next;
    }
    return cur || '/';
  }

  readText(path: string): string {
    const node = this.nodes.get(this.resolve(path));
    if (!node) return this.dirs.has(this.resolve(path)) ? kerr(ERRNO.EISDIR) : kerr(ERRNO.ENOENT);
    if (node.kind !== 'attr' || !node.attr.read) return kerr(node.kind === 'attr' ? ERRNO.EACCES : ERRNO.EINVAL);
    return node.attr.read();
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

  open(path: string, proc: SimProcess, flags: number): SimFile {
    const node = this.nodes.get(this.resolve(path));
    if (!node) return kerr(ERRNO.ENOENT);
    if (node.kind !== 'chr') return kerr(ERRNO.ENXIO);
    if (shouldFail()) kerr(ERRNO.ENOMEM); // alloc_empty_file (fault injection)
    const f = node.open(proc, flags);
    f.fmodePread = true;
    return f;
  }
}

function split(path: string): { dir: string; name: string } {
  const i = path.lastIndexOf('/');
  return { dir: i <= 0 ? '/' : path.slice(0, i), name: path.slice(i + 1) };
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
