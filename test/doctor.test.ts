/**
 * `ioasid doctor` and `ioasid ls` on the machine the tier runs on, without --machine: on the sim
 * tier that is this host, which has no iommufd (the doctor must say so, and what to do, and the
 * linux backend's open must name the same cause); on the linux tier it is the test VM, with
 * iommufd and the three edus on vfio-pci (the doctor must find it usable, ls must show them).
 * Expected values come from the host's own files (read here with node:fs) and the VM's known
 * layout (test/sim-machine.vm-probe.txt), never from the code under test.
 */
import { existsSync, readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { Iommufd, IommuError } from '../src/index.js';
import type { Listing } from '../src/cli/ls.js';
import { parseConfig, type Diagnosis, type Finding } from '../src/doctor/checks.js';
import { claimDevices } from './drivers/devices.js';
import { BACKEND, ioasid } from './helpers.js';

const IN_VM = BACKEND === 'linux';
const HAS_IOMMUFD = existsSync('/dev/iommu');
const EDUS = ['0000:00:01.0', '0000:01:01.0', '0000:01:02.0'];

async function json<T>(...args: string[]): Promise<T> {
  const r = await ioasid(...args, '--json');
  expect(r.err).toBe('');
  return JSON.parse(r.out) as T;
}

const find = (d: Diagnosis, id: string): Finding | undefined => d.findings.find((f) => f.id === id);

const HOST_SKIP = IN_VM ? ' (skipped on linux: the tier runs in the VM, which has iommufd)'
  : HAS_IOMMUFD ? ' (skipped: this host has /dev/iommu)' : '';

describe(`the doctor's .config reader [${BACKEND}]`, () => {
  it("takes CONFIG_X=value (a quoted string unquoted) and '# CONFIG_X is not set' as n, nothing else", () => {
    const text = [
      '#', '# Automatically generated file; DO NOT EDIT.', '# Linux/x86 7.3.4 Kernel Configuration', '#',
      'CONFIG_IOMMUFD=y', 'CONFIG_VFIO=m', '# CONFIG_VFIO_CONTAINER is not set', 'CONFIG_CMDLINE="console=ttyS0 intel_iommu=on"',
      'CONFIG_HZ=1000', '', '# end of IOMMU Hardware Support', '#CONFIG_NOT_A_SETTING is not set', 'CONFIG_LAST=""',
    ].join('\n');
    expect([...parseConfig(text)]).toEqual([
      ['IOMMUFD', 'y'], ['VFIO', 'm'], ['VFIO_CONTAINER', 'n'], ['CMDLINE', 'console=ttyS0 intel_iommu=on'], ['HZ', '1000'], ['LAST', ''],
    ]);
  });
});

describe.skipIf(IN_VM || HAS_IOMMUFD)(`ioasid doctor on a host without iommufd${HOST_SKIP}`, () => {
  it('says iommufd is not usable, why, and what to do; exit 1', async () => {
    const r = await ioasid('doctor');
    expect(r.code).toBe(1);
    expect(r.out).toMatch(/^ioasid doctor: this host/);
    expect(r.out).toMatch(/^ {2}FAIL {2}no \/dev\/iommu: .+ -> .+/m);
    expect(r.out).toMatch(/^iommufd: NOT usable: no \/dev\/iommu: /m);
    expect(r.out).toMatch(/^VFIO: +NOT usable: /m);
    const d = await json<Diagnosis>('doctor');
    expect(d.host).toBe('this host');
    expect(d.release).toBe(readFileSync('/proc/sys/kernel/osrelease', 'utf8').trim());
    const dev = find(d, 'dev.iommu')!;
    expect(dev).toMatchObject({ level: 'fail', area: 'devices' });
    expect(dev.fix).toBeTruthy();
    // every blocking finding says what to do
    for (const f of d.findings.filter((x) => x.level === 'fail')) expect(f.fix, f.text).toBeTruthy();
    // the kernel config, where the host publishes one, is what decided
    if (existsSync('/proc/config.gz')) {
      expect(d.configSource).toBe('/proc/config.gz');
      const { gunzipSync } = await import('node:zlib');
      const cfg = gunzipSync(readFileSync('/proc/config.gz')).toString();
      if (!/^CONFIG_IOMMUFD=[ym]$/m.test(cfg)) {
        expect(find(d, 'config.IOMMUFD')).toMatchObject({ level: 'fail', text: expect.stringMatching(/^CONFIG_IOMMUFD is not set/) });
        expect(dev.text).toBe('no /dev/iommu: the kernel lacks CONFIG_IOMMUFD (not set in /proc/config.gz)');
      }
    }
    // no IOMMU on this host: /sys/class/iommu is empty, and the doctor says so
    if (!existsSync('/sys/class/iommu') || readdirSync('/sys/class/iommu').length === 0) {
      expect(find(d, 'iommu.enabled')).toMatchObject({ level: 'fail', fix: expect.stringMatching(/IOMMU/) });
    }
  });

  it('the linux backend\'s open names the cause the doctor finds', async () => {
    const d = await json<Diagnosis>('doctor');
    const cause = find(d, 'dev.iommu')!.text.replace(/^no \/dev\/iommu: /, '');
    let err: unknown;
    try {
      Iommufd.open({ backend: 'linux' }).close();
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(IommuError);
    expect(err).toMatchObject({ errno: 2, code: 'ENOENT', syscall: 'open', path: '/dev/iommu' });
    expect((err as Error).message.startsWith(`open /dev/iommu: ENOENT (No such file or directory): ${cause}; `)).toBe(true);
    const demo = await ioasid('demo', '--backend', 'linux');
    expect(demo.code).toBe(1);
    expect(demo.err).toContain(`open /dev/iommu: ENOENT (No such file or directory): ${cause}`);
  });

  it('ioasid ls lists the PCI functions sysfs shows, with no groups', async () => {
    const sys = '/sys/bus/pci/devices';
    const bdfs = existsSync(sys) ? readdirSync(sys).sort() : [];
    const l = await json<Listing>('ls');
    expect(l.functions.map((f) => f.bdf)).toEqual(bdfs);
    for (const f of l.functions) {
      expect(`0x${f.vendor}`).toBe(readFileSync(`${sys}/${f.bdf}/vendor`, 'utf8').trim());
      expect(f.driver).toBe(existsSync(`${sys}/${f.bdf}/driver`) ? readlinkSync(`${sys}/${f.bdf}/driver`).split('/').pop() : null);
      expect(f.vfioCdev).toBeNull();
    }
    const groups = existsSync('/sys/kernel/iommu_groups') ? readdirSync('/sys/kernel/iommu_groups') : [];
    expect(l.groups.map((g) => String(g.id)).sort()).toEqual(groups.sort());
    const r = await ioasid('ls');
    expect(r.code).toBe(0);
    if (!groups.length) expect(r.out).toContain('(none: no IOMMU translates these devices; `ioasid doctor` says why)');
  });
});

describe.runIf(IN_VM)(`ioasid doctor and ls in the test VM (iommufd, edu on vfio-pci)${IN_VM ? '' : ' (skipped on sim: runs in the VM, IOASID_BACKEND=linux)'}`, () => {
  it('doctor: iommufd and VFIO usable, no blocking finding, exit 0', async () => {
    const release = claimDevices(EDUS);
    try {
      const r = await ioasid('doctor');
      expect(r.code, r.out).toBe(0);
      expect(r.out).toMatch(/^iommufd: usable$/m);
      expect(r.out).toMatch(/^VFIO: +usable$/m);
      const d = await json<Diagnosis>('doctor');
      expect(d.findings.filter((f) => f.level === 'fail')).toEqual([]);
      expect(d.configSource).toBe('/proc/config.gz');
      expect(find(d, 'config.IOMMUFD')?.text).toMatch(/^CONFIG_IOMMUFD=y/);
      expect(find(d, 'config.VFIO_DEVICE_CDEV')?.text).toMatch(/^CONFIG_VFIO_DEVICE_CDEV=y/);
      expect(find(d, 'iommu.enabled')?.text).toBe('IOMMU enabled: dmar0 (ACPI DMAR: Intel VT-d)');
      expect(find(d, 'dev.iommu')?.level).toBe('ok');
      expect(find(d, 'dev.vfio-devices')?.text).toBe('3 VFIO device nodes: vfio0 (0000:00:01.0), vfio1 (0000:01:01.0), vfio2 (0000:01:02.0)');
      expect(find(d, 'vfio-pci')?.level).toBe('ok');
    } finally {
      release();
    }
  });

  it('ls: the three edus on vfio-pci with their cdevs and groups, as the q35Edu preset has them', async () => {
    const release = claimDevices(EDUS);
    try {
      const l = await json<Listing>('ls');
      const edus = l.functions.filter((f) => f.vendor === '1234' && f.device === '11e8');
      expect(edus.map((f) => [f.bdf, f.iommuGroup, f.driver, f.vfioCdev])).toEqual([
        ['0000:00:01.0', 1, 'vfio-pci', '/dev/vfio/devices/vfio0'],
        ['0000:01:01.0', 2, 'vfio-pci', '/dev/vfio/devices/vfio1'],
        ['0000:01:02.0', 2, 'vfio-pci', '/dev/vfio/devices/vfio2'],
      ]);
      expect(l.groups.find((g) => g.id === 2)).toMatchObject({ viable: true });
      // the sim's preset mirrors this VM function for function and group for group
      const preset = await json<Listing>('ls', '--machine', 'q35Edu');
      expect(l.functions).toEqual(preset.functions);
      // Groups of PCI functions only: test files running beside this one make selftest mock devices
      // (IOMMU_TEST_OP_MOCK_DOMAIN), each in a group of its own that comes and goes meanwhile.
      const pciGroups = (x: Listing) => x.groups.filter((g) => g.devices.some((d) => /^[0-9a-f]{4}:/.test(d.name)));
      expect(pciGroups(l)).toEqual(pciGroups(preset));
      expect(pciGroups(preset)).toEqual(preset.groups);
      const r = await ioasid('ls');
      expect(r.out).toMatch(/^ {2}0000:00:01\.0 +1234:11e8 +00ff00 unclassified +1 +vfio-pci +\/dev\/vfio\/devices\/vfio0 +vfio-pci$/m);
    } finally {
      release();
    }
  });
});
