/**
 * A simulated machine: a declarative description (IOMMU, PCI topology) made into hardware that the
 * sim kernel drives. At boot it numbers buses, probes functions in Linux's order, puts each into an
 * IOMMU group by the kernel's rules, binds the drivers the description names, and publishes sysfs
 * (and later /dev/vfio/devices nodes) into the kernel's file system namespace.
 *
 * iommufd sees each function as a `SimDevice` (device.ts); the selftest's mock devices are made
 * here too (addMockDevice), behind the mock IOMMU, so group numbers come from one allocator as in
 * the kernel.
 */
import { publishIntelDebugfs } from '../iommu/intel_debugfs.js';
import { ERRNO } from '../../../ioasid/errors.js';
import { kerr } from '../kernel/errno.js';
import { IommuGroup, type BoundDevice, type DmaTarget, type IommuCaps, type SimDevice, type SimIommuUnit } from '../iommu/iommu.js';
import { PciDevice, type PciHost } from '../pci/pci_device.js';

export { IommuGroup, PciDevice };
import { bindForVfio } from '../iommufd/device.js';
import { MockDevice, type MockDeviceHost } from '../iommufd/mock_iommu.js';
import { hardwareOps } from '../iommu/driver_ops.js';
import type { IommufdCtx } from '../iommufd/main.js';
import type { SimVfs } from '../kernel/vfs.js';
import { publishBoot, type KernelDesc } from '../kernel/boot.js';
import { SimHost, type HostDesc } from '../kernel/host.js';
import { Q35_ACPI_TABLES, testVmKernel } from './kernels.js';
import { DriverCore, type PciDriver } from '../pci/pci_driver.js';
import { vgaDefaultDevice } from '../pci/vgaarb.js';
import { NvmePciDriver } from '../drivers/nvme.js';
import { SerialPciDriver } from '../drivers/serial.js';
import { VirtioPciDriver } from '../drivers/virtio_pci.js';
import { pciDeviceGroup, pciForEachDmaAlias } from '../iommu/groups.js';
import { IommuUnit, withCaps } from '../hw/iommu.js';
import { mockCaps } from '../hw/mock_iommu.js';
import { PciTopology, type PciNode, type PciNodeDesc } from '../hw/pci.js';
import { PCI_COMMAND, PCI_COMMAND_IO, PCI_COMMAND_MEMORY, PCI_COMMAND_SERR, PCI_INTERRUPT_LINE, PCI_INTERRUPT_PIN, type PciFunction } from '../hw/pci_function.js';
import { publishDevice, publishGroup, publishIommu, unpublishGroup } from '../pci/sysfs.js';
import { smmuv3Caps, smmuv3Registers, type Smmuv3Options } from '../hw/smmuv3.js';
import { VfioPciDriver } from '../vfio/vfio_pci.js';
import { Vfio, type VfioBuild } from '../vfio/group.js';
import { vtdCaps, vtdRegisters, type VtdOptions } from '../hw/vtd.js';

export type IommuDesc =
  | { readonly kind: 'vtd'; readonly options?: VtdOptions }
  | { readonly kind: 'smmuv3'; readonly options?: Smmuv3Options };

export interface MachineDesc {
  readonly name: string;
  /** The IOMMU translating every PCI function (null: none; PCI devices then have no group). */
  readonly iommu: IommuDesc | null;
  /** Functions on the root bus (bus 0 of segment 0); bridges carry their own buses. */
  readonly pci: readonly PciNodeDesc[];
  /**
   * Functions handed to vfio-pci once the machine is up, the way a VFIO user does it (and the
   * test VM's guest-init): `driver_override` = vfio-pci, then the BDF to `drivers_probe`.
   */
  readonly vfioPci?: readonly string[];
  /** The kernel it boots: release, command line, config (default: the test VM's, testVmKernel()). */
  readonly kernel?: KernelDesc;
  /** What the host's userspace did after boot: mounts, swap, dm devices, interfaces up (kernel/host.ts). */
  readonly host?: HostDesc;
  /**
   * The firmware's ACPI tables other than the IOMMU's (default: QEMU q35's). The IOMMU's own
   * table follows from `iommu`: DMAR for VT-d, IORT for an SMMUv3.
   */
  readonly acpiTables?: readonly string[];
  /**
   * How the kernel's legacy VFIO interfaces were built (../vfio/group.ts): groups (/dev/vfio/N)
   * and who serves /dev/vfio/vfio. Default: the test VM's, groups and the type1 container.
   */
  readonly vfio?: VfioBuild;
}

/** The ACPI table that describes an IOMMU of this kind to the kernel. */
const IOMMU_ACPI_TABLE = { vtd: 'DMAR', smmuv3: 'IORT' } as const;

export class Machine implements PciHost, MockDeviceHost {
  /** The hardware IOMMU unit (null when the description has none). */
  readonly iommu: IommuUnit | null;
  /** The selftest's mock IOMMU (present when the kernel offers IOMMU_TEST_CMD). */
  readonly mockIommu: IommuUnit | null;
  readonly topology: PciTopology;
  /** Every PCI function, in probe order. */
  readonly devices: PciDevice[] = [];
  readonly drivers: DriverCore;
  /** The VFIO core: groups, the legacy container's build and parameters. */
  readonly vfio: Vfio;
  readonly vfioPci: VfioPciDriver;
  /** The boot VGA device (pci/vgaarb.ts; sysfs `boot_vga`), or null without a VGA function. */
  readonly bootVga: PciDevice | null;
  /** The host's mounts, swap, consoles (/proc) as its userspace set them up. */
  readonly host: SimHost;
  /** iommufd's half of VFIO_DEVICE_BIND_IOMMUFD (iommufd/device.ts bindForVfio); unit tests may stand in for it. */
  bindDevice: (ctx: IommufdCtx, dev: SimDevice) => BoundDevice = bindForVfio;
  private readonly groups = new Map<number, IommuGroup>();
  private readonly mocks = new Set<MockDevice>();
  /** Per requester ID seen by the unit: which device wants which domain there (DMA aliases are shared). */
  private readonly aliasUsers = new Map<number, Map<SimDevice, DmaTarget>>();

  constructor(
    readonly desc: MachineDesc,
    readonly vfs: SimVfs,
    opts: { readonly selftest?: boolean } = {},
  ) {
    this.iommu = makeUnit(desc.iommu);
    this.mockIommu = opts.selftest === false ? null : new IommuUnit(mockCaps(), 'iommufd_selftest_iommu.0');
    this.topology = new PciTopology(desc.pci, this.iommu !== null);
    const tables = [...(desc.acpiTables ?? Q35_ACPI_TABLES), ...(desc.iommu ? [IOMMU_ACPI_TABLE[desc.iommu.kind]] : [])];
    const kernel = desc.kernel ?? testVmKernel();
    publishBoot(vfs, kernel, tables.sort(), opts.selftest !== false);
    if (this.iommu) publishIommu(vfs, this.iommu, desc.iommu!.kind);
    if (this.mockIommu) publishIommu(vfs, this.mockIommu, 'mock');
    this.drivers = new DriverCore(vfs, () => this.devices);
    this.vfio = new Vfio(vfs, desc.vfio);
    this.vfioPci = new VfioPciDriver(this, this.vfio);
    this.drivers.register(new PcieportDriver());
    for (const name of new Set(this.topology.nodes.map((n) => n.desc.driver).filter((d): d is string => !!d && d !== 'pcieport'))) {
      this.drivers.register(hostDriver(name, vfs) ?? new NamedDriver(name, this.topology.nodes.filter((n) => n.desc.driver === name)));
    }
    // vfio-pci is there unless the kernel's config makes it a module (not loaded) or leaves it out.
    if (!/^(CONFIG_VFIO_PCI=m|# CONFIG_VFIO_PCI is not set)$/m.test(kernel.config)) this.drivers.register(this.vfioPci);
    this.probe();
    if (this.iommu && desc.iommu!.kind === 'vtd' && /^CONFIG_INTEL_IOMMU_DEBUGFS=y$/m.test(kernel.config)) {
      const unit = this.iommu;
      publishIntelDebugfs(vfs, this.devices.map((d) => ({ name: d.name, translation: () => unit.translation(d.rid) })));
    }
    this.bootVga = vgaDefaultDevice(this.devices);
    for (const dev of this.devices) if (dev.node.desc.driver) this.drivers.attach(dev);
    for (const bdf of desc.vfioPci ?? []) {
      vfs.writeText(`/sys/bus/pci/devices/${bdf}/driver_override`, 'vfio-pci\n');
      vfs.writeText('/sys/bus/pci/drivers_probe', bdf);
    }
    this.host = new SimHost(vfs, desc.host ?? {}, kernel.cmdline);
  }

  device(name: string): PciDevice | undefined {
    return this.devices.find((d) => d.name === name);
  }

  group(id: number): IommuGroup | undefined {
    return this.groups.get(id);
  }

  /** iommu_group_alloc: the lowest free group number. */
  allocGroup(): IommuGroup {
    let id = 0;
    while (this.groups.has(id)) id++;
    const g = new IommuGroup(id);
    this.groups.set(id, g);
    return g;
  }

  /**
   * A device on the selftest's mock bus with its own group (generic_device_group), as
   * IOMMU_TEST_OP_MOCK_DOMAIN creates ("iommufd_mock%u"). Flags: MOCK_FLAGS_DEVICE_NO_DIRTY / _PASID.
   */
  addMockDevice(flags = 0): MockDevice {
    if (!this.mockIommu) throw new Error('this kernel has no mock IOMMU (selftest off)');
    MockDevice.checkFlags(flags);
    const group = this.allocGroup();
    const dev = new MockDevice(flags, group, this.mockIommu);
    group.devices.push(dev);
    this.mocks.add(dev);
    publishGroup(this.vfs, group, []);
    return dev;
  }

  /** Destroy a mock device: its group number becomes free again. */
  removeMockDevice(dev: MockDevice): void {
    if (!this.mocks.delete(dev)) return;
    this.mockIommu!.setTranslation(dev.rid, null, null);
    this.groups.delete(dev.group.id);
    unpublishGroup(this.vfs, dev.group.id);
  }

  /** Probe every function in order: group, IOMMU view and DMA port, sysfs. */
  private probe(): void {
    this.firmware();
    const byNode = new Map<PciNode, PciDevice>();
    for (const node of this.topology.probeOrder) {
      let group: IommuGroup;
      if (this.iommu) {
        group = pciDeviceGroup(this.topology, node, { get: (n) => byNode.get(n)?.group, alloc: () => this.allocGroup() });
      } else {
        group = new IommuGroup(-1);
      }
      let dev: PciDevice | null = null;
      const view = this.deviceView(node, () => dev!);
      dev = new PciDevice(node, group, view, sysfsPathOf(node), resetMethodsAtProbe(node), this.iommu ?? noIommu);
      group.devices.push(dev);
      byNode.set(node, dev);
      this.devices.push(dev);
      if (this.iommu) node.fn.dmaPort = this.iommu.port(this.dmaRequesterId(node));
      publishDevice(this.vfs, this, dev);
    }
    if (this.iommu) for (const g of new Set(this.devices.map((d) => d.group))) publishGroup(this.vfs, g, this.iommu.caps.reserved);
  }

  /**
   * What the firmware leaves behind: BARs placed (memory upward from 0xfe000000, I/O from 0xc000,
   * each naturally aligned, in probe order) and decoding on (PCI_COMMAND = IO|MEMORY|SERR, as the
   * VM's SeaBIOS leaves every function).
   */
  private firmware(): void {
    let mem = 0xfe00_0000;
    let io = 0xc000;
    for (const node of this.topology.probeOrder) {
      const fn = node.fn;
      for (let i = 0; i < 6; i++) {
        const bar = fn.bars[i];
        if (!bar) continue;
        if (bar.type === 'io') {
          io = Math.ceil(io / bar.size) * bar.size;
          fn.assignBar(i, io);
          io += bar.size;
        } else {
          const align = Math.max(bar.size, 4096);
          mem = Math.ceil(mem / align) * align;
          fn.assignBar(i, mem);
          mem += align;
        }
      }
      fn.cfgWrite(PCI_COMMAND, 2, PCI_COMMAND_IO | PCI_COMMAND_MEMORY | PCI_COMMAND_SERR);
      fn.cfgWrite(PCI_INTERRUPT_LINE, 1, node.desc.irq ?? (fn.config[PCI_INTERRUPT_PIN] ? 10 : 0));
    }
  }

  /** The requester ID the IOMMU sees for a function's DMA: the topmost alias (a PCIe-to-PCI bridge's). */
  dmaRequesterId(node: PciNode): number {
    let rid = node.rid;
    pciForEachDmaAlias(node, (n, alias) => {
      if (n !== node) rid = alias;
      return false;
    });
    return rid;
  }

  /** Every requester ID a function's DMA may carry (own, quirk aliases, bridge aliases). */
  dmaAliases(node: PciNode): number[] {
    const out: number[] = [];
    pciForEachDmaAlias(node, (_n, alias) => {
      if (!out.includes(alias)) out.push(alias);
      return false;
    });
    return out;
  }

  /**
   * The unit as this function sees it: per-device caps (PASID needs the function's PASID
   * capability), and setTranslation installing the domain for every alias, as the intel driver's
   * domain_context_mapping does. An alias shared by several functions keeps a domain while any
   * of them has one.
   */
  private deviceView(node: PciNode, owner: () => SimDevice): SimIommuUnit {
    const unit = this.iommu;
    if (!unit) return noIommu;
    const caps: IommuCaps = withCaps(unit.caps, { pasidBits: Math.min(unit.caps.pasidBits, node.desc.pasidBits ?? 0) });
    return {
      caps,
      get faults() {
        return unit.faults;
      },
      setTranslation: (rid: number, pasid: number | null, target: DmaTarget | null): void => {
        if (pasid !== null) return unit.setTranslation(rid, pasid, target);
        for (const a of rid === node.rid ? this.dmaAliases(node) : [rid]) this.setAliasTarget(a, owner(), target);
      },
      port: (rid) => unit.port(rid),
      flushIotlb: (t) => unit.flushIotlb(t),
    };
  }

  private setAliasTarget(rid: number, dev: SimDevice, target: DmaTarget | null): void {
    let users = this.aliasUsers.get(rid);
    if (!users && target) this.aliasUsers.set(rid, (users = new Map()));
    if (target) users!.set(dev, target);
    else users?.delete(dev);
    if (users && !users.size) this.aliasUsers.delete(rid); // nobody left on this requester ID
    let installed: DmaTarget | null = target;
    if (!installed && users) for (const t of users.values()) installed = t;
    this.iommu!.setTranslation(rid, null, installed);
  }
}

const noIommu: SimIommuUnit = {
  caps: mockCaps(),
  faults: [],
  setTranslation: () => {},
  port: () => ({ read: () => null, write: () => null }),
  flushIotlb: () => {},
};

function makeUnit(d: IommuDesc | null): IommuUnit | null {
  if (!d) return null;
  if (d.kind === 'vtd') return new IommuUnit(vtdCaps(vtdRegisters(d.options)), 'dmar0');
  return new IommuUnit(smmuv3Caps(smmuv3Registers(d.options)), 'smmu3.0x0000000009050000');
}

/** /sys/devices/pci0000:00/<bridge>/.../<bdf> */
export function sysfsPathOf(node: PciNode): string {
  const chain: string[] = [];
  for (let n: PciNode | null = node; n; n = n.bus.self) chain.unshift(n.name);
  return `/sys/devices/pci0000:00/${chain.join('/')}`;
}

/**
 * pci_init_reset_methods when the function is added: FLR if advertised; a secondary bus reset
 * when it is alone on a non-root bus so far (functions added later on that bus do not remove it:
 * the VM shows "bus" for 0000:01:01.0 and nothing for 0000:01:02.0).
 */
function resetMethodsAtProbe(node: PciNode): string[] {
  const m: string[] = [];
  if (node.fn.flrCapable) m.push('flr');
  const bus = node.bus;
  if (!bus.isRoot && !node.subordinate && bus.self && bus.devices.indexOf(node) === 0) m.push('bus');
  return m;
}

/** The host driver a description names, when the sim models it (drivers/); else the generic NamedDriver. */
function hostDriver(name: string, vfs: SimVfs): PciDriver | null {
  if (name === 'virtio-pci') return new VirtioPciDriver(vfs);
  if (name === 'nvme') return new NvmePciDriver(vfs);
  if (name === 'serial') return new SerialPciDriver(vfs);
  return null;
}

/** pcieport: binds PCIe root and switch ports; manages no DMA (driver_managed_dma). */
class PcieportDriver implements PciDriver {
  readonly name = 'pcieport';
  readonly managedDma = true;
  matchId(dev: PciDevice): boolean {
    const k = dev.node.kind;
    return k === 'root-port' || k === 'upstream' || k === 'downstream' || k === 'rc-event-collector';
  }
  probe(): void {}
  remove(): void {}
}

/** A kernel driver the description names ('virtio-pci', 'nvme'...): matches the functions that named it. */
class NamedDriver implements PciDriver {
  readonly managedDma = false;
  private readonly ids: Set<string>;
  constructor(
    readonly name: string,
    nodes: readonly PciNode[],
  ) {
    this.ids = new Set(nodes.map((n) => `${n.fn.get16(0)}:${n.fn.get16(2)}`));
  }
  matchId(dev: PciDevice): boolean {
    return this.ids.has(`${dev.fn.get16(0)}:${dev.fn.get16(2)}`);
  }
  /** A driver's probe declines a device it does not drive (ENODEV). */
  probe(dev: PciDevice): void {
    if (!this.matchId(dev)) kerr(ERRNO.ENODEV);
    dev.enable();
  }
  remove(dev: PciDevice): void {
    dev.disable();
  }
}
