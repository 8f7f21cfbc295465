/**
 * VFIO groups, /dev/vfio/N (drivers/vfio/group.c): one per IOMMU group that has a device bound to
 * a VFIO driver, N being the IOMMU group's number. A group fd is opened once at a time (EBUSY),
 * never while a device of it is bound through its cdev (EBUSY), and vice versa. It reports its
 * viability (GET_STATUS), joins a legacy container or an iommufd (SET_CONTAINER: the kernel's compat
 * path, which makes the iommufd's compat IOAS), leaves it (UNSET_CONTAINER, EBUSY while devices are
 * open through a container) and hands out device fds by name (GET_DEVICE_FD), served by the same
 * VFIO device file as the cdev.
 *
 * `Vfio` is the core's registry (group.c's `struct vfio`): the kernel's build options for the
 * legacy interfaces, the groups, and vfio_iommu_type1's module parameters in sysfs.
 */
import { ERRNO } from '../../../ioasid/errors.js';
import {
  GROUP_STATUS_MINSZ, VFIO_GROUP_FLAGS_CONTAINER_SET, VFIO_GROUP_FLAGS_VIABLE, VFIO_GROUP_GET_DEVICE_FD,
  VFIO_GROUP_GET_STATUS, VFIO_GROUP_SET_CONTAINER, VFIO_GROUP_UNSET_CONTAINER,
} from '../../../ioasid/vfio_uapi.js';
import type { SimGroup } from '../iommu/iommu.js';
import { kerr } from '../kernel/errno.js';
import { kstrtouint } from '../kernel/kstrtox.js';
import { IommufdCtx } from '../iommufd/main.js';
import { PAGE_SIZE } from '../kernel/mm.js';
import type { SimFile, SimProcess } from '../kernel/process.js';
import { compatIoasCreate } from '../iommufd/vfio_compat.js';
import type { SimVfs } from '../kernel/vfs.js';
import { VfioDeviceFile } from './vfio_device_file.js';
import type { VfioPciDevice } from './vfio_pci.js';
import { containerAttachGroup, groupDetachContainer, legacyIoctl, VfioContainer } from './container.js';
import { userStruct, type Type1Params } from './vfio_iommu_type1.js';

/**
 * How the kernel's legacy VFIO interfaces were built (Kconfig). The default is the test VM's:
 * groups and the legacy container with the type1 driver.
 */
export interface VfioBuild {
  /** CONFIG_VFIO_GROUP: the /dev/vfio/N group nodes (default true). Without it, only cdevs. */
  readonly group?: boolean;
  /**
   * Who serves /dev/vfio/vfio: 'vfio' = CONFIG_VFIO_CONTAINER with vfio_iommu_type1 (the default
   * with groups), 'iommufd' = CONFIG_IOMMUFD_VFIO_CONTAINER (opening it gives an iommufd, with the
   * mm accounting VFIO uses), 'none' (the default without groups, which both depend on).
   */
  readonly container?: 'vfio' | 'iommufd' | 'none';
}

/** U16_MAX, vfio_iommu_type1's default dma_entry_limit. */
const DMA_ENTRY_LIMIT = 65535;

export class Vfio {
  readonly group: boolean;
  readonly container: 'vfio' | 'iommufd' | 'none';
  /** vfio_iommu_type1's module parameters (when the legacy container is built in). */
  readonly type1: Type1Params = { dmaEntryLimit: DMA_ENTRY_LIMIT };
  /** vfio.group_list, by IOMMU group number. */
  private readonly groups = new Map<number, VfioGroup>();

  constructor(
    readonly vfs: SimVfs,
    build: VfioBuild = {},
  ) {
    this.group = build.group ?? true;
    this.container = build.container ?? (this.group ? 'vfio' : 'none');
    if (!this.group && this.container !== 'none') throw new Error('CONFIG_VFIO_CONTAINER and CONFIG_IOMMUFD_VFIO_CONTAINER depend on CONFIG_VFIO_GROUP');
    if (this.container === 'vfio') {
      vfs.addAttr('/sys/module/vfio_iommu_type1/parameters/dma_entry_limit', {
        read: () => `${this.type1.dmaEntryLimit}\n`,
        write: (t) => (this.type1.dmaEntryLimit = kstrtouint(t)),
      });
    }
  }

  /** vfio_device_set_group + vfio_device_group_register: the device joins its IOMMU group's VFIO group. */
  addDevice(vdev: VfioPciDevice): VfioGroup | null {
    if (!this.group) return null;
    const iommuGroup = vdev.dev.group;
    let g = this.groups.get(iommuGroup.id);
    if (g) {
      g.drivers++;
    } else {
      g = new VfioGroup(iommuGroup);
      this.groups.set(iommuGroup.id, g);
      const group = g;
      this.vfs.addCharDev(g.path, (proc) => group.open(proc));
    }
    g.devices.unshift(vdev);
    return g;
  }

  /** vfio_device_group_unregister + vfio_device_remove_group: the last device takes the group (and its container) away. */
  removeDevice(vdev: VfioPciDevice): void {
    const g = vdev.vfioGroup;
    if (!g) return;
    g.devices.splice(g.devices.indexOf(vdev), 1);
    if (--g.drivers) return;
    this.groups.delete(g.iommuGroup!.id);
    this.vfs.remove(g.path);
    if (g.container) groupDetachContainer(g);
    g.iommuGroup = null;
  }
}

/** struct vfio_group. */
export class VfioGroup {
  /** Registered devices, newest first (list_add). */
  readonly devices: VfioPciDevice[] = [];
  /** VFIO devices holding the group (group->drivers). */
  drivers = 1;
  openedFile: VfioGroupFile | null = null;
  container: VfioContainer | null = null;
  /** 1 for the group itself while in a container, +1 per device open through it. */
  containerUsers = 0;
  iommufd: IommufdCtx | null = null;
  /** Devices bound through their cdev (the group cannot be opened meanwhile). */
  cdevDeviceOpenCnt = 0;
  /** /dev/vfio/N */
  readonly path: string;

  constructor(
    /** Null once the last device went (vfio_device_remove_group revokes it). */
    public iommuGroup: SimGroup | null,
  ) {
    this.path = `/dev/vfio/${iommuGroup!.id}`;
  }

  /** vfio_group_has_iommu */
  get hasIommu(): boolean {
    return this.container !== null || this.iommufd !== null;
  }

  /** vfio_group_fops_open: one open at a time, none while a device is bound through its cdev. */
  open(proc: SimProcess): VfioGroupFile {
    if (this.cdevDeviceOpenCnt) kerr(ERRNO.EBUSY);
    if (this.openedFile) kerr(ERRNO.EBUSY);
    return (this.openedFile = new VfioGroupFile(this, proc));
  }
}

/** vfio_device_block_group: BIND_IOMMUFD on a cdev while the device's group is open is EBUSY. */
export function vfioDeviceBlockGroup(group: VfioGroup | null): void {
  if (!group) return;
  if (group.openedFile) kerr(ERRNO.EBUSY);
  group.cdevDeviceOpenCnt++;
}

export function vfioDeviceUnblockGroup(group: VfioGroup | null): void {
  if (group) group.cdevDeviceOpenCnt--;
}

/** An open /dev/vfio/N. Device fds opened through a container hold it (the group stays open). */
export class VfioGroupFile implements SimFile {
  readonly kind = 'vfio-group';
  /** References to the open file: its descriptor, and each device using the container (get_file). */
  private refs = 1;

  constructor(
    readonly group: VfioGroup,
    readonly proc: SimProcess,
  ) {}

  ioctl(request: number, arg: Uint8Array | null): number {
    return legacyIoctl(request, () => this.dispatch(request, arg));
  }

  /** ioctl(fd, request, integer): UNSET_CONTAINER takes none; to the others an integer is a bad pointer. */
  ioctlInt(request: number): number {
    return this.ioctl(request, null);
  }

  /** vfio_group_fops_unl_ioctl */
  private dispatch(request: number, arg: Uint8Array | null): number {
    switch (request) {
      case VFIO_GROUP_GET_DEVICE_FD: return this.getDeviceFd(arg);
      case VFIO_GROUP_GET_STATUS: return this.getStatus(arg);
      case VFIO_GROUP_SET_CONTAINER: return this.setContainer(arg);
      case VFIO_GROUP_UNSET_CONTAINER: return this.unsetContainer();
      default: return kerr(ERRNO.ENOTTY);
    }
  }

  /**
   * vfio_group_ioctl_get_status: with a container or iommufd, VIABLE | CONTAINER_SET; otherwise
   * VIABLE while nobody claimed the group's DMA (a kernel driver bound to a member holds it).
   */
  private getStatus(arg: Uint8Array | null): number {
    const d = userStruct(arg, GROUP_STATUS_MINSZ);
    if (d.getUint32(0, true) < GROUP_STATUS_MINSZ) kerr(ERRNO.EINVAL);
    const g = this.group;
    if (!g.iommuGroup) kerr(ERRNO.ENODEV);
    let flags = 0;
    if (g.hasIommu) flags = VFIO_GROUP_FLAGS_CONTAINER_SET | VFIO_GROUP_FLAGS_VIABLE;
    else if (!g.iommuGroup.ownerCount) flags = VFIO_GROUP_FLAGS_VIABLE;
    d.setUint32(4, flags, true);
    return 0;
  }

  /**
   * vfio_group_ioctl_set_container: the fd is read first (EFAULT, EBADF), then the group must have
   * none (EINVAL); a legacy container takes the group's DMA ownership, an iommufd gets its compat
   * IOAS (ownership waits for GET_DEVICE_FD); any other file is EBADFD.
   */
  private setContainer(arg: Uint8Array | null): number {
    const fd = userStruct(arg, 4).getInt32(0, true);
    const f = this.proc.fileOrNull(fd);
    if (!f) kerr(ERRNO.EBADF);
    const g = this.group;
    if (g.hasIommu) kerr(ERRNO.EINVAL);
    if (!g.iommuGroup) kerr(ERRNO.ENODEV);
    if (f instanceof VfioContainer) {
      containerAttachGroup(f, g);
      return 0;
    }
    if (f instanceof IommufdCtx) {
      compatIoasCreate(f);
      f.hold();
      g.iommufd = f;
      return 0;
    }
    return kerr(ERRNO.EBADFD);
  }

  /** vfio_group_ioctl_unset_container: EINVAL without one, EBUSY while devices are open through a container. */
  private unsetContainer(): number {
    const g = this.group;
    if (!g.hasIommu) kerr(ERRNO.EINVAL);
    if (g.container) {
      if (g.containerUsers !== 1) kerr(ERRNO.EBUSY);
      groupDetachContainer(g);
    }
    this.dropIommufd();
    return 0;
  }

  private dropIommufd(): void {
    const ictx = this.group.iommufd;
    if (!ictx) return;
    this.group.iommufd = null;
    ictx.release();
  }

  /**
   * vfio_group_ioctl_get_device_fd: the name (strndup_user: EFAULT, EINVAL past a page), the device
   * matching it (vfio_pci_core_match; ENODEV for none), then the device opened through the group.
   */
  private getDeviceFd(arg: Uint8Array | null): number {
    const name = strndupUser(arg, PAGE_SIZE);
    const vdev = this.group.devices.find((d) => pciMatch(d, name));
    if (!vdev) kerr(ERRNO.ENODEV);
    const df = new VfioDeviceFile(vdev, this.proc, this.group);
    groupOpenDevice(df);
    return this.proc.installFd(df);
  }

  get(): void {
    this.refs++;
  }

  put(): void {
    if (--this.refs) return;
    // vfio_group_fops_release: no device is open through a container any more.
    const g = this.group;
    if (g.container) groupDetachContainer(g);
    this.dropIommufd();
    g.openedFile = null;
  }

  release(): void {
    this.put();
  }
}

/** strndup_user: the NUL-terminated string at `arg`, at most `n` bytes with its NUL. */
function strndupUser(arg: Uint8Array | null, n: number): string {
  if (!arg) kerr(ERRNO.EFAULT);
  const end = arg.subarray(0, n).indexOf(0);
  if (end < 0) kerr(arg.length >= n ? ERRNO.EINVAL : ERRNO.EFAULT);
  return new TextDecoder('latin1').decode(arg.subarray(0, end));
}

/**
 * vfio_pci_core_match: the device's name, optionally followed by spaces and options. The only
 * option is vf_token=<uuid>, and the sim has no SR-IOV device that takes one: any option is EINVAL.
 */
function pciMatch(vdev: VfioPciDevice, buf: string): boolean {
  const name = vdev.dev.name;
  if (!buf.startsWith(name)) return false;
  if (buf.length === name.length) return true;
  if (buf[name.length] !== ' ') return false;
  if (!/^ *$/.test(buf.slice(name.length))) kerr(ERRNO.EINVAL);
  return true;
}

/**
 * vfio_df_group_open: the group needs a container or iommufd (EINVAL); the device opens (its first
 * open uses the container, EINVAL before VFIO_SET_IOMMU, or binds it to the iommufd); with an
 * iommufd, the first open also attaches it to the compat IOAS (ENODEV if there is none now).
 */
function groupOpenDevice(df: VfioDeviceFile): void {
  const g = df.group!;
  if (!g.hasIommu) kerr(ERRNO.EINVAL);
  df.iommufd = g.iommufd;
  try {
    df.open();
  } catch (e) {
    df.iommufd = null;
    throw e;
  }
  if (df.iommufd && df.vdev.openCount === 1) {
    try {
      df.vdev.compatAttachIoas(df.iommufd);
    } catch (e) {
      df.close();
      df.iommufd = null;
      throw e;
    }
  }
  df.accessGranted = true;
}
