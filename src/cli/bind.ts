/**
 * `ioasid bind` and `ioasid unbind`: hand a PCI function to a VFIO driver through driver_override,
 * and put back what it had, with the device layer's host-safety checks (src/device/pci.ts:
 * bindDriver, restoreDriver, DriverError). What bind found before is kept in the records file
 * (bind_records.ts), so that unbind, another process, restores exactly that. On a sim machine
 * (--machine) the machine lasts one command: nothing is recorded.
 */
import type { Binding } from '../backends/types.js';
import { describeHostUse, type HostUse } from '../device/host_use.js';
import { DriverError, PciDevice, isVfioDriver, type DriverState } from '../device/pci.js';
import { BDF, SYS_PCI_DEVICES, orMissing } from '../device/sysfs.js';
import { BindRecords, recordsPath } from './bind_records.js';
import { managesOwnDma } from './ls.js';
import type { Io } from './main.js';

export interface BindArgs {
  /** 'this host' or 'sim machine NAME'. */
  host: string;
  bdf: string;
  /** bind: the driver (default: the VFIO driver modules.alias names, else vfio-pci); unbind: --to. */
  driver?: string;
  force?: boolean;
  json?: boolean;
}

/** What `ioasid bind` did (--json). */
export interface BindResult {
  host: string;
  bdf: string;
  /** false: the function was on `driver` already. */
  changed: boolean;
  driver: string;
  /** The binding before this command. */
  previous: DriverState;
  vfioCdev: string | null;
  iommuGroup: number | null;
  /** Devices of the group on a driver that keeps it from being used through VFIO. */
  groupBlockers: { name: string; driver: string }[];
  /** What `ioasid unbind` puts back, null when nothing is recorded (a sim machine, or nothing changed). */
  restores: DriverState | null;
  /** The records file, null on a sim machine. */
  records: string | null;
}

/** What `ioasid unbind` did (--json). */
export interface UnbindResult {
  host: string;
  bdf: string;
  changed: boolean;
  /** The binding before this command. */
  previous: DriverState;
  /** The binding now. */
  now: DriverState;
  /** Where `now` came from: the record of `ioasid bind`, or --to. */
  from: 'record' | 'to';
}

/** A refusal that is not the device layer's (exit 1). */
class Refusal extends Error {
  constructor(readonly reason: string, message: string, readonly fix: string) {
    super(message);
  }
}

/** "0000:00:05.0", or lspci's short "00:05.0" in domain 0; null when it is neither. */
export function pciAddress(text: string): string | null {
  const t = text.toLowerCase();
  if (BDF.test(t)) return t;
  return BDF.test(`0000:${t}`) ? `0000:${t}` : null;
}

/** The records of this host (null for a sim machine), keyed to this boot. */
export function recordsFor(binding: Binding, env: NodeJS.ProcessEnv): BindRecords | null {
  if (binding.name !== 'linux') return null;
  const bootId = orMissing(() => binding.readText('/proc/sys/kernel/random/boot_id').trim(), '');
  return new BindRecords(recordsPath(env), bootId);
}

const named = (driver: string | null): string => driver ?? 'no driver';

/** Run `ioasid bind` or `ioasid unbind`; returns the exit status. */
export function bindCommand(command: 'bind' | 'unbind', binding: Binding, records: BindRecords | null, a: BindArgs, io: Io): number {
  try {
    if (orMissing(() => (binding.readdir(`${SYS_PCI_DEVICES}/${a.bdf}`), false), true)) {
      throw new Refusal('no-device', `no PCI function ${a.bdf} on ${a.host}`, '`ioasid ls` lists them');
    }
    const pci = new PciDevice(binding, a.bdf);
    if (command === 'bind') {
      const r = bind(pci, records, a);
      if (a.json) io.out(JSON.stringify(r, null, 2));
      else for (const l of bindLines(r)) io.out(l);
    } else {
      const r = unbind(pci, records, a);
      if (a.json) io.out(JSON.stringify(r, null, 2));
      else io.out(r.changed ? `${r.bdf}: ${named(r.previous.driver)} -> ${named(r.now.driver)}${r.from === 'record' ? ', as before `ioasid bind`' : ''}` : `${r.bdf}: ${named(r.now.driver)} already; nothing changed`);
    }
    return 0;
  } catch (e) {
    if (!(e instanceof Refusal || e instanceof DriverError)) throw e;
    const why = e instanceof DriverError ? driverErrorLines(e, command) : { lines: [e.message], fix: e.fix };
    if (a.json) {
      const error = e instanceof DriverError ? { code: e.code, errno: e.errno, reason: e.reason, driver: e.driver, uses: e.uses } : { reason: e.reason };
      io.out(JSON.stringify({ error: { ...error, bdf: a.bdf, message: why.lines.map((l) => l.trim()).join(' '), fix: why.fix } }, null, 2));
    } else {
      io.err(`ioasid ${command}: ${why.lines[0]}`);
      for (const l of why.lines.slice(1)) io.err(l);
      io.err(`-> ${why.fix}`);
    }
    return 1;
  }
}

function bind(pci: PciDevice, records: BindRecords | null, a: BindArgs): BindResult {
  const before = records?.get(pci.bdf) ?? null;
  const change = pci.bindDriver(a.driver, { force: !!a.force });
  let restores = before?.driver === pci.driver ? before.previous : null;
  if (change.changed && records) {
    // A function bound again keeps what it had before the first bind.
    restores = before && before.driver === change.previous.driver ? before.previous : change.previous;
    try {
      records.set(pci.bdf, { driver: change.driver, previous: restores, bootId: records.bootId, time: new Date().toISOString() });
    } catch (e) {
      const to = restores.driver ?? 'none';
      throw new Refusal('not-recorded', `${pci.bdf} is on ${change.driver} now, but recording what it had failed: ${(e as Error).message}`,
        `\`ioasid unbind ${pci.bdf} --to ${to}\` puts ${named(restores.driver)} back${restores.driverOverride === null ? '' : ` (driver_override was ${restores.driverOverride})`}`);
    }
  }
  const groupBlockers = pci.groupDevices().filter((d) => d !== pci.bdf).map((name) => ({ name, driver: new PciDevice(pci.binding, name).driver }))
    .filter((d): d is { name: string; driver: string } => d.driver !== null && !managesOwnDma(d.driver));
  return {
    host: a.host, bdf: pci.bdf, changed: change.changed, driver: change.driver, previous: change.previous, vfioCdev: pci.vfioCdev,
    iommuGroup: pci.iommuGroup, groupBlockers, restores, records: records?.path ?? null,
  };
}

function bindLines(r: BindResult): string[] {
  const cdev = r.vfioCdev ? `; VFIO device ${r.vfioCdev}` : '';
  const out = [r.changed ? `${r.bdf}: ${named(r.previous.driver)} -> ${r.driver}${cdev}` : `${r.bdf}: ${r.driver} already${cdev}; nothing changed`];
  if (r.groupBlockers.length) {
    out.push(`note: IOMMU group ${r.iommuGroup} cannot be used through VFIO yet: ${r.groupBlockers.map((b) => `${b.name} is on ${b.driver}`).join(', ')}`
      + ` -> bind ${r.groupBlockers.length === 1 ? 'it' : 'them'} too (\`ioasid bind ${r.groupBlockers[0]!.name}\`)`);
  }
  if (r.records === null) out.push(`(${r.host} lasts as long as this command: nothing is recorded)`);
  else if (r.restores) out.push(`\`ioasid unbind ${r.bdf}\` puts ${named(r.restores.driver)} back (recorded in ${r.records})`);
  return out;
}

function unbind(pci: PciDevice, records: BindRecords | null, a: BindArgs): UnbindResult {
  const record = records?.get(pci.bdf) ?? null;
  const previous = pci.driverState();
  let target: DriverState;
  // A VFIO driver matches only through driver_override (its IDs are override_only), so it keeps one.
  if (a.driver !== undefined) target = a.driver === 'none' ? { driver: null, driverOverride: null } : { driver: a.driver, driverOverride: isVfioDriver(a.driver) ? a.driver : null };
  else if (!record) {
    const where = records ? `no record in ${records.path}` : `${a.host} keeps nothing between commands`;
    throw new Refusal('not-bound', `${pci.bdf} (on ${named(previous.driver)}) was not bound by \`ioasid bind\` (${where}): what it had before is not known`,
      'say what it should have: --to DRIVER (the driver the host uses for it), or --to none for no driver');
  } else if (record.driver !== previous.driver) {
    throw new Refusal('changed-since', `\`ioasid bind\` gave ${pci.bdf} to ${record.driver}, but it is on ${named(previous.driver)} now: something else changed it since`,
      `say what it should have: --to ${named(record.previous.driver).replace('no driver', 'none')} (what it had before \`ioasid bind\`), or another driver`);
  } else target = record.previous;
  pci.restoreDriver(target, { force: !!a.force });
  if (record) records!.set(pci.bdf, null);
  const now = pci.driverState();
  return { host: a.host, bdf: pci.bdf, changed: now.driver !== previous.driver || now.driverOverride !== previous.driverOverride, previous, now, from: a.driver === undefined ? 'record' : 'to' };
}

/** What to do about each kind of host use. */
function useFix(u: HostUse): string {
  switch (u.kind) {
    case 'mount': case 'share': return `umount ${u.mountPoint}`;
    case 'swap': return `swapoff /dev/${u.device}`;
    case 'holder': return `take down ${u.holder} (dmsetup remove, mdadm --stop)`;
    case 'netdev': return `ip link set ${u.interface} down`;
    case 'console': return `move the console off ${u.console} (console= on the kernel command line)`;
    case 'boot-vga': return 'use another display';
    case 'vfio-open': return `stop process ${u.pid} (${u.comm}) or let it release the device`;
  }
}

/** A DriverError as the command says it: what happened (lines), and what to do. */
function driverErrorLines(e: DriverError, command: string): { lines: string[]; fix: string } {
  const detail = e.message.slice(e.message.indexOf('): ') + 3);
  const stays = `${e.bdf} is unchanged`;
  switch (e.reason) {
    case 'in-use':
      return {
        lines: [`${e.code}: the host uses ${e.bdf}; nothing changed:`,
          ...e.uses.map((u) => `  ${u.bdf === e.bdf ? '' : `${u.bdf} (same IOMMU group): `}${describeHostUse(u).slice(u.bdf.length + 2)}`)],
        fix: `${[...new Set(e.uses.map(useFix))].join('; ')}; or pass --force to take it anyway`,
      };
    case 'no-driver':
      return { lines: [`${e.code}: no PCI driver ${e.driver} on this kernel; ${stays}`], fix: command === 'bind' ? 'name another with --driver NAME, or boot a kernel with it' : 'name another with --to DRIVER' };
    case 'driver-not-loaded':
      return { lines: [`${e.code}: PCI driver ${e.driver} is not loaded (ioasid never loads modules); ${stays}`], fix: detail.match(/`modprobe [^`]+`/)?.[0] ?? 'load its module' };
    case 'device-open':
      return { lines: [`${e.code}: ${detail}`], fix: 'close the device first' };
    case 'bind-failed':
      return { lines: [`${e.code}: ${detail}`], fix: `${e.driver ?? 'the driver'} does not take this device: name another` };
    case 'restore-failed':
      return { lines: [`${e.code}: ${detail}`], fix: `\`ioasid ls\` shows what ${e.bdf} has now; bind a driver by hand (echo ${e.bdf} > /sys/bus/pci/drivers/DRIVER/bind)` };
  }
}
