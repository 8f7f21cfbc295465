/**
 * A VFIO group for TypeScript users: the devices the IOMMU cannot isolate from each other, owned
 * and used together. In the `type1` and `kernel-compat` modes it is the kernel's group node
 * (/dev/vfio/N); in the `iommufd` mode the library resolves it through sysfs
 * (iommufd_group.ts). Devices got from it are the same VfioDevice the new API uses.
 */
import { openBinding } from '../backends/index.js';
import { O_CLOEXEC, O_RDWR, type BackendName, type Binding } from '../backends/types.js';
import { PciDevice } from '../device/pci.js';
import { VfioDevice } from '../device/vfio_device.js';
import { ERRNO, IommuError } from '../ioasid/errors.js';
import {
  GROUP_STATUS_MINSZ, VFIO_GROUP_FLAGS_CONTAINER_SET, VFIO_GROUP_FLAGS_VIABLE, VFIO_GROUP_GET_DEVICE_FD,
  VFIO_GROUP_GET_STATUS, VFIO_GROUP_SET_CONTAINER, VFIO_GROUP_UNSET_CONTAINER,
} from '../ioasid/vfio_uapi.js';
import { vfioCall, type CompatMode, type VfioContainer } from './container.js';
import { IommufdGroup } from './iommufd_group.js';
import { KernelFile, type VfioFile } from './vfio_file.js';

/** What VFIO_GROUP_GET_STATUS reports. */
export interface GroupStatus {
  /** VFIO_GROUP_FLAGS_VIABLE 1, VFIO_GROUP_FLAGS_CONTAINER_SET 2. */
  readonly flags: number;
  /** Every device of the group is free for the user (none used by a kernel driver or another owner). */
  readonly viable: boolean;
  readonly containerSet: boolean;
}

export interface GroupOptions {
  /** 'type1' and 'kernel-compat' open /dev/vfio/N; 'iommufd' resolves the group through sysfs. Default 'type1'. */
  mode?: CompatMode;
}

const BDF = /^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]/;

export class VfioGroup implements Disposable {
  private readonly file: VfioFile;
  private closed = false;

  private constructor(
    readonly binding: Binding,
    /** The IOMMU group number. */
    readonly id: number,
    readonly mode: CompatMode,
  ) {
    this.file = mode === 'iommufd'
      ? IommufdGroup.open(binding, id)
      : new KernelFile(binding, binding.open(`/dev/vfio/${id}`, O_RDWR | O_CLOEXEC));
  }

  /** Open IOMMU group `id` (EBUSY if it is open already, ENOENT if no VFIO driver holds a device of it). */
  static open(backend: Binding | BackendName | undefined, id: number, opts: GroupOptions = {}): VfioGroup {
    return new VfioGroup(openBinding(backend), id, opts.mode ?? 'type1');
  }

  /** Open the group of a PCI device, found through its sysfs iommu_group link. */
  static forDevice(backend: Binding | BackendName | undefined, bdf: string, opts: GroupOptions = {}): VfioGroup {
    const binding = openBinding(backend);
    const id = new PciDevice(binding, bdf).iommuGroup;
    if (id === null) throw new IommuError(ERRNO.ENODEV, 'open', `${bdf} is in no IOMMU group`);
    return new VfioGroup(binding, id, opts.mode ?? 'type1');
  }

  /** The group node's fd (null in the iommufd mode, which has no node). */
  get fd(): number | null {
    return this.file.fd;
  }

  // ---- raw commands ---------------------------------------------------------------------------

  /** A group command as the kernel takes it (struct, fd or name bytes; null = NULL). */
  ioctl(request: number, arg: Uint8Array | null): number {
    return vfioCall(request, () => this.file.ioctl(request, arg));
  }

  // ---- the legacy calls -----------------------------------------------------------------------

  /** VFIO_GROUP_GET_STATUS */
  status(): GroupStatus {
    const buf = new Uint8Array(GROUP_STATUS_MINSZ);
    new DataView(buf.buffer).setUint32(0, buf.length, true);
    this.ioctl(VFIO_GROUP_GET_STATUS, buf);
    const flags = new DataView(buf.buffer).getUint32(4, true);
    return { flags, viable: (flags & VFIO_GROUP_FLAGS_VIABLE) !== 0, containerSet: (flags & VFIO_GROUP_FLAGS_CONTAINER_SET) !== 0 };
  }

  /** VFIO_GROUP_SET_CONTAINER with a container of the same mode (or a raw fd, passed as is). */
  setContainer(container: VfioContainer | number): void {
    if (typeof container !== 'number' && (container.mode === 'iommufd') !== (this.mode === 'iommufd')) {
      throw new TypeError(`a ${this.mode}-mode group cannot join a ${container.mode}-mode container`);
    }
    const arg = new Uint8Array(4);
    new DataView(arg.buffer).setInt32(0, typeof container === 'number' ? container : container.fd, true);
    this.ioctl(VFIO_GROUP_SET_CONTAINER, arg);
  }

  /** VFIO_GROUP_UNSET_CONTAINER */
  unsetContainer(): void {
    this.ioctl(VFIO_GROUP_UNSET_CONTAINER, null);
  }

  /**
   * VFIO_GROUP_GET_DEVICE_FD by the device's name ("0000:00:01.0", optionally followed by
   * " vf_token=<uuid>"): the device, ready for regions, interrupts and DMA through the container.
   */
  getDevice(name: string): VfioDevice {
    const bdf = BDF.exec(name)?.[0];
    const pci = bdf ? new PciDevice(this.binding, bdf) : null;
    if (this.file instanceof IommufdGroup) {
      const file = this.file;
      return vfioCall(VFIO_GROUP_GET_DEVICE_FD, () => file.getDevice(name));
    }
    const fd = this.ioctl(VFIO_GROUP_GET_DEVICE_FD, new TextEncoder().encode(`${name}\0`));
    return new VfioDevice(this.binding, `/dev/vfio/${this.id}`, pci, { fd, origin: 'group' });
  }

  /** The PCI addresses sysfs lists in the group (/sys/kernel/iommu_groups/N/devices). */
  devices(): string[] {
    return this.binding.readdir(`/sys/kernel/iommu_groups/${this.id}/devices`);
  }

  /** Close the group (devices already got stay open; the container is left). */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.file.close();
  }

  [Symbol.dispose](): void {
    this.close();
  }
}
