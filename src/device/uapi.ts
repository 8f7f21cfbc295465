/**
 * The VFIO device uAPI (include/uapi/linux/vfio.h, Linux 7.3) as data: the device-fd ioctls, their
 * struct layouts and the kernel's minsz (offsetofend of the last field the kernel reads), the
 * flag values, vfio-pci's fixed region and IRQ indexes, Intel VT-d's GET_HW_INFO payload, and the
 * PCI config-space registers a userspace driver touches. test/layout.test.ts checks every number
 * here against gcc and the real headers.
 *
 * All VFIO ioctls are _IO(';', 100 + n): no size or direction is encoded; each struct starts with
 * `argsz`, and the kernel answers EINVAL when argsz < minsz.
 */
import { _IO, offsetofend, struct, type IoctlDesc, type StructLayout } from '../ioasid/uapi.js';
import { VFIO_BASE, VFIO_TYPE } from '../ioasid/vfio_uapi.js';

export { vfio_info_cap_header } from '../ioasid/vfio_uapi.js';

function vfio(name: string, n: number, s: StructLayout, last: string): IoctlDesc {
  const nr = VFIO_BASE + n;
  return { name, nr, request: _IO(VFIO_TYPE, nr), struct: s, minSize: offsetofend(s, last), last };
}

// ---- structs -------------------------------------------------------------------------------------

export const vfio_device_info = struct('vfio_device_info', [
  ['argsz', 'u32'], ['flags', 'u32'], ['num_regions', 'u32'], ['num_irqs', 'u32'], ['cap_offset', 'u32'], ['pad', 'u32'],
]);
export const vfio_region_info = struct('vfio_region_info', [
  ['argsz', 'u32'], ['flags', 'u32'], ['index', 'u32'], ['cap_offset', 'u32'], ['size', 'u64'], ['offset', 'u64'],
]);
export const vfio_region_sparse_mmap_area = struct('vfio_region_sparse_mmap_area', [['offset', 'u64'], ['size', 'u64']]);
/** Followed by nr_areas struct vfio_region_sparse_mmap_area. */
export const vfio_region_info_cap_sparse_mmap = struct('vfio_region_info_cap_sparse_mmap', [
  ['header', 'u32', 2], ['nr_areas', 'u32'], ['reserved', 'u32'],
]);
export const vfio_region_info_cap_type = struct('vfio_region_info_cap_type', [
  ['header', 'u32', 2], ['type', 'u32'], ['subtype', 'u32'],
]);
export const vfio_irq_info = struct('vfio_irq_info', [
  ['argsz', 'u32'], ['flags', 'u32'], ['index', 'u32'], ['count', 'u32'],
]);
/** Followed by `count` bytes (DATA_BOOL) or s32 eventfds (DATA_EVENTFD). */
export const vfio_irq_set = struct('vfio_irq_set', [
  ['argsz', 'u32'], ['flags', 'u32'], ['index', 'u32'], ['start', 'u32'], ['count', 'u32'],
]);
export const vfio_device_bind_iommufd = struct('vfio_device_bind_iommufd', [
  ['argsz', 'u32'], ['flags', 'u32'], ['iommufd', 's32'], ['out_devid', 'u32'], ['token_uuid_ptr', 'u64'],
]);
export const vfio_device_attach_iommufd_pt = struct('vfio_device_attach_iommufd_pt', [
  ['argsz', 'u32'], ['flags', 'u32'], ['pt_id', 'u32'], ['pasid', 'u32'],
]);
export const vfio_device_detach_iommufd_pt = struct('vfio_device_detach_iommufd_pt', [
  ['argsz', 'u32'], ['flags', 'u32'], ['pasid', 'u32'],
]);
/** Followed by `count` struct vfio_pci_dependent_device. */
export const vfio_pci_hot_reset_info = struct('vfio_pci_hot_reset_info', [['argsz', 'u32'], ['flags', 'u32'], ['count', 'u32']]);
export const vfio_pci_dependent_device = struct('vfio_pci_dependent_device', [
  ['devid', 'u32'], ['segment', 'u16'], ['bus', 'u8'], ['devfn', 'u8'],
]);
/** Followed by `count` s32 group fds (empty for cdev users). */
export const vfio_pci_hot_reset = struct('vfio_pci_hot_reset', [['argsz', 'u32'], ['flags', 'u32'], ['count', 'u32']]);
/** Followed by the feature's data. flags: low 16 bits the feature, then GET/SET/PROBE. */
export const vfio_device_feature = struct('vfio_device_feature', [['argsz', 'u32'], ['flags', 'u32']]);
/** IOMMU_GET_HW_INFO's payload for IOMMU_HW_INFO_TYPE_INTEL_VTD (include/uapi/linux/iommufd.h). */
export const iommu_hw_info_vtd = struct('iommu_hw_info_vtd', [
  ['flags', 'u32'], ['__reserved', 'u32'], ['cap_reg', 'u64'], ['ecap_reg', 'u64'],
]);

// ---- the device-fd ioctls (last = the field the kernel's minsz ends at) --------------------------

export const VFIO_DEVICE_IOCTLS = {
  GET_INFO: vfio('VFIO_DEVICE_GET_INFO', 7, vfio_device_info, 'num_irqs'),
  GET_REGION_INFO: vfio('VFIO_DEVICE_GET_REGION_INFO', 8, vfio_region_info, 'offset'),
  GET_IRQ_INFO: vfio('VFIO_DEVICE_GET_IRQ_INFO', 9, vfio_irq_info, 'count'),
  SET_IRQS: vfio('VFIO_DEVICE_SET_IRQS', 10, vfio_irq_set, 'count'),
  BIND_IOMMUFD: vfio('VFIO_DEVICE_BIND_IOMMUFD', 18, vfio_device_bind_iommufd, 'out_devid'),
  ATTACH_IOMMUFD_PT: vfio('VFIO_DEVICE_ATTACH_IOMMUFD_PT', 19, vfio_device_attach_iommufd_pt, 'pt_id'),
  DETACH_IOMMUFD_PT: vfio('VFIO_DEVICE_DETACH_IOMMUFD_PT', 20, vfio_device_detach_iommufd_pt, 'flags'),
  GET_PCI_HOT_RESET_INFO: vfio('VFIO_DEVICE_GET_PCI_HOT_RESET_INFO', 12, vfio_pci_hot_reset_info, 'count'),
  PCI_HOT_RESET: vfio('VFIO_DEVICE_PCI_HOT_RESET', 13, vfio_pci_hot_reset, 'count'),
  FEATURE: vfio('VFIO_DEVICE_FEATURE', 17, vfio_device_feature, 'flags'),
} as const satisfies Record<string, IoctlDesc>;

/** VFIO_DEVICE_RESET takes no argument. */
export const VFIO_DEVICE_RESET = _IO(VFIO_TYPE, VFIO_BASE + 11);
/** VFIO_DEVICE_IOEVENTFD (not modelled by the sim: ENOTTY there). */
export const VFIO_DEVICE_IOEVENTFD = _IO(VFIO_TYPE, VFIO_BASE + 16);

// ---- flags ---------------------------------------------------------------------------------------

export const VFIO_DEVICE_FLAGS_RESET = 1 << 0;
export const VFIO_DEVICE_FLAGS_PCI = 1 << 1;
export const VFIO_DEVICE_FLAGS_PLATFORM = 1 << 2;
export const VFIO_DEVICE_FLAGS_AMBA = 1 << 3;
export const VFIO_DEVICE_FLAGS_CCW = 1 << 4;
export const VFIO_DEVICE_FLAGS_AP = 1 << 5;
export const VFIO_DEVICE_FLAGS_FSL_MC = 1 << 6;
export const VFIO_DEVICE_FLAGS_CAPS = 1 << 7;
export const VFIO_DEVICE_FLAGS_CDX = 1 << 8;

export const VFIO_REGION_INFO_FLAG_READ = 1 << 0;
export const VFIO_REGION_INFO_FLAG_WRITE = 1 << 1;
export const VFIO_REGION_INFO_FLAG_MMAP = 1 << 2;
export const VFIO_REGION_INFO_FLAG_CAPS = 1 << 3;
export const VFIO_REGION_INFO_CAP_SPARSE_MMAP = 1;
export const VFIO_REGION_INFO_CAP_TYPE = 2;
export const VFIO_REGION_INFO_CAP_MSIX_MAPPABLE = 3;

export const VFIO_IRQ_INFO_EVENTFD = 1 << 0;
export const VFIO_IRQ_INFO_MASKABLE = 1 << 1;
export const VFIO_IRQ_INFO_AUTOMASKED = 1 << 2;
export const VFIO_IRQ_INFO_NORESIZE = 1 << 3;

export const VFIO_IRQ_SET_DATA_NONE = 1 << 0;
export const VFIO_IRQ_SET_DATA_BOOL = 1 << 1;
export const VFIO_IRQ_SET_DATA_EVENTFD = 1 << 2;
export const VFIO_IRQ_SET_ACTION_MASK = 1 << 3;
export const VFIO_IRQ_SET_ACTION_UNMASK = 1 << 4;
export const VFIO_IRQ_SET_ACTION_TRIGGER = 1 << 5;
export const VFIO_IRQ_SET_DATA_TYPE_MASK = VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_DATA_BOOL | VFIO_IRQ_SET_DATA_EVENTFD;
export const VFIO_IRQ_SET_ACTION_TYPE_MASK = VFIO_IRQ_SET_ACTION_MASK | VFIO_IRQ_SET_ACTION_UNMASK | VFIO_IRQ_SET_ACTION_TRIGGER;

export const VFIO_DEVICE_BIND_FLAG_TOKEN = 1 << 0;
export const VFIO_DEVICE_ATTACH_PASID = 1 << 0;
export const VFIO_DEVICE_DETACH_PASID = 1 << 0;

export const VFIO_PCI_HOT_RESET_FLAG_DEV_ID = 1 << 0;
export const VFIO_PCI_HOT_RESET_FLAG_DEV_ID_OWNED = 1 << 1;
export const VFIO_PCI_DEVID_OWNED = 0;
/** -1 in vfio.h, a u32 in the struct. */
export const VFIO_PCI_DEVID_NOT_OWNED = 0xffff_ffff;

export const VFIO_DEVICE_FEATURE_MASK = 0xffff;
export const VFIO_DEVICE_FEATURE_GET = 1 << 16;
export const VFIO_DEVICE_FEATURE_SET = 1 << 17;
export const VFIO_DEVICE_FEATURE_PROBE = 1 << 18;

// ---- vfio-pci's fixed indexes --------------------------------------------------------------------

export const VFIO_PCI_BAR0_REGION_INDEX = 0;
export const VFIO_PCI_BAR5_REGION_INDEX = 5;
export const VFIO_PCI_ROM_REGION_INDEX = 6;
export const VFIO_PCI_CONFIG_REGION_INDEX = 7;
export const VFIO_PCI_VGA_REGION_INDEX = 8;
export const VFIO_PCI_NUM_REGIONS = 9;

export const VFIO_PCI_INTX_IRQ_INDEX = 0;
export const VFIO_PCI_MSI_IRQ_INDEX = 1;
export const VFIO_PCI_MSIX_IRQ_INDEX = 2;
export const VFIO_PCI_ERR_IRQ_INDEX = 3;
export const VFIO_PCI_REQ_IRQ_INDEX = 4;
export const VFIO_PCI_NUM_IRQS = 5;

// ---- IOMMU_GET_HW_INFO types (include/uapi/linux/iommufd.h) ---------------------------------------

export const IOMMU_HW_INFO_TYPE_NONE = 0;
export const IOMMU_HW_INFO_TYPE_INTEL_VTD = 1;
export const IOMMU_HW_INFO_TYPE_ARM_SMMUV3 = 2;
export const IOMMU_HW_INFO_TYPE_AMD = 4;
export const IOMMU_HW_INFO_VTD_ERRATA_772415_SPR17 = 1 << 0;
export const IOMMU_HW_CAP_DIRTY_TRACKING = 1 << 0;
export const IOMMU_HW_CAP_PCI_PASID_EXEC = 1 << 1;
export const IOMMU_HW_CAP_PCI_PASID_PRIV = 1 << 2;
export const IOMMU_HW_CAP_PCI_ATS_NOT_SUPPORTED = 1 << 3;

// ---- PCI configuration space (include/uapi/linux/pci_regs.h) --------------------------------------

export const PCI_VENDOR_ID = 0x00;
export const PCI_DEVICE_ID = 0x02;
export const PCI_COMMAND = 0x04;
export const PCI_COMMAND_IO = 0x1;
export const PCI_COMMAND_MEMORY = 0x2;
export const PCI_COMMAND_MASTER = 0x4;
export const PCI_COMMAND_INTX_DISABLE = 0x400;
export const PCI_STATUS = 0x06;
export const PCI_STATUS_CAP_LIST = 0x10;
export const PCI_REVISION_ID = 0x08;
export const PCI_CLASS_REVISION = 0x08;
export const PCI_CAPABILITY_LIST = 0x34;
export const PCI_INTERRUPT_PIN = 0x3d;
export const PCI_CAP_ID_PM = 0x01;
export const PCI_CAP_ID_MSI = 0x05;
export const PCI_CAP_ID_EXP = 0x10;
export const PCI_CAP_ID_MSIX = 0x11;
export const PCI_MSI_FLAGS = 0x02;
export const PCI_MSI_FLAGS_ENABLE = 0x0001;
export const PCI_MSI_FLAGS_QMASK = 0x000e;
export const PCI_MSIX_FLAGS = 0x02;
export const PCI_MSIX_FLAGS_QSIZE = 0x07ff;
export const PCI_MSIX_FLAGS_ENABLE = 0x8000;
