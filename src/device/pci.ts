/**
 * A PCI function as sysfs shows it (/sys/bus/pci/devices/<bdf>): its IDs, IOMMU group, bound
 * driver and VFIO cdev, read live through the Binding (so the sim's machine answers the same
 * paths), and the admin steps that hand it to a VFIO driver: driver_override, unbind, then
 * drivers_probe. Which VFIO driver to name comes from the `vfio_pci:` aliases in modules.alias
 * (variant drivers such as mlx5_vfio_pci never bind on their own), else plain vfio-pci.
 */
import { isErrno } from '../ioasid/errors.js';
import type { Binding } from '../backends/types.js';

export const SYS_PCI_DEVICES = '/sys/bus/pci/devices';
export const SYS_PCI_DRIVERS_PROBE = '/sys/bus/pci/drivers_probe';
export const SYS_IOMMU_GROUPS = '/sys/kernel/iommu_groups';
export const DEV_VFIO_DEVICES = '/dev/vfio/devices';

const BDF = /^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$/;

/** The last path component (of a sysfs symlink target). */
const basename = (p: string): string => p.slice(p.lastIndexOf('/') + 1);

/** `f()`, or `fallback` when the file or link does not exist (ENOENT). */
export function orMissing<T>(f: () => T, fallback: T): T {
  try {
    return f();
  } catch (e) {
    if (isErrno(e, 'ENOENT')) return fallback;
    throw e;
  }
}

export interface PciMatch {
  vendor?: number;
  device?: number;
  /** The 24-bit class code (base << 16 | sub << 8 | prog-if). */
  class?: number;
}

export class PciDevice {
  constructor(
    readonly binding: Binding,
    /** "0000:00:01.0" */
    readonly bdf: string,
  ) {
    if (!BDF.test(bdf)) throw new RangeError(`not a PCI address: ${bdf}`);
  }

  get path(): string {
    return `${SYS_PCI_DEVICES}/${this.bdf}`;
  }

  private attr(name: string): string {
    return this.binding.readText(`${this.path}/${name}`).trim();
  }

  get vendor(): number {
    return Number(this.attr('vendor'));
  }
  get device(): number {
    return Number(this.attr('device'));
  }
  get class(): number {
    return Number(this.attr('class'));
  }
  /** "pci:v00001234d000011E8sv...bc00scFFi00", what driver aliases match. */
  get modalias(): string {
    return this.attr('modalias');
  }

  /** The IOMMU group number, or null when no IOMMU translates this device. */
  get iommuGroup(): number | null {
    return orMissing(() => Number(basename(this.binding.readlink(`${this.path}/iommu_group`))), null);
  }

  /** The bound driver's name ('vfio-pci', 'virtio-pci'...), or null. */
  get driver(): string | null {
    return orMissing(() => basename(this.binding.readlink(`${this.path}/driver`)), null);
  }

  /** The driver named in driver_override, or null when none is set. */
  get driverOverride(): string | null {
    const v = this.attr('driver_override');
    return v === '' || v === '(null)' ? null : v;
  }

  /** The VFIO cdev node ('/dev/vfio/devices/vfio0') when a VFIO driver is bound, else null. */
  get vfioCdev(): string | null {
    const names = orMissing(() => this.binding.readdir(`${this.path}/vfio-dev`), []);
    const n = names.find((x) => /^vfio\d+$/.test(x));
    return n ? `${DEV_VFIO_DEVICES}/${n}` : null;
  }

  /** The BDFs of every device in this device's IOMMU group (this one included), sorted. */
  groupDevices(): string[] {
    const g = this.iommuGroup;
    return g === null ? [] : this.binding.readdir(`${SYS_IOMMU_GROUPS}/${g}/devices`);
  }

  /** Set (or with null, clear) driver_override: only that driver may bind at the next probe. */
  setDriverOverride(driver: string | null): void {
    // A zero-length write never reaches sysfs; a lone newline is what clears the override.
    this.binding.writeText(`${this.path}/driver_override`, driver === null ? '\n' : driver);
  }

  /** Detach the bound driver, if any. */
  unbind(): void {
    const d = this.driver;
    if (d !== null) this.binding.writeText(`${this.path}/driver/unbind`, this.bdf);
  }

  /** Ask the PCI core to probe drivers for this device (honours driver_override). */
  probe(): void {
    this.binding.writeText(SYS_PCI_DRIVERS_PROBE, this.bdf);
  }

  /**
   * Hand the device to `driver` (default: the VFIO driver modules.alias names for it, else
   * vfio-pci) the way an admin does: driver_override, unbind the current driver, drivers_probe.
   * Returns the driver bound afterwards (null if the probe bound nothing).
   */
  bindDriver(driver: string = vfioDriverName(this.binding, this.modalias)): string | null {
    if (this.driver === driver) return driver;
    this.setDriverOverride(driver);
    this.unbind();
    this.probe();
    return this.driver;
  }

  /** Release the device from its driver and clear driver_override (it stays driverless). */
  release(): void {
    this.unbind();
    this.setDriverOverride(null);
  }
}

/** Every PCI function sysfs lists (none when there is no /sys/bus/pci). */
export function listPciDevices(binding: Binding): PciDevice[] {
  return orMissing(() => binding.readdir(SYS_PCI_DEVICES), [])
    .filter((n) => BDF.test(n))
    .map((n) => new PciDevice(binding, n));
}

/** The PCI functions whose IDs match, in BDF order. */
export function findPciDevices(binding: Binding, m: PciMatch): PciDevice[] {
  return listPciDevices(binding).filter(
    (d) => (m.vendor === undefined || d.vendor === m.vendor)
      && (m.device === undefined || d.device === m.device)
      && (m.class === undefined || d.class === m.class),
  );
}

// ---- driver selection from modules.alias -----------------------------------------------------

/** One `alias vfio_pci:<pattern> <module>` line of modules.alias. */
export interface VfioAlias {
  pattern: string;
  module: string;
}

/** The `vfio_pci:` aliases of a modules.alias text, in file order. */
export function parseVfioAliases(modulesAlias: string): VfioAlias[] {
  const out: VfioAlias[] = [];
  for (const line of modulesAlias.split('\n')) {
    const m = /^alias\s+(vfio_pci:\S+)\s+(\S+)\s*$/.exec(line);
    if (m) out.push({ pattern: m[1]!, module: m[2]! });
  }
  return out;
}

/** fnmatch-style `*` and `?` (the only wildcards file2alias emits) against the whole string. */
function globMatch(pattern: string, text: string): boolean {
  const re = pattern.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.');
  return new RegExp(`^${re}$`, 'i').test(text);
}

/**
 * The module whose `vfio_pci:` alias matches a device's modalias ("pci:v…"), preferring the most
 * specific pattern (fewest wildcards: a variant driver over the catch-all vfio_pci); null if none.
 */
export function matchVfioAlias(aliases: readonly VfioAlias[], modalias: string): string | null {
  const want = `vfio_${modalias}`;
  let best: VfioAlias | null = null;
  let bestWild = Infinity;
  for (const a of aliases) {
    if (!globMatch(a.pattern, want)) continue;
    const wild = (a.pattern.match(/\*/g) ?? []).length;
    if (wild < bestWild) [best, bestWild] = [a, wild];
  }
  return best?.module ?? null;
}

/**
 * The driver name to write into driver_override for a device: the module modules.alias names
 * (mapped to its PCI driver name through /sys/module/<module>/drivers), else 'vfio-pci' (the
 * generic driver; kernels built without modules have no modules.alias).
 */
export function vfioDriverName(binding: Binding, modalias: string): string {
  return vfioDriverChooser(binding)(modalias);
}

/** vfioDriverName for many devices: reads modules.alias once. */
export function vfioDriverChooser(binding: Binding): (modalias: string) => string {
  const release = orMissing(() => binding.readText('/proc/sys/kernel/osrelease').trim(), '');
  const text = release ? orMissing(() => binding.readText(`/lib/modules/${release}/modules.alias`), '') : '';
  const aliases = parseVfioAliases(text);
  return (modalias) => {
    const module = matchVfioAlias(aliases, modalias);
    if (!module) return 'vfio-pci';
    const drivers = orMissing(() => binding.readdir(`/sys/module/${module}/drivers`), []);
    const pci = drivers.find((d) => d.startsWith('pci:'));
    return pci ? pci.slice(4) : module;
  };
}
