/**
 * The legacy VFIO container/group API (docs/compat.md): VfioContainer and VfioGroup in three modes
 * ('type1', 'kernel-compat', 'iommufd'), devices got from a group as the same VfioDevice the new
 * API uses.
 *
 * @module ioasid/compat
 */
export {
  VfioContainer, decodeInfo, type CompatMode, type ContainerOptions, type DmaMapOptions, type IommuInfo, type IommuType,
} from './container.js';
export { VfioGroup, type GroupOptions, type GroupStatus } from './group.js';
export { domainCaps, type DomainCaps } from './domain_caps.js';
export * as containerUapi from '../ioasid/vfio_uapi.js';
