/**
 * ioasid: the Linux iommufd model for Node.js.
 *
 *   using ctx = Iommufd.open();            // the embedded sim, or { backend: 'linux' }
 *   const ioas = ctx.allocIoas();
 *   using mem = ctx.mmap(1 << 20);
 *   const iova = ioas.map(mem);            // kernel-chosen IOVA
 *   ioas.unmap(iova, BigInt(mem.length));
 *
 * @module ioasid
 */
export { Iommufd, type OpenOptions, type RlimitMode } from './ioasid/iommufd.js';
export { Hwpt, type HwptAllocOptions, type HwptData, type DirtyBitmapOptions } from './ioasid/hwpt.js';
export type { HwInfo } from './ioasid/iommufd.js';
export { FaultQueue, type PageFault } from './ioasid/fault.js';
export {
  VeventQueue, IOMMU_VEVENTQ_FLAG_LOST_EVENTS, IOMMU_VEVENTQ_TYPE_ARM_SMMUV3, IOMMU_VEVENTQ_TYPE_TEGRA241_CMDQV,
  type Vevent, type VeventQueueOptions,
} from './ioasid/veventq.js';
export type { EventQueue } from './ioasid/eventq.js';
export type { WaitOptions } from './ioasid/wait.js';
export { Ioas, type IovaRange, type IovaRanges, type MapOptions } from './ioasid/ioas.js';
export { IoasAreas, type IoasArea, type UnmapWalk } from './ioasid/areas.js';
export { MemFd, UserMemory, type MmapOptions } from './ioasid/memory.js';
export * from './compat/index.js';
export * from './migration/index.js';
export { ERRNO, IommuError, errnoName, isErrno, strerror, type ErrnoCode, type IommuErrorInfo } from './ioasid/errors.js';
export * as uapi from './ioasid/uapi.js';
export * from './device/index.js';
export { BACKENDS, backendName, openBinding, defaultBackendName, sim, SimBinding, SimKernel, type SimOptions } from './backends/index.js';
export type { Binding, BackendName } from './backends/types.js';
export { diagnose, type Diagnosis, type DoctorOptions, type Finding, type Level, type Verdict } from './doctor/checks.js';
