/**
 * Open files of the sim's sysfs, debugfs and procfs attributes and directories (fs/kernfs/file.c,
 * fs/kernfs/dir.c, fs/libfs.c's dcache_readdir): what open(2) of a path in the SimVfs that is not
 * a device node gives. An attribute's text is made at read time, as a seq_file show() does; a
 * write hands the whole buffer to its store(). A directory lists its entries for getdents.
 */
import { ERRNO } from '../../../ioasid/errors.js';
import { O_ACCMODE, O_RDONLY, O_WRONLY } from '../../types.js';
import { kerr } from './errno.js';
import type { SimFile } from './process.js';
import type { SimAttr } from './vfs.js';

export const SEEK_SET = 0;
export const SEEK_CUR = 1;
export const SEEK_END = 2;

/** A file with a position: lseek(2) moves it. */
export interface SeekableFile extends SimFile {
  pos: number;
  lseek(offset: number, whence: number): number;
}

/** default_llseek's arithmetic for a file of `size` bytes (EINVAL for a negative result). */
function seek(f: { pos: number }, offset: number, whence: number, size: number): number {
  const base = whence === SEEK_SET ? 0 : whence === SEEK_CUR ? f.pos : whence === SEEK_END ? size : kerr(ERRNO.EINVAL);
  const pos = base + offset;
  if (pos < 0) kerr(ERRNO.EINVAL);
  return (f.pos = pos);
}

/** kernfs_fop_open's file of an attribute: FMODE_READ needs show(), FMODE_WRITE needs store() (EACCES otherwise). */
export class KernfsOpenFile implements SeekableFile {
  readonly kind = 'kernfs';
  fmodePread = true;
  pos = 0;

  constructor(
    readonly path: string,
    private readonly attr: SimAttr,
    private readonly flags: number,
  ) {
    const acc = flags & O_ACCMODE;
    if (acc !== O_WRONLY && !attr.read && !attr.bytes) kerr(ERRNO.EACCES);
    if (acc !== O_RDONLY && !attr.write) kerr(ERRNO.EACCES);
  }

  private content(): Uint8Array {
    return this.attr.bytes?.() ?? new TextEncoder().encode(this.attr.read!());
  }

  pread(buf: Uint8Array, offset: number): number {
    if ((this.flags & O_ACCMODE) === O_WRONLY) kerr(ERRNO.EBADF); // vfs_read: no FMODE_READ
    const bytes = this.content();
    if (offset >= bytes.length) return 0;
    const n = Math.min(buf.length, bytes.length - offset);
    buf.set(bytes.subarray(offset, offset + n));
    return n;
  }

  read(buf: Uint8Array): number {
    const n = this.pread(buf, this.pos);
    this.pos += n;
    return n;
  }

  /** sysfs_kf_write: the buffer goes to store() whole, whatever the offset. */
  pwrite(buf: Uint8Array, _offset: number): number {
    if ((this.flags & O_ACCMODE) === O_RDONLY) kerr(ERRNO.EBADF); // vfs_write: no FMODE_WRITE
    if (buf.length === 0) return 0;
    this.attr.write!(new TextDecoder().decode(buf));
    return buf.length;
  }

  write(buf: Uint8Array): number {
    const n = this.pwrite(buf, this.pos);
    this.pos += n;
    return n;
  }

  lseek(offset: number, whence: number): number {
    return seek(this, offset, whence, whence === SEEK_END ? this.content().length : 0);
  }

  release(): void {}
}

/** A directory entry as getdents64 gives it: its name and d_type (DT_DIR 4, DT_REG 8, DT_LNK 10, DT_CHR 2). */
export interface Dirent {
  name: string;
  type: number;
}

export const DT_CHR = 2;
export const DT_DIR = 4;
export const DT_REG = 8;
export const DT_LNK = 10;

/** An open directory: getdents64 reads its entries ('.' and '..' first) from the position on. */
export class KernfsDirFile implements SeekableFile {
  readonly kind = 'kernfs-dir';
  fmodePread = true;
  pos = 0;

  constructor(
    readonly path: string,
    private readonly list: () => Dirent[],
  ) {}

  /** Entries from the position on, at most `max`; the position moves past them. */
  getdents(max: number): Dirent[] {
    const all = [{ name: '.', type: DT_DIR }, { name: '..', type: DT_DIR }, ...this.list()];
    const out = all.slice(this.pos, this.pos + max);
    this.pos += out.length;
    return out;
  }

  read(): number {
    return kerr(ERRNO.EISDIR);
  }

  write(): number {
    return kerr(ERRNO.EBADF);
  }

  lseek(offset: number, whence: number): number {
    if (whence !== SEEK_SET && whence !== SEEK_CUR) kerr(ERRNO.EINVAL);
    return seek(this, offset, whence, 0);
  }

  release(): void {}
}
