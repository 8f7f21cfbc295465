/**
 * The device side: VFIO devices through their cdevs (bind to an iommufd, attach to an IOAS or
 * HWPT, regions, interrupts, reset), PCI discovery and driver selection through sysfs.
 */
export {
  VfioDevice, type DeviceInfo, type DeviceHwInfo, type IrqInfo, type IrqSet, type OpenedDeviceFd, type VfioDeviceOrigin,
} from './vfio_device.js';
export { VfioRegion, type RegionInfo } from './region.js';
export { PciConfig } from './pci_config.js';
export { EventFd } from './eventfd.js';
export {
  DriverChange, DriverError, PciDevice, findPciDevices, isVfioDriver, listPciDevices, matchVfioAlias, parseVfioAliases, pciDriverInfo,
  vfioDriverChooser, vfioDriverName, type DriverErrorReason, type DriverOptions, type DriverState, type PciDriverInfo,
  type PciMatch, type ReservedRegion, type VfioAlias,
} from './pci.js';
export { describeHostUse, hostUses, vfioOpeners, type HostUse } from './host_use.js';
export { decodeVtd, type VtdCap, type VtdEcap, type VtdInfo } from './vtd.js';
export type { InfoCap } from './info_caps.js';
export * as vfio from './uapi.js';
