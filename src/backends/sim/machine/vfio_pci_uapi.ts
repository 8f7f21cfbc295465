/**
 * The VFIO device uAPI (include/uapi/linux/vfio.h, Linux 7.3) the sim's vfio-pci answers: ioctl
 * numbers, struct layouts with the kernel's minsz, flag values, and vfio-pci's fixed region and
 * IRQ indexes. (To merge with src/ioasid/vfio_uapi.ts, which holds the container half.)
 */
import { _IO, offsetofend, struct } from '../../../ioasid/uapi.js';
import { VFIO_BASE, VFIO_TYPE } from '../../../ioasid/vfio_uapi.js';

const vfio = (n: number): number => _IO(VFIO_TYPE, VFIO_BASE + n);

export const VFIO_DEVICE_GET_INFO = vfio(7);
export const VFIO_DEVICE_GET_REGION_INFO = vfio(8);
export const VFIO_DEVICE_GET_IRQ_INFO = vfio(9);
export const VFIO_DEVICE_SET_IRQS = vfio(10);
export const VFIO_DEVICE_RESET = vfio(11);
export const VFIO_DEVICE_GET_PCI_HOT_RESET_INFO = vfio(12);
export const VFIO_DEVICE_PCI_HOT_RESET = vfio(13);
export const VFIO_DEVICE_IOEVENTFD = vfio(16);
export const VFIO_DEVICE_FEATURE = vfio(17);
export const VFIO_DEVICE_BIND_IOMMUFD = vfio(18);
export const VFIO_DEVICE_ATTACH_IOMMUFD_PT = vfio(19);
export const VFIO_DEVICE_DETACH_IOMMUFD_PT = vfio(20);

export const vfio_device_info = struct('vfio_device_info', [
  ['argsz', 'u32'], ['flags', 'u32'], ['num_regions', 'u32'], ['num_irqs', 'u32'], ['cap_offset', 'u32'], ['pad', 'u32'],
]);
export const VFIO_DEVICE_FLAGS_RESET = 1 << 0;
export const VFIO_DEVICE_FLAGS_PCI = 1 << 1;
export const VFIO_DEVICE_FLAGS_CAPS = 1 << 7;

export const vfio_region_info = struct('vfio_region_info', [
  ['argsz', 'u32'], ['flags', 'u32'], ['index', 'u32'], ['cap_offset', 'u32'], ['size', 'u64'], ['offset', 'u64'],
]);
export const VFIO_REGION_INFO_FLAG_READ = 1 << 0;
export const VFIO_REGION_INFO_FLAG_WRITE = 1 << 1;
export const VFIO_REGION_INFO_FLAG_MMAP = 1 << 2;
export const VFIO_REGION_INFO_FLAG_CAPS = 1 << 3;

export const vfio_irq_info = struct('vfio_irq_info', [['argsz', 'u32'], ['flags', 'u32'], ['index', 'u32'], ['count', 'u32']]);
export const VFIO_IRQ_INFO_EVENTFD = 1 << 0;
export const VFIO_IRQ_INFO_MASKABLE = 1 << 1;
export const VFIO_IRQ_INFO_AUTOMASKED = 1 << 2;
export const VFIO_IRQ_INFO_NORESIZE = 1 << 3;

/** Followed by `count` u8 (DATA_BOOL) or s32 (DATA_EVENTFD) entries. */
export const vfio_irq_set = struct('vfio_irq_set', [
  ['argsz', 'u32'], ['flags', 'u32'], ['index', 'u32'], ['start', 'u32'], ['count', 'u32'],
]);
export const VFIO_IRQ_SET_DATA_NONE = 1 << 0;
export const VFIO_IRQ_SET_DATA_BOOL = 1 << 1;
export const VFIO_IRQ_SET_DATA_EVENTFD = 1 << 2;
export const VFIO_IRQ_SET_ACTION_MASK = 1 << 3;
export const VFIO_IRQ_SET_ACTION_UNMASK = 1 << 4;
export const VFIO_IRQ_SET_ACTION_TRIGGER = 1 << 5;
export const VFIO_IRQ_SET_DATA_TYPE_MASK = VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_DATA_BOOL | VFIO_IRQ_SET_DATA_EVENTFD;
export const VFIO_IRQ_SET_ACTION_TYPE_MASK = VFIO_IRQ_SET_ACTION_MASK | VFIO_IRQ_SET_ACTION_UNMASK | VFIO_IRQ_SET_ACTION_TRIGGER;

export const vfio_device_bind_iommufd = struct('vfio_device_bind_iommufd', [
  ['argsz', 'u32'], ['flags', 'u32'], ['iommufd', 's32'], ['out_devid', 'u32'], ['token_uuid_ptr', 'u64'],
]);
export const VFIO_DEVICE_BIND_FLAG_TOKEN = 1 << 0;

export const vfio_device_attach_iommufd_pt = struct('vfio_device_attach_iommufd_pt', [
  ['argsz', 'u32'], ['flags', 'u32'], ['pt_id', 'u32'], ['pasid', 'u32'],
]);
export const VFIO_DEVICE_ATTACH_PASID = 1 << 0;

export const vfio_device_detach_iommufd_pt = struct('vfio_device_detach_iommufd_pt', [
  ['argsz', 'u32'], ['flags', 'u32'], ['pasid', 'u32'],
]);
export const VFIO_DEVICE_DETACH_PASID = 1 << 0;

/** Followed by `count` struct vfio_pci_dependent_device { u32 group_id/devid; u16 segment; u8 bus; u8 devfn; }. */
export const vfio_pci_hot_reset_info = struct('vfio_pci_hot_reset_info', [['argsz', 'u32'], ['flags', 'u32'], ['count', 'u32']]);
export const vfio_pci_dependent_device = struct('vfio_pci_dependent_device', [
  ['devid', 'u32'], ['segment', 'u16'], ['bus', 'u8'], ['devfn', 'u8'],
]);
export const VFIO_PCI_HOT_RESET_FLAG_DEV_ID = 1 << 0;
export const VFIO_PCI_HOT_RESET_FLAG_DEV_ID_OWNED = 1 << 1;
export const VFIO_PCI_DEVID_OWNED = 0;
export const VFIO_PCI_DEVID_NOT_OWNED = 0xffffffff;

/** Followed by `count` s32 group fds (empty for cdev users). */
export const vfio_pci_hot_reset = struct('vfio_pci_hot_reset', [['argsz', 'u32'], ['flags', 'u32'], ['count', 'u32']]);

/** Followed by the feature's data. flags: low 16 bits the feature, then GET/SET/PROBE. */
export const vfio_device_feature = struct('vfio_device_feature', [['argsz', 'u32'], ['flags', 'u32']]);
export const VFIO_DEVICE_FEATURE_MASK = 0xffff;
export const VFIO_DEVICE_FEATURE_GET = 1 << 16;
export const VFIO_DEVICE_FEATURE_SET = 1 << 17;
export const VFIO_DEVICE_FEATURE_PROBE = 1 << 18;

export const DEVICE_INFO_MINSZ = offsetofend(vfio_device_info, 'num_irqs');
export const REGION_INFO_MINSZ = offsetofend(vfio_region_info, 'offset');
export const IRQ_INFO_MINSZ = offsetofend(vfio_irq_info, 'count');
export const IRQ_SET_MINSZ = offsetofend(vfio_irq_set, 'count');
export const BIND_MINSZ = offsetofend(vfio_device_bind_iommufd, 'out_devid');
export const ATTACH_MINSZ = offsetofend(vfio_device_attach_iommufd_pt, 'pt_id');
export const DETACH_MINSZ = offsetofend(vfio_device_detach_iommufd_pt, 'flags');
export const HOT_RESET_INFO_MINSZ = offsetofend(vfio_pci_hot_reset_info, 'count');
export const HOT_RESET_MINSZ = offsetofend(vfio_pci_hot_reset, 'count');
export const FEATURE_MINSZ = offsetofend(vfio_device_feature, 'flags');

/** vfio-pci's fixed region indexes (VFIO_PCI_*_REGION_INDEX) and IRQ indexes. */
export const VFIO_PCI_BAR0_REGION_INDEX = 0;
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
/** A region's file offset: index << VFIO_PCI_OFFSET_SHIFT. */
export const VFIO_PCI_OFFSET_SHIFT = 40;
