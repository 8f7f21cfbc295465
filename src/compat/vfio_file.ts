/**
 * A VFIO container or group as its ioctls see it: the kernel's file (/dev/vfio/vfio, /dev/iommu,
 * /dev/vfio/N), or the library's re-expression of it (the iommufd mode). VfioContainer and
 * VfioGroup speak to either through this one seam, so a program runs unchanged in every mode.
 */
import type { Binding } from '../backends/types.js';

export interface VfioFile {
  /** The file descriptor the ioctls go to (null for a group the library resolves through sysfs). */
  readonly fd: number | null;
  /** A command whose argument points to a struct or string (null = NULL). */
  ioctl(request: number, arg: Uint8Array | null): number;
  /** A command whose argument is an integer (VFIO_CHECK_EXTENSION, VFIO_SET_IOMMU). */
  ioctlInt(request: number, value: number): number;
  close(): void;
}

/** A kernel file: every command is one ioctl on its fd. */
export class KernelFile implements VfioFile {
  constructor(
    readonly binding: Binding,
    readonly fd: number,
    private readonly closeFd: () => void = () => binding.close(fd),
  ) {}

  ioctl(request: number, arg: Uint8Array | null): number {
    return this.binding.ioctl(this.fd, request, arg);
  }

  ioctlInt(request: number, value: number): number {
    return this.binding.ioctlInt(this.fd, request, value);
  }

  close(): void {
    this.closeFd();
  }
}
