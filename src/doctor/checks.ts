/**
 * `ioasid doctor`: can this host use iommufd and VFIO, and what to do if not. Every check reads the
 * host through the Host seam (host.ts), so the same code answers for the running kernel and for a
 * sim machine. Each finding is one line: what is the matter, and what to do about it.
 *
 * What is read: the kernel's config (/proc/config.gz, else /boot/config-$(uname -r)); the ACPI
 * tables that describe an IOMMU (DMAR: Intel VT-d, IVRS: AMD-Vi, IORT: Arm SMMU),
 * /sys/class/iommu, /sys/kernel/iommu_groups and the IOMMU options of the kernel command line;
 * the device nodes (/dev/iommu, /dev/vfio/vfio, /dev/vfio/devices/*) and whether this process may
 * open them; vfio-pci (its sysfs driver directory, else modules.builtin / modules.dep); and
 * RLIMIT_MEMLOCK against what a mapping needs.
 */
import { gunzipSync } from 'node:zlib';
import { CAP_IPC_LOCK, type Binding } from '../backends/types.js';
import { DEV_VFIO_DEVICES, SYS_IOMMU_GROUPS, orMissing } from '../device/pci.js';
import { IommuError } from '../ioasid/errors.js';
import { hostOf, type Host, type HostStat } from './host.js';

export const DEV_IOMMU = '/dev/iommu';
export const DEV_VFIO_CONTAINER = '/dev/vfio/vfio';
const ACPI_TABLES = '/sys/firmware/acpi/tables';
const SYS_CLASS_IOMMU = '/sys/class/iommu';
const SYS_VFIO_PCI = '/sys/bus/pci/drivers/vfio-pci';

/** ok: works; info: worth knowing; warn: works with a limit or one step missing; fail: blocks use. */
export type Level = 'ok' | 'info' | 'warn' | 'fail';

export interface Finding {
  /** Stable name of the check ('config.IOMMUFD', 'dev.iommu', 'memlock'...). */
  id: string;
  /** What part of the host it is about. */
  area: 'kernel' | 'iommu' | 'devices' | 'limits';
  level: Level;
  /** What is the matter (or what is fine). */
  text: string;
  /** What to do about it (absent when nothing needs doing). */
  fix?: string;
}

export interface Verdict {
  usable: boolean;
  /** The first finding that blocks it, when not usable. */
  reason?: string;
}

export interface Diagnosis {
  host: string;
  /** `uname -r`, null when unreadable. */
  release: string | null;
  /** Where the kernel config came from, null when none was found. */
  configSource: string | null;
  findings: Finding[];
  /** /dev/iommu can be opened. */
  iommufd: Verdict;
  /** A device can be handed to userspace through VFIO and bound to an iommufd (cdev). */
  vfio: Verdict;
}

export interface DoctorOptions {
  /** Bytes a typical mapping pins, to judge RLIMIT_MEMLOCK by (default 1 GiB, a small guest's RAM). */
  memlockNeed?: number;
}

const GiB = 1024 ** 3;

/** Run every check on the host a Binding reads (the running host, or a sim machine). */
export function diagnose(binding: Binding, opts: DoctorOptions = {}): Diagnosis {
  const f = new Facts(hostOf(binding));
  const findings = [
    ...kernelConfig(f), ...iommuHardware(f), devIommu(f), devVfioContainer(f), ...devVfioDevices(f), vfioPci(f),
    memlock(f, opts.memlockNeed ?? GiB),
  ].filter((x): x is Finding => x !== null);
  /** The verdict from the checks named (ids, or prefixes ending in '.'), the first listed failing one as the reason. */
  const blocker = (ids: string[]): Verdict => {
    const hit = (id: string, x: Finding): boolean => (id.endsWith('.') ? x.id.startsWith(id) : x.id === id);
    for (const id of ids) {
      const first = findings.find((x) => x.level === 'fail' && hit(id, x));
      if (first) return { usable: false, reason: first.text };
    }
    return { usable: true };
  };
  return {
    host: f.host.description,
    release: f.release,
    configSource: f.config?.source ?? null,
    findings,
    iommufd: blocker(['dev.iommu', 'config.IOMMUFD']),
    vfio: blocker(['config.VFIO', 'vfio-pci', 'iommu.', 'config.VFIO_DEVICE_CDEV', 'dev.vfio-devices.access', 'dev.iommu', 'config.IOMMUFD']),
  };
}

/**
 * The error for a failed open of /dev/iommu, naming the cause the doctor's checks find ("the
 * kernel lacks CONFIG_IOMMUFD", "the iommufd module is not loaded", a permission); `e` unchanged
 * when it is not such a failure.
 */
export function explainIommufdOpen(binding: Binding, e: unknown): unknown {
  if (!(e instanceof IommuError) || e.path !== DEV_IOMMU) return e;
  const finding = devIommu(new Facts(hostOf(binding)));
  if (finding.level !== 'fail') return e;
  const cause = finding.text.replace(/^no \/dev\/iommu: /, '');
  return new IommuError(e.errno, e.syscall, { path: e.path, detail: `${cause}; ${finding.fix} (\`ioasid doctor\` checks the rest)` });
}

// ---- what the checks read, each at most once ------------------------------------------------------

type Tristate = 'y' | 'm' | 'n';

class Facts {
  private memo = new Map<string, unknown>();
  constructor(readonly host: Host) {}

  private once<T>(key: string, f: () => T): T {
    if (!this.memo.has(key)) this.memo.set(key, f());
    return this.memo.get(key) as T;
  }

  text(path: string): string | null {
    return this.once(`text:${path}`, () => orMissing(() => this.host.binding.readText(path), null));
  }

  dir(path: string): string[] | null {
    return this.once(`dir:${path}`, () => orMissing(() => this.host.binding.readdir(path), null));
  }

  stat(path: string): HostStat | null {
    return orMissing(() => this.host.stat(path), null);
  }

  get release(): string | null {
    return this.text('/proc/sys/kernel/osrelease')?.trim() || null;
  }

  /** The kernel's config options (CONFIG_ prefix dropped), and where they came from. */
  get config(): { source: string; options: Map<string, string> } | null {
    return this.once('config', () => {
      const gz = orMissing(() => this.host.readBytes('/proc/config.gz'), null);
      if (gz) return { source: '/proc/config.gz', options: parseConfig(gunzipSync(gz).toString('utf8')) };
      const boot = this.release ? `/boot/config-${this.release}` : null;
      const text = boot ? this.text(boot) : null;
      return text !== null ? { source: boot!, options: parseConfig(text) } : null;
    });
  }

  /** An option's state: y, m, n (absent counts as n: Kconfig omits options whose dependencies are off), or null with no config. */
  opt(name: string): Tristate | null {
    const c = this.config;
    if (!c) return null;
    const v = c.options.get(name) ?? 'n';
    return v === 'y' || v === 'm' ? v : 'n';
  }

  /** The value of `name=` on the kernel command line ('' for a bare flag), undefined when absent. */
  param(name: string): string | undefined {
    const words = this.once('cmdline', () => (this.text('/proc/cmdline') ?? '').trim().split(/\s+/));
    let value: string | undefined;
    for (const w of words) {
      if (w === '--') break;
      if (w === name) value = '';
      else if (w.startsWith(`${name}=`)) value = w.slice(name.length + 1);
    }
    return value;
  }

  /** Whether /sys/module lists `module`: every loaded module (and built-in ones that have parameters). */
  moduleLoaded(module: string): boolean {
    return (this.dir('/sys/module') ?? []).includes(module);
  }

  /**
   * Whether the kernel's module tree has `module`: built in (modules.builtin) or loadable (a .ko in
   * modules.dep, or an alias in modules.alias naming it); null when the tree has neither.
   */
  moduleAvailable(module: string): 'builtin' | 'module' | null {
    const base = this.release ? `/lib/modules/${this.release}` : null;
    if (!base) return null;
    const file = `${module.replace(/_/g, '[-_]')}\\.ko`;
    if (new RegExp(`/${file}$`, 'm').test(this.text(`${base}/modules.builtin`) ?? '')) return 'builtin';
    if (new RegExp(`/${file}(\\.\\w+)?:`, 'm').test(this.text(`${base}/modules.dep`) ?? '')) return 'module';
    if (new RegExp(`^alias \\S+ ${module}$`, 'm').test(this.text(`${base}/modules.alias`) ?? '')) return 'module';
    return null;
  }
}

/**
 * Parse a .config: `CONFIG_X=v` and `# CONFIG_X is not set` (as 'n'). One pass of one regex over
 * the text (a distribution's config has ~10 000 lines: `ioasid doctor` parses it at each start).
 */
export function parseConfig(text: string): Map<string, string> {
  const out = new Map<string, string>();
  const line = /^(?:CONFIG_(\w+)=(.*)|# CONFIG_(\w+) is not set)$/gm;
  for (let m = line.exec(text); m; m = line.exec(text)) {
    if (m[1] !== undefined) out.set(m[1], m[2]!.charCodeAt(0) === 0x22 ? m[2]!.replace(/^"(.*)"$/, '$1') : m[2]!);
    else out.set(m[3]!, 'n');
  }
  return out;
}

const finding = (id: string, area: Finding['area'], level: Level, text: string, fix?: string): Finding =>
  (fix ? { id, area, level, text, fix } : { id, area, level, text });

const modeString = (st: HostStat): string => {
  const rwx = (b: number): string => `${b & 4 ? 'r' : '-'}${b & 2 ? 'w' : '-'}${b & 1 ? 'x' : '-'}`;
  return `${st.type === 'chr' ? 'c' : st.type === 'dir' ? 'd' : '-'}${rwx(st.mode >> 6)}${rwx(st.mode >> 3)}${rwx(st.mode)}`;
};

// ---- the kernel's config ----------------------------------------------------------------------------

/** What to do without iommufd. */
const FIX_IOMMUFD = 'boot a kernel built with CONFIG_IOMMUFD=y or =m (Linux 6.2 or later)';

/** What each option gives when on; what is lost without it, how much that matters, and what to do. */
const OPTIONS: { name: string; on: string; off: string; offLevel: Level; fix?: string; needs?: string }[] = [
  {
    name: 'IOMMUFD', on: 'iommufd (/dev/iommu)', offLevel: 'fail', off: 'this kernel has no iommufd (/dev/iommu)',
    fix: FIX_IOMMUFD,
  },
  {
    name: 'VFIO', on: 'VFIO, which hands devices to userspace', offLevel: 'fail', off: 'no device can be handed to userspace',
    fix: 'boot a kernel built with CONFIG_VFIO and CONFIG_VFIO_PCI',
  },
  {
    name: 'VFIO_DEVICE_CDEV', needs: 'VFIO', on: 'VFIO device nodes (/dev/vfio/devices/vfioN) that bind to an iommufd', offLevel: 'fail',
    off: 'no /dev/vfio/devices/vfioN: devices cannot bind to an iommufd directly (VfioDevice needs them)',
    fix: 'boot a kernel built with CONFIG_VFIO_DEVICE_CDEV=y (it needs CONFIG_IOMMUFD)',
  },
  {
    name: 'VFIO_GROUP', needs: 'VFIO', on: 'VFIO groups (/dev/vfio/N) for the legacy API', offLevel: 'info',
    off: 'no /dev/vfio/N groups: tools on the legacy group/container API will not run (the cdev path does not need them)',
  },
  {
    name: 'VFIO_CONTAINER', needs: 'VFIO_GROUP', on: "VFIO's own type1 container (/dev/vfio/vfio)", offLevel: 'info',
    off: "no type1 container of VFIO's own (CONFIG_IOMMUFD_VFIO_CONTAINER can serve /dev/vfio/vfio instead)",
  },
  {
    name: 'IOMMUFD_VFIO_CONTAINER', needs: 'VFIO_GROUP', on: "iommufd's compat container as /dev/vfio/vfio", offLevel: 'info',
    off: "/dev/vfio/vfio is not iommufd's (it excludes CONFIG_VFIO_CONTAINER); legacy users reach iommufd's compat container by passing /dev/iommu as the container",
  },
];

function kernelConfig(f: Facts): Finding[] {
  const c = f.config;
  if (!c) {
    return [finding('config', 'kernel', 'warn',
      `no kernel config found (/proc/config.gz, /boot/config-${f.release ?? '$(uname -r)'}): kernel options cannot be checked`,
      'load the configs module (modprobe configs) or install the kernel\'s config as /boot/config-$(uname -r)')];
  }
  const out = [finding('config', 'kernel', 'ok', `kernel ${f.release ?? '(release unknown)'}, config from ${c.source}`)];
  for (const o of OPTIONS) {
    if (o.needs && f.opt(o.needs) === 'n') continue; // nothing to say below an option that is off
    const v = f.opt(o.name)!;
    out.push(v === 'n'
      ? finding(`config.${o.name}`, 'kernel', o.offLevel, `CONFIG_${o.name} is not set: ${o.off}`, o.fix)
      : finding(`config.${o.name}`, 'kernel', 'ok', `CONFIG_${o.name}=${v}: ${o.on}${v === 'm' ? ' (a module)' : ''}`));
  }
  return out;
}

// ---- the IOMMU ----------------------------------------------------------------------------------------

/** ACPI tables that describe an IOMMU, with the kernel's switches for it. */
const IOMMU_TABLES = [
  { table: 'DMAR', what: 'Intel VT-d', config: 'INTEL_IOMMU', param: 'intel_iommu', defaultOn: 'INTEL_IOMMU_DEFAULT_ON', firmware: 'VT-d' },
  { table: 'IVRS', what: 'AMD-Vi', config: 'AMD_IOMMU', param: 'amd_iommu', defaultOn: null, firmware: 'the IOMMU (AMD-Vi)' },
  { table: 'IORT', what: 'Arm SMMU', config: 'ARM_SMMU_V3', param: null, defaultOn: null, firmware: 'the SMMU' },
] as const;

function iommuHardware(f: Facts): Finding[] {
  const tables = f.dir(ACPI_TABLES);
  const described = IOMMU_TABLES.filter((t) => tables?.includes(t.table));
  // CONFIG_IOMMUFD_TEST registers its mock IOMMU there too; it translates no real device
  const all = f.dir(SYS_CLASS_IOMMU) ?? [];
  const units = all.filter((u) => !u.startsWith('iommufd_selftest'));
  const noUnit = `${SYS_CLASS_IOMMU} ${all.length ? "has only the selftest's mock IOMMU" : 'is empty'}`;
  const out: Finding[] = [];
  if (units.length) {
    const how = described.length ? ` (${described.map((t) => `ACPI ${t.table}: ${t.what}`).join(', ')})` : '';
    out.push(finding('iommu.enabled', 'iommu', 'ok', `IOMMU enabled: ${units.join(', ')}${how}`));
  } else if (described.length) {
    const t = described[0]!;
    const param = t.param ? f.param(t.param) : undefined;
    let fix: string;
    if (param !== undefined && /^(off|0)$/.test(param)) fix = `remove ${t.param}=${param} from the kernel command line`;
    else if (f.opt(t.config) === 'n') fix = `boot a kernel built with CONFIG_${t.config}=y`;
    else if (t.param) fix = `boot with ${t.param}=on on the kernel command line${t.defaultOn ? ` (CONFIG_${t.defaultOn} is off)` : ''}`;
    else fix = 'check dmesg for the IOMMU driver\'s errors';
    out.push(finding('iommu.enabled', 'iommu', 'fail', `the firmware describes an IOMMU (ACPI ${t.table}: ${t.what}) but the kernel did not enable it: ${noUnit}`, fix));
  } else {
    out.push(finding('iommu.enabled', 'iommu', 'fail',
      `no IOMMU: ${tables ? 'the ACPI tables have no DMAR, IVRS or IORT and ' : ''}${noUnit}, so VFIO cannot isolate a device's DMA`,
      'enable the IOMMU (VT-d, AMD-Vi) in the firmware setup; in a QEMU guest add -device intel-iommu,intremap=on to a q35 machine'));
    return out;
  }
  const pt = f.param('iommu') === 'pt' || f.param('iommu.passthrough') === '1';
  if (pt) out.push(finding('iommu.passthrough', 'iommu', 'info', 'iommu=pt: the host\'s own drivers get identity (untranslated) DMA; devices given to VFIO are still translated'));
  const groups = f.dir(SYS_IOMMU_GROUPS) ?? [];
  out.push(groups.length
    ? finding('iommu.groups', 'iommu', 'ok', `${groups.length} IOMMU group${groups.length === 1 ? '' : 's'} in ${SYS_IOMMU_GROUPS} (\`ioasid ls\` shows them)`)
    : finding('iommu.groups', 'iommu', 'warn', `the IOMMU translates no device: ${SYS_IOMMU_GROUPS} is empty`, 'check that the devices sit behind the IOMMU (dmesg: "Adding to iommu group")'));
  return out;
}

// ---- device nodes -------------------------------------------------------------------------------------

/** "crw-rw---- root:root (uid 0)": a node's mode and owner, and that this process cannot open it. */
function denied(path: string, st: HostStat, f: Facts): string {
  return `${path} is ${modeString(st)} owned by uid ${st.uid} gid ${st.gid}: this process (uid ${f.host.uid}) cannot open it read-write`;
}

/** Why /dev/iommu is missing, from the config, the loaded modules and the module tree. */
function iommufdMissing(f: Facts): { cause: string; fix: string } {
  const inKernel = { cause: 'iommufd is in the kernel, but /dev has no node for it', fix: 'mount devtmpfs on /dev (mount -t devtmpfs devtmpfs /dev), or check the udev rules that remove it' };
  const notLoaded = { cause: 'the iommufd module is not loaded', fix: 'modprobe iommufd' };
  const opt = f.opt('IOMMUFD');
  if (opt === 'n') return { cause: `the kernel lacks CONFIG_IOMMUFD (not set in ${f.config!.source})`, fix: FIX_IOMMUFD };
  if (f.moduleLoaded('iommufd') || opt === 'y') return inKernel;
  if (opt === 'm') return notLoaded;
  const tree = f.moduleAvailable('iommufd');
  if (tree === 'builtin') return inKernel;
  if (tree === 'module') return notLoaded;
  return { cause: 'this kernel shows no sign of iommufd (no config to read, no iommufd module)', fix: FIX_IOMMUFD };
}

function devIommu(f: Facts): Finding {
  const st = f.stat(DEV_IOMMU);
  if (!st) {
    const { cause, fix } = iommufdMissing(f);
    return finding('dev.iommu', 'devices', 'fail', `no ${DEV_IOMMU}: ${cause}`, fix);
  }
  if (!f.host.canOpenRw(DEV_IOMMU)) {
    return finding('dev.iommu', 'devices', 'fail', denied(DEV_IOMMU, st, f),
      'run as root, or let a group open it (udev rule: KERNEL=="iommu", GROUP="vfio", MODE="0660") and add the user to that group');
  }
  return finding('dev.iommu', 'devices', 'ok', `${DEV_IOMMU} (${modeString(st)}): this process can open it`);
}

function devVfioContainer(f: Facts): Finding | null {
  if (f.opt('VFIO_GROUP') === 'n') return null;
  const st = f.stat(DEV_VFIO_CONTAINER);
  if (!st) return finding('dev.vfio-container', 'devices', 'info', `no ${DEV_VFIO_CONTAINER}: the legacy container API is not offered (iommufd's cdev path does not need it)`);
  const whose = f.opt('IOMMUFD_VFIO_CONTAINER') === 'y' ? "iommufd's compat container" : "VFIO's type1 container";
  return f.host.canOpenRw(DEV_VFIO_CONTAINER)
    ? finding('dev.vfio-container', 'devices', 'ok', `${DEV_VFIO_CONTAINER} (${modeString(st)}): ${whose}`)
    : finding('dev.vfio-container', 'devices', 'warn', denied(DEV_VFIO_CONTAINER, st, f), 'run as root for the legacy container API');
}

function devVfioDevices(f: Facts): Finding[] {
  if (f.opt('VFIO_DEVICE_CDEV') === 'n' || f.opt('VFIO') === 'n') return [];
  const nodes = (f.dir(DEV_VFIO_DEVICES) ?? []).filter((n) => /^vfio\d+$/.test(n));
  if (!nodes.length) {
    return [finding('dev.vfio-devices', 'devices', 'warn', `no VFIO device nodes in ${DEV_VFIO_DEVICES}: no device is bound to a VFIO driver`,
      'hand one to vfio-pci: echo vfio-pci > /sys/bus/pci/devices/<BDF>/driver_override; echo <BDF> > /sys/bus/pci/drivers_probe (`ioasid ls` lists the BDFs)')];
  }
  const name = (n: string): string => {
    const dev = orMissing(() => f.host.binding.readlink(`/sys/class/vfio-dev/${n}/device`), '');
    return dev ? `${n} (${dev.slice(dev.lastIndexOf('/') + 1)})` : n;
  };
  const closed = nodes.filter((n) => !f.host.canOpenRw(`${DEV_VFIO_DEVICES}/${n}`));
  const out = [finding('dev.vfio-devices', 'devices', 'ok', `${nodes.length} VFIO device node${nodes.length === 1 ? '' : 's'}: ${nodes.map(name).join(', ')}`)];
  if (closed.length) {
    const first = `${DEV_VFIO_DEVICES}/${closed[0]}`;
    out.push(finding('dev.vfio-devices.access', 'devices', 'fail',
      `${closed.length === 1 ? '' : `${closed.length} nodes, e.g. `}${denied(first, f.stat(first)!, f)}`,
      'run as root, or give the user the node (udev rule: SUBSYSTEM=="vfio-dev", OWNER="<user>")'));
  }
  return out;
}

function vfioPci(f: Facts): Finding | null {
  if (f.opt('VFIO') === 'n') return null;
  if (f.dir(SYS_VFIO_PCI)) return finding('vfio-pci', 'devices', 'ok', `vfio-pci is registered (${SYS_VFIO_PCI})`);
  const opt = f.opt('VFIO_PCI');
  const tree = f.moduleAvailable('vfio_pci');
  if (opt === 'm' || tree === 'module') return finding('vfio-pci', 'devices', 'warn', 'vfio-pci is a module and is not loaded', 'modprobe vfio-pci');
  return finding('vfio-pci', 'devices', 'fail', 'no vfio-pci driver in this kernel', 'boot a kernel built with CONFIG_VFIO_PCI=y or =m');
}

// ---- limits -------------------------------------------------------------------------------------------

const size = (n: number): string => {
  for (const [u, v] of [['GiB', GiB], ['MiB', 1024 ** 2], ['KiB', 1024]] as const) if (n >= v && n % v === 0) return `${n / v} ${u}`;
  return `${n} bytes`;
};

function memlock(f: Facts, need: number): Finding {
  if (f.host.binding.hasCapability(CAP_IPC_LOCK)) {
    return finding('memlock', 'limits', 'ok', 'RLIMIT_MEMLOCK does not limit DMA pinning: this process has CAP_IPC_LOCK');
  }
  const limit = f.host.memlockLimit();
  if (limit >= need) return finding('memlock', 'limits', 'ok', `RLIMIT_MEMLOCK is ${limit === Infinity ? 'unlimited' : size(limit)}: enough to pin ${size(need)} for DMA`);
  return finding('memlock', 'limits', 'warn',
    `RLIMIT_MEMLOCK is ${size(limit)}: mapping more than that for DMA fails with ENOMEM (a typical mapping, ${size(need)} of guest RAM, needs ${size(need)})`,
    'raise it (ulimit -l, LimitMEMLOCK= in a systemd unit, memlock in /etc/security/limits.conf) or grant CAP_IPC_LOCK');
}
