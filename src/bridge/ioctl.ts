/**
 * An ioctl from a bridged program: its argument's bytes the way the kernel's handler reads them
 * (sent by the program, or copied in from its memory), the sim's ioctl, and the bytes the sim
 * changed copied back.
 *
 * How much to read follows the uAPI: an iommufd command (nr >= 0x80) starts with its u32 size, a
 * VFIO struct with its u32 argsz; a few VFIO commands take an integer, one a pointer to an int
 * (GROUP_SET_CONTAINER) and one a string (GROUP_GET_DEVICE_FD). What the program's memory holds
 * stops at the first unmapped byte, and the sim's handlers answer EFAULT where they need more,
 * as copy_from_user does.
 */
import { ERRNO, IommuError } from '../ioasid/errors.js';
import { _IO, IOMMUFD_CMD_BASE } from '../ioasid/uapi.js';
import { VFIO_DEVICE_RESET } from '../device/uapi.js';
import {
  VFIO_CHECK_EXTENSION, VFIO_GET_API_VERSION, VFIO_GROUP_GET_DEVICE_FD, VFIO_GROUP_SET_CONTAINER,
  VFIO_BASE, VFIO_GROUP_UNSET_CONTAINER, VFIO_SET_IOMMU, VFIO_TYPE,
} from '../ioasid/vfio_uapi.js';
import type { SimBinding } from '../backends/sim/index.js';
import type { RemoteMm } from './remote_mm.js';
import { MAX_PAYLOAD, type Changed } from './protocol.js';

/** VFIO_IOMMU_ENABLE / VFIO_IOMMU_DISABLE (SPAPR): _IO(VFIO_TYPE, VFIO_BASE + 15 / 16). */
const VFIO_IOMMU_ENABLE = _IO(VFIO_TYPE, VFIO_BASE + 15);
const VFIO_IOMMU_DISABLE = _IO(VFIO_TYPE, VFIO_BASE + 16);
/** The VFIO commands whose argument is an integer (or nothing). */
const VFIO_INT_ARG = new Set([
  VFIO_GET_API_VERSION, VFIO_CHECK_EXTENSION, VFIO_SET_IOMMU, VFIO_GROUP_UNSET_CONTAINER, VFIO_DEVICE_RESET, VFIO_IOMMU_ENABLE, VFIO_IOMMU_DISABLE,
]);
/** The most the bridge copies in for one struct (a capability chain, a SET_IRQS data array). */
const MAX_ARG = 1 << 20;
const PAGE_SIZE = 4096;
/** More than any VFIO struct's minsz. */
const MIN_READ = 256;
/** _IOC_SIZE: the 14-bit size field of an encoded request. */
const iocSize = (request: number): number => (request >>> 16) & 0x3fff;

/**
 * Run a program's ioctl on the sim. `first` is what the program sent with IOCTL_ARG: the bytes of
 * the argument the handler reads first (firstRead), already read by the program; then the bytes
 * the handler changes in them go back to the program in `out.changed`, for it to copy. Otherwise
 * (IOCTL, or an argument larger than its first read) the server reads the argument and writes
 * back the changed bytes itself.
 */
export function bridgeIoctl(b: SimBinding, mm: RemoteMm, fd: number, request: number, arg: number, first?: Uint8Array, out?: { changed: Changed | null }): number {
  const type = (request >>> 8) & 0xff;
  const nr = request & 0xff;
  if (type === VFIO_TYPE && nr < IOMMUFD_CMD_BASE && VFIO_INT_ARG.has(request)) return b.ioctlInt(fd, request, arg);
  const read = firstRead(request);
  if (first && first.length > read) throw new IommuError(ERRNO.EPROTO, 'ioctl');
  const buf = request === VFIO_GROUP_GET_DEVICE_FD ? cString(mm, arg) : argBytes(mm, arg, read, type === VFIO_TYPE, first);
  const before = snapshot(buf);
  let ret: number;
  try {
    ret = b.ioctl(fd, request, buf);
  } finally {
    if (buf === first) out!.changed = changedSpan(before, buf);
    else copyBack(mm, arg, before, buf);
  }
  return ret;
}

/**
 * How many bytes of an ioctl's argument its handler reads first: what a program sends with
 * IOCTL_ARG (ioctl_arg.h's rules, and FIRST_READ_SIZED in the preload library). 0 for the
 * integer-argument commands and for VFIO_GROUP_GET_DEVICE_FD's string, which never travel.
 */
function firstRead(request: number): number {
  const type = (request >>> 8) & 0xff;
  if (type !== VFIO_TYPE) return iocSize(request);
  if (request === VFIO_GROUP_SET_CONTAINER) return 4;
  if (request === VFIO_GROUP_GET_DEVICE_FD || ((request & 0xff) < IOMMUFD_CMD_BASE && VFIO_INT_ARG.has(request))) return 0;
  return MIN_READ;
}

/**
 * The argument's bytes as the handler will read them: its first read (`first`, the program's, or
 * read here), grown to the struct's own size where it is a VFIO or iommufd struct (`sized`) whose
 * first u32, VFIO's argsz or iommufd's size, asks for more. A VFIO handler copies its minsz in
 * before it looks at argsz, so at least MIN_READ bytes are read (they stop at a fault anyway); one
 * read covers the common case.
 */
function argBytes(mm: RemoteMm, arg: number, read: number, sized: boolean, first: Uint8Array | undefined): Uint8Array {
  const head = first ?? prefix(mm, arg, read);
  if (!sized || read !== MIN_READ || head.length < MIN_READ) return head;
  const size = Math.min(new DataView(head.buffer, head.byteOffset).getUint32(0, true), MAX_ARG);
  return size <= MIN_READ ? head : prefix(mm, arg, size);
}

function prefix(mm: RemoteMm, addr: number, n: number): Uint8Array {
  const buf = new Uint8Array(n);
  return buf.subarray(0, mm.readPrefix(addr, buf));
}

/** strndup_user(arg, PAGE_SIZE) as the handler reads it: up to and including the NUL. */
function cString(mm: RemoteMm, addr: number): Uint8Array {
  const buf = prefix(mm, addr, PAGE_SIZE);
  const nul = buf.indexOf(0);
  return nul >= 0 ? buf.subarray(0, nul + 1) : buf;
}

/** The bytes before the call, to compare with after (a first read's fit one reused buffer: one call at a time). */
const kept = new Uint8Array(MAX_PAYLOAD);
function snapshot(buf: Uint8Array): Uint8Array {
  if (buf.length > kept.length) return buf.slice();
  const b = kept.subarray(0, buf.length);
  b.set(buf);
  return b;
}

/** The span of bytes the handler changed (what copy_to_user wrote), or null. */
function changedSpan(before: Uint8Array, after: Uint8Array): Changed | null {
  let first = 0;
  while (first < after.length && before[first] === after[first]) first++;
  if (first === after.length) return null;
  let last = after.length - 1;
  while (before[last] === after[last]) last--;
  return { offset: first, bytes: after.subarray(first, last + 1) };
}

/** copy_to_user of what the handler wrote: the span of changed bytes, EFAULT if it cannot land. */
function copyBack(mm: RemoteMm, addr: number, before: Uint8Array, after: Uint8Array): void {
  const c = changedSpan(before, after);
  if (c && !mm.writeRaw(addr + c.offset, c.bytes)) throw new IommuError(ERRNO.EFAULT, 'ioctl');
}
