/**
 * The `iommufd` mode's group: the iommufd path of drivers/vfio/group.c written over sysfs and the
 * devices' cdevs, for hosts with no /dev/vfio/N. The group is what
 * /sys/kernel/iommu_groups/N/devices lists; its VFIO devices are the members with a VFIO cdev.
 * VFIO_GROUP_GET_DEVICE_FD opens the device's cdev, binds it to the container's iommufd and
 * attaches it to the container's IOAS, as vfio_df_group_open + vfio_iommufd_compat_attach_ioas do
 * at the device's first open; a second open of the same device shares that cdev (the group path
 * counts opens, a cdev cannot be bound twice).
 *
 * Same checks, order and errno as group.c; what userspace cannot see is approximated from sysfs:
 * VIABLE (iommu_group_dma_owner_claimed) is "no member is bound to a driver that uses the DMA API
 * itself (anything but VFIO drivers, pcieport and pci-stub, the driver_managed_dma ones) and no
 * member is open through this library", and another process's ownership shows only at bind.
 */
import type { Binding } from '../backends/types.js';
import { PciDevice, SYS_IOMMU_GROUPS } from '../device/pci.js';
import { VfioDevice } from '../device/vfio_device.js';
import { ERRNO, IommuError, fail, isErrno } from '../ioasid/errors.js';
import {
  GROUP_STATUS_MINSZ, VFIO_GROUP_FLAGS_CONTAINER_SET, VFIO_GROUP_FLAGS_VIABLE, VFIO_GROUP_GET_DEVICE_FD,
  VFIO_GROUP_GET_STATUS, VFIO_GROUP_SET_CONTAINER, VFIO_GROUP_UNSET_CONTAINER,
} from '../ioasid/vfio_uapi.js';
import { domainCaps, type DomainCaps } from './domain_caps.js';
import { IommufdContainer } from './iommufd_container.js';
import type { VfioFile } from './vfio_file.js';

/** POLLNVAL: poll's answer for an fd that is not open. */
const POLLNVAL = 0x20;
const VF_TOKEN_ARG = 'vf_token=';
const UUID_STRING_LEN = 36;

/** One device opened through the group: its cdev, shared by every handle GET_DEVICE_FD gave out. */
interface OpenDevice {
  readonly owner: VfioDevice;
  refs: number;
  readonly leave: () => void;
}

/** The groups of this mode open in a process (group.c allows one open file per group). */
const openGroups = new WeakMap<Binding, Map<number, IommufdGroup>>();

/** Drivers that leave the group's DMA to their user (driver_managed_dma): VFIO's, pcieport, pci-stub. */
function dmaManaged(driver: string | null): boolean {
  return driver === null || driver.includes('vfio') || driver === 'pcieport' || driver === 'pci-stub';
}

export class IommufdGroup implements VfioFile {
  readonly fd = null;
  /** group->iommufd: the container this group joined. */
  private container: IommufdContainer | null = null;
  private readonly opened = new Map<string, OpenDevice>();
  private closed = false;

  private constructor(
    readonly binding: Binding,
    readonly id: number,
  ) {}

  /** vfio_group_fops_open: ENOENT without a VFIO device in the group (no node), EBUSY when already open. */
  static open(binding: Binding, id: number): IommufdGroup {
    const g = new IommufdGroup(binding, id);
    if (!g.members().some((d) => d.vfioCdev !== null)) fail(ERRNO.ENOENT, 'open', `IOMMU group ${id} has no VFIO device`);
    let m = openGroups.get(binding);
    if (!m) openGroups.set(binding, (m = new Map()));
    if (m.has(id)) fail(ERRNO.EBUSY, 'open');
    m.set(id, g);
    return g;
  }

  /** The PCI functions sysfs lists in the group. */
  members(): PciDevice[] {
    let names: string[];
    try {
      names = this.binding.readdir(`${SYS_IOMMU_GROUPS}/${this.id}/devices`);
    } catch (e) {
      if (isErrno(e, 'ENOENT')) return [];
      throw e;
    }
    return names.filter((n) => /^[0-9a-f]{4}:/.test(n)).map((n) => new PciDevice(this.binding, n));
  }

  ioctl(request: number, arg: Uint8Array | null): number {
    switch (request) {
      case VFIO_GROUP_GET_DEVICE_FD:
        return this.getDevice(readName(arg)).fd;
      case VFIO_GROUP_GET_STATUS:
        return this.getStatus(arg);
      case VFIO_GROUP_SET_CONTAINER:
        if (!arg || arg.length < 4) fail(ERRNO.EFAULT, 'get_user');
        return this.setContainer(new DataView(arg.buffer, arg.byteOffset, 4).getInt32(0, true));
      case VFIO_GROUP_UNSET_CONTAINER:
        return this.unsetContainer();
      default:
        return fail(ERRNO.ENOTTY, 'ioctl');
    }
  }

  ioctlInt(request: number): number {
    // Every group command but UNSET_CONTAINER takes a pointer; an integer is none.
    return request === VFIO_GROUP_UNSET_CONTAINER ? this.unsetContainer() : this.ioctl(request, null);
  }

  /** vfio_group_ioctl_get_status */
  private getStatus(arg: Uint8Array | null): number {
    if (!arg || arg.length < GROUP_STATUS_MINSZ) fail(ERRNO.EFAULT, 'copy_from_user');
    const dv = new DataView(arg.buffer, arg.byteOffset, GROUP_STATUS_MINSZ);
    if (dv.getUint32(0, true) < GROUP_STATUS_MINSZ) fail(ERRNO.EINVAL, 'VFIO_GROUP_GET_STATUS');
    let flags = 0;
    if (this.container) flags = VFIO_GROUP_FLAGS_CONTAINER_SET | VFIO_GROUP_FLAGS_VIABLE;
    else if (!this.dmaOwnerClaimed()) flags = VFIO_GROUP_FLAGS_VIABLE;
    dv.setUint32(4, flags, true);
    return 0;
  }

  private dmaOwnerClaimed(): boolean {
    return this.opened.size > 0 || this.members().some((d) => !dmaManaged(d.driver));
  }

  /** vfio_group_ioctl_set_container: only a container of this mode (by fd) can be joined. */
  setContainer(fd: number): number {
    if (fd < 0 || this.binding.poll(fd, 0, 0) & POLLNVAL) fail(ERRNO.EBADF, 'VFIO_GROUP_SET_CONTAINER');
    if (this.container) fail(ERRNO.EINVAL, 'VFIO_GROUP_SET_CONTAINER');
    const c = IommufdContainer.fromFd(this.binding, fd);
    if (!c) fail(ERRNO.EBADFD, 'VFIO_GROUP_SET_CONTAINER', `fd ${fd} is not a container of the iommufd mode`);
    c.ioasCreate();
    this.container = c;
    return 0;
  }

  /** vfio_group_ioctl_unset_container: the iommufd path only drops the reference (open devices stay). */
  private unsetContainer(): number {
    if (!this.container) fail(ERRNO.EINVAL, 'VFIO_GROUP_UNSET_CONTAINER');
    this.container = null;
    return 0;
  }

  /** vfio_group_ioctl_get_device_fd: a handle on the device, bound to the container's iommufd and attached to its IOAS. */
  getDevice(name: string): VfioDevice {
    const { pci, token } = this.match(name);
    const c = this.container;
    if (!c) fail(ERRNO.EINVAL, 'VFIO_GROUP_GET_DEVICE_FD');
    let open = this.opened.get(pci.bdf);
    if (!open) open = this.firstOpen(pci, c, token);
    else open.refs++;
    const o = open;
    const { owner } = o;
    return new VfioDevice(this.binding, owner.path, pci, {
      fd: owner.fd,
      origin: 'cdev',
      bound: { iommufd: owner.iommufd!, devId: owner.devId! }, // the container it was first opened in
      release: () => {
        if (--o.refs) return;
        this.opened.delete(pci.bdf);
        o.leave();
        owner.close();
      },
    });
  }

  /** vfio_df_device_first_open + vfio_iommufd_compat_attach_ioas, on the device's cdev. */
  private firstOpen(pci: PciDevice, c: IommufdContainer, token: Uint8Array | null): OpenDevice {
    const owner = VfioDevice.open(this.binding, pci);
    let caps: DomainCaps;
    try {
      owner.bind(c.ctx, token ? { token } : {});
      owner.attach(c.ioasCreate());
      caps = deviceDomainCaps(owner);
    } catch (e) {
      owner.close();
      throw e;
    }
    const open = { owner, refs: 1, leave: c.addDomain(caps) };
    this.opened.set(pci.bdf, open);
    return open;
  }

  /**
   * vfio_device_get_from_name with vfio_pci_core_match: the device's name, optionally followed by
   * spaces and one "vf_token=<uuid>"; ENODEV when no VFIO device of the group matches.
   */
  private match(buf: string): { pci: PciDevice; token: Uint8Array | null } {
    for (const pci of this.members()) {
      if (pci.vfioCdev === null || !buf.startsWith(pci.bdf)) continue;
      let rest = buf.slice(pci.bdf.length);
      if (rest && rest[0] !== ' ') continue;
      let token: Uint8Array | null = null;
      for (rest = rest.trimStart(); rest; rest = rest.trimStart()) {
        if (token || !rest.startsWith(VF_TOKEN_ARG)) fail(ERRNO.EINVAL, 'VFIO_GROUP_GET_DEVICE_FD');
        rest = rest.slice(VF_TOKEN_ARG.length);
        token = parseUuid(rest.slice(0, UUID_STRING_LEN));
        rest = rest.slice(UUID_STRING_LEN);
      }
      // vfio_pci_core_match_token_uuid: a token for a device that is neither a VF nor a PF is
      // refused here; an SR-IOV device's token is checked by BIND (VFIO_DEVICE_BIND_FLAG_TOKEN).
      if (token && !sriov(pci)) fail(ERRNO.EINVAL, 'VFIO_GROUP_GET_DEVICE_FD', 'VF token incorrectly provided, not a PF or VF');
      return { pci, token };
    }
    return fail(ERRNO.ENODEV, 'VFIO_GROUP_GET_DEVICE_FD');
  }

  /** vfio_group_fops_release: the container goes; devices already open stay open. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.container = null;
    openGroups.get(this.binding)?.delete(this.id);
  }
}

/** The domain the device was attached with, from its IOMMU's registers (unknown if GET_HW_INFO refuses). */
function deviceDomainCaps(dev: VfioDevice): DomainCaps {
  try {
    return domainCaps(dev.hwInfo());
  } catch (e) {
    if (e instanceof IommuError) return { pgsizeBitmap: null, enforceCacheCoherency: false };
    throw e;
  }
}

/** A VF (physfn link) or a PF (SR-IOV capability: sriov_totalvfs). */
function sriov(pci: PciDevice): boolean {
  for (const probe of [() => pci.binding.readlink(`${pci.path}/physfn`), () => pci.binding.readText(`${pci.path}/sriov_totalvfs`)]) {
    try {
      probe();
      return true;
    } catch (e) {
      if (!(e instanceof IommuError)) throw e;
    }
  }
  return false;
}

/** strndup_user(arg, PAGE_SIZE): EFAULT for NULL (or a string that runs off the buffer), EINVAL when too long. */
function readName(arg: Uint8Array | null): string {
  const end = arg ? arg.indexOf(0) : -1;
  if (!arg || end < 0) return fail(arg && arg.length > 4096 ? ERRNO.EINVAL : ERRNO.EFAULT, 'strndup_user');
  if (end >= 4096) fail(ERRNO.EINVAL, 'strndup_user');
  return new TextDecoder().decode(arg.subarray(0, end));
}

/** uuid_parse: 8-4-4-4-12 hex digits, EINVAL otherwise. */
function parseUuid(s: string): Uint8Array {
  if (!/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(s)) fail(ERRNO.EINVAL, 'uuid_parse');
  const hex = s.replace(/-/g, '');
  return Uint8Array.from({ length: 16 }, (_, i) => parseInt(hex.slice(2 * i, 2 * i + 2), 16));
}
