/**
 * The legacy VFIO container, /dev/vfio/vfio (drivers/vfio/container.c). Opening it is unprivileged
 * and gives an empty container; a group joins with VFIO_GROUP_SET_CONTAINER (claiming its DMA
 * ownership), and only then may VFIO_SET_IOMMU pick the IOMMU driver, type1 here
 * (vfio_iommu_type1.ts), which every other container ioctl passes through to. The last group to
 * leave releases the driver and all its mappings; closing the container fd alone does not (the
 * groups hold the container).
 */
import { ERRNO, IommuError } from '../../../ioasid/errors.js';
import {
  VFIO_API_VERSION, VFIO_CHECK_EXTENSION, VFIO_GET_API_VERSION, VFIO_LEGACY_IOCTL_NAMES, VFIO_SET_IOMMU,
} from '../../../ioasid/vfio_uapi.js';
import { iommuGroupClaimDmaOwner, iommuReleaseDmaOwner } from '../iommu/iommu.js';
import { kerr, KernelErrno } from '../kernel/errno.js';
import type { SimFile, SimProcess } from '../kernel/process.js';
import type { VfioGroup } from './group.js';
import { type1CheckExtension, type1Open, type Type1Params, type VfioIommu } from './vfio_iommu_type1.js';

/** The name a refused ioctl is reported under. */
export function legacyIoctlName(request: number): string {
  return VFIO_LEGACY_IOCTL_NAMES[request] ?? `ioctl(0x${request.toString(16)})`;
}

/** Run a file's ioctl handler, turning the kernel's errno into an IommuError named after the ioctl. */
export function legacyIoctl(request: number, fn: () => number): number {
  try {
    return fn();
  } catch (e) {
    if (e instanceof KernelErrno) throw new IommuError(e.errno, legacyIoctlName(request));
    throw e;
  }
}

export class VfioContainer implements SimFile {
  readonly kind = 'vfio-container';
  /** The groups in it, newest first (list_add). */
  readonly groups: VfioGroup[] = [];
  /** The IOMMU driver's data once VFIO_SET_IOMMU succeeded (iommu_driver + iommu_data). */
  iommu: VfioIommu | null = null;

  constructor(
    readonly proc: SimProcess,
    /** vfio_iommu_type1's module parameters, read when the driver opens. */
    readonly params: Type1Params,
  ) {}

  /** A struct-pointer ioctl; for the integer commands the pointer's value is never a type or extension. */
  ioctl(request: number, arg: Uint8Array | null): number {
    return legacyIoctl(request, () => this.dispatch(request, arg ? -1 : 0, arg));
  }

  /** ioctl(fd, request, integer): VFIO_CHECK_EXTENSION and VFIO_SET_IOMMU; to the others it is a bad pointer. */
  ioctlInt(request: number, value: number): number {
    return legacyIoctl(request, () => this.dispatch(request, value, null));
  }

  /** vfio_fops_unl_ioctl: without a driver, everything but the three container commands is EINVAL. */
  private dispatch(request: number, value: number, arg: Uint8Array | null): number {
    switch (request) {
      case VFIO_GET_API_VERSION:
        return VFIO_API_VERSION;
      case VFIO_CHECK_EXTENSION:
        return type1CheckExtension(this.iommu, value);
      case VFIO_SET_IOMMU:
        return this.setIommu(value);
      default:
        if (!this.iommu) kerr(ERRNO.EINVAL);
        return this.iommu.ioctl(request, arg);
    }
  }

  /**
   * vfio_ioctl_set_iommu: needs a group and no driver yet (EINVAL); a type no driver offers is
   * ENODEV; the driver opens (EINVAL for other type1 extensions) and takes every group, or none.
   */
  private setIommu(arg: number): number {
    if (!this.groups.length || this.iommu) kerr(ERRNO.EINVAL);
    if (type1CheckExtension(null, arg) <= 0) kerr(ERRNO.ENODEV);
    const iommu = type1Open(arg, this.proc, this.params);
    const done: VfioGroup[] = [];
    try {
      for (const g of this.groups) {
        iommu.attachGroup(g.iommuGroup!);
        done.push(g);
      }
    } catch (e) {
      for (const g of done.reverse()) iommu.detachGroup(g.iommuGroup!);
      iommu.release();
      throw e;
    }
    this.iommu = iommu;
    return 0;
  }

  /** The container struct is freed with its last reference; the groups in it keep theirs. */
  release(): void {}
}

/**
 * vfio_container_attach_group: the group's DMA ownership (EPERM while a kernel driver or another
 * user holds it), then the driver's attach if the container has one.
 */
export function containerAttachGroup(container: VfioContainer, group: VfioGroup): void {
  const iommuGroup = group.iommuGroup!;
  iommuGroupClaimDmaOwner(iommuGroup, group);
  if (container.iommu) {
    try {
      container.iommu.attachGroup(iommuGroup);
    } catch (e) {
      iommuReleaseDmaOwner(iommuGroup);
      throw e;
    }
  }
  group.container = container;
  group.containerUsers = 1;
  container.groups.unshift(group);
}

/** vfio_group_detach_container: the last group leaving deprivileges the container (the driver goes). */
export function groupDetachContainer(group: VfioGroup): void {
  const container = group.container!;
  container.iommu?.detachGroup(group.iommuGroup!);
  iommuReleaseDmaOwner(group.iommuGroup!);
  group.container = null;
  group.containerUsers = 0;
  container.groups.splice(container.groups.indexOf(group), 1);
  if (container.iommu && !container.groups.length) {
    container.iommu.release();
    container.iommu = null;
  }
}

/** vfio_group_use_container: a device opens through the group; EINVAL before VFIO_SET_IOMMU. */
export function groupUseContainer(group: VfioGroup): void {
  if (!group.container!.iommu) kerr(ERRNO.EINVAL);
  group.openedFile!.get();
  group.containerUsers++;
}

/** vfio_group_unuse_container: the device's last close. */
export function groupUnuseContainer(group: VfioGroup): void {
  group.containerUsers--;
  group.openedFile!.put();
}
