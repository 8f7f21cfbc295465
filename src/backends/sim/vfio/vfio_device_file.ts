/**
 * An open /dev/vfio/devices/vfioN (drivers/vfio/device_cdev.c, vfio_main.c): until
 * IOC.BIND_IOMMUFD.request succeeds every other ioctl, read and write fails with EINVAL; binding
 * claims the device for an iommufd (iommufd's bindDevice) and opens it (vfio-pci enables the
 * function); ATTACH/DETACH_IOMMUFD_PT drive the bound device; closing the file unbinds it.
 */
import { ERRNO, IommuError } from '../../../ioasid/errors.js';
import type { BoundDevice } from '../iommu/iommu.js';
import { kerr, KernelErrno } from '../kernel/errno.js';
import { IommufdCtx } from '../iommufd/main.js';
import type { SimMm } from '../kernel/mm.js';
import type { SimFile, SimProcess } from '../kernel/process.js';
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
   * A VFIO device's regions cannot be mmapped on the sim (a typed array cannot trap MMIO): after
   * do_mmap's checks, EINVAL, the kernel's answer for a region without VFIO_REGION_INFO_FLAG_MMAP.
   */
  mmap(mm: SimMm, addr: number, length: number, prot: number, flags: number, offset: number): number {
    return mm.mmapDevice(addr, length, prot, flags, offset, () => kerr(ERRNO.EINVAL));
  }
  /** df->access_granted: set once BIND_IOMMUFD has opened the device. */
  accessGranted = false;
  iommufd: IommufdCtx | null = null;
  devid = 0;
  private bound: BoundDevice | null = null;
  /** vdev->iommufd_attached, and the PASIDs attached (vdev->pasids). */
  private attached = false;
  private readonly pasids = new Set<number>();
  /** f_pos for read(2)/write(2). */
  private pos = 0;

  constructor(
    readonly vdev: VfioPciDevice,
    readonly proc: SimProcess,
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
    switch (request) {
      case IOC.ATTACH_IOMMUFD_PT.request: return this.attachPt(user(arg));
      case IOC.DETACH_IOMMUFD_PT.request: return this.detachPt(user(arg));
      case IOC.FEATURE.request: return this.feature(user(arg));
      case IOC.GET_REGION_INFO.request: vdev.getRegionInfo(user(arg)); return 0;
      case IOC.GET_INFO.request: vdev.getInfo(user(arg)); return 0;
      case IOC.GET_IRQ_INFO.request: vdev.getIrqInfo(user(arg)); return 0;
      case IOC.GET_PCI_HOT_RESET_INFO.request: vdev.getHotResetInfo(user(arg)); return 0;
      case IOC.PCI_HOT_RESET.request: vdev.hotReset(user(arg)); return 0;
      case VFIO_DEVICE_RESET: vdev.reset(); return 0;
      case IOC.SET_IRQS.request: vdev.setIrqs(user(arg)); return 0;
      default: return kerr(ERRNO.ENOTTY);
    }
  }

  /** vfio_df_ioctl_bind_iommufd */
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
    if (this.accessGranted) kerr(ERRNO.EINVAL);
    // vfio_df_check_token: a UUID is read, then refused: this is neither an SR-IOV PF nor a VF.
    if (flags & VFIO_DEVICE_BIND_FLAG_TOKEN) {
      this.proc.mm.view(Number(tokenPtr), 16);
      kerr(ERRNO.EINVAL);
    }
    const f = this.proc.fileOrNull(fd);
    if (!f) kerr(ERRNO.EBADF);
    if (!(f instanceof IommufdCtx)) kerr(ERRNO.EBADFD);
    // vfio_df_open: the cdev path opens a device once.
    const vdev = this.vdev;
    if (vdev.openCount !== 0) kerr(ERRNO.EINVAL);
    const bound = vdev.machine.bindDevice(f, vdev.dev);
    vdev.openCount++;
    vdev.opener = this;
    try {
      vdev.enable();
    } catch (e) {
      vdev.openCount--;
      vdev.opener = null;
      bound.unbind();
      throw e;
    }
    this.iommufd = f;
    this.bound = bound;
    this.devid = bound.devId;
    dv.setUint32(12, bound.devId, true);
    this.accessGranted = true;
    return 0;
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
    const ptId = dv.getUint32(8, true);
    const out = pasid === undefined ? this.bound!.attach(ptId) : this.bound!.attach(ptId, pasid);
    if (pasid === undefined) this.attached = true;
    else this.pasids.add(pasid);
    dv.setUint32(8, out, true);
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
      const pasid = dv.getUint32(8, true);
      if (!this.pasids.delete(pasid)) return 0;
      this.bound!.detach(pasid);
      return 0;
    }
    if (!this.attached) return 0;
    this.bound!.detach();
    this.attached = false;
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

  /** vfio_device_fops_release -> vfio_df_unbind_iommufd: close the device, then unbind. */
  release(): void {
    if (!this.accessGranted) return;
    const vdev = this.vdev;
    vdev.disable();
    vdev.openCount--;
    vdev.opener = null;
    this.accessGranted = false;
    this.bound!.unbind();
    this.bound = null;
  }
}

function user(arg: Uint8Array | null): Uint8Array {
  if (!arg) kerr(ERRNO.EFAULT);
  return arg;
}
