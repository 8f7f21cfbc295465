/**
 * `ioasid ls`: the PCI functions (BDF, IDs, class, IOMMU group, bound driver, VFIO cdev and the
 * VFIO driver each would take, from the `vfio_pci:` aliases) and the IOMMU groups with their
 * viability, read through the device layer's sysfs discovery (src/device/pci.ts).
 */
import type { Binding } from '../backends/types.js';
import { SYS_IOMMU_GROUPS, isVfioDriver, listPciDevices, orMissing, vfioDriverChooser } from '../device/pci.js';

export interface LsFunction {
  bdf: string;
  /** Vendor and device IDs, 4 hex digits each ('1234', '11e8'). */
  vendor: string;
  device: string;
  /** The 24-bit class code in hex ('00ff00') and its base class's name. */
  class: string;
  className: string;
  iommuGroup: number | null;
  /** The bound driver, null when none. */
  driver: string | null;
  /** The VFIO cdev ('/dev/vfio/devices/vfio0') when a VFIO driver is bound. */
  vfioCdev: string | null;
  /**
   * The VFIO driver the function would take: a `vfio_pci:` alias match in modules.alias, else
   * vfio-pci; null for a bridge (vfio_pci_core_register_device refuses all but header type 0,
   * and the PCI core gives header types 1 and 2 only to PCI-to-PCI and CardBus bridges).
   */
  vfioDriver: string | null;
}

export interface LsGroup {
  id: number;
  /** The devices sysfs lists in the group (BDFs for PCI functions). */
  devices: { name: string; driver: string | null }[];
  /**
   * Whether a user can take the group's DMA ownership: no device is bound to a driver that uses
   * the kernel's DMA API (iommu_device_use_default_domain). Drivers with driver_managed_dma (the
   * VFIO drivers, pci-stub, pcieport) and unbound devices leave it viable.
   */
  viable: boolean;
  /** The devices that make it not viable, with their drivers. */
  blockers: { name: string; driver: string }[];
}

export interface Listing {
  host: string;
  functions: LsFunction[];
  groups: LsGroup[];
}

/** PCI base class names (the PCI Code and ID Assignment specification, as lspci prints them). */
const BASE_CLASS: Record<number, string> = {
  0x00: 'unclassified', 0x01: 'storage', 0x02: 'network', 0x03: 'display', 0x04: 'multimedia', 0x05: 'memory',
  0x06: 'bridge', 0x07: 'communication', 0x08: 'system peripheral', 0x09: 'input', 0x0a: 'docking station',
  0x0b: 'processor', 0x0c: 'serial bus', 0x0d: 'wireless', 0x0e: 'intelligent I/O', 0x0f: 'satellite',
  0x10: 'encryption', 0x11: 'signal processing', 0x12: 'accelerator', 0x13: 'instrumentation', 0x40: 'coprocessor',
  0xff: 'unassigned',
};

/** Drivers that leave a group's DMA ownership to their user (driver_managed_dma in the kernel). */
export function managesOwnDma(driver: string): boolean {
  return isVfioDriver(driver) || driver === 'pci-stub' || driver === 'pcieport';
}

/** PCI_CLASS_BRIDGE_PCI and PCI_CLASS_BRIDGE_CARDBUS: the classes pci_setup_device allows header types 1 and 2 for. */
const BRIDGE_CLASSES = new Set([0x0604, 0x0607]);

const hex = (v: number, width: number): string => v.toString(16).padStart(width, '0');

export function listing(binding: Binding, host: string): Listing {
  const chooser = vfioDriverChooser(binding);
  const functions = listPciDevices(binding).map((d): LsFunction => {
    const cls = d.class;
    return {
      bdf: d.bdf, vendor: hex(d.vendor, 4), device: hex(d.device, 4), class: hex(cls, 6),
      className: BASE_CLASS[cls >>> 16] ?? 'unknown', iommuGroup: d.iommuGroup, driver: d.driver, vfioCdev: d.vfioCdev,
      vfioDriver: BRIDGE_CLASSES.has(cls >>> 8) ? null : chooser(d.modalias),
    };
  });
  const byBdf = new Map(functions.map((f) => [f.bdf, f]));
  const ids = orMissing(() => binding.readdir(SYS_IOMMU_GROUPS), []).map(Number).filter(Number.isInteger).sort((a, b) => a - b);
  const groups = ids.map((id): LsGroup => {
    const dir = `${SYS_IOMMU_GROUPS}/${id}/devices`;
    const devices = orMissing(() => binding.readdir(dir), []).map((name) => ({
      name,
      driver: byBdf.has(name) ? byBdf.get(name)!.driver : orMissing(() => basename(binding.readlink(`${dir}/${name}/driver`)), null),
    }));
    const blockers = devices.filter((d): d is { name: string; driver: string } => d.driver !== null && !managesOwnDma(d.driver));
    return { id, devices, viable: blockers.length === 0, blockers };
  });
  return { host, functions, groups };
}

const basename = (p: string): string => p.slice(p.lastIndexOf('/') + 1);

/** Rows under a header, each column as wide as its widest cell. */
export function table(header: string[], rows: string[][]): string[] {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]): string => cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!))).join('  ').trimEnd();
  return [line(header), ...rows.map(line)];
}

export function formatListing(l: Listing): string[] {
  const out = [`PCI functions on ${l.host}`];
  if (!l.functions.length) out.push('  (none: no /sys/bus/pci/devices)');
  else {
    out.push(...table(
      ['BDF', 'ID', 'CLASS', 'GROUP', 'DRIVER', 'VFIO CDEV', 'VFIO DRIVER'],
      l.functions.map((f) => [f.bdf, `${f.vendor}:${f.device}`, `${f.class} ${f.className}`, f.iommuGroup === null ? '-' : String(f.iommuGroup),
        f.driver ?? '-', f.vfioCdev ?? '-', f.vfioDriver ?? '- (bridge)']),
    ).map((x) => `  ${x}`));
  }
  out.push('', 'IOMMU groups');
  if (!l.groups.length) out.push('  (none: no IOMMU translates these devices; `ioasid doctor` says why)');
  else {
    out.push(...table(
      ['GROUP', 'VIABLE', 'DEVICES'],
      l.groups.map((g) => [String(g.id),
        g.viable ? 'yes' : `no (${[...new Set(g.blockers.map((b) => b.driver))].join(', ')})`,
        g.devices.map((d) => `${d.name} (${d.driver ?? 'no driver'})`).join(', ') || '-']),
    ).map((x) => `  ${x}`));
  }
  return out;
}
