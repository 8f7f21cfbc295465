/**
 * The iommufd uAPI (include/uapi/linux/iommufd.h, Linux 7.3) as data: every ioctl's number, struct
 * layout, size and minimum accepted size, and the flag values. The linux codec encodes from it, the
 * sim dispatcher validates with it (size / min size / E2BIG are generic, as in the kernel's
 * iommufd_ioctl_ops table), and test/layout.test.ts checks every offset against gcc and the real header.
 *
 * Offsets follow the C rules for these structs: every field at its natural alignment (all 64-bit
 * fields are __aligned_u64), the struct padded to its largest alignment.
 */

export type FieldType = 'u8' | 'u16' | 'u32' | 's32' | 'u64';

export interface Field {
  readonly name: string;
  readonly type: FieldType;
  readonly off: number;
  /** Array length for `__u8 __reserved[3]`-style fields (1 for scalars). */
  readonly count: number;
}

export interface StructLayout {
  /** The C struct name, e.g. 'iommu_ioas_map'. */
  readonly name: string;
  readonly size: number;
  readonly fields: readonly Field[];
  /** Offset of each field by name. */
  readonly off: Readonly<Record<string, number>>;
}

const WIDTH: Record<FieldType, number> = { u8: 1, u16: 2, u32: 4, s32: 4, u64: 8 };

/** One field of a C struct: its name, its type and, for an array, its element count. */
export type FieldSpec = readonly [name: string, type: FieldType, count?: number];

/** Lay out a C struct from its fields in declaration order. `base` starts a union member. */
export function struct(name: string, specs: readonly FieldSpec[], base = 0): StructLayout {
  let off = base;
  let align = 1;
  const fields: Field[] = [];
  for (const [fname, type, count = 1] of specs) {
    const w = WIDTH[type];
    off = Math.ceil(off / w) * w;
    fields.push({ name: fname, type, off, count });
    off += w * count;
    align = Math.max(align, w);
  }
  const size = Math.ceil(off / align) * align;
  return { name, size, fields, off: Object.fromEntries(fields.map((f) => [f.name, f.off])) };
}

/** Byte offset just past a field: the kernel's offsetofend(). */
export function offsetofend(s: StructLayout, field: string): number {
  const f = s.fields.find((x) => x.name === field);
  if (!f) throw new Error(`${s.name} has no field ${field}`);
  return f.off + WIDTH[f.type] * f.count;
}

export const IOMMUFD_TYPE = 0x3b; // ';'
export const IOMMUFD_CMD_BASE = 0x80;
/** _IO(type, nr): no size, no direction. */
export const _IO = (type: number, nr: number): number => (type << 8) | nr;

export interface IoctlDesc {
  readonly name: string;
  readonly nr: number;
  readonly request: number;
  readonly struct: StructLayout;
  /** The kernel's min_size: offsetofend(struct, last mandatory field). */
  readonly minSize: number;
  readonly last: string;
}

function ioctl(name: string, nr: number, s: StructLayout, last: string): IoctlDesc {
  return { name, nr, request: _IO(IOMMUFD_TYPE, nr), struct: s, minSize: offsetofend(s, last), last };
}

// ---- structs -------------------------------------------------------------------------------------

export const iommu_destroy = struct('iommu_destroy', [['size', 'u32'], ['id', 'u32']]);
export const iommu_ioas_alloc = struct('iommu_ioas_alloc', [['size', 'u32'], ['flags', 'u32'], ['out_ioas_id', 'u32']]);
export const iommu_iova_range = struct('iommu_iova_range', [['start', 'u64'], ['last', 'u64']]);
export const iommu_ioas_iova_ranges = struct('iommu_ioas_iova_ranges', [
  ['size', 'u32'], ['ioas_id', 'u32'], ['num_iovas', 'u32'], ['__reserved', 'u32'],
  ['allowed_iovas', 'u64'], ['out_iova_alignment', 'u64'],
]);
export const iommu_ioas_allow_iovas = struct('iommu_ioas_allow_iovas', [
  ['size', 'u32'], ['ioas_id', 'u32'], ['num_iovas', 'u32'], ['__reserved', 'u32'], ['allowed_iovas', 'u64'],
]);
export const iommu_ioas_map = struct('iommu_ioas_map', [
  ['size', 'u32'], ['flags', 'u32'], ['ioas_id', 'u32'], ['__reserved', 'u32'],
  ['user_va', 'u64'], ['length', 'u64'], ['iova', 'u64'],
]);
export const iommu_ioas_noiommu_get_pa = struct('iommu_ioas_noiommu_get_pa', [
  ['size', 'u32'], ['flags', 'u32'], ['ioas_id', 'u32'], ['__reserved', 'u32'],
  ['iova', 'u64'], ['length', 'u64'], ['out_phys', 'u64'],
]);
export const iommu_ioas_map_file = struct('iommu_ioas_map_file', [
  ['size', 'u32'], ['flags', 'u32'], ['ioas_id', 'u32'], ['fd', 's32'],
  ['start', 'u64'], ['length', 'u64'], ['iova', 'u64'],
]);
export const iommu_ioas_copy = struct('iommu_ioas_copy', [
  ['size', 'u32'], ['flags', 'u32'], ['dst_ioas_id', 'u32'], ['src_ioas_id', 'u32'],
  ['length', 'u64'], ['dst_iova', 'u64'], ['src_iova', 'u64'],
]);
export const iommu_ioas_unmap = struct('iommu_ioas_unmap', [
  ['size', 'u32'], ['ioas_id', 'u32'], ['iova', 'u64'], ['length', 'u64'],
]);
export const iommu_option = struct('iommu_option', [
  ['size', 'u32'], ['option_id', 'u32'], ['op', 'u16'], ['__reserved', 'u16'], ['object_id', 'u32'], ['val64', 'u64'],
]);
export const iommu_vfio_ioas = struct('iommu_vfio_ioas', [
  ['size', 'u32'], ['ioas_id', 'u32'], ['op', 'u16'], ['__reserved', 'u16'],
]);
export const iommu_hwpt_alloc = struct('iommu_hwpt_alloc', [
  ['size', 'u32'], ['flags', 'u32'], ['dev_id', 'u32'], ['pt_id', 'u32'], ['out_hwpt_id', 'u32'],
  ['__reserved', 'u32'], ['data_type', 'u32'], ['data_len', 'u32'], ['data_uptr', 'u64'],
  ['fault_id', 'u32'], ['__reserved2', 'u32'],
]);
export const iommu_hw_info = struct('iommu_hw_info', [
  ['size', 'u32'], ['flags', 'u32'], ['dev_id', 'u32'], ['data_len', 'u32'], ['data_uptr', 'u64'],
  ['out_data_type', 'u32'], ['out_max_pasid_log2', 'u8'], ['__reserved', 'u8', 3], ['out_capabilities', 'u64'],
]);
export const iommu_hwpt_set_dirty_tracking = struct('iommu_hwpt_set_dirty_tracking', [
  ['size', 'u32'], ['flags', 'u32'], ['hwpt_id', 'u32'], ['__reserved', 'u32'],
]);
export const iommu_hwpt_get_dirty_bitmap = struct('iommu_hwpt_get_dirty_bitmap', [
  ['size', 'u32'], ['hwpt_id', 'u32'], ['flags', 'u32'], ['__reserved', 'u32'],
  ['iova', 'u64'], ['length', 'u64'], ['page_size', 'u64'], ['data', 'u64'],
]);
export const iommu_hwpt_invalidate = struct('iommu_hwpt_invalidate', [
  ['size', 'u32'], ['hwpt_id', 'u32'], ['data_uptr', 'u64'], ['data_type', 'u32'], ['entry_len', 'u32'],
  ['entry_num', 'u32'], ['__reserved', 'u32'],
]);
export const iommu_fault_alloc = struct('iommu_fault_alloc', [
  ['size', 'u32'], ['flags', 'u32'], ['out_fault_id', 'u32'], ['out_fault_fd', 'u32'],
]);
export const iommu_viommu_alloc = struct('iommu_viommu_alloc', [
  ['size', 'u32'], ['flags', 'u32'], ['type', 'u32'], ['dev_id', 'u32'], ['hwpt_id', 'u32'],
  ['out_viommu_id', 'u32'], ['data_len', 'u32'], ['__reserved', 'u32'], ['data_uptr', 'u64'],
]);
export const iommu_vdevice_alloc = struct('iommu_vdevice_alloc', [
  ['size', 'u32'], ['viommu_id', 'u32'], ['dev_id', 'u32'], ['out_vdevice_id', 'u32'], ['virt_id', 'u64'],
]);
export const iommu_ioas_change_process = struct('iommu_ioas_change_process', [['size', 'u32'], ['__reserved', 'u32']]);
export const iommu_veventq_alloc = struct('iommu_veventq_alloc', [
  ['size', 'u32'], ['flags', 'u32'], ['viommu_id', 'u32'], ['type', 'u32'], ['veventq_depth', 'u32'],
  ['out_veventq_id', 'u32'], ['out_veventq_fd', 'u32'], ['__reserved', 'u32'],
]);
export const iommu_hw_queue_alloc = struct('iommu_hw_queue_alloc', [
  ['size', 'u32'], ['flags', 'u32'], ['viommu_id', 'u32'], ['type', 'u32'], ['index', 'u32'],
  ['out_hw_queue_id', 'u32'], ['nesting_parent_iova', 'u64'], ['length', 'u64'],
]);

// ---- the ioctl table (main.c iommufd_ioctl_ops[], same last fields) ------------------------------

export const IOCTLS = {
  DESTROY: ioctl('IOMMU_DESTROY', 0x80, iommu_destroy, 'id'),
  IOAS_ALLOC: ioctl('IOMMU_IOAS_ALLOC', 0x81, iommu_ioas_alloc, 'out_ioas_id'),
  IOAS_ALLOW_IOVAS: ioctl('IOMMU_IOAS_ALLOW_IOVAS', 0x82, iommu_ioas_allow_iovas, 'allowed_iovas'),
  IOAS_COPY: ioctl('IOMMU_IOAS_COPY', 0x83, iommu_ioas_copy, 'src_iova'),
  IOAS_IOVA_RANGES: ioctl('IOMMU_IOAS_IOVA_RANGES', 0x84, iommu_ioas_iova_ranges, 'out_iova_alignment'),
  IOAS_MAP: ioctl('IOMMU_IOAS_MAP', 0x85, iommu_ioas_map, 'iova'),
  IOAS_UNMAP: ioctl('IOMMU_IOAS_UNMAP', 0x86, iommu_ioas_unmap, 'length'),
  OPTION: ioctl('IOMMU_OPTION', 0x87, iommu_option, 'val64'),
  VFIO_IOAS: ioctl('IOMMU_VFIO_IOAS', 0x88, iommu_vfio_ioas, '__reserved'),
  HWPT_ALLOC: ioctl('IOMMU_HWPT_ALLOC', 0x89, iommu_hwpt_alloc, '__reserved'),
  GET_HW_INFO: ioctl('IOMMU_GET_HW_INFO', 0x8a, iommu_hw_info, '__reserved'),
  HWPT_SET_DIRTY_TRACKING: ioctl('IOMMU_HWPT_SET_DIRTY_TRACKING', 0x8b, iommu_hwpt_set_dirty_tracking, '__reserved'),
  HWPT_GET_DIRTY_BITMAP: ioctl('IOMMU_HWPT_GET_DIRTY_BITMAP', 0x8c, iommu_hwpt_get_dirty_bitmap, 'data'),
  HWPT_INVALIDATE: ioctl('IOMMU_HWPT_INVALIDATE', 0x8d, iommu_hwpt_invalidate, '__reserved'),
  FAULT_QUEUE_ALLOC: ioctl('IOMMU_FAULT_QUEUE_ALLOC', 0x8e, iommu_fault_alloc, 'out_fault_fd'),
  IOAS_MAP_FILE: ioctl('IOMMU_IOAS_MAP_FILE', 0x8f, iommu_ioas_map_file, 'iova'),
  VIOMMU_ALLOC: ioctl('IOMMU_VIOMMU_ALLOC', 0x90, iommu_viommu_alloc, 'out_viommu_id'),
  VDEVICE_ALLOC: ioctl('IOMMU_VDEVICE_ALLOC', 0x91, iommu_vdevice_alloc, 'virt_id'),
  IOAS_CHANGE_PROCESS: ioctl('IOMMU_IOAS_CHANGE_PROCESS', 0x92, iommu_ioas_change_process, '__reserved'),
  VEVENTQ_ALLOC: ioctl('IOMMU_VEVENTQ_ALLOC', 0x93, iommu_veventq_alloc, 'out_veventq_fd'),
  HW_QUEUE_ALLOC: ioctl('IOMMU_HW_QUEUE_ALLOC', 0x94, iommu_hw_queue_alloc, 'length'),
  IOAS_NOIOMMU_GET_PA: ioctl('IOMMU_IOAS_NOIOMMU_GET_PA', 0x95, iommu_ioas_noiommu_get_pa, 'out_phys'),
} as const satisfies Record<string, IoctlDesc>;

export type IoctlName = keyof typeof IOCTLS;

/** Look up an ioctl by request number (only iommufd's own 0x80.. range). */
export const IOCTL_BY_REQUEST: ReadonlyMap<number, IoctlDesc> = new Map(
  Object.values(IOCTLS).map((d) => [d.request, d]),
);

// ---- flag and enum values ------------------------------------------------------------------------

export const IOMMU_IOAS_MAP_FIXED_IOVA = 1 << 0;
export const IOMMU_IOAS_MAP_WRITEABLE = 1 << 1;
export const IOMMU_IOAS_MAP_READABLE = 1 << 2;

export const IOMMU_OPTION_RLIMIT_MODE = 0;
export const IOMMU_OPTION_HUGE_PAGES = 1;
export const IOMMU_OPTION_OP_SET = 0;
export const IOMMU_OPTION_OP_GET = 1;

export const IOMMU_VFIO_IOAS_GET = 0;
export const IOMMU_VFIO_IOAS_SET = 1;
export const IOMMU_VFIO_IOAS_CLEAR = 2;

export const IOMMU_HWPT_ALLOC_NEST_PARENT = 1 << 0;
export const IOMMU_HWPT_ALLOC_DIRTY_TRACKING = 1 << 1;
export const IOMMU_HWPT_FAULT_ID_VALID = 1 << 2;
export const IOMMU_HWPT_ALLOC_PASID = 1 << 3;

export const U64_MAX = 0xffff_ffff_ffff_ffffn;
/** ULONG_MAX on the 64-bit ABIs this library supports. */
export const ULONG_MAX = U64_MAX;

// ---- the selftest command (drivers/iommu/iommufd/iommufd_test.h, CONFIG_IOMMUFD_TEST only) -------

export const IOMMU_TEST_OP = {
  ADD_RESERVED: 1, MOCK_DOMAIN: 2, MD_CHECK_MAP: 3, MD_CHECK_REFS: 4, CREATE_ACCESS: 5,
  DESTROY_ACCESS_PAGES: 6, ACCESS_PAGES: 7, ACCESS_RW: 8, SET_TEMP_MEMORY_LIMIT: 9,
  MOCK_DOMAIN_REPLACE: 10, ACCESS_REPLACE_IOAS: 11, MOCK_DOMAIN_FLAGS: 12, DIRTY: 13,
  MD_CHECK_IOTLB: 14, TRIGGER_IOPF: 15, DEV_CHECK_CACHE: 16, TRIGGER_VEVENT: 17, PASID_ATTACH: 18,
  PASID_REPLACE: 19, PASID_DETACH: 20, PASID_CHECK_HWPT: 21, DMABUF_GET: 22, DMABUF_REVOKE: 23,
} as const;

export const MOCK_APERTURE_START = 1n << 24n;
export const MOCK_APERTURE_LAST = (1n << 31n) - 1n;
export const MOCK_PAGE_SIZE = 2048;
export const MOCK_FLAGS_ACCESS_WRITE = 1 << 0;
export const MOCK_FLAGS_ACCESS_SYZ = 1 << 16;
export const MOCK_ACCESS_RW_WRITE = 1 << 0;
export const MOCK_ACCESS_RW_SLOW_PATH = 1 << 2;
export const MOCK_FLAGS_ACCESS_CREATE_NEEDS_PIN_PAGES = 1 << 0;
export const MOCK_HUGE_PAGE_SIZE = 512 * MOCK_PAGE_SIZE;
export const MOCK_FLAGS_DEVICE_NO_DIRTY = 1 << 0;
export const MOCK_FLAGS_DEVICE_PASID = 1 << 2;
export const MOCK_PASID_WIDTH = 20;
export const MOCK_NESTED_DOMAIN_IOTLB_ID_MAX = 3;
export const MOCK_NESTED_DOMAIN_IOTLB_NUM = 4;
export const MOCK_IOMMUPT_DEFAULT = 0;
export const MOCK_IOMMUPT_HUGE = 1;
export const IOMMU_HWPT_DATA_SELFTEST = 0xdead;
export const IOMMU_TEST_IOTLB_DEFAULT = 0xbadbeef;
export const IOMMU_HWPT_INVALIDATE_DATA_SELFTEST = 0xdeadbeef;
export const IOMMU_HWPT_INVALIDATE_DATA_SELFTEST_INVALID = 0xdadbeef;
export const IOMMU_TEST_INVALIDATE_FLAG_ALL = 1 << 0;
export const IOMMU_HW_INFO_TYPE_SELFTEST = 0xfeedbeef;
export const IOMMU_HW_INFO_SELFTEST_REGVAL = 0xdeadbeef;
export const IOMMU_TEST_PASID_RESERVED = 1024;
export const IOMMU_TEST_DEV_CACHE_DEFAULT = 0xbaddad;
export const MOCK_DEV_CACHE_ID_MAX = 3;
export const MOCK_DEV_CACHE_NUM = 4;
export const IOMMU_VIOMMU_TYPE_SELFTEST = 0xdeadbeef;
export const IOMMU_VIOMMU_INVALIDATE_DATA_SELFTEST = 0xdeadbeef;
export const IOMMU_VIOMMU_INVALIDATE_DATA_SELFTEST_INVALID = 0xdadbeef;
export const IOMMU_VEVENTQ_TYPE_SELFTEST = 0xbeefbeef;
export const IOMMU_HW_QUEUE_TYPE_SELFTEST = 0xdeadbeef;
export const IOMMU_TEST_HW_QUEUE_MAX = 2;

const TEST_HDR: FieldSpec[] = [['size', 'u32'], ['op', 'u32'], ['id', 'u32'], ['__reserved', 'u32']];
/** Each union member of struct iommu_test_cmd, laid out at the union's offset (16). */
export const iommu_test_cmd_members = {
  add_reserved: struct('add_reserved', [['start', 'u64'], ['length', 'u64']], 16),
  mock_domain: struct('mock_domain', [['out_stdev_id', 'u32'], ['out_hwpt_id', 'u32'], ['out_idev_id', 'u32']], 16),
  mock_domain_flags: struct('mock_domain_flags', [
    ['out_stdev_id', 'u32'], ['out_hwpt_id', 'u32'], ['out_idev_id', 'u32'], ['dev_flags', 'u32'],
  ], 16),
  mock_domain_replace: struct('mock_domain_replace', [['pt_id', 'u32']], 16),
  check_map: struct('check_map', [['iova', 'u64'], ['length', 'u64'], ['uptr', 'u64']], 16),
  check_refs: struct('check_refs', [['length', 'u64'], ['uptr', 'u64'], ['refs', 'u32']], 16),
  create_access: struct('create_access', [['out_access_fd', 'u32'], ['flags', 'u32']], 16),
  destroy_access_pages: struct('destroy_access_pages', [['access_pages_id', 'u32']], 16),
  access_pages: struct('access_pages', [
    ['flags', 'u32'], ['out_access_pages_id', 'u32'], ['iova', 'u64'], ['length', 'u64'], ['uptr', 'u64'],
  ], 16),
  access_rw: struct('access_rw', [['iova', 'u64'], ['length', 'u64'], ['uptr', 'u64'], ['flags', 'u32']], 16),
  memory_limit: struct('memory_limit', [['limit', 'u32']], 16),
  access_replace_ioas: struct('access_replace_ioas', [['ioas_id', 'u32']], 16),
  dirty: struct('dirty', [
    ['flags', 'u32'], ['iova', 'u64'], ['length', 'u64'], ['page_size', 'u64'], ['uptr', 'u64'], ['out_nr_dirty', 'u64'],
  ], 16),
  check_iotlb: struct('check_iotlb', [['id', 'u32'], ['iotlb', 'u32']], 16),
  trigger_iopf: struct('trigger_iopf', [
    ['dev_id', 'u32'], ['pasid', 'u32'], ['grpid', 'u32'], ['perm', 'u32'], ['addr', 'u64'],
  ], 16),
  check_dev_cache: struct('check_dev_cache', [['id', 'u32'], ['cache', 'u32']], 16),
  trigger_vevent: struct('trigger_vevent', [['dev_id', 'u32']], 16),
  pasid_attach: struct('pasid_attach', [['pasid', 'u32'], ['pt_id', 'u32']], 16),
  pasid_replace: struct('pasid_replace', [['pasid', 'u32'], ['pt_id', 'u32']], 16),
  pasid_detach: struct('pasid_detach', [['pasid', 'u32']], 16),
  pasid_check: struct('pasid_check', [['pasid', 'u32'], ['hwpt_id', 'u32']], 16),
  dmabuf_get: struct('dmabuf_get', [['length', 'u32'], ['open_flags', 'u32']], 16),
  dmabuf_revoke: struct('dmabuf_revoke', [['dmabuf_fd', 's32'], ['revoked', 'u32']], 16),
} as const;
const UNION_END = Math.max(...Object.values(iommu_test_cmd_members).map((m) => m.size));
export const iommu_test_cmd = struct('iommu_test_cmd', [
  ...TEST_HDR, ['__union', 'u8', UNION_END - 16], ['last', 'u32'],
]);
// The union holds 64-bit members, so it is 8-aligned and so is the struct.
(iommu_test_cmd as { size: number }).size = Math.ceil(iommu_test_cmd.size / 8) * 8;
export const IOMMU_TEST_CMD: IoctlDesc = ioctl('IOMMU_TEST_CMD', 0xa0, iommu_test_cmd, 'last');
