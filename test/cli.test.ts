/**
 * The `ioasid` command on sim machine presets (--machine): its output as a person reads it (key
 * lines) and as a program reads it (--json, parsed), its exit statuses, --help and --version, and
 * the usage errors that name what is valid. Expected values are the test VM's (its PCI layout in
 * test/sim-machine.vm-probe.txt, its kernel config in scripts/vm/kernel.config), which the
 * presets mirror; test/doctor.test.ts runs the same commands against this host and the VM.
 */
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { backendName, defaultBackendName, openBinding } from '../src/backends/index.js';
import * as presets from '../src/backends/sim/machine/presets.js';
import { testVmKernel } from '../src/backends/sim/machine/kernels.js';
import { parseSize } from '../src/cli/main.js';
import type { Listing } from '../src/cli/ls.js';
import { diagnose, type Diagnosis } from '../src/doctor/checks.js';
import { sim, type SimBinding } from '../src/backends/sim/index.js';
import type { KernelDesc } from '../src/backends/sim/kernel/boot.js';
import type { MachineDesc } from '../src/backends/sim/machine/machine.js';
import { Iommufd, IommuError } from '../src/index.js';
import { SimBinding as SimBindingClass, SimKernel } from '../src/backends/sim/index.js';
import { SimProcess } from '../src/backends/sim/kernel/process.js';
import { BACKEND, ioasid } from './helpers.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');

async function json<T>(...args: string[]): Promise<T> {
  const r = await ioasid(...args, '--json');
  expect(r.err).toBe('');
  return JSON.parse(r.out) as T;
}

const EDUS = ['0000:00:01.0', '0000:01:01.0', '0000:01:02.0'];

describe(`ioasid: help, version, usage errors [${BACKEND}]`, () => {
  it('--version prints package.json\'s version; --help lists the commands; each command has --help', async () => {
    const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { version: string };
    expect(await ioasid('--version')).toEqual({ code: 0, out: pkg.version, err: '' });
    expect((await ioasid('-V')).out).toBe(pkg.version);
    const help = await ioasid('--help');
    expect(help.code).toBe(0);
    for (const c of ['demo', 'doctor', 'ls']) expect(help.out).toMatch(new RegExp(`^  ${c} `, 'm'));
    for (const c of ['demo', 'doctor', 'ls']) {
      const h = await ioasid(c, '--help');
      expect(h.code).toBe(0);
      expect(h.out).toMatch(new RegExp(`^usage: ioasid ${c}`));
      expect(await ioasid('help', c)).toEqual(h);
    }
    expect((await ioasid('ls', '-h')).out).toMatch(/--machine PRESET/);
  });

  it('usage errors exit 2 and say what is valid', async () => {
    const cmd = await ioasid('frobnicate');
    expect(cmd.code).toBe(2);
    expect(cmd.err).toMatch(/unknown command "frobnicate": the commands are demo, doctor, ls/);
    const opt = await ioasid('ls', '--jsn');
    expect(opt.code).toBe(2);
    expect(opt.err).toMatch(/--jsn/);
    expect(opt.err).toMatch(/ioasid ls --help/);
    const machine = await ioasid('ls', '--machine', 'q35');
    expect(machine.code).toBe(2);
    expect(machine.err).toContain('"q35" is not a machine preset: valid names are q35Edu, q35EduBare, q35EduIommufdContainer, q35EduCdevOnly, q35Host, smmuv3Platform, mockOnly');
    expect((await ioasid('ls', 'extra')).code).toBe(2);
    expect((await ioasid('doctor', '--memlock', 'lots', '--machine', 'q35Edu')).err).toMatch(/not a size/);
    const backend = await ioasid('demo', '--backend', 'lnux');
    expect(backend.code).toBe(2);
    expect(backend.err).toContain('"lnux" is not a backend: valid names are sim, linux');
    expect((await ioasid('demo', '--machine', 'q35Edu', '--backend', 'linux')).code).toBe(2);
  });

  it('parses sizes for --memlock', () => {
    expect([parseSize('1G'), parseSize('512M'), parseSize('64k'), parseSize('1GiB'), parseSize('4096')])
      .toEqual([2 ** 30, 512 * 2 ** 20, 65536, 2 ** 30, 4096]);
  });
});

describe(`backend names [${BACKEND}]`, () => {
  it('an unknown name is an error listing the valid ones, from an option or from IOASID_BACKEND', () => {
    expect(() => openBinding('linx' as 'linux')).toThrow('backend "linx" is not a backend: valid names are sim, linux');
    expect(backendName('sim')).toBe('sim');
    const saved = process.env.IOASID_BACKEND;
    try {
      process.env.IOASID_BACKEND = 'Sim';
      expect(() => defaultBackendName()).toThrow('IOASID_BACKEND "Sim" is not a backend: valid names are sim, linux');
      process.env.IOASID_BACKEND = '';
      expect(defaultBackendName()).toBe('sim');
    } finally {
      if (saved === undefined) delete process.env.IOASID_BACKEND;
      else process.env.IOASID_BACKEND = saved;
    }
  });
});

describe(`ioasid ls --machine [${BACKEND}]`, () => {
  it('q35Edu: the VM\'s functions, the three edus on vfio-pci with their cdevs and groups', async () => {
    const l = await json<Listing>('ls', '--machine', 'q35Edu');
    expect(l.functions.map((f) => f.bdf)).toEqual([
      '0000:00:00.0', '0000:00:01.0', '0000:00:02.0', '0000:00:03.0', '0000:00:04.0',
      '0000:00:1f.0', '0000:00:1f.2', '0000:00:1f.3', '0000:01:01.0', '0000:01:02.0',
    ]);
    const edus = l.functions.filter((f) => f.vendor === '1234' && f.device === '11e8');
    expect(edus.map((f) => [f.bdf, f.iommuGroup, f.driver, f.vfioCdev, f.vfioDriver, f.class])).toEqual([
      ['0000:00:01.0', 1, 'vfio-pci', '/dev/vfio/devices/vfio0', 'vfio-pci', '00ff00'],
      ['0000:01:01.0', 2, 'vfio-pci', '/dev/vfio/devices/vfio1', 'vfio-pci', '00ff00'],
      ['0000:01:02.0', 2, 'vfio-pci', '/dev/vfio/devices/vfio2', 'vfio-pci', '00ff00'],
    ]);
    expect(l.functions.find((f) => f.bdf === '0000:00:03.0')).toMatchObject({ driver: 'virtio-pci', vfioCdev: null, iommuGroup: 3, vfioDriver: 'vfio-pci' });
    // vfio-pci takes header type 0 only: not the PCIe-to-PCI bridge
    expect(l.functions.find((f) => f.bdf === '0000:00:02.0')).toMatchObject({ class: '060400', className: 'bridge', vfioDriver: null });
    const g = new Map(l.groups.map((x) => [x.id, x]));
    expect([...g.keys()]).toEqual([0, 1, 2, 3, 4, 5]);
    expect(g.get(2)).toMatchObject({ viable: true, blockers: [] });
    expect(g.get(2)!.devices).toEqual([
      { name: '0000:00:02.0', driver: null }, { name: '0000:01:01.0', driver: 'vfio-pci' }, { name: '0000:01:02.0', driver: 'vfio-pci' },
    ]);
    // a group with a device on a DMA-API driver cannot be owned by a user
    expect(g.get(3)).toMatchObject({ viable: false, blockers: [{ name: '0000:00:03.0', driver: 'virtio-pci' }] });
  });

  it('prints a table with the same data', async () => {
    const { code, out } = await ioasid('ls', '--machine', 'q35Edu');
    expect(code).toBe(0);
    expect(out).toMatch(/^PCI functions on sim machine q35Edu$/m);
    expect(out).toMatch(/^ {2}BDF +ID +CLASS +GROUP +DRIVER +VFIO CDEV +VFIO DRIVER$/m);
    expect(out).toMatch(/^ {2}0000:00:01\.0 +1234:11e8 +00ff00 unclassified +1 +vfio-pci +\/dev\/vfio\/devices\/vfio0 +vfio-pci$/m);
    expect(out).toMatch(/^ {2}0000:00:03\.0 +1af4:1009 .* +virtio-pci +- +vfio-pci$/m);
    expect(out).toMatch(/^ {2}2 +yes +0000:00:02\.0 \(no driver\), 0000:01:01\.0 \(vfio-pci\), 0000:01:02\.0 \(vfio-pci\)$/m);
    expect(out).toMatch(/^ {2}3 +no \(virtio-pci\) +0000:00:03\.0 \(virtio-pci\)$/m);
  });

  it('q35EduBare: nothing on vfio-pci yet; smmuv3Platform: ACS gives each edu a group, pcieport leaves groups viable', async () => {
    const bare = await json<Listing>('ls', '--machine', 'q35EduBare');
    expect(bare.functions.filter((f) => EDUS.includes(f.bdf)).map((f) => [f.driver, f.vfioCdev])).toEqual([[null, null], [null, null], [null, null]]);
    const arm = await json<Listing>('ls', '--machine', 'smmuv3Platform');
    const edus = arm.functions.filter((f) => f.device === '11e8');
    expect(edus.map((f) => f.iommuGroup)).toEqual([4, 8, 9, 10, 10]);
    expect(arm.groups.every((x) => x.viable)).toBe(true);
    expect(arm.functions.filter((f) => f.driver === 'pcieport').map((f) => f.bdf)).toEqual(['0000:00:01.0', '0000:00:02.0', '0000:00:03.0', '0000:02:00.0', '0000:03:00.0', '0000:03:01.0']);
  });

  it('mockOnly: no PCI functions and no groups, said in words', async () => {
    const { code, out } = await ioasid('ls', '--machine', 'mockOnly');
    expect(code).toBe(0);
    expect(out).toContain('(none: no /sys/bus/pci/devices)');
    expect(out).toContain('(none: no IOMMU translates these devices; `ioasid doctor` says why)');
    expect(await json<Listing>('ls', '--machine', 'mockOnly')).toEqual({ host: 'sim machine mockOnly', functions: [], groups: [] });
  });
});

const byId = (d: Diagnosis, id: string): Diagnosis['findings'][number] | undefined => d.findings.find((f) => f.id === id);

describe(`ioasid doctor --machine [${BACKEND}]`, () => {
  it('q35Edu (the VM): iommufd and VFIO usable, exit 0, every check reads the machine', async () => {
    const r = await ioasid('doctor', '--machine', 'q35Edu');
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/^ioasid doctor: sim machine q35Edu \(Linux 7\.3\.4\)$/m);
    expect(r.out).toMatch(/^iommufd: usable$/m);
    expect(r.out).toMatch(/^VFIO: +usable$/m);
    expect(r.out).not.toMatch(/FAIL/);
    const d = await json<Diagnosis>('doctor', '--machine', 'q35Edu');
    expect(d).toMatchObject({ host: 'sim machine q35Edu', release: '7.3.4', configSource: '/proc/config.gz', iommufd: { usable: true }, vfio: { usable: true } });
    for (const o of ['IOMMUFD', 'VFIO', 'VFIO_DEVICE_CDEV', 'VFIO_GROUP', 'VFIO_CONTAINER']) expect(byId(d, `config.${o}`)).toMatchObject({ level: 'ok', text: expect.stringContaining(`CONFIG_${o}=y`) });
    expect(byId(d, 'config.IOMMUFD_VFIO_CONTAINER')).toMatchObject({ level: 'info', text: expect.stringContaining('is not set') });
    expect(byId(d, 'iommu.enabled')?.text).toBe('IOMMU enabled: dmar0 (ACPI DMAR: Intel VT-d)');
    expect(byId(d, 'iommu.groups')?.text).toMatch(/^6 IOMMU groups/);
    expect(byId(d, 'dev.iommu')?.text).toBe('/dev/iommu (crw-rw----): this process can open it');
    expect(byId(d, 'dev.vfio-devices')?.text).toBe('3 VFIO device nodes: vfio0 (0000:00:01.0), vfio1 (0000:01:01.0), vfio2 (0000:01:02.0)');
    expect(byId(d, 'vfio-pci')?.level).toBe('ok');
    expect(byId(d, 'memlock')?.text).toMatch(/CAP_IPC_LOCK/);
  });

  it('q35EduBare: usable, but warns that no device is on a VFIO driver and says how to bind one', async () => {
    const r = await ioasid('doctor', '--machine', 'q35EduBare');
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/^ {2}WARN {2}no VFIO device nodes in \/dev\/vfio\/devices: .* -> .*driver_override.*drivers_probe/m);
  });

  it('mockOnly: no IOMMU blocks VFIO (exit 1) and the line says what to do; iommufd itself is usable', async () => {
    const r = await ioasid('doctor', '--machine', 'mockOnly');
    expect(r.code).toBe(1);
    expect(r.out).toMatch(/^ {2}FAIL {2}no IOMMU: the ACPI tables have no DMAR, IVRS or IORT and \/sys\/class\/iommu has only the selftest's mock IOMMU, .* -> enable the IOMMU/m);
    expect(r.out).toMatch(/^iommufd: usable$/m);
    expect(r.out).toMatch(/^VFIO: +NOT usable: no IOMMU/m);
  });

  it('smmuv3Platform: the SMMU is found through IORT and /sys/class/iommu', async () => {
    const d = await json<Diagnosis>('doctor', '--machine', 'smmuv3Platform');
    expect(byId(d, 'iommu.enabled')?.text).toMatch(/^IOMMU enabled: smmu3\.\S+ \(ACPI IORT: Arm SMMU\)$/);
  });

  it('judges RLIMIT_MEMLOCK against --memlock when the process lacks CAP_IPC_LOCK', async () => {
    const b = sim({ caps: [], rlimitMemlock: 8 << 20 });
    const warn = byId(diagnose(b, { memlockNeed: 1 << 30 }), 'memlock')!;
    expect(warn.level).toBe('warn');
    expect(warn.text).toMatch(/^RLIMIT_MEMLOCK is 8 MiB: mapping more than that for DMA fails with ENOMEM/);
    expect(warn.fix).toMatch(/ulimit -l/);
    expect(byId(diagnose(b, { memlockNeed: 4 << 20 }), 'memlock')?.level).toBe('ok');
  });

  it('a process that may not open /dev/iommu is told why and what to do', async () => {
    const { SimBinding, SimKernel } = await import('../src/backends/sim/index.js');
    const { SimProcess } = await import('../src/backends/sim/kernel/process.js');
    // uid 1000 without CAP_DAC_OVERRIDE meets the node's 0660 root:root
    const kernel = new SimKernel();
    const b = new SimBinding(kernel, new SimProcess(kernel.user(1000), []));
    const f = byId(diagnose(b), 'dev.iommu')!;
    expect(f.level).toBe('fail');
    expect(f.text).toBe('/dev/iommu is crw-rw---- owned by uid 0 gid 0: this process (uid 1000) cannot open it read-write');
    expect(f.fix).toMatch(/udev rule/);
  });
});

describe(`doctor: the cause it names, on machines built to lack something [${BACKEND}]`, () => {
  const kernel = (config: string[], cmdline = 'ro'): KernelDesc => ({ release: '7.3.4', cmdline, config: config.join('\n') });
  const boot = (desc: Partial<MachineDesc>): SimBinding => sim({ machine: { ...presets.q35Edu(), ...desc } });

  it('iommufd built as a module and not loaded: "modprobe iommufd", and Iommufd.open says the same', () => {
    const b = boot({ kernel: kernel(['CONFIG_IKCONFIG_PROC=y', 'CONFIG_MODULES=y', 'CONFIG_IOMMUFD=m', 'CONFIG_VFIO=m', 'CONFIG_VFIO_PCI=m']) });
    b.kernel.vfs.remove('/dev/iommu'); // what a kernel whose module is not loaded has
    const d = diagnose(b);
    expect(byId(d, 'config.IOMMUFD')?.text).toBe('CONFIG_IOMMUFD=m: iommufd (/dev/iommu) (a module)');
    expect(byId(d, 'dev.iommu')).toMatchObject({ level: 'fail', text: 'no /dev/iommu: the iommufd module is not loaded', fix: 'modprobe iommufd' });
    expect(d.iommufd).toEqual({ usable: false, reason: 'no /dev/iommu: the iommufd module is not loaded' });
    expect(() => new Iommufd(b)).toThrow('open /dev/iommu: ENOENT (No such file or directory): the iommufd module is not loaded; modprobe iommufd (`ioasid doctor` checks the rest)');
    // vfio-pci registered by no one, a module per the config
    b.kernel.vfs.remove('/sys/bus/pci/drivers/vfio-pci');
    expect(byId(diagnose(b), 'vfio-pci')).toMatchObject({ level: 'warn', fix: 'modprobe vfio-pci' });
  });

  it('no /proc/config.gz: the config from /boot, else the module tree decides, else it says it cannot tell', () => {
    const b = boot({ kernel: kernel(['CONFIG_IOMMUFD=y']) }); // no IKCONFIG_PROC: no /proc/config.gz
    b.kernel.vfs.remove('/dev/iommu');
    let d = diagnose(b);
    expect(byId(d, 'config')).toMatchObject({ level: 'warn', text: expect.stringContaining('/boot/config-7.3.4') });
    expect(byId(d, 'dev.iommu')?.text).toBe('no /dev/iommu: this kernel shows no sign of iommufd (no config to read, no iommufd module)');
    b.kernel.vfs.addAttr('/lib/modules/7.3.4/modules.dep', { read: () => 'kernel/drivers/iommu/iommufd/iommufd.ko.xz: kernel/drivers/iommu/iommufd/foo.ko\n' });
    expect(byId(diagnose(b), 'dev.iommu')?.text).toBe('no /dev/iommu: the iommufd module is not loaded');
    b.kernel.vfs.remove('/sys/bus/pci/drivers/vfio-pci');
    expect(byId(diagnose(b), 'vfio-pci')?.level).toBe('fail');
    b.kernel.vfs.addAttr('/lib/modules/7.3.4/modules.alias', { read: () => 'alias vfio_pci:v000010DEd*sv*sd*bc03sc*i* vfio_pci\n' });
    expect(byId(diagnose(b), 'vfio-pci')).toMatchObject({ level: 'warn', text: 'vfio-pci is a module and is not loaded', fix: 'modprobe vfio-pci' });
    b.kernel.vfs.addAttr('/boot/config-7.3.4', { read: () => '# CONFIG_IOMMUFD is not set\n' });
    d = diagnose(b);
    expect(d.configSource).toBe('/boot/config-7.3.4');
    expect(byId(d, 'dev.iommu')).toMatchObject({ text: 'no /dev/iommu: the kernel lacks CONFIG_IOMMUFD (not set in /boot/config-7.3.4)', fix: expect.stringMatching(/CONFIG_IOMMUFD=y or =m/) });
  });

  it('Iommufd.open on a kernel without CONFIG_IOMMUFD, and by a user who may not open the node: the errno kept, the cause and fix named', () => {
    const b = boot({ kernel: kernel(['CONFIG_IKCONFIG_PROC=y', '# CONFIG_IOMMUFD is not set', 'CONFIG_VFIO=y']) });
    b.kernel.vfs.remove('/dev/iommu'); // a kernel without iommufd has no node
    const opened = (binding: SimBinding): IommuError => {
      try {
        new Iommufd(binding).close();
      } catch (e) {
        return e as IommuError;
      }
      throw new Error('the open went through');
    };
    const e = opened(b);
    expect(e).toBeInstanceOf(IommuError);
    expect([e.errno, e.code, e.syscall, e.path]).toEqual([2, 'ENOENT', 'open', '/dev/iommu']);
    expect(e.message).toBe('open /dev/iommu: ENOENT (No such file or directory): the kernel lacks CONFIG_IOMMUFD (not set in /proc/config.gz); '
      + 'boot a kernel built with CONFIG_IOMMUFD=y or =m (Linux 6.2 or later) (`ioasid doctor` checks the rest)');
    expect(diagnose(b).iommufd).toEqual({ usable: false, reason: 'no /dev/iommu: the kernel lacks CONFIG_IOMMUFD (not set in /proc/config.gz)' });
    // uid 1000 without CAP_DAC_OVERRIDE meets the node's 0660 root:root (misc_register's mode for iommufd)
    const kernel2 = new SimKernel();
    const denied = opened(new SimBindingClass(kernel2, new SimProcess(kernel2.user(1000), [])));
    expect([denied.errno, denied.code, denied.syscall, denied.path]).toEqual([13, 'EACCES', 'open', '/dev/iommu']);
    expect(denied.message).toMatch(/^open \/dev\/iommu: EACCES \(Permission denied\): \/dev\/iommu is crw-rw---- owned by uid 0 gid 0: this process \(uid 1000\) cannot open it read-write; run as root, or let a group open it .* \(`ioasid doctor` checks the rest\)$/);
  });

  it('built in but no node: /dev is not devtmpfs, or udev removed it', () => {
    const b = boot({});
    b.kernel.vfs.remove('/dev/iommu');
    expect(byId(diagnose(b), 'dev.iommu')).toMatchObject({ text: 'no /dev/iommu: iommufd is in the kernel, but /dev has no node for it', fix: expect.stringMatching(/devtmpfs/) });
  });

  it('firmware with a DMAR the kernel did not enable: the command line says why', () => {
    const off = boot({ iommu: null, acpiTables: ['APIC', 'DMAR'], kernel: kernel(['CONFIG_IKCONFIG_PROC=y', 'CONFIG_INTEL_IOMMU=y'], 'ro intel_iommu=off') });
    expect(byId(diagnose(off), 'iommu.enabled')).toMatchObject({
      level: 'fail', text: "the firmware describes an IOMMU (ACPI DMAR: Intel VT-d) but the kernel did not enable it: /sys/class/iommu has only the selftest's mock IOMMU",
      fix: 'remove intel_iommu=off from the kernel command line',
    });
    const notOn = boot({ iommu: null, acpiTables: ['DMAR'], kernel: kernel(['CONFIG_IKCONFIG_PROC=y', 'CONFIG_INTEL_IOMMU=y']) });
    expect(byId(diagnose(notOn), 'iommu.enabled')?.fix).toBe('boot with intel_iommu=on on the kernel command line (CONFIG_INTEL_IOMMU_DEFAULT_ON is off)');
    const noDriver = boot({ iommu: null, acpiTables: ['DMAR'], kernel: kernel(['CONFIG_IKCONFIG_PROC=y']) });
    expect(byId(diagnose(noDriver), 'iommu.enabled')?.fix).toBe('boot a kernel built with CONFIG_INTEL_IOMMU=y');
    const pt = boot({ kernel: kernel(['CONFIG_IKCONFIG_PROC=y', 'CONFIG_IOMMUFD=y'], 'ro iommu=pt') });
    expect(byId(diagnose(pt), 'iommu.passthrough')?.level).toBe('info');
  });
});

describe(`sim presets describe the test VM's kernel [${BACKEND}]`, () => {
  it('every option of the preset kernel is in scripts/vm/kernel.config, and every IOMMU/VFIO option there is in the preset', () => {
    const fragment = readFileSync(join(root, 'scripts/vm/kernel.config'), 'utf8').split('\n').filter((l) => /CONFIG_/.test(l));
    const preset = testVmKernel().config.split('\n');
    for (const line of preset) expect(fragment, line).toContain(line);
    for (const line of fragment.filter((l) => /IOMMU|VFIO/.test(l))) expect(preset, line).toContain(line);
    expect(readFileSync(join(root, 'scripts/vm/run-in-guest.sh'), 'utf8')).toContain(testVmKernel().cmdline.replace(/ init=.*/, ''));
  });

  it('q35Edu publishes the VM\'s ACPI tables, command line, release and IOMMU units (scripts/vm, test VM 7.3.4)', () => {
    const b = sim();
    expect(b.readdir('/sys/firmware/acpi/tables')).toEqual(['APIC', 'DMAR', 'DSDT', 'FACP', 'FACS', 'HPET', 'MCFG', 'WAET']);
    expect(b.readText('/proc/sys/kernel/osrelease')).toBe('7.3.4\n');
    expect(b.readText('/proc/cmdline')).toMatch(/^console=ttyS0 quiet panic=-1 intel_iommu=on root=hostroot /);
    expect(b.readdir('/sys/class/iommu')).toEqual(['dmar0', 'iommufd_selftest_iommu.0']);
    expect(b.readlink('/sys/class/iommu/dmar0')).toBe('../../devices/virtual/iommu/dmar0');
    expect(b.readlink('/sys/class/iommu/iommufd_selftest_iommu.0')).toBe('../../devices/platform/iommufd_selftest_iommu.0/iommu/iommufd_selftest_iommu.0');
    expect(sim({ selftest: false }).readdir('/sys/class/iommu')).toEqual(['dmar0']);
  });

  it('MACHINES names every machine preset (every exported function that takes no argument)', () => {
    const machines = Object.entries(presets).filter(([, v]) => typeof v === 'function' && v.length === 0).map(([k]) => k).sort();
    expect(Object.keys(presets.MACHINES).sort()).toEqual(machines);
    for (const [name, make] of Object.entries(presets.MACHINES)) expect(make().name).toBe(name);
  });
});
