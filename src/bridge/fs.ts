/**
 * The path calls of a bridged program on the sim's file system (its sysfs, debugfs and the procfs
 * files it publishes): stat, readlink, access, getdents and lseek, answered from the SimVfs the
 * way the kernel's VFS would (fs/stat.c, fs/namei.c, fs/readdir.c, fs/read_write.c). open() of
 * those paths goes through the binding like a device node's (SimVfs.open gives kernfs files).
 */
import { ERRNO } from '../ioasid/errors.js';
import { kerr } from '../backends/sim/kernel/errno.js';
import { KernfsDirFile, type SeekableFile } from '../backends/sim/kernel/kernfs.js';
import type { SimFile } from '../backends/sim/kernel/process.js';
import type { SimVfs } from '../backends/sim/kernel/vfs.js';
import type { BridgeProcess } from './process.js';

const S_IFCHR = 0o020000;
const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;
const S_IFLNK = 0o120000;
const AT_SYMLINK_NOFOLLOW = 0x100;
const AT_EMPTY_PATH = 0x1000;

/** What OP.STAT answers, in the values list: st_mode, st_uid, st_gid, st_size, st_nlink, st_ino. */
export type StatValues = [number, number, number, number, number, number];

/**
 * The sim path a program's path names: a path relative to a sim directory descriptor is joined to
 * it; a process's own fail-nth (/proc/self/task/TID/fail-nth, /proc/PID/fail-nth...) is the
 * calling task's, which the sim keeps at /proc/thread-self/fail-nth. `.` and empty components go.
 */
export function simPath(proc: BridgeProcess, dirfd: number, path: string): string {
  let p = path;
  if (!p.startsWith('/')) {
    if (dirfd < 0) kerr(ERRNO.ENOENT); // the program's cwd is not in the sim
    const dir = proc.simFile(dirfd);
    if (!(dir instanceof KernfsDirFile)) kerr(ERRNO.ENOTDIR);
    p = `${dir.path}/${p}`;
  }
  p = '/' + p.split('/').filter((c) => c && c !== '.').join('/');
  const m = /^\/proc\/(self|thread-self|\d+)(\/task\/\d+)?\/fail-nth$/.exec(p);
  if (m && (m[1] === 'self' || m[1] === 'thread-self' || Number(m[1]) === proc.pid)) return '/proc/thread-self/fail-nth';
  return p;
}

/** stat(2)/lstat(2) of a sim path (generic_fillattr of sysfs, debugfs, procfs and devtmpfs inodes). */
export function statPath(vfs: SimVfs, path: string, flags: number): StatValues {
  const ino = inode(path);
  if (flags & AT_SYMLINK_NOFOLLOW) {
    let target: string | undefined;
    try {
      target = vfs.readlink(path);
    } catch {
      // not a link: stat it
    }
    if (target !== undefined) return [S_IFLNK | 0o777, 0, 0, target.length, 1, ino];
  }
  const st = vfs.stat(path);
  const real = vfs.resolve(path);
  if (st.type === 'dir') return [S_IFDIR | st.mode, st.uid, st.gid, 0, 2, inode(real)];
  if (st.type === 'chr') return [S_IFCHR | st.mode, st.uid, st.gid, 0, 1, inode(real)];
  // sysfs attributes show PAGE_SIZE; debugfs and procfs files 0
  const size = real.startsWith('/sys/') && !real.startsWith('/sys/kernel/debug/') ? 4096 : 0;
  return [S_IFREG | st.mode, st.uid, st.gid, size, 1, inode(real)];
}

/** fstat(2) of a sim descriptor opened by path; null for one without a path (anon inodes: the placeholder's own stat is right). */
export function statFile(vfs: SimVfs, proc: BridgeProcess, fd: number): StatValues | null {
  const f = proc.simFile(fd);
  const path = (f as { path?: string }).path ?? openedPaths.get(f);
  return path === undefined ? null : statPath(vfs, path, 0);
}

/** The path each sim file was opened by (a device node's file does not keep it itself). */
export const openedPaths = new WeakMap<SimFile, string>();

/** faccessat(2): the file exists (F_OK) and the caller may read, write or search it as asked. */
export function accessPath(vfs: SimVfs, proc: BridgeProcess, path: string, mode: number): void {
  const st = vfs.stat(path);
  const mask = mode & 7;
  if (mask && !proc.mayAccess(st.mode, st.uid, mask)) kerr(ERRNO.EACCES);
}

/** getdents64 of a sim directory descriptor, packed for the preload: per entry u64 d_ino, u8 d_type, the name and a NUL. */
export function getdents(proc: BridgeProcess, fd: number, size: number): Uint8Array {
  const dir = proc.simFile(fd);
  if (!(dir instanceof KernfsDirFile)) kerr(ERRNO.ENOTDIR);
  const enc = new TextEncoder();
  const start = dir.pos;
  const recs: Uint8Array[] = [];
  let used = 0;
  const entries = dir.getdents(Infinity);
  for (const e of entries) {
    const name = enc.encode(e.name);
    if (used + 10 + name.length > size) break;
    const rec = new Uint8Array(10 + name.length);
    new DataView(rec.buffer).setUint32(0, inode(`${dir.path}/${e.name}`), true);
    rec[8] = e.type;
    rec.set(name, 9); // and the NUL the array ends with
    recs.push(rec);
    used += rec.length;
  }
  dir.pos = start + recs.length; // what did not fit stays for the next call
  if (!recs.length && entries.length) kerr(ERRNO.EINVAL); // the buffer is too small for one entry
  const out = new Uint8Array(used);
  let at = 0;
  for (const r of recs) {
    out.set(r, at);
    at += r.length;
  }
  return out;
}

/** lseek(2) of a sim descriptor: files with a position move it; others answer ESPIPE as a pipe or an anon inode does. */
export function lseekFile(proc: BridgeProcess, fd: number, offset: number, whence: number): number {
  const f = proc.simFile(fd) as Partial<SeekableFile>;
  if (typeof f.lseek !== 'function') kerr(ERRNO.ESPIPE);
  return f.lseek(offset, whence);
}

/** An inode number for a sim path: stable for the path, as long as the machine lives. */
function inode(path: string): number {
  let h = 2166136261;
  for (let i = 0; i < path.length; i++) h = Math.imul(h ^ path.charCodeAt(i), 16777619);
  return (h >>> 0) | 1;
}

export { AT_EMPTY_PATH, AT_SYMLINK_NOFOLLOW };
