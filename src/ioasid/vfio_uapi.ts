/**
 * The legacy VFIO uAPI (include/uapi/linux/vfio.h) as data: the container ioctls (answered by
 * vfio_iommu_type1.c on /dev/vfio/vfio, or by iommufd's vfio_compat.c on an iommufd) and the group
 * ioctls of /dev/vfio/N (group.c). VFIO structs begin with `argsz`; the kernel reads `minsz` =
 * offsetofend(last mandatory field).
 */
import { _IO, offsetofend, struct } from './uapi.js';

export const VFIO_TYPE = 0x3b;
export const VFIO_BASE = 100;
const vfio = (n: number): number => _IO(VFIO_TYPE, VFIO_BASE + n);

export const VFIO_API_VERSION = 0;
export const VFIO_TYPE1_IOMMU = 1;
export const VFIO_SPAPR_TCE_IOMMU = 2;
export const VFIO_TYPE1v2_IOMMU = 3;
export const VFIO_DMA_CC_IOMMU = 4;
export const VFIO_EEH = 5;
export const VFIO_TYPE1_NESTING_IOMMU = 6;
export const VFIO_SPAPR_TCE_v2_IOMMU = 7;
export const VFIO_NOIOMMU_IOMMU = 8;
export const VFIO_UNMAP_ALL = 9;
export const VFIO_UPDATE_VADDR = 10;

export const VFIO_GET_API_VERSION = vfio(0);
export const VFIO_CHECK_EXTENSION = vfio(1);
export const VFIO_SET_IOMMU = vfio(2);
export const VFIO_GROUP_GET_STATUS = vfio(3);
/** Argument: a pointer to the container's (or an iommufd's) __s32 fd. */
export const VFIO_GROUP_SET_CONTAINER = vfio(4);
/** No argument. */
export const VFIO_GROUP_UNSET_CONTAINER = vfio(5);
/** Argument: a pointer to the device's name, NUL-terminated ("0000:00:01.0"); returns a new fd. */
export const VFIO_GROUP_GET_DEVICE_FD = vfio(6);
export const VFIO_IOMMU_GET_INFO = vfio(12);
export const VFIO_IOMMU_MAP_DMA = vfio(13);
export const VFIO_IOMMU_UNMAP_DMA = vfio(14);
export const VFIO_IOMMU_DIRTY_PAGES = vfio(17);

/** Request number -> name of the container and group commands (the same numbers mean device commands on a device fd). */
export const VFIO_LEGACY_IOCTL_NAMES: Readonly<Record<number, string>> = Object.fromEntries(Object.entries({
  VFIO_GET_API_VERSION, VFIO_CHECK_EXTENSION, VFIO_SET_IOMMU, VFIO_GROUP_GET_STATUS, VFIO_GROUP_SET_CONTAINER,
  VFIO_GROUP_UNSET_CONTAINER, VFIO_GROUP_GET_DEVICE_FD, VFIO_IOMMU_GET_INFO, VFIO_IOMMU_MAP_DMA, VFIO_IOMMU_UNMAP_DMA,
  VFIO_IOMMU_DIRTY_PAGES,
}).map(([name, request]) => [request, name]));

export const VFIO_DMA_MAP_FLAG_READ = 1 << 0;
export const VFIO_DMA_MAP_FLAG_WRITE = 1 << 1;
export const VFIO_DMA_MAP_FLAG_VADDR = 1 << 2;
export const VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP = 1 << 0;
export const VFIO_DMA_UNMAP_FLAG_ALL = 1 << 1;
export const VFIO_DMA_UNMAP_FLAG_VADDR = 1 << 2;
export const VFIO_IOMMU_INFO_PGSIZES = 1 << 0;
export const VFIO_IOMMU_INFO_CAPS = 1 << 1;
export const VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE = 1;
export const VFIO_IOMMU_TYPE1_INFO_CAP_MIGRATION = 2;
export const VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL = 3;
export const VFIO_IOMMU_DIRTY_PAGES_FLAG_START = 1 << 0;
export const VFIO_IOMMU_DIRTY_PAGES_FLAG_STOP = 1 << 1;
export const VFIO_IOMMU_DIRTY_PAGES_FLAG_GET_BITMAP = 1 << 2;
export const VFIO_GROUP_FLAGS_VIABLE = 1 << 0;
export const VFIO_GROUP_FLAGS_CONTAINER_SET = 1 << 1;

export const vfio_group_status = struct('vfio_group_status', [['argsz', 'u32'], ['flags', 'u32']]);

export const vfio_iommu_type1_dma_map = struct('vfio_iommu_type1_dma_map', [
  ['argsz', 'u32'], ['flags', 'u32'], ['vaddr', 'u64'], ['iova', 'u64'], ['size', 'u64'],
]);
export const vfio_iommu_type1_dma_unmap = struct('vfio_iommu_type1_dma_unmap', [
  ['argsz', 'u32'], ['flags', 'u32'], ['iova', 'u64'], ['size', 'u64'],
]);
export const vfio_iommu_type1_info = struct('vfio_iommu_type1_info', [
  ['argsz', 'u32'], ['flags', 'u32'], ['iova_pgsizes', 'u64'], ['cap_offset', 'u32'], ['pad', 'u32'],
]);
export const vfio_info_cap_header = struct('vfio_info_cap_header', [['id', 'u16'], ['version', 'u16'], ['next', 'u32']]);
/** Followed by nr_iovas struct vfio_iova_range { u64 start; u64 end; } (end inclusive). */
export const vfio_iommu_type1_info_cap_iova_range = struct('vfio_iommu_type1_info_cap_iova_range', [
  ['header', 'u32', 2], ['nr_iovas', 'u32'], ['reserved', 'u32'],
]);
export const vfio_iommu_type1_info_dma_avail = struct('vfio_iommu_type1_info_dma_avail', [
  ['header', 'u32', 2], ['avail', 'u32'],
]);
export const vfio_iova_range = struct('vfio_iova_range', [['start', 'u64'], ['end', 'u64']]);
/** Only type1 (not iommufd's compat) reports it. */
export const vfio_iommu_type1_info_cap_migration = struct('vfio_iommu_type1_info_cap_migration', [
  ['header', 'u32', 2], ['flags', 'u32'], ['pgsize_bitmap', 'u64'], ['max_dirty_bitmap_size', 'u64'],
]);
/** `data` is a user pointer (__u64 __user *): one bit per page of `pgsize` bytes, `size` bytes long. */
export const vfio_bitmap = struct('vfio_bitmap', [['pgsize', 'u64'], ['size', 'u64'], ['data', 'u64']]);
/** Followed by a struct vfio_bitmap when flags has VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP. */
export const vfio_iommu_type1_dirty_bitmap = struct('vfio_iommu_type1_dirty_bitmap', [['argsz', 'u32'], ['flags', 'u32']]);
/** The data[] of a VFIO_IOMMU_DIRTY_PAGES_FLAG_GET_BITMAP request. */
export const vfio_iommu_type1_dirty_bitmap_get = struct('vfio_iommu_type1_dirty_bitmap_get', [
  ['iova', 'u64'], ['size', 'u64'], ['bitmap.pgsize', 'u64'], ['bitmap.size', 'u64'], ['bitmap.data', 'u64'],
]);

export const MAP_DMA_MINSZ = offsetofend(vfio_iommu_type1_dma_map, 'size');
export const UNMAP_DMA_MINSZ = offsetofend(vfio_iommu_type1_dma_unmap, 'size');
export const GET_INFO_MINSZ = offsetofend(vfio_iommu_type1_info, 'iova_pgsizes');
export const DIRTY_PAGES_MINSZ = offsetofend(vfio_iommu_type1_dirty_bitmap, 'flags');
export const GROUP_STATUS_MINSZ = offsetofend(vfio_group_status, 'flags');

/** The container and group ioctls by request number, for naming errors (device ioctls reuse 12..17). */
export const VFIO_CONTAINER_GROUP_IOCTL_NAMES: ReadonlyMap<number, string> = new Map([
  [VFIO_GET_API_VERSION, 'VFIO_GET_API_VERSION'], [VFIO_CHECK_EXTENSION, 'VFIO_CHECK_EXTENSION'],
  [VFIO_SET_IOMMU, 'VFIO_SET_IOMMU'], [VFIO_GROUP_GET_STATUS, 'VFIO_GROUP_GET_STATUS'],
  [VFIO_GROUP_SET_CONTAINER, 'VFIO_GROUP_SET_CONTAINER'], [VFIO_GROUP_UNSET_CONTAINER, 'VFIO_GROUP_UNSET_CONTAINER'],
  [VFIO_GROUP_GET_DEVICE_FD, 'VFIO_GROUP_GET_DEVICE_FD'], [VFIO_IOMMU_GET_INFO, 'VFIO_IOMMU_GET_INFO'],
  [VFIO_IOMMU_MAP_DMA, 'VFIO_IOMMU_MAP_DMA'], [VFIO_IOMMU_UNMAP_DMA, 'VFIO_IOMMU_UNMAP_DMA'],
  [VFIO_IOMMU_DIRTY_PAGES, 'VFIO_IOMMU_DIRTY_PAGES'],
]);
