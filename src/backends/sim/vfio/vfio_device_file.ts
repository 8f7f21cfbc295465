/**
 * An open VFIO device (drivers/vfio/vfio_main.c, device_cdev.c): a /dev/vfio/devices/vfioN cdev,
 * or a device fd VFIO_GROUP_GET_DEVICE_FD handed out (df->group set). A cdev fd refuses every
 * ioctl, read and write with EINVAL until IOC.BIND_IOMMUFD.request binds the device to an iommufd
 * (iommufd's bindDevice) and opens it (vfio-pci enables the function); binding is EBUSY while
 * the device's VFIO group is open, and the group cannot be opened while a cdev is bound. A group's
 * device fd comes opened (through the group's container or iommufd) and may be one of several;
 * BIND is EINVAL on it and ATTACH/DETACH_IOMMUFD_PT are the driver's (ENOTTY). The last close
 * closes the device and unbinds it or releases the container.
 */
import { ERRNO, IommuError } from '../../../ioasid/errors.js';
import { kerr, KernelErrno } from '../kernel/errno.js';
import { IommufdCtx } from '../iommufd/main.js';
import type { SimMm, VmaOps } from '../kernel/mm.js';
import type { SimFile, SimProcess } from '../kernel/process.js';
import { groupUnuseContainer, groupUseContainer } from './container.js';
import { vfioDeviceBlockGroup, vfioDeviceUnblockGroup, type VfioGroup } from './group.js';
import type { VfioPciDevice } from './vfio_pci.js';
import {
  VFIO_DEVICE_IOCTLS as IOC, VFIO_DEVICE_ATTACH_PASID, VFIO_DEVICE_BIND_FLAG_TOKEN, VFIO_DEVICE_DETACH_PASID,
  VFIO_DEVICE_FEATURE_GET, VFIO_DEVICE_FEATURE_MASK, VFIO_DEVICE_FEATURE_PROBE, VFIO_DEVICE_FEATURE_SET,
  VFIO_DEVICE_IOEVENTFD, VFIO_DEVICE_RESET,
} from '../../../device/uapi.js';

/** Request number -> the ioctl's uAPI name, for error messages. */
const NAMES: Record<number, string> = {
  ...Object.fromEntries(Object.values(IOC).map((d) => [d.request, d.name])),
  [VFIO_DEVICE_RESET]: 'VFIO_DEVICE_RESET',
  [VFIO_DEVICE_IOEVENTFD]: 'VFIO_DEVICE_IOEVENTFD',
};

export class VfioDeviceFile implements SimFile {
  readonly kind = 'vfio-device';

  /**
   * vfio_device_fops_mmap: EINVAL until the device is open through this file, then vfio-pci's
   * mmap of a BAR. Each VMA holds the file (vma->vm_file): its release waits for the last munmap.
   */
  mmap(mm: SimMm, addr: number, length: number, prot: number, flags: number, offset: number): number {
    return mm.mmapDevice(addr, length, prot, flags, offset, (len) => {
      if (!this.accessGranted) kerr(ERRNO.EINVAL);
      const bar = this.vdev.mmapBar(len, flags, offset);
      const ops: VmaOps = {
        open: () => void this.vmas++,
        close: () => {
          if (--this.vmas === 0 && this.releasePending) this.release();
        },
        fault: () => this.vdev.barFault(),
      };
      ops.open();
      return { ...bar, ops, mmio: true };
    });
  }
  /** VMAs holding this file; release() waits for the last of them. */
  private vmas = 0;
  private releasePending = false;
  /** df->access_granted: set once the device is open through this file (BIND_IOMMUFD, or the group). */
  accessGranted = false;
  /** df->iommufd: the iommufd the device is (to be) bound to through this file. */
  iommufd: IommufdCtx | null = null;
  /** f_pos for read(2)/write(2). */
  private pos = 0;

  constructor(
    readonly vdev: VfioPciDevice,
    readonly proc: SimProcess,
    /** df->group: the VFIO group it was opened through (null for a cdev). */
    readonly group: VfioGroup | null = null,
  ) {}

  ioctl(request: number, arg: Uint8Array | null): number {
    try {
      return this.dispatch(request, arg);
    } catch (e) {
      if (e instanceof KernelErrno) throw new IommuError(e.errno, NAMES[request] ?? `ioctl(0x${request.toString(16)})`);
      throw e;
    }
  }

  /** ioctl(fd, VFIO_DEVICE_RESET) passes no struct: the integer form. */
  ioctlInt(request: number): number {
    return this.ioctl(request, null);
  }

  /** vfio_device_fops_unl_ioctl */
  private dispatch(request: number, arg: Uint8Array | null): number {
    if (request === IOC.BIND_IOMMUFD.request) return this.bind(user(arg));
    if (!this.accessGranted) kerr(ERRNO.EINVAL);
    const vdev = this.vdev;
    if (!this.group) {
      // cdev only; on a group's device fd they reach vfio-pci, which has neither (ENOTTY)
      if (request === IOC.ATTACH_IOMMUFD_PT.request) return this.attachPt(user(arg));
      if (request === IOC.DETACH_IOMMUFD_PT.request) return this.detachPt(user(arg));
    }
    switch (request) {
      case IOC.FEATURE.request: return this.feature(user(arg));
      case IOC.GET_REGION_INFO.request: vdev.getRegionInfo(user(arg)); return 0;
      case IOC.GET_INFO.request: vdev.getInfo(user(arg)); return 0;
      case IOC.GET_IRQ_INFO.request: vdev.getIrqInfo(user(arg)); return 0;
      case IOC.GET_PCI_HOT_RESET_INFO.request: vdev.getHotResetInfo(user(arg)); return 0;
      case IOC.PCI_HOT_RESET.request: vdev.hotReset(user(arg), this.proc); return 0;
      case VFIO_DEVICE_RESET: vdev.reset(); return 0;
      case IOC.SET_IRQS.request: vdev.setIrqs(user(arg)); return 0;
      default: return kerr(ERRNO.ENOTTY);
    }
  }

  /**
   * vfio_df_ioctl_bind_iommufd: argsz, tail and flags first; a group's device fd is EINVAL; the
   * device's group must not be open (EBUSY, vfio_device_block_group); a bound file EINVAL; the
   * token; the iommufd (EBADF, EBADFD); then the device opens (EINVAL if it is open already).
   */
  private bind(arg: Uint8Array): number {
    const dv = new DataView(arg.buffer, arg.byteOffset, arg.length);
    if (arg.length < 4) kerr(ERRNO.EFAULT);
    const argsz = dv.getUint32(0, true);
    if (argsz < IOC.BIND_IOMMUFD.minSize) kerr(ERRNO.EINVAL);
    // copy_struct_from_user: a longer struct must be zero beyond what the kernel knows.
    if (arg.length < Math.min(argsz, 24)) kerr(ERRNO.EFAULT);
    if (argsz > 24) {
      if (arg.length < argsz) kerr(ERRNO.EFAULT);
      for (let i = 24; i < argsz; i++) if (arg[i]) kerr(ERRNO.E2BIG);
    }
    const flags = dv.getUint32(4, true);
    const fd = dv.getInt32(8, true);
    const tokenPtr = argsz >= 24 ? dv.getBigUint64(16, true) : 0n;
    if (fd < 0 || flags & ~VFIO_DEVICE_BIND_FLAG_TOKEN) kerr(ERRNO.EINVAL);
    if (this.group) kerr(ERRNO.EINVAL);
    const vdev = this.vdev;
    vfioDeviceBlockGroup(vdev.vfioGroup);
    try {
      if (this.accessGranted) kerr(ERRNO.EINVAL);
      // vfio_df_check_token: a UUID is read, then refused: this is neither an SR-IOV PF nor a VF.
      if (flags & VFIO_DEVICE_BIND_FLAG_TOKEN) {
        this.proc.mm.view(Number(tokenPtr), 16);
        kerr(ERRNO.EINVAL);
      }
      const f = this.proc.fileOrNull(fd);
      if (!f) kerr(ERRNO.EBADF);
      if (!(f instanceof IommufdCtx)) kerr(ERRNO.EBADFD);
      this.iommufd = f;
      try {
        this.open();
      } catch (e) {
        this.iommufd = null;
        throw e;
      }
    } catch (e) {
      vfioDeviceUnblockGroup(vdev.vfioGroup);
      throw e;
    }
    dv.setUint32(12, vdev.idev!.bound.devId, true);
    vdev.cdevOpened = true;
    this.accessGranted = true;
    return 0;
  }

  /** vfio_df_open: only a group's device fds may open a device that is open already. */
  open(): void {
    const vdev = this.vdev;
    if (vdev.openCount !== 0 && !this.group) kerr(ERRNO.EINVAL);
    if (vdev.openCount++ !== 0) return;
    try {
      this.firstOpen();
    } catch (e) {
      vdev.openCount--;
      throw e;
    }
  }

  /** vfio_df_device_first_open: bind to the iommufd, or use the group's container; then vfio-pci opens the device. */
  private firstOpen(): void {
    const vdev = this.vdev;
    if (this.iommufd) vdev.iommufdBind(this.iommufd);
    else groupUseContainer(this.group!);
    vdev.opener = this;
    try {
      vdev.enable();
    } catch (e) {
      vdev.opener = null;
      this.unuseIommu();
      throw e;
    }
  }

  private unuseIommu(): void {
    if (this.iommufd) this.vdev.iommufdUnbind();
    else groupUnuseContainer(this.group!);
  }

  /** vfio_df_close: the last close disables the device, then unbinds it or leaves the container. */
  close(): void {
    const vdev = this.vdev;
    if (vdev.openCount === 1) {
      vdev.disable();
      vdev.opener = null;
      this.unuseIommu();
    }
    vdev.openCount--;
  }

  /** vfio_df_ioctl_attach_pt */
  private attachPt(arg: Uint8Array): number {
    if (arg.length < IOC.ATTACH_IOMMUFD_PT.minSize) kerr(ERRNO.EFAULT);
    const dv = new DataView(arg.buffer, arg.byteOffset, arg.length);
    const argsz = dv.getUint32(0, true);
    const flags = dv.getUint32(4, true);
    if (argsz < IOC.ATTACH_IOMMUFD_PT.minSize) kerr(ERRNO.EINVAL);
    if (flags & ~VFIO_DEVICE_ATTACH_PASID) kerr(ERRNO.EINVAL);
    let pasid: number | undefined;
    if (flags & VFIO_DEVICE_ATTACH_PASID) {
      if (argsz < 16) kerr(ERRNO.EINVAL);
      if (arg.length < 16) kerr(ERRNO.EFAULT);
      pasid = dv.getUint32(12, true);
    }
    dv.setUint32(8, this.vdev.iommufdAttach(dv.getUint32(8, true), pasid), true);
    return 0;
  }

  /** vfio_df_ioctl_detach_pt: detaching what is not attached does nothing. */
  private detachPt(arg: Uint8Array): number {
    if (arg.length < IOC.DETACH_IOMMUFD_PT.minSize) kerr(ERRNO.EFAULT);
    const dv = new DataView(arg.buffer, arg.byteOffset, arg.length);
    const argsz = dv.getUint32(0, true);
    const flags = dv.getUint32(4, true);
    if (argsz < IOC.DETACH_IOMMUFD_PT.minSize) kerr(ERRNO.EINVAL);
    if (flags & ~VFIO_DEVICE_DETACH_PASID) kerr(ERRNO.EINVAL);
    if (flags & VFIO_DEVICE_DETACH_PASID) {
      if (argsz < 12) kerr(ERRNO.EINVAL);
      if (arg.length < 12) kerr(ERRNO.EFAULT);
      this.vdev.iommufdDetach(dv.getUint32(8, true));
      return 0;
    }
    this.vdev.iommufdDetach();
    return 0;
  }

  /** vfio_ioctl_device_feature: generic checks; no feature is modelled (vfio-pci's low power and DMA_BUF answer ENOTTY here). */
  private feature(arg: Uint8Array): number {
    if (arg.length < IOC.FEATURE.minSize) kerr(ERRNO.EFAULT);
    const dv = new DataView(arg.buffer, arg.byteOffset, arg.length);
    const argsz = dv.getUint32(0, true);
    const flags = dv.getUint32(4, true);
    if (argsz < IOC.FEATURE.minSize) kerr(ERRNO.EINVAL);
    if (flags & ~(VFIO_DEVICE_FEATURE_MASK | VFIO_DEVICE_FEATURE_SET | VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_PROBE)) kerr(ERRNO.EINVAL);
    if (!(flags & VFIO_DEVICE_FEATURE_PROBE) && flags & VFIO_DEVICE_FEATURE_SET && flags & VFIO_DEVICE_FEATURE_GET) kerr(ERRNO.EINVAL);
    return kerr(ERRNO.ENOTTY);
  }

  pread(buf: Uint8Array, offset: number): number {
    if (!this.accessGranted) kerr(ERRNO.EINVAL);
    return this.vdev.rw(buf, offset, false);
  }

  pwrite(buf: Uint8Array, offset: number): number {
    if (!this.accessGranted) kerr(ERRNO.EINVAL);
    return this.vdev.rw(buf, offset, true);
  }

  read(buf: Uint8Array): number {
    const n = this.pread(buf, this.pos);
    this.pos += n;
    return n;
  }

  write(buf: Uint8Array): number {
    const n = this.pwrite(buf, this.pos);
    this.pos += n;
    return n;
  }

  /** vfio_device_fops_release: vfio_df_group_close, or for a cdev vfio_df_unbind_iommufd. */
  release(): void {
    this.releasePending = this.vmas > 0;
    if (this.releasePending || !this.accessGranted) return;
    this.accessGranted = false;
    this.close();
    this.iommufd = null;
    if (this.group) return;
    this.vdev.cdevOpened = false;
    vfioDeviceUnblockGroup(this.vdev.vfioGroup);
  }
}

function user(arg: Uint8Array | null): Uint8Array {
  if (!arg) kerr(ERRNO.EFAULT);
  return arg;
}
