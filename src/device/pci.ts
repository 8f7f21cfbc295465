/**
 * A PCI function as sysfs shows it (/sys/bus/pci/devices/<bdf>): its IDs, IOMMU group, bound
 * driver and VFIO cdev, read live through the Binding (so the sim's machine answers the same
 * paths), and the admin steps that hand it to a VFIO driver and back: driver_override, unbind,
 * then the driver's bind file. Which VFIO driver to name comes from the `vfio_pci:` aliases in
 * modules.alias (variant drivers such as mlx5_vfio_pci never bind on their own), else plain
 * vfio-pci.
 *
 * Host safety (docs/devices.md): nothing is unbound unless the target driver is registered and
 * neither the function nor an IOMMU-group sibling is in use by the host (host_use.ts); a failed
 * bind puts the previous driver back and checks that it is back; every refusal is a DriverError.
 */
import { ERRNO, IommuError } from '../ioasid/errors.js';
import { innermostBinding, type Binding } from '../backends/types.js';
import { describeHostUse, hostUses, vfioOpeners, type HostUse } from './host_use.js';
import {
  BDF, DEV_VFIO_DEVICES, SYS_IOMMU_GROUPS, SYS_PCI_DEVICES, SYS_PCI_DRIVERS, SYS_PCI_DRIVERS_PROBE, basename,
  orMissing, osRelease,
} from './sysfs.js';

export { DEV_VFIO_DEVICES, SYS_IOMMU_GROUPS, SYS_PCI_DEVICES, SYS_PCI_DRIVERS, SYS_PCI_DRIVERS_PROBE, orMissing };

export interface PciMatch {
  vendor?: number;
  device?: number;
  /** The 24-bit class code (base << 16 | sub << 8 | prog-if). */
  class?: number;
}

/** One line of /sys/kernel/iommu_groups/N/reserved_regions: an inclusive range the IOMMU does not translate for the group. */
export interface ReservedRegion {
  readonly start: bigint;
  readonly last: bigint;
  /** iommu_group_resv_type_string: 'direct', 'direct-relaxable', 'reserved' or 'msi' (hardware or software MSI window). */
  readonly type: string;
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

  /**
   * The reserved regions of this device's IOMMU group (iommu_group_show_resv_regions: "0x%016llx
   * 0x%016llx %s" per region, start and inclusive end); empty when no IOMMU translates it.
   */
  reservedRegions(): ReservedRegion[] {
    const g = this.iommuGroup;
    if (g === null) return [];
    const text = orMissing(() => this.binding.readText(`${SYS_IOMMU_GROUPS}/${g}/reserved_regions`), '');
    return text.split('\n').filter(Boolean).map((l) => {
      const [start, last, type] = l.trim().split(/\s+/);
      return { start: BigInt(start!), last: BigInt(last!), type: type ?? '' };
    });
  }

  /** The bound driver and driver_override now: what restoreDriver() puts back. */
  driverState(): DriverState {
    return { driver: this.driver, driverOverride: this.driverOverride };
  }

  /** What the host uses this function for (mounts, swap, interfaces up, consoles, boot VGA); see host_use.ts. */
  hostUses(): HostUse[] {
    return hostUses(this.binding, [this.bdf]);
  }

  /** Set (or with null, clear) driver_override: only that driver may bind at the next probe. */
  setDriverOverride(driver: string | null): void {
    // A zero-length write never reaches sysfs; a lone newline is what clears the override.
    this.binding.writeText(`${this.path}/driver_override`, driver === null ? '\n' : driver);
  }

  /**
   * Detach the bound driver, if any. Refused (DriverError 'in-use', EBUSY) while the host uses
   * the function, unless `force`.
   */
  unbind(opts: DriverOptions = {}): void {
    if (this.driver === null) return;
    this.checkUnbind('unbind', null, [this.bdf], opts);
    this.detach();
  }

  /** Ask the PCI core to probe drivers for this device (honours driver_override). */
  probe(): void {
    this.binding.writeText(SYS_PCI_DRIVERS_PROBE, this.bdf);
  }

  /**
   * Hand the device to `driver` (default: the VFIO driver modules.alias names for it, else
   * vfio-pci) the way an admin does: driver_override, unbind the current driver, then the
   * driver's bind file (which, unlike drivers_probe, reports the probe's error). The override
   * stays set, so the host's driver does not take the device back at the next probe.
   *
   * Refused before anything changes, with a DriverError: 'no-driver' / 'driver-not-loaded'
   * (ENODEV) when the driver is not registered; 'in-use' (EBUSY) when the host uses the function
   * or a sibling in its IOMMU group (a VFIO user needs the whole group), unless `force`. If the
   * bind fails after the unbind, the previous driver and override are put back and checked
   * ('bind-failed' with the kernel's errno; 'restore-failed' if even that fails).
   *
   * Returns the change: `previous` is the state before, `restore()` (or `using`) puts it back.
   * Already bound to `driver`: nothing is done and restore() does nothing.
   */
  bindDriver(driver: string = vfioDriverName(this.binding, this.modalias), opts: DriverOptions = {}): DriverChange {
    checkDriverName(driver);
    const previous = this.driverState();
    if (previous.driver === driver) return new DriverChange(this, driver, previous);
    this.requireDriver('bindDriver', driver);
    this.checkUnbind('bindDriver', driver, this.iommuGroup === null ? [this.bdf] : this.groupDevices(), opts);
    try {
      this.setDriverOverride(driver);
      this.detach();
      this.binding.writeText(`${SYS_PCI_DRIVERS}/${driver}/bind`, this.bdf);
      this.expectDriver('bindDriver', driver);
    } catch (e) {
      this.rollBack(previous, driver, e);
    }
    return new DriverChange(this, driver, previous);
  }

  /**
   * Put back a driver state (from driverState() or a DriverChange's `previous`): unbind the
   * current driver if it is another one (checked as unbind() is), restore driver_override, bind
   * the driver through its bind file, and check that it is bound. `{ driver: null,
   * driverOverride: null }` leaves the function driverless. A kernel refusal on the way is a
   * DriverError 'bind-failed' with the kernel's errno, saying what the function has now.
   */
  restoreDriver(state: DriverState, opts: DriverOptions = {}): void {
    if (state.driver !== null) {
      checkDriverName(state.driver);
      if (this.driver !== state.driver) this.requireDriver('restoreDriver', state.driver);
    }
    if (this.driver !== state.driver && this.driver !== null) this.checkUnbind('restoreDriver', state.driver, [this.bdf], opts);
    try {
      if (this.driver !== state.driver) {
        this.detach();
        if (state.driver !== null) {
          // The override must let the old driver match while it binds (it may name another one).
          const during = state.driverOverride === null ? null : state.driver;
          if (this.driverOverride !== during) this.setDriverOverride(during);
          this.binding.writeText(`${SYS_PCI_DRIVERS}/${state.driver}/bind`, this.bdf);
        }
      }
      if (this.driverOverride !== state.driverOverride) this.setDriverOverride(state.driverOverride);
    } catch (e) {
      if (!(e instanceof IommuError)) throw e;
      throw new DriverError(e.errno, 'restoreDriver', 'bind-failed', this.bdf, state.driver,
        `putting back ${state.driver ?? 'no driver'} on ${this.bdf}: ${e.message}; it has ${this.driver ?? 'no driver'} now`, [], e);
    }
    this.expectDriver('restoreDriver', state.driver);
  }

  /**
   * Release the device from its driver and clear driver_override: it stays driverless until
   * something probes it. Refused while the host uses it, unless `force`.
   */
  release(opts: DriverOptions = {}): void {
    this.unbind(opts);
    this.setDriverOverride(null);
  }

  /** The unbind write itself, unchecked. */
  private detach(): void {
    if (this.driver !== null) this.binding.writeText(`${this.path}/driver/unbind`, this.bdf);
  }

  private requireDriver(op: string, driver: string): void {
    const info = pciDriverInfo(this.binding, driver);
    if (info.registered) return;
    const fail = (reason: DriverErrorReason, detail: string): never => {
      throw new DriverError(ERRNO.ENODEV, op, reason, this.bdf, driver, detail);
    };
    const kept = `${this.bdf} is unchanged`;
    if (info.module) fail('driver-not-loaded', `PCI driver ${driver} is not loaded: load it with \`modprobe ${info.module}\` (ioasid never loads modules); ${kept}`);
    fail('no-driver', `no PCI driver ${driver}: not in ${SYS_PCI_DRIVERS}, and this kernel has no module of that name; ${kept}`);
  }

  /**
   * Before unbinding the driver: refuse while this process holds the function's VFIO device open
   * (always: the kernel's unbind would wait for it forever), or while the host uses one of
   * `bdfs` or another process holds the device open (unless `force`: the kernel then asks that
   * process, through its request eventfd, to release the device, and waits until it does).
   */
  private checkUnbind(op: string, driver: string | null, bdfs: readonly string[], opts: DriverOptions): void {
    const cdev = this.vfioCdev;
    if (openHere(this.binding, this.bdf) || (cdev !== null && openHere(this.binding, cdev))) {
      throw new DriverError(ERRNO.EBUSY, op, 'device-open', this.bdf, driver, `this process has ${this.bdf}'s VFIO device open: ` +
        'close its VfioDevice first (the kernel\'s unbind waits until every user has closed the device, here forever)');
    }
    if (opts.force) return;
    const driverNow = this.driver;
    const uses = [...hostUses(this.binding, bdfs), ...(driverNow !== null && isVfioDriver(driverNow) ? vfioOpeners(this.binding, this.bdf, cdev, this.iommuGroup) : [])];
    if (!uses.length) return;
    const detail = `${this.bdf} is in use by the host: ${uses.map(describeHostUse).join('; ')}; pass { force: true } to take it anyway`;
    throw new DriverError(ERRNO.EBUSY, op, 'in-use', this.bdf, driver, detail, uses);
  }

  /** Check what sysfs shows after a bind (EIO, 'bind-failed': the kernel accepted, but another driver or none is bound). */
  private expectDriver(op: string, driver: string | null): void {
    const now = this.driver;
    if (now !== driver) throw new DriverError(ERRNO.EIO, op, 'bind-failed', this.bdf, driver, `${this.bdf} has ${now ?? 'no driver'}, not ${driver ?? 'none'}`);
  }

  /** After a failed bind: put `previous` back (checked), then throw what happened. */
  private rollBack(previous: DriverState, driver: string, e: unknown): never {
    let restoreError: unknown = null;
    try {
      this.restoreDriver(previous, { force: true });
    } catch (r) {
      restoreError = r;
    }
    if (!(e instanceof IommuError)) throw e; // a bug, not a refusal: let it through as it is
    const was = previous.driver ?? 'no driver';
    if (restoreError === null) throw new DriverError(e.errno, 'bindDriver', 'bind-failed', this.bdf, driver, `binding ${this.bdf} to ${driver}: ${e.message}; ${was} is back`, [], e);
    const why = restoreError instanceof Error ? restoreError.message : String(restoreError);
    throw new DriverError(restoreError instanceof IommuError ? restoreError.errno : ERRNO.EIO, 'bindDriver', 'restore-failed',
      this.bdf, driver, `binding ${this.bdf} to ${driver} failed (${e.message}) and putting back ${was} failed (${why}); it has ${this.driver ?? 'no driver'} now`, [], e);
  }
}

/** A function's driver binding: enough to put it back (restoreDriver). Plain data, JSON-safe. */
export interface DriverState {
  /** The bound driver, or null. */
  readonly driver: string | null;
  /** driver_override, or null when unset. */
  readonly driverOverride: string | null;
}

export interface DriverOptions {
  /**
   * Take the function even though the host uses it (a mounted disk, an interface that is up, the
   * console...). It does not skip the driver check or the restore on failure.
   */
  readonly force?: boolean;
}

/** What bindDriver() did, and how to undo it. */
export class DriverChange implements Disposable {
  constructor(
    readonly pci: PciDevice,
    /** The driver bound now. */
    readonly driver: string,
    /** The state before (what restore() puts back). */
    readonly previous: DriverState,
  ) {}

  /** Whether bindDriver changed the binding (false: `driver` was already bound). */
  get changed(): boolean {
    return this.previous.driver !== this.driver;
  }

  /** Put the previous driver back (restoreDriver); a no-op when nothing changed. */
  restore(opts: DriverOptions = {}): void {
    if (this.changed) this.pci.restoreDriver(this.previous, opts);
  }

  [Symbol.dispose](): void {
    this.restore();
  }
}

/**
 * Why a driver change was refused or failed:
 * - 'no-driver' (ENODEV): the driver is not registered and the kernel has no module of that name;
 * - 'driver-not-loaded' (ENODEV): its module exists but is not loaded (the message names it);
 * - 'in-use' (EBUSY): the host uses the function or a group sibling, or another process holds its
 *   VFIO device open (`uses` lists how);
 * - 'device-open' (EBUSY): this process holds the function's VFIO device open (force does not help);
 * - 'bind-failed' (the kernel's errno): the bind failed, and the previous driver is back;
 * - 'restore-failed' (the restore's errno): the bind failed and so did putting the old driver back.
 */
export type DriverErrorReason = 'no-driver' | 'driver-not-loaded' | 'in-use' | 'device-open' | 'bind-failed' | 'restore-failed';

export class DriverError extends IommuError {
  constructor(
    errno: number,
    syscall: string,
    readonly reason: DriverErrorReason,
    /** The function. */
    readonly bdf: string,
    /** The driver asked for (null: none, as in unbind). */
    readonly driver: string | null,
    detail: string,
    /** For 'in-use': what the host uses the function (or its group siblings) for. */
    readonly uses: readonly HostUse[] = [],
    cause?: IommuError,
  ) {
    super(errno, syscall, detail);
    this.name = 'DriverError';
    if (cause) this.cause = cause;
  }
}

/**
 * The VFIO devices this process holds open through VfioDevice (a cdev, or a group's device fd),
 * by PCI address or, when that is unknown, by node; counted per process: the linux backend's
 * bindings all belong to this process; each sim binding is a process of its own.
 */
const openDevices = new WeakMap<object, Map<string, number>>();
const THIS_PROCESS = {};
const processOf = (binding: Binding): object => (binding.name === 'linux' ? THIS_PROCESS : innermostBinding(binding));

/** Count an open (+1) or a close (-1) of a VFIO device by this process (VfioDevice calls it). */
export function noteDeviceOpen(binding: Binding, key: string, delta: 1 | -1): void {
  const p = processOf(binding);
  let m = openDevices.get(p);
  if (!m) openDevices.set(p, (m = new Map()));
  const n = (m.get(key) ?? 0) + delta;
  if (n > 0) m.set(key, n);
  else m.delete(key);
}

function openHere(binding: Binding, key: string): boolean {
  return (openDevices.get(processOf(binding))?.get(key) ?? 0) > 0;
}

/**
 * Whether a driver is a VFIO one (vfio-pci, a variant such as mlx5_vfio_pci): those hand the
 * device to userspace, manage its DMA ownership themselves, and match only through
 * driver_override (their IDs are override_only).
 */
export function isVfioDriver(name: string): boolean {
  return /vfio/.test(name);
}

/** Driver names are path components under /sys/bus/pci/drivers. */
function checkDriverName(name: string): void {
  if (!/^[\w.:+-]+$/.test(name) || name === '.' || name === '..') throw new RangeError(`not a driver name: ${name}`);
}

/** Whether a PCI driver is there, or could be loaded. */
export interface PciDriverInfo {
  readonly name: string;
  /** Registered with the PCI core: /sys/bus/pci/drivers/<name> exists. */
  readonly registered: boolean;
  /**
   * When not registered: the module `modprobe <name>` would load, if the running kernel can load
   * modules (/proc/modules exists, kernel.modules_disabled is 0) and modules.dep of its release
   * lists one of that name (dashes and underscores are the same to modprobe); else null.
   */
  readonly module: string | null;
}

export function pciDriverInfo(binding: Binding, name: string): PciDriverInfo {
  checkDriverName(name);
  const registered = orMissing(() => (binding.readdir(`${SYS_PCI_DRIVERS}/${name}`), true), false);
  return { name, registered, module: registered ? null : loadableModule(binding, name) };
}

function loadableModule(binding: Binding, name: string): string | null {
  if (!orMissing(() => (binding.readText('/proc/modules'), true), false)) return null;
  if (orMissing(() => binding.readText('/proc/sys/kernel/modules_disabled').trim(), '0') !== '0') return null;
  const release = osRelease(binding);
  const dep = release ? orMissing(() => binding.readText(`/lib/modules/${release}/modules.dep`), '') : '';
  const want = name.replace(/-/g, '_');
  for (const line of dep.split('\n')) {
    const colon = line.indexOf(':');
    if (colon < 0) continue;
    const mod = basename(line.slice(0, colon)).replace(/\.ko(\.\w+)?$/, '').replace(/-/g, '_');
    if (mod === want) return mod;
  }
  return null;
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
  const release = osRelease(binding);
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
