/**
 * The generic half of every iommufd ioctl (main.c iommufd_fops_ioctl): read the user's size,
 * check it against the table's min size, copy_struct_from_user (E2BIG on a non-zero tail,
 * zero-fill when shorter), run the handler, and let it respond with min(user, kernel) bytes.
 */
import { ERRNO } from '../../../ioasid/errors.js';
import type { IoctlDesc } from '../../../ioasid/uapi.js';
import { kerr } from '../kernel/errno.js';
import { shouldFail } from '../kernel/fault_inject.js';

const SCRATCH = 256;

export class Ucmd {
  /** The kernel-side copy of the command, as wide as the kernel's struct. */
  readonly buf = new Uint8Array(SCRATCH);
  readonly k = new DataView(this.buf.buffer);
  user: Uint8Array = this.buf;
  userSize = 0;
  desc!: IoctlDesc;

  load(desc: IoctlDesc, user: Uint8Array): void {
    const size = desc.struct.size;
    if (user.length < 4) kerr(ERRNO.EFAULT);
    const userSize = user[0]! | (user[1]! << 8) | (user[2]! << 16) | (user[3]! << 24);
    const usize = userSize >>> 0;
    if (usize < desc.minSize) kerr(ERRNO.EINVAL);
    if (user.length < Math.min(usize, size)) kerr(ERRNO.EFAULT);
    if (usize > size) {
      if (user.length < usize) kerr(ERRNO.EFAULT);
      for (let i = size; i < usize; i++) if (user[i] !== 0) kerr(ERRNO.E2BIG);
    }
    if (shouldFail()) kerr(ERRNO.EFAULT); // the copy_from_user (fault injection)
    const n = Math.min(usize, size);
    const buf = this.buf;
    for (let i = 0; i < n; i++) buf[i] = user[i]!; // structs are <= 72 bytes: no view objects
    for (let i = n; i < size; i++) buf[i] = 0;
    this.user = user;
    this.userSize = usize;
    this.desc = desc;
  }

  u16(off: number): number {
    return this.k.getUint16(off, true);
  }
  u32(off: number): number {
    return this.k.getUint32(off, true);
  }
  s32(off: number): number {
    return this.k.getInt32(off, true);
  }
  u64(off: number): bigint {
    return this.k.getBigUint64(off, true);
  }
  setU32(off: number, v: number): void {
    this.k.setUint32(off, v, true);
  }
  setU64(off: number, v: bigint): void {
    this.k.setBigUint64(off, v, true);
  }

  /** iommufd_ucmd_respond: copy the command back, truncated to the user's size (EFAULT: fault injection). */
  respond(): void {
    if (shouldFail()) kerr(ERRNO.EFAULT);
    const n = Math.min(this.userSize, this.desc.struct.size);
    const user = this.user;
    const buf = this.buf;
    for (let i = 0; i < n; i++) user[i] = buf[i]!;
  }

  /** Copy back one field only (IOMMU_OPTION writes val64 alone). */
  respondField(off: number, len: number): void {
    if (shouldFail()) kerr(ERRNO.EFAULT);
    this.user.set(this.buf.subarray(off, off + len), off);
  }
}
