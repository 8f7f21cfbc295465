/**
 * Naming and decoding the uAPI calls a trace records (docs/trace.md), from the one uAPI
 * description: iommufd's IOCTLS and structs (src/ioasid/uapi.ts), the container and group
 * commands (src/ioasid/vfio_uapi.ts) and the device commands (src/device/uapi.ts). VFIO reuses
 * request numbers across its fds (VFIO_IOMMU_GET_INFO is VFIO_DEVICE_GET_PCI_HOT_RESET_INFO on a
 * device), so a request is named by the kind of file its fd refers to, told by the fd's path.
 *
 * Decoded values: 8/16/32-bit fields as numbers, 64-bit fields as "0x…" strings (no precision
 * lost), `__u8 x[3]`-style arrays as arrays. Only fields wholly inside the bytes are decoded.
 */
import { VFIO_DEVICE_IOCTLS, VFIO_DEVICE_IOEVENTFD, VFIO_DEVICE_RESET } from '../device/uapi.js';
import { parseCaps } from '../device/info_caps.js';
import {
  IOCTLS, IOMMU_TEST_CMD, IOMMU_TEST_OP, iommu_test_cmd_members, struct, type IoctlDesc, type StructLayout,
} from '../ioasid/uapi.js';
import {
  VFIO_CHECK_EXTENSION, VFIO_GET_API_VERSION, VFIO_GROUP_GET_DEVICE_FD, VFIO_GROUP_GET_STATUS,
  VFIO_GROUP_SET_CONTAINER, VFIO_GROUP_UNSET_CONTAINER, VFIO_IOMMU_DIRTY_PAGES, VFIO_IOMMU_GET_INFO,
  VFIO_IOMMU_INFO_CAPS, VFIO_IOMMU_MAP_DMA, VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE, VFIO_IOMMU_TYPE1_INFO_CAP_MIGRATION,
  VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL, VFIO_IOMMU_UNMAP_DMA, VFIO_SET_IOMMU, vfio_group_status,
  vfio_iommu_type1_dirty_bitmap, vfio_iommu_type1_dma_map, vfio_iommu_type1_dma_unmap, vfio_iommu_type1_info,
} from '../ioasid/vfio_uapi.js';

/** What a file descriptor refers to, as far as its commands go. */
export type FdKind = 'iommufd' | 'container' | 'group' | 'device' | 'other';

/** The kind of file behind a path as the trace records it (an opened path, or an anon inode's name). */
export function fdKind(path: string | null | undefined): FdKind {
  if (!path) return 'other';
  if (path === '/dev/iommu') return 'iommufd';
  if (path === '/dev/vfio/vfio') return 'container';
  if (/^\/dev\/vfio\/(noiommu-)?\d+$/.test(path)) return 'group';
  if (path.startsWith('/dev/vfio/devices/') || path === VFIO_DEVICE_ANON) return 'device';
  return 'other';
}

/** readlink(/proc/self/fd/N) of the fds the kernel makes without a path. */
export const VFIO_DEVICE_ANON = 'anon_inode:[vfio-device]';
export const EVENTFD_ANON = 'anon_inode:[eventfd]';
export const memfdPath = (name: string): string => `/memfd:${name} (deleted)`;

/** How an ioctl's argument is laid out. */
export interface IoctlSpec {
  readonly name: string;
  /** 'struct': bytes of `struct`; 'int': an integer argument; 'none': no argument; 'string': a NUL-terminated name. */
  readonly arg: 'struct' | 'int' | 'none' | 'string';
  readonly struct?: StructLayout;
  /** A field of the output that is a new fd, and the anon inode it refers to. */
  readonly newFd?: { readonly field: string; readonly path: string };
}

const fromDesc = (d: IoctlDesc, newFd?: IoctlSpec['newFd']): [number, IoctlSpec] =>
  [d.request, { name: d.name, arg: 'struct', struct: d.struct, ...(newFd ? { newFd } : {}) }];

/** `int *` (VFIO_GROUP_SET_CONTAINER's argument). */
const s32Arg = struct('int', [['fd', 's32']]);

const IOMMUFD: ReadonlyMap<number, IoctlSpec> = new Map([
  ...Object.values(IOCTLS).map((d) => fromDesc(d,
    d === IOCTLS.FAULT_QUEUE_ALLOC ? { field: 'out_fault_fd', path: 'anon_inode:[iommufd-pgfault]' }
      : d === IOCTLS.VEVENTQ_ALLOC ? { field: 'out_veventq_fd', path: 'anon_inode:[iommufd-viommu-event]' } : undefined)),
  fromDesc(IOMMU_TEST_CMD),
]);

const CONTAINER: ReadonlyMap<number, IoctlSpec> = new Map<number, IoctlSpec>([
  [VFIO_GET_API_VERSION, { name: 'VFIO_GET_API_VERSION', arg: 'int' }],
  [VFIO_CHECK_EXTENSION, { name: 'VFIO_CHECK_EXTENSION', arg: 'int' }],
  [VFIO_SET_IOMMU, { name: 'VFIO_SET_IOMMU', arg: 'int' }],
  [VFIO_IOMMU_GET_INFO, { name: 'VFIO_IOMMU_GET_INFO', arg: 'struct', struct: vfio_iommu_type1_info }],
  [VFIO_IOMMU_MAP_DMA, { name: 'VFIO_IOMMU_MAP_DMA', arg: 'struct', struct: vfio_iommu_type1_dma_map }],
  [VFIO_IOMMU_UNMAP_DMA, { name: 'VFIO_IOMMU_UNMAP_DMA', arg: 'struct', struct: vfio_iommu_type1_dma_unmap }],
  [VFIO_IOMMU_DIRTY_PAGES, { name: 'VFIO_IOMMU_DIRTY_PAGES', arg: 'struct', struct: vfio_iommu_type1_dirty_bitmap }],
]);

const GROUP: ReadonlyMap<number, IoctlSpec> = new Map<number, IoctlSpec>([
  [VFIO_GROUP_GET_STATUS, { name: 'VFIO_GROUP_GET_STATUS', arg: 'struct', struct: vfio_group_status }],
  [VFIO_GROUP_SET_CONTAINER, { name: 'VFIO_GROUP_SET_CONTAINER', arg: 'struct', struct: s32Arg }],
  [VFIO_GROUP_UNSET_CONTAINER, { name: 'VFIO_GROUP_UNSET_CONTAINER', arg: 'none' }],
  [VFIO_GROUP_GET_DEVICE_FD, { name: 'VFIO_GROUP_GET_DEVICE_FD', arg: 'string', newFd: { field: '', path: VFIO_DEVICE_ANON } }],
]);

const DEVICE: ReadonlyMap<number, IoctlSpec> = new Map<number, IoctlSpec>([
  ...Object.values(VFIO_DEVICE_IOCTLS).map((d) => fromDesc(d)),
  [VFIO_DEVICE_RESET, { name: 'VFIO_DEVICE_RESET', arg: 'none' }],
  [VFIO_DEVICE_IOEVENTFD, { name: 'VFIO_DEVICE_IOEVENTFD', arg: 'struct' }],
]);

/** Every request that makes a new fd on some kind of file. */
export const FD_MAKING_REQUESTS: readonly number[] = [IOMMUFD, GROUP].flatMap((m) => [...m].filter(([, s]) => s.newFd).map(([r]) => r));

/** The container's numbers and iommufd's do not collide (100.. and 0x80..): an iommufd used as a container answers both. */
const CONTAINER_OR_IOMMUFD = new Map([...IOMMUFD, ...CONTAINER]);
const BY_KIND: Record<FdKind, ReadonlyMap<number, IoctlSpec>> = {
  iommufd: CONTAINER_OR_IOMMUFD, container: CONTAINER_OR_IOMMUFD, group: GROUP, device: DEVICE, other: IOMMUFD,
};

/** The ioctl `request` means on a file of `kind`, or null when the uAPI description has no such command there. */
export function ioctlSpec(kind: FdKind, request: number): IoctlSpec | null {
  return BY_KIND[kind].get(request) ?? null;
}

// ---- bytes -----------------------------------------------------------------------------------------

export function toHex(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex');
}

/** Bytes from an even-length hex string; null for anything else. */
export function fromHex(hex: string): Uint8Array | null {
  if (hex.length % 2 || !/^[0-9a-fA-F]*$/.test(hex)) return null;
  return new Uint8Array(Buffer.from(hex, 'hex'));
}

/** A little-endian u64 at `off` as "0x…", without a BigInt. */
export function hex64(dv: DataView, off: number): string {
  const lo = dv.getUint32(off, true);
  const hi = dv.getUint32(off + 4, true);
  return hi ? `0x${hi.toString(16)}${lo.toString(16).padStart(8, '0')}` : `0x${lo.toString(16)}`;
}

export type Decoded = { [field: string]: DecodedValue };
export type DecodedValue = number | string | readonly DecodedValue[] | Decoded;

const WIDTH = { u8: 1, u16: 2, u32: 4, s32: 4, u64: 8 } as const;

function scalar(dv: DataView, type: keyof typeof WIDTH, off: number): number | string {
  switch (type) {
    case 'u8': return dv.getUint8(off);
    case 'u16': return dv.getUint16(off, true);
    case 'u32': return dv.getUint32(off, true);
    case 's32': return dv.getInt32(off, true);
    case 'u64': return hex64(dv, off);
  }
}

/** The fields of `s` wholly inside `bytes`, in declaration order. */
export function decodeStruct(s: StructLayout, bytes: Uint8Array, into: Decoded = {}): Decoded {
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  for (const f of s.fields) {
    const w = WIDTH[f.type];
    if (f.off + w * f.count > bytes.length || f.name === '__union') continue;
    if (f.count === 1) into[f.name] = scalar(dv, f.type, f.off);
    else into[f.name] = Array.from({ length: f.count }, (_, i) => scalar(dv, f.type, f.off + i * w));
  }
  return into;
}

const TEST_OP_MEMBER: Record<number, StructLayout> = {
  [IOMMU_TEST_OP.ADD_RESERVED]: iommu_test_cmd_members.add_reserved,
  [IOMMU_TEST_OP.MOCK_DOMAIN]: iommu_test_cmd_members.mock_domain,
  [IOMMU_TEST_OP.MD_CHECK_MAP]: iommu_test_cmd_members.check_map,
  [IOMMU_TEST_OP.MD_CHECK_REFS]: iommu_test_cmd_members.check_refs,
  [IOMMU_TEST_OP.CREATE_ACCESS]: iommu_test_cmd_members.create_access,
  [IOMMU_TEST_OP.DESTROY_ACCESS_PAGES]: iommu_test_cmd_members.destroy_access_pages,
  [IOMMU_TEST_OP.ACCESS_PAGES]: iommu_test_cmd_members.access_pages,
  [IOMMU_TEST_OP.ACCESS_RW]: iommu_test_cmd_members.access_rw,
  [IOMMU_TEST_OP.SET_TEMP_MEMORY_LIMIT]: iommu_test_cmd_members.memory_limit,
  [IOMMU_TEST_OP.MOCK_DOMAIN_REPLACE]: iommu_test_cmd_members.mock_domain_replace,
  [IOMMU_TEST_OP.ACCESS_REPLACE_IOAS]: iommu_test_cmd_members.access_replace_ioas,
  [IOMMU_TEST_OP.MOCK_DOMAIN_FLAGS]: iommu_test_cmd_members.mock_domain_flags,
  [IOMMU_TEST_OP.DIRTY]: iommu_test_cmd_members.dirty,
  [IOMMU_TEST_OP.MD_CHECK_IOTLB]: iommu_test_cmd_members.check_iotlb,
  [IOMMU_TEST_OP.TRIGGER_IOPF]: iommu_test_cmd_members.trigger_iopf,
  [IOMMU_TEST_OP.DEV_CHECK_CACHE]: iommu_test_cmd_members.check_dev_cache,
  [IOMMU_TEST_OP.TRIGGER_VEVENT]: iommu_test_cmd_members.trigger_vevent,
  [IOMMU_TEST_OP.PASID_ATTACH]: iommu_test_cmd_members.pasid_attach,
  [IOMMU_TEST_OP.PASID_REPLACE]: iommu_test_cmd_members.pasid_replace,
  [IOMMU_TEST_OP.PASID_DETACH]: iommu_test_cmd_members.pasid_detach,
  [IOMMU_TEST_OP.PASID_CHECK_HWPT]: iommu_test_cmd_members.pasid_check,
  [IOMMU_TEST_OP.DMABUF_GET]: iommu_test_cmd_members.dmabuf_get,
  [IOMMU_TEST_OP.DMABUF_REVOKE]: iommu_test_cmd_members.dmabuf_revoke,
};

/** VFIO_IOMMU_GET_INFO's capability chain, each capability's own fields. */
function infoCaps(bytes: Uint8Array, d: Decoded): void {
  const capOffset = d.cap_offset;
  if (typeof d.flags !== 'number' || !(d.flags & VFIO_IOMMU_INFO_CAPS) || typeof capOffset !== 'number' || !capOffset) return;
  let caps;
  try {
    caps = parseCaps(bytes, capOffset);
  } catch {
    return; // a corrupt chain stays in the hex only
  }
  d.caps = caps.map((c) => {
    const dv = new DataView(c.bytes.buffer, c.bytes.byteOffset, c.bytes.byteLength);
    const cap: Decoded = { id: c.id, version: c.version };
    if (c.id === VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE && c.bytes.length >= 16) {
      const n = Math.min(dv.getUint32(8, true), Math.floor((c.bytes.length - 16) / 16));
      cap.iova_ranges = Array.from({ length: n }, (_, i) => ({ start: hex64(dv, 16 + 16 * i), end: hex64(dv, 24 + 16 * i) }));
    } else if (c.id === VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL && c.bytes.length >= 12) {
      cap.avail = dv.getUint32(8, true);
    } else if (c.id === VFIO_IOMMU_TYPE1_INFO_CAP_MIGRATION && c.bytes.length >= 32) {
      cap.flags = dv.getUint32(8, true);
      cap.pgsize_bitmap = hex64(dv, 16);
      cap.max_dirty_bitmap_size = hex64(dv, 24);
    }
    return cap;
  });
}

/**
 * An ioctl argument's fields (null when the command has no struct argument, or is unknown).
 * `mem` is process memory the kernel wrote through a pointer of the struct (IOMMU_IOAS_IOVA_RANGES'
 * allowed_iovas), copied when the call returned.
 */
export function decodeArg(spec: IoctlSpec | null, bytes: Uint8Array | null, mem?: Uint8Array | null): Decoded | null {
  if (!spec || !bytes) return null;
  if (spec.arg === 'string') {
    const end = bytes.indexOf(0);
    return { name: new TextDecoder().decode(end < 0 ? bytes : bytes.subarray(0, end)) };
  }
  if (spec.arg !== 'struct' || !spec.struct) return null;
  const d = decodeStruct(spec.struct, bytes);
  if (spec.struct === IOMMU_TEST_CMD.struct && typeof d.op === 'number') {
    const member = TEST_OP_MEMBER[d.op];
    if (member) decodeStruct(member, bytes, d);
  }
  if (spec.name === 'VFIO_IOMMU_GET_INFO') infoCaps(bytes, d);
  if (mem) {
    const dv = new DataView(mem.buffer, mem.byteOffset, mem.byteLength);
    d.ranges = Array.from({ length: mem.length / 16 }, (_, i) => ({ start: hex64(dv, 16 * i), last: hex64(dv, 16 * i + 8) }));
  }
  return d;
}
