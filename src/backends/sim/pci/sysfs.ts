/**
 * What the machine publishes in sysfs, at Linux's paths and in the text Linux prints (checked
 * against the project's VM: test/sim-machine.vm-probe.txt):
 *
 *   /sys/devices/pci0000:00/<bdf>[/<bdf>...]   one directory per function, bridges nest
 *   /sys/bus/pci/devices/<bdf>                 -> ../../../devices/pci0000:00/...
 *   /sys/kernel/iommu_groups/N/devices/<bdf>   -> ../../../../devices/pci0000:00/...
 *   /sys/class/iommu/<unit>                    -> ../../devices/virtual/iommu/<unit>
 */
import type { SimVfs } from '../kernel/vfs.js';
import type { IommuUnit } from '../hw/iommu.js';
import type { IommuGroup } from '../iommu/iommu.js';
import type { PciDevice, PciHost } from './pci_device.js';

const hex = (v: number, w: number): string => `0x${v.toString(16).padStart(w, '0')}`;
const hex16 = (v: number): string => `0x${BigInt(v).toString(16).padStart(16, '0')}`;

/** The kernel's names for reserved region types (iommu_group_resv_type_string). */
const RESV_TYPE: Record<string, string> = {
  direct: 'direct',
  'direct-relaxable': 'direct-relaxable',
  reserved: 'reserved',
  msi: 'msi',
  'sw-msi': 'msi',
};

/**
 * An IOMMU unit in /sys/class/iommu. Hardware units are virtual devices; the selftest's mock
 * IOMMU (kind 'mock') hangs below its platform device, as iommufd_test_init registers it
 * (the VM: iommufd_selftest_iommu.0 -> ../../devices/platform/iommufd_selftest_iommu.0/iommu/...).
 */
export function publishIommu(vfs: SimVfs, unit: IommuUnit, kind: string): void {
  const parent = kind === 'mock' ? `platform/${unit.name}/iommu` : 'virtual/iommu';
  const dir = `/sys/devices/${parent}/${unit.name}`;
  vfs.addLink(`/sys/class/iommu/${unit.name}`, `../../devices/${parent}/${unit.name}`);
  vfs.addAttr(`${dir}/uevent`, { read: () => '' });
  if (kind === 'vtd') {
    const info = new DataView(unit.caps.hwInfo().buffer);
    const reg = (off: number): string => `${info.getBigUint64(off, true).toString(16)}\n`;
    vfs.addAttr(`${dir}/intel-iommu/cap`, { read: () => reg(8) });
    vfs.addAttr(`${dir}/intel-iommu/ecap`, { read: () => reg(16) });
    vfs.addAttr(`${dir}/intel-iommu/version`, { read: () => '1:0\n' });
    vfs.addAttr(`${dir}/intel-iommu/address`, { read: () => 'fed90000\n' });
    vfs.addAttr(`${dir}/intel-iommu/domains_supported`, { read: () => '65536\n' });
  }
}

export function publishDevice(vfs: SimVfs, machine: PciHost, dev: PciDevice): void {
  const p = dev.sysfsPath;
  const up = '../'.repeat(dev.depth + 2);
  const fn = dev.fn;
  const c = fn.config;
  const ro = (name: string, read: () => string): void => vfs.addAttr(`${p}/${name}`, { read });
  ro('vendor', () => `${hex(fn.get16(0), 4)}\n`);
  ro('device', () => `${hex(fn.get16(2), 4)}\n`);
  ro('class', () => `${hex(fn.get32(8) >>> 8, 6)}\n`);
  ro('revision', () => `${hex(c[8]!, 2)}\n`);
  const bridge = (c[0x0e]! & 0x7f) === 1;
  ro('subsystem_vendor', () => `${hex(bridge ? 0 : fn.get16(0x2c), 4)}\n`);
  ro('subsystem_device', () => `${hex(bridge ? 0 : fn.get16(0x2e), 4)}\n`);
  ro('irq', () => `${dev.irq}\n`);
  ro('enable', () => `${dev.enableCount}\n`);
  ro('dma_mask_bits', () => '32\n');
  ro('consistent_dma_mask_bits', () => '32\n');
  ro('msi_bus', () => '1\n');
  ro('power_state', () => 'D0\n');
  ro('modalias', () => modalias(dev));
  ro('resource', () => resource(dev));
  if (dev.resetMethods.length) ro('reset_method', () => `${dev.resetMethods.join(' ')}\n`);
  if (fn.isVga) ro('boot_vga', () => (machine.bootVga === dev ? '1\n' : '0\n'));
  if (dev.node.subordinate) {
    ro('secondary_bus_number', () => `${dev.node.subordinate!.number}\n`);
    ro('subordinate_bus_number', () => `${lastBus(dev)}\n`);
  }
  vfs.addAttr(`${p}/driver_override`, {
    read: () => `${dev.driverOverride ?? '(null)'}\n`,
    write: (t) => machine.drivers.setDriverOverride(dev, t),
  });
  vfs.addLink(`${p}/subsystem`, `${up}bus/pci`);
  if (machine.iommu) {
    vfs.addLink(`${p}/iommu_group`, `${up}kernel/iommu_groups/${dev.group.id}`);
    vfs.addLink(`${p}/iommu`, `${'../'.repeat(dev.depth + 1)}virtual/iommu/${machine.iommu.name}`);
    vfs.addLink(`/sys/devices/virtual/iommu/${machine.iommu.name}/devices/${dev.name}`, `../../../..${p.slice('/sys/devices'.length)}`);
  }
  vfs.addLink(`/sys/bus/pci/devices/${dev.name}`, `../../..${p.slice('/sys'.length)}`);
}

export function publishGroup(vfs: SimVfs, group: IommuGroup, reserved: IommuUnit['caps']['reserved']): void {
  if (group.id < 0) return;
  const dir = `/sys/kernel/iommu_groups/${group.id}`;
  vfs.addAttr(`${dir}/type`, { read: () => 'DMA\n' });
  vfs.addAttr(`${dir}/reserved_regions`, {
    read: () => [...reserved].sort((a, b) => (a.start < b.start ? -1 : 1))
      .map((r) => `${hex16Big(r.start)} ${hex16Big(r.last)} ${RESV_TYPE[r.kind] ?? r.kind}\n`).join(''),
  });
  for (const d of group.devices) {
    const path = (d as PciDevice).sysfsPath;
    if (path) vfs.addLink(`${dir}/devices/${d.name}`, `../../../..${path.slice('/sys'.length)}`);
  }
}

export function unpublishGroup(vfs: SimVfs, id: number): void {
  vfs.remove(`/sys/kernel/iommu_groups/${id}`);
}

function hex16Big(v: bigint): string {
  return `0x${v.toString(16).padStart(16, '0')}`;
}

/** pci:vVVVVVVVdDDDDDDDDsvSSSSSSSSsdSSSSSSSSbcBBscSSiII */
function modalias(dev: PciDevice): string {
  const f = dev.fn;
  const h = (v: number, w: number): string => v.toString(16).toUpperCase().padStart(w, '0');
  const cls = f.get32(8) >>> 8;
  return `pci:v${h(f.get16(0), 8)}d${h(f.get16(2), 8)}sv${h(f.get16(0x2c), 8)}sd${h(f.get16(0x2e), 8)}` +
    `bc${h(cls >> 16, 2)}sc${h((cls >> 8) & 0xff, 2)}i${h(cls & 0xff, 2)}\n`;
}

/** resource_show: start, end, flags of each BAR and the ROM (and the bridge windows for a bridge). */
function resource(dev: PciDevice): string {
  const f = dev.fn;
  const lines: string[] = [];
  for (let i = 0; i < 6; i++) {
    const bar = f.bars[i];
    const start = bar ? f.barAddress(i) : 0;
    if (!bar || !start) {
      lines.push(`${hex16(0)} ${hex16(0)} ${hex16(0)}`);
      continue;
    }
    let flags: number;
    if (bar.type === 'io') flags = 0x40101;
    else flags = 0x40200 | (bar.type === 'mem64' ? 0x100004 : 0) | (bar.prefetchable ? 0x2008 : 0);
    lines.push(`${hex16(start)} ${hex16(start + bar.size - 1)} ${hex16(flags)}`);
  }
  lines.push(`${hex16(0)} ${hex16(0)} ${hex16(0)}`);
  if (dev.node.subordinate) for (let i = 0; i < 4; i++) lines.push(`${hex16(0)} ${hex16(0)} ${hex16(0)}`);
  return lines.map((l) => `${l}\n`).join('');
}

function lastBus(dev: PciDevice): number {
  let last = dev.node.subordinate!.number;
  const walk = (b: NonNullable<typeof dev.node.subordinate>): void => {
    for (const n of b.devices) if (n.subordinate) {
      last = Math.max(last, n.subordinate.number);
      walk(n.subordinate);
    }
  };
  walk(dev.node.subordinate!);
  return last;
}

