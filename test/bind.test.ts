/**
 * `ioasid bind` and `ioasid unbind` (src/cli/bind.ts, bind_records.ts): on sim machines through
 * the command line (--machine q35Host: the host's disks, interfaces, console and VGA are refused,
 * what is free is taken) and through bindCommand with one sim machine and a records file in a
 * temporary directory (the round trip a host keeps between two commands); and in the test VM on
 * the edu alone in its group, unbound, bound and put back through the command, with sysfs read
 * by node:fs. Expected values are what the kernel shows (test/host-safety.vm-probe.txt) and what
 * the presets describe (presets.q35Host's table).
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readlinkSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { presets, sim, type SimBinding } from '../src/backends/sim/index.js';
import { openBinding } from '../src/backends/index.js';
import { bindCommand, pciAddress, type BindResult, type UnbindResult } from '../src/cli/bind.js';
import { BindRecords, recordsPath } from '../src/cli/bind_records.js';
import type { Io } from '../src/cli/main.js';
import { vfioOpeners } from '../src/device/host_use.js';
import { DriverError, PciDevice } from '../src/device/pci.js';
import { claimDevices, deviceMachine } from './drivers/devices.js';
import { BACKEND, ioasid } from './helpers.js';

const IN_VM = BACKEND === 'linux';

/** Run bindCommand on one binding: exit status and what it printed. */
function run(command: 'bind' | 'unbind', b: SimBinding, records: BindRecords | null, bdf: string, opts: { driver?: string; force?: boolean; json?: boolean } = {}): { code: number; out: string; err: string } {
  const out: string[] = [];
  const err: string[] = [];
  const io: Io = { out: (l) => out.push(l), err: (l) => err.push(l) };
  const code = bindCommand(command, b, records, { host: 'sim machine q35Host', bdf, ...opts }, io);
  return { code, out: out.join('\n'), err: err.join('\n') };
}

describe(`ioasid bind/unbind: the command line [${BACKEND}]`, () => {
  it('help, and usage errors (exit 2): one PCI address, a driver name', async () => {
    expect((await ioasid('--help')).out).toMatch(/^ {2}bind +hand a PCI function to a VFIO driver/m);
    expect((await ioasid('bind', '--help')).out).toMatch(/^usage: ioasid bind BDF \[--driver NAME\] \[--force\] \[--json\] \[--machine PRESET\]$/m);
    expect((await ioasid('unbind', '-h')).out).toMatch(/^ {2}--to DRIVER +bind this driver instead/m);
    const none = await ioasid('bind', '--machine', 'q35Host');
    expect([none.code, none.err]).toEqual([2, 'ioasid bind: give one PCI address (BDF, e.g. 0000:00:05.0), not 0\nsee `ioasid bind --help`']);
    expect((await ioasid('unbind', '0000:00:05.0', '0000:00:04.0', '--machine', 'q35Host')).code).toBe(2);
    expect((await ioasid('bind', '0:5.0', '--machine', 'q35Host')).err).toContain('"0:5.0" is not a PCI address');
    expect((await ioasid('bind', '0000:00:05.0', '--driver', '../vfio-pci', '--machine', 'q35Host')).code).toBe(2);
    expect((await ioasid('unbind', '0000:00:05.0', '--driver', 'x', '--machine', 'q35Host')).err).toMatch(/Unknown option '--driver'/);
    expect([pciAddress('00:05.0'), pciAddress('0000:00:1F.2'), pciAddress('5.0')]).toEqual(['0000:00:05.0', '0000:00:1f.2', null]);
  });

  it('q35Host: the interface that is down goes to vfio-pci (exit 0); the sim machine records nothing', async () => {
    const r = await ioasid('bind', '00:05.0', '--machine', 'q35Host');
    expect(r).toEqual({ code: 0, err: '', out: '0000:00:05.0: virtio-pci -> vfio-pci; VFIO device /dev/vfio/devices/vfio0\n(sim machine q35Host lasts as long as this command: nothing is recorded)' });
    const j = JSON.parse((await ioasid('bind', '0000:00:05.0', '--machine', 'q35Host', '--json')).out) as BindResult;
    expect(j).toEqual({
      host: 'sim machine q35Host', bdf: '0000:00:05.0', changed: true, driver: 'vfio-pci', previous: { driver: 'virtio-pci', driverOverride: null },
      vfioCdev: '/dev/vfio/devices/vfio0', iommuGroup: 5, groupBlockers: [], restores: null, records: null,
    });
    // the VM's edus are on vfio-pci already: nothing to do
    expect((await ioasid('bind', '0000:00:01.0', '--machine', 'q35Edu')).out).toMatch(/^0000:00:01\.0: vfio-pci already; VFIO device \/dev\/vfio\/devices\/vfio0; nothing changed$/m);
  });

  it('refusals say what the host uses and what to do (exit 1); --force takes it', async () => {
    const disk = await ioasid('bind', '0000:00:02.0', '--machine', 'q35Host');
    expect([disk.code, disk.out]).toEqual([1, '']);
    expect(disk.err.split('\n')).toEqual([
      'ioasid bind: EBUSY: the host uses 0000:00:02.0; nothing changed:',
      '  block device vda1 is mounted on /',
      '  block device vda2 is a swap area',
      '-> umount /; swapoff /dev/vda2; or pass --force to take it anyway',
    ]);
    const sibling = await ioasid('bind', '0000:00:07.1', '--machine', 'q35Host');
    expect(sibling.err.split('\n').slice(1)).toEqual(['  0000:00:07.0 (same IOMMU group): network interface eth2 is up', '-> ip link set eth2 down; or pass --force to take it anyway']);
    const forced = await ioasid('bind', '0000:00:07.1', '--force', '--machine', 'q35Host');
    expect(forced.code).toBe(0);
    // the group still has a sibling on a DMA-API driver: said, with what to do
    expect(forced.out).toContain('note: IOMMU group 7 cannot be used through VFIO yet: 0000:00:07.0 is on virtio-pci -> bind it too (`ioasid bind 0000:00:07.0`)');
    for (const [bdf, line] of [
      ['0000:00:04.0', '  network interface eth0 is up'], ['0000:00:06.0', '  ttyS4 is a kernel console'],
      ['0000:00:03.0', '  block device vdb1 is held by dm-0'], ['0000:00:0a.0', '  block device nvme0n1p1 is mounted on /var'],
      ['0000:00:01.0', '  the boot VGA device (the firmware\'s display, usually the console\'s)'],
    ] as const) {
      const r = await ioasid('bind', bdf, '--machine', 'q35Host');
      expect([r.code, r.err.split('\n')[1]], bdf).toEqual([1, line]);
    }
    const json = JSON.parse((await ioasid('bind', '0000:00:04.0', '--machine', 'q35Host', '--json')).out) as { error: Record<string, unknown> };
    expect(json.error).toMatchObject({ code: 'EBUSY', errno: 16, reason: 'in-use', bdf: '0000:00:04.0', uses: [{ kind: 'netdev', bdf: '0000:00:04.0', interface: 'eth0' }], fix: 'ip link set eth0 down; or pass --force to take it anyway' });
  });

  it('a driver that is not there, one that declines the function, a function that is not there (exit 1)', async () => {
    expect((await ioasid('bind', '0000:00:09.0', '--driver', 'nope', '--machine', 'q35Host')).err)
      .toBe('ioasid bind: ENODEV: no PCI driver nope on this kernel; 0000:00:09.0 is unchanged\n-> name another with --driver NAME, or boot a kernel with it');
    // serial's ID table does not match a virtio disk: bind_store's ENODEV, and virtio-pci is back
    const declined = await ioasid('bind', '0000:00:09.0', '--driver', 'serial', '--machine', 'q35Host');
    expect([declined.code, declined.err]).toEqual([1, 'ioasid bind: ENODEV: binding 0000:00:09.0 to serial: write /sys/bus/pci/drivers/serial/bind: ENODEV (No such device); virtio-pci is back\n-> serial does not take this device: name another']);
    expect(await ioasid('unbind', '0000:00:99.0', '--machine', 'q35Host')).toEqual({ code: 1, out: '', err: 'ioasid unbind: no PCI function 0000:00:99.0 on sim machine q35Host\n-> `ioasid ls` lists them' });
  });

  it('unbind of a function ioasid did not bind is refused; --to says what it should have', async () => {
    const r = await ioasid('unbind', '0000:00:01.0', '--machine', 'q35Edu');
    expect([r.code, r.err]).toEqual([1, 'ioasid unbind: 0000:00:01.0 (on vfio-pci) was not bound by `ioasid bind` (sim machine q35Edu keeps nothing between commands): what it had before is not known\n'
      + '-> say what it should have: --to DRIVER (the driver the host uses for it), or --to none for no driver']);
    expect(await ioasid('unbind', '0000:00:01.0', '--to', 'none', '--machine', 'q35Edu')).toEqual({ code: 0, out: '0000:00:01.0: vfio-pci -> no driver', err: '' });
    // a VFIO driver keeps driver_override set to it: vfio-pci's IDs are override_only (pci_match_device)
    expect(await ioasid('unbind', '0000:00:01.0', '--to', 'vfio-pci', '--machine', 'q35EduBare')).toEqual({ code: 0, out: '0000:00:01.0: no driver -> vfio-pci', err: '' });
    const j = JSON.parse((await ioasid('unbind', '0000:00:05.0', '--to', 'virtio-pci', '--machine', 'q35Host', '--json')).out) as UnbindResult;
    expect(j).toEqual({ host: 'sim machine q35Host', bdf: '0000:00:05.0', changed: false, previous: { driver: 'virtio-pci', driverOverride: null }, now: { driver: 'virtio-pci', driverOverride: null }, from: 'to' });
  });
});

describe(`ioasid bind/unbind: the records between two commands (one sim machine, a records file) [${BACKEND}]`, () => {
  let dir = '';
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'ioasid-bind-test-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('bind records what the function had; unbind puts exactly that back and forgets it; the file is 0600 in a 0700 directory', () => {
    const b = sim({ machine: presets.q35Host() });
    const path = join(dir, 'a', 'bindings.json');
    const records = new BindRecords(path, 'boot-1');
    const bound = run('bind', b, records, '0000:00:05.0');
    expect(bound.out.split('\n')).toEqual(['0000:00:05.0: virtio-pci -> vfio-pci; VFIO device /dev/vfio/devices/vfio0', `\`ioasid unbind 0000:00:05.0\` puts virtio-pci back (recorded in ${path})`]);
    expect(statSync(path).mode & 0o777).toBe(0o600);
    expect(statSync(join(dir, 'a')).mode & 0o777).toBe(0o700);
    const file = JSON.parse(readFileSync(path, 'utf8')) as { version: number; bindings: Record<string, { driver: string; previous: unknown; bootId: string }> };
    expect(file.version).toBe(1);
    expect(file.bindings['0000:00:05.0']).toMatchObject({ driver: 'vfio-pci', previous: { driver: 'virtio-pci', driverOverride: null }, bootId: 'boot-1' });
    // bound again (already there): the record stays, and still says what to put back
    const again = JSON.parse(run('bind', b, records, '0000:00:05.0', { json: true }).out) as BindResult;
    expect([again.changed, again.restores]).toEqual([false, { driver: 'virtio-pci', driverOverride: null }]);
    const un = run('unbind', b, records, '0000:00:05.0');
    expect([un.code, un.out]).toEqual([0, '0000:00:05.0: vfio-pci -> virtio-pci, as before `ioasid bind`']);
    expect(new PciDevice(b, '0000:00:05.0').driverState()).toEqual({ driver: 'virtio-pci', driverOverride: null });
    expect(b.readdir('/sys/class/net')).toEqual(['eth0', 'eth1', 'eth2']);
    expect(JSON.parse(readFileSync(path, 'utf8'))).toEqual({ version: 1, bindings: {} });
    expect(run('unbind', b, records, '0000:00:05.0').err).toMatch(new RegExp(`^ioasid unbind: 0000:00:05\\.0 \\(on virtio-pci\\) was not bound by \`ioasid bind\` \\(no record in ${path.replace(/[.]/g, '\\.')}\\)`));
  });

  it('changed since by something else: refused, nothing changed, --to decides', () => {
    const b = sim({ machine: presets.q35Host() });
    const records = new BindRecords(join(dir, 'c.json'), 'boot-1');
    run('bind', b, records, '0000:00:09.0');
    const pci = new PciDevice(b, '0000:00:09.0');
    pci.restoreDriver({ driver: null, driverOverride: null });      // someone else unbound it
    const r = run('unbind', b, records, '0000:00:09.0');
    expect([r.code, r.err]).toEqual([1, 'ioasid unbind: `ioasid bind` gave 0000:00:09.0 to vfio-pci, but it is on no driver now: something else changed it since\n'
      + '-> say what it should have: --to virtio-pci (what it had before `ioasid bind`), or another driver']);
    expect(pci.driverState()).toEqual({ driver: null, driverOverride: null });
    expect(run('unbind', b, records, '0000:00:09.0', { driver: 'virtio-pci' }).out).toBe('0000:00:09.0: no driver -> virtio-pci');
    expect(records.get('0000:00:09.0')).toBeNull();
    expect(b.readdir('/sys/class/block')).toContain('vdc');
  });

  it('records of another boot do not count, and go at the next write; a file that is not ours is not read', () => {
    const b = sim({ machine: presets.q35Host() });
    const path = join(dir, 'd.json');
    run('bind', b, new BindRecords(path, 'boot-1'), '0000:00:05.0');
    const records = new BindRecords(path, 'boot-2');
    expect(records.get('0000:00:05.0')).toBeNull();
    expect(run('unbind', b, records, '0000:00:05.0').code).toBe(1);
    run('bind', b, records, '0000:00:08.0');
    expect(Object.keys((JSON.parse(readFileSync(path, 'utf8')) as { bindings: object }).bindings)).toEqual(['0000:00:08.0']);
    writeFileSync(path, '{"bindings": []}');
    expect(() => records.get('0000:00:08.0')).toThrow(`${path} is not an ioasid records file`);
  });

  it('a records file that cannot be written: the bind is done, and the command says so and how to undo it (exit 1)', () => {
    const b = sim({ machine: presets.q35Host() });
    // a symlink where the directory should be: readable, but not a directory of this user's to write in
    mkdirSync(join(dir, 'real'));
    symlinkSync(join(dir, 'real'), join(dir, 'link'));
    const r = run('bind', b, new BindRecords(join(dir, 'link', 'bindings.json'), 'boot-1'), '0000:00:05.0');
    expect(r.code).toBe(1);
    expect(r.err).toBe(`ioasid bind: 0000:00:05.0 is on vfio-pci now, but recording what it had failed: ${join(dir, 'link')} is not a directory of this user's: not writing ioasid's records there\n`
      + '-> `ioasid unbind 0000:00:05.0 --to virtio-pci` puts virtio-pci back');
    expect(new PciDevice(b, '0000:00:05.0').driver).toBe('vfio-pci');
  });

  it('where the records live: /run/ioasid for root, else $XDG_RUNTIME_DIR/ioasid, else the temporary directory', () => {
    const root = process.getuid?.() === 0;
    expect(recordsPath({ XDG_RUNTIME_DIR: '/run/user/1000' })).toBe(root ? '/run/ioasid/bindings.json' : '/run/user/1000/ioasid/bindings.json');
    if (!root) expect(recordsPath({})).toBe(join(tmpdir(), `ioasid-${process.getuid?.()}`, 'bindings.json'));
  });

  it('host safety refusals come through unchanged: the device layer\'s DriverError, nothing recorded', () => {
    const b = sim({ machine: presets.q35Host({ vfioPci: 'm' }) });
    const records = new BindRecords(join(dir, 'e.json'), 'boot-1');
    const r = run('bind', b, records, '0000:00:09.0');
    expect([r.code, r.err]).toEqual([1, 'ioasid bind: ENODEV: PCI driver vfio_pci is not loaded (ioasid never loads modules); 0000:00:09.0 is unchanged\n-> `modprobe vfio_pci`']);
    expect(existsSync(join(dir, 'e.json'))).toBe(false);
  });
});

describe(`a process holding a VFIO device open is a host use [${BACKEND}]`, () => {
  it('its cdev, or a device fd whose fdinfo names the function (or, with no fdinfo, its group node): /proc/<pid>/fd as Linux shows it', () => {
    const b = sim({ machine: presets.q35Edu() });
    const vfs = b.kernel.vfs;
    const proc = (pid: number, comm: string, fds: Record<number, [string, string?]>): void => {
      vfs.addAttr(`/proc/${pid}/comm`, { read: () => `${comm}\n` });
      for (const [fd, [link, fdinfo]] of Object.entries(fds)) {
        vfs.addLink(`/proc/${pid}/fd/${fd}`, link);
        // vfio_device_show_fdinfo: "vfio-device-syspath: /sys%s\n" after the generic pos/flags/mnt_id/ino lines
        if (fdinfo !== undefined) vfs.addAttr(`/proc/${pid}/fdinfo/${fd}`, { read: () => `pos:\t0\nflags:\t02000002\nmnt_id:\t15\nino:\t1057\n${fdinfo}` });
      }
    };
    proc(300, 'qemu-system-x86', { 3: ['/dev/iommu'], 4: ['anon_inode:[vfio-device]', 'vfio-device-syspath: /sys/devices/pci0000:00/0000:00:02.0/0000:01:01.0\n'] });
    proc(301, 'cloud-hypervisor', { 7: ['/dev/vfio/devices/vfio0'] });
    expect(vfioOpeners(b, '0000:00:01.0', '/dev/vfio/devices/vfio0', 1)).toEqual([{ kind: 'vfio-open', bdf: '0000:00:01.0', pid: 301, comm: 'cloud-hypervisor' }]);
    expect(vfioOpeners(b, '0000:01:01.0', '/dev/vfio/devices/vfio1', 2).map((u) => u.kind === 'vfio-open' && u.pid)).toEqual([300]);
    expect(vfioOpeners(b, '0000:01:02.0', '/dev/vfio/devices/vfio2', 2)).toEqual([]);
    // a kernel whose device fds have no fdinfo line: a device fd held with the group's node counts for every device of the group
    proc(302, 'old-vmm', { 5: ['/dev/vfio/2'], 6: ['anon_inode:[vfio-device]', ''] });
    expect(vfioOpeners(b, '0000:01:02.0', '/dev/vfio/devices/vfio2', 2).map((u) => u.kind === 'vfio-open' && u.comm)).toEqual(['old-vmm']);
    // the device layer refuses to unbind it (EBUSY, in-use), the command says whom to stop
    const e = (() => {
      try {
        new PciDevice(b, '0000:00:01.0').unbind();
      } catch (x) {
        return x as DriverError;
      }
      throw new Error('unbind went through');
    })();
    expect([e.code, e.reason, e.uses]).toEqual(['EBUSY', 'in-use', [{ kind: 'vfio-open', bdf: '0000:00:01.0', pid: 301, comm: 'cloud-hypervisor' }]]);
    expect(e.message).toContain('0000:00:01.0 is in use by the host: 0000:00:01.0: process 301 (cloud-hypervisor) has its VFIO device open (the kernel\'s unbind waits until it closes it); pass { force: true } to take it anyway');
    const r = run('unbind', b, null, '0000:00:01.0', { driver: 'none' });
    expect(r.err.split('\n')).toEqual([
      'ioasid unbind: EBUSY: the host uses 0000:00:01.0; nothing changed:',
      '  process 301 (cloud-hypervisor) has its VFIO device open (the kernel\'s unbind waits until it closes it)',
      '-> stop process 301 (cloud-hypervisor) or let it release the device; or pass --force to take it anyway',
    ]);
  });
});

const machine = deviceMachine();
const VM_ONLY = IN_VM ? '' : ' (skipped on sim: the round trip on the kernel runs in the test VM, IOASID_BACKEND=linux)';

describe.runIf(IN_VM && machine.soloEdu)(`ioasid bind/unbind on the test VM's edu, through /run/ioasid${VM_ONLY}`, () => {
  const bdf = machine.soloEdu ?? '';
  const sys = `/sys/bus/pci/devices/${bdf}`;
  const driverNow = (): string | null => (existsSync(`${sys}/driver`) ? readlinkSync(`${sys}/driver`).split('/').pop()! : null);
  const overrideNow = (): string => readFileSync(`${sys}/driver_override`, 'utf8').trim();
  let release: () => void = () => {};
  beforeAll(() => {
    release = claimDevices([bdf]);
  });
  afterAll(() => {
    // whatever happened, the edu ends as guest-init left it, and no record of it stays
    new PciDevice(openBinding('linux'), bdf).restoreDriver({ driver: 'vfio-pci', driverOverride: 'vfio-pci' });
    new BindRecords(recordsPath(), readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim()).set(bdf, null);
    release();
  });

  it('unbind --to none, bind (recorded, 0600), a holder refused by pid, unbind puts back exactly what bind found', async () => {
    expect([driverNow(), overrideNow()]).toEqual(['vfio-pci', 'vfio-pci']);
    const refused = await ioasid('unbind', bdf);
    expect([refused.code, refused.err]).toEqual([1, expect.stringContaining(`was not bound by \`ioasid bind\` (no record in /run/ioasid/bindings.json)`)]);
    expect(await ioasid('unbind', bdf, '--to', 'none')).toEqual({ code: 0, out: `${bdf}: vfio-pci -> no driver`, err: '' });
    expect([driverNow(), overrideNow()]).toEqual([null, '(null)']);

    const bound = JSON.parse((await ioasid('bind', bdf, '--json')).out) as BindResult;
    expect(bound).toMatchObject({ host: 'this host', changed: true, driver: 'vfio-pci', previous: { driver: null, driverOverride: null }, restores: { driver: null, driverOverride: null }, records: '/run/ioasid/bindings.json' });
    expect(bound.vfioCdev).toMatch(/^\/dev\/vfio\/devices\/vfio\d+$/);
    expect([driverNow(), overrideNow()]).toEqual(['vfio-pci', 'vfio-pci']);
    expect(statSync('/run/ioasid/bindings.json').mode & 0o777).toBe(0o600);
    expect(statSync('/run/ioasid').mode & 0o777).toBe(0o700);

    // another process holds the cdev: vfio_unregister_group_dev would wait for it, so refused, naming it
    // (it lets go after 20 s on its own: if the check missed it, the unbind below waits, and fails the test, instead of hanging the VM)
    const holder = spawn('sh', ['-c', `exec sleep 20 3<>${bound.vfioCdev}`], { stdio: 'ignore' });
    try {
      for (let i = 0; i < 200 && !(existsSync(`/proc/${holder.pid}/fd/3`) && readlinkSync(`/proc/${holder.pid}/fd/3`) === bound.vfioCdev); i++) await new Promise((r) => setTimeout(r, 10));
      const held = await ioasid('unbind', bdf);
      expect([held.code, held.err.split('\n')]).toEqual([1, [
        `ioasid unbind: EBUSY: the host uses ${bdf}; nothing changed:`,
        `  process ${holder.pid} (sleep) has its VFIO device open (the kernel's unbind waits until it closes it)`,
        `-> stop process ${holder.pid} (sleep) or let it release the device; or pass --force to take it anyway`,
      ]]);
      expect(driverNow()).toBe('vfio-pci');
    } finally {
      holder.kill();
      await new Promise((r) => holder.once('exit', r));
    }

    expect(await ioasid('unbind', bdf)).toEqual({ code: 0, out: `${bdf}: vfio-pci -> no driver, as before \`ioasid bind\``, err: '' });
    expect([driverNow(), overrideNow()]).toEqual([null, '(null)']);
    expect((JSON.parse(readFileSync('/run/ioasid/bindings.json', 'utf8')) as { bindings: object }).bindings).toEqual({});
    // --to a VFIO driver sets driver_override to it (vfio-pci's IDs are override_only): what guest-init left
    expect(await ioasid('unbind', bdf, '--to', 'vfio-pci')).toEqual({ code: 0, out: `${bdf}: no driver -> vfio-pci`, err: '' });
    expect([driverNow(), overrideNow()]).toEqual(['vfio-pci', 'vfio-pci']);
  });

  it('the root file system\'s 9p function is refused, with what uses it', async () => {
    const r = await ioasid('bind', '0000:00:03.0');
    expect([r.code, r.err.split('\n')]).toEqual([1, [
      'ioasid bind: EBUSY: the host uses 0000:00:03.0; nothing changed:',
      '  virtio share "hostroot" is mounted on /',
      '  virtio share "hostroot" is mounted on /run/hosttmp',
      '-> umount /; umount /run/hosttmp; or pass --force to take it anyway',
    ]]);
  });
});
