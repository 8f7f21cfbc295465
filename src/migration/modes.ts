/**
 * The IOMMU modes a VFIO program can run in, and one session object that drives any of them with
 * the same calls: the TypeScript counterpart of the kernel's vfio selftest library
 * (tools/testing/selftests/vfio/lib/iommu.c, `struct iommu`, and the iommu half of
 * vfio_pci_device_init()). The kernel's five modes come first, in its order
 * (FIXTURE_VARIANT_ADD_ALL_IOMMU_MODES); the sixth is this library's own re-expression of the
 * container API over one IOAS (src/compat, mode 'iommufd').
 *
 *   using s = IommuSession.init('iommufd_compat_type1');
 *   using dev = s.openDevice('0000:00:01.0');
 *   using mem = s.alloc(2 * 4096);
 *   s.map({ mem, iova: 0x100000n });
 *   s.unmap({ iova: 0x100000n, size: 4096n });   // bytes unmapped, or IommuError
 *
 * Every call is one or a few uAPI commands of the mode, refusals are IommuError with the kernel's
 * errno, and `onCall` sees each call with its outcome (what compareModes records).
 */
import { openBinding } from '../backends/index.js';
import type { BackendName, Binding } from '../backends/types.js';
import { VfioContainer, type CompatMode, type IommuType } from '../compat/container.js';
import { VfioGroup } from '../compat/group.js';
import { PciDevice } from '../device/pci.js';
import { VfioDevice } from '../device/vfio_device.js';
import { IommuError, ERRNO } from '../ioasid/errors.js';
import type { Ioas, IovaRange } from '../ioasid/ioas.js';
import { Iommufd } from '../ioasid/iommufd.js';
import { UserMemory } from '../ioasid/memory.js';

/** The kernel's five vfio selftest modes, then the library's re-expression. */
export const IOMMU_MODE_NAMES = [
  'vfio_type1_iommu', 'vfio_type1v2_iommu', 'iommufd_compat_type1', 'iommufd_compat_type1v2', 'iommufd', 'ioasid_compat',
] as const;
export type IommuModeName = (typeof IOMMU_MODE_NAMES)[number];

export interface IommuMode {
  readonly name: IommuModeName;
  /** What the program opens as its container; null for native iommufd (cdev, no container). */
  readonly containerPath: '/dev/vfio/vfio' | '/dev/iommu' | null;
  /** VFIO_SET_IOMMU's type in the container modes; null for native iommufd. */
  readonly iommuType: IommuType | null;
  /** The src/compat mode that drives it; null for native iommufd. */
  readonly compat: CompatMode | null;
  /** One line for reports. */
  readonly summary: string;
}

export const IOMMU_MODES: readonly IommuMode[] = [
  { name: 'vfio_type1_iommu', containerPath: '/dev/vfio/vfio', iommuType: 'type1', compat: 'type1',
    summary: 'legacy container /dev/vfio/vfio, VFIO_TYPE1_IOMMU (the kernel\'s type1 driver, v1 unmap rules)' },
  { name: 'vfio_type1v2_iommu', containerPath: '/dev/vfio/vfio', iommuType: 'type1v2', compat: 'type1',
    summary: 'legacy container /dev/vfio/vfio, VFIO_TYPE1v2_IOMMU (the kernel\'s type1 driver)' },
  { name: 'iommufd_compat_type1', containerPath: '/dev/iommu', iommuType: 'type1', compat: 'kernel-compat',
    summary: '/dev/iommu as the container, VFIO_TYPE1_IOMMU (the kernel\'s vfio_compat.c, huge pages off)' },
  { name: 'iommufd_compat_type1v2', containerPath: '/dev/iommu', iommuType: 'type1v2', compat: 'kernel-compat',
    summary: '/dev/iommu as the container, VFIO_TYPE1v2_IOMMU (the kernel\'s vfio_compat.c)' },
  { name: 'iommufd', containerPath: null, iommuType: null, compat: null,
    summary: 'native iommufd: device cdev bound to /dev/iommu and attached to an IOAS' },
  { name: 'ioasid_compat', containerPath: '/dev/iommu', iommuType: 'type1v2', compat: 'iommufd',
    summary: 'this library\'s re-expression of vfio_compat.c over one IOAS, VFIO_TYPE1v2_IOMMU (cdevs, no group nodes)' },
];

/** The mode called `name`; a RangeError listing the valid names for anything else. */
export function iommuMode(name: string): IommuMode {
  const m = IOMMU_MODES.find((x) => x.name === name);
  if (!m) throw new RangeError(`${JSON.stringify(name)} is not an IOMMU mode: valid names are ${IOMMU_MODE_NAMES.join(', ')}`);
  return m;
}

/** One DMA mapping request, as libvfio's struct dma_region (memory or a raw address). */
export interface DmaRegion {
  /** The memory to map (its address and, unless `size` is given, its length). */
  readonly mem?: UserMemory;
  /** A raw process address (needs `size`); ignored when `mem` is given. */
  readonly vaddr?: bigint;
  readonly iova: bigint;
  /** Bytes (default: mem's length). */
  readonly size?: bigint;
  /** Default true. */
  readonly read?: boolean;
  /** Default true. */
  readonly write?: boolean;
}

/** What a session call did, as onCall sees it. */
export interface SessionCall {
  /** 'map', 'unmap', 'unmapAll', 'iovaRanges', 'openDevice', or a name given to `session.call`. */
  readonly op: string;
  /** The arguments, printable (bigints as hex strings). */
  readonly args: Readonly<Record<string, string | number | boolean>>;
  /** The value returned (bigints as hex strings), or null on a refusal. */
  readonly result: string | number | boolean | readonly IovaRange[] | null;
  /** The errno name of a refusal, or null. */
  readonly errno: string | null;
}

export interface SessionOptions {
  /** Sees every call with its outcome, refusals included. */
  onCall?: (call: SessionCall) => void;
}

/** A number as the reports and traces print it: lowercase hex with 0x, every bit kept. */
export const hex = (v: bigint | number): string => `0x${v.toString(16)}`;

/**
 * One program's view of DMA in one mode: the container (or iommufd and IOAS), the groups and
 * devices it opened, and map/unmap/IOVA ranges with the mode's own commands.
 */
export class IommuSession implements Disposable {
  /** The container (every mode but native iommufd). */
  readonly container: VfioContainer | null;
  /** The iommufd (native iommufd; the container's in the /dev/iommu modes; null in the type1 modes). */
  readonly iommufd: Iommufd | null;
  private readonly nativeIoas: Ioas | null;
  private readonly groups = new Map<number, VfioGroup>();
  private readonly devices: VfioDevice[] = [];
  private readonly memory: UserMemory[] = [];
  private iommuSet = false;
  private closed = false;

  private constructor(
    readonly binding: Binding,
    readonly mode: IommuMode,
    private readonly opts: SessionOptions,
  ) {
    if (mode.compat) {
      this.container = VfioContainer.open(binding, { mode: mode.compat, iommuType: mode.iommuType! });
      this.iommufd = this.container.iommufd;
      this.nativeIoas = null;
    } else {
      this.container = null;
      this.iommufd = new Iommufd(binding);
      this.nativeIoas = this.iommufd.allocIoas();
    }
  }

  /** iommu_init(): open the mode's container (or iommufd and one IOAS) on a backend. */
  static init(mode: IommuModeName | IommuMode, backend?: Binding | BackendName, opts: SessionOptions = {}): IommuSession {
    return new IommuSession(openBinding(backend), typeof mode === 'string' ? iommuMode(mode) : mode, opts);
  }

  /** The IOAS DMA goes through: native's own, or the container's once a group joined (null in type1 modes). */
  get ioas(): Ioas | null {
    return this.nativeIoas ?? this.container?.ioas ?? null;
  }

  /** Run `fn` as one recorded call named `op` (for scenario steps beyond the built-in ones). */
  call<T>(op: string, args: Record<string, string | number | boolean | bigint>, fn: () => T): T {
    const printable: Record<string, string | number | boolean> = {};
    for (const [k, v] of Object.entries(args)) printable[k] = typeof v === 'bigint' ? hex(v) : v;
    let value: T;
    try {
      value = fn();
    } catch (e) {
      if (e instanceof IommuError) this.opts.onCall?.({ op, args: printable, result: null, errno: e.code });
      throw e;
    }
    this.opts.onCall?.({ op, args: printable, result: printableResult(value), errno: null });
    return value;
  }

  /** Anonymous process memory on the session's backend, freed with the session. */
  alloc(length: number): UserMemory {
    const mem = UserMemory.anonymous(this.binding, length);
    this.memory.push(mem);
    return mem;
  }

  /**
   * vfio_pci_device_init(): the device ready for DMA through this session. Container modes: its
   * group is opened (once), checked viable, put in the container, the IOMMU type set at the first
   * group (later SET_IOMMUs are ignored, as libvfio ignores them), then VFIO_GROUP_GET_DEVICE_FD.
   * Native iommufd: the cdev is opened, bound and attached to the session's IOAS.
   */
  openDevice(bdf: string): VfioDevice {
    return this.call('openDevice', { bdf }, () => {
      const dev = this.container ? this.groupDevice(bdf) : this.cdevDevice(bdf);
      this.devices.push(dev);
      return dev;
    });
  }

  /**
   * The group half of openDevice() without opening the device (container modes): the device's
   * group opened (once), checked viable, put in the container and the IOMMU type set, as
   * openDevice() does. The device's later openDevice() reuses the group. Native iommufd has no
   * group step: null.
   */
  attachGroup(bdf: string): VfioGroup | null {
    return this.call('attachGroup', { bdf }, () => (this.container ? this.group(bdf) : null));
  }

  private groupDevice(bdf: string): VfioDevice {
    return this.group(bdf).getDevice(bdf);
  }

  private group(bdf: string): VfioGroup {
    const c = this.container!;
    const id = new PciDevice(this.binding, bdf).iommuGroup;
    if (id === null) throw new IommuError(ERRNO.ENODEV, 'open', `${bdf} is in no IOMMU group`);
    let group = this.groups.get(id);
    if (!group) {
      group = VfioGroup.open(this.binding, id, { mode: c.mode });
      this.groups.set(id, group);
      if (!group.status().viable) throw new IommuError(ERRNO.EPERM, 'VFIO_GROUP_GET_STATUS', `group ${id} is not viable`);
      group.setContainer(c);
      if (!this.iommuSet) {
        c.setIommu();
        this.iommuSet = true;
      } else {
        try {
          c.setIommu();
        } catch (e) {
          if (!(e instanceof IommuError)) throw e;
        }
      }
    }
    return group;
  }

  private cdevDevice(bdf: string): VfioDevice {
    const dev = VfioDevice.open(this.binding, bdf);
    try {
      dev.bind(this.iommufd!);
      dev.attach(this.nativeIoas!);
    } catch (e) {
      dev.close();
      throw e;
    }
    return dev;
  }

  /** iommu_map(): MAP_DMA (container modes) or IOMMU_IOAS_MAP at the fixed IOVA (native). */
  map(r: DmaRegion): void {
    const vaddr = r.mem ? r.mem.addr : r.vaddr;
    const size = r.size ?? (r.mem ? BigInt(r.mem.byteLength) : undefined);
    if (vaddr === undefined || size === undefined) throw new TypeError('IommuSession.map: give mem, or vaddr and size');
    const read = r.read ?? true;
    const write = r.write ?? true;
    this.call('map', { iova: r.iova, size, read, write }, () => {
      if (this.container) this.container.mapDma(vaddr, r.iova, { size, read, write });
      else this.nativeIoas!.mapUser(vaddr, size, { iova: r.iova, readable: read, writeable: write });
    });
  }

  /** iommu_unmap(): UNMAP_DMA or IOMMU_IOAS_UNMAP of [iova, iova + size); the bytes unmapped. */
  unmap(r: { readonly iova: bigint; readonly size: bigint }): bigint {
    return this.call('unmap', { iova: r.iova, size: r.size }, () =>
      this.container ? this.container.unmapDma(r.iova, r.size) : this.nativeIoas!.unmap(r.iova, r.size));
  }

  /** iommu_unmap_all(): UNMAP_DMA with FLAG_ALL, or IOMMU_IOAS_UNMAP of 0..U64_MAX; the bytes unmapped. */
  unmapAll(): bigint {
    return this.call('unmapAll', {}, () => (this.container ? this.container.unmapAllDma() : this.nativeIoas!.unmapAll()));
  }

  /**
   * iommu_iova_ranges(): where DMA may go, sorted: GET_INFO's IOVA_RANGE capability (an empty list
   * when the container reports none) or IOMMU_IOAS_IOVA_RANGES.
   */
  iovaRanges(): IovaRange[] {
    return this.call('iovaRanges', {}, () => {
      const ranges = this.container ? [...(this.container.info().iovaRanges ?? [])] : this.nativeIoas!.iovaRanges().ranges;
      return ranges.sort((a, b) => (a.start < b.start ? -1 : a.start > b.start ? 1 : 0));
    });
  }

  /** Close devices, groups, the container or iommufd, and the memory alloc() gave (iommu_cleanup). */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const d of this.devices.splice(0)) d.close();
    for (const g of this.groups.values()) g.close();
    this.groups.clear();
    if (this.container) this.container.close();
    else this.iommufd!.close();
    for (const m of this.memory.splice(0)) m.close();
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

function printableResult(v: unknown): SessionCall['result'] {
  if (typeof v === 'bigint') return hex(v);
  if (typeof v === 'number' || typeof v === 'boolean') return v;
  if (Array.isArray(v)) return v as IovaRange[];
  return null;
}

/** A program to run in each mode: it gets a fresh session and drives it (compareModes). */
export type Scenario = (session: IommuSession) => void | Promise<void>;
