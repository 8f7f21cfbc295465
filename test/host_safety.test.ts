/**
 * Host safety of driver binding (src/device/pci.ts, host_use.ts; docs/devices.md): nothing is
 * unbound unless the target driver is registered and the host does not use the function or its
 * IOMMU-group siblings; a failed bind puts the previous driver back; every binding can be undone.
 *
 * The first part runs on both tiers against the test VM's machine: its two virtio-9p functions
 * carry the guest's root file system ("hostroot" on /) and the results share, and are refused;
 * the edu alone in group 1 is unbound, rebound and restored, and a bind that its probe refuses
 * (virtio-pci declines edu: ENODEV) is rolled back. Expected values are what the VM's kernel
 * shows (test/host-safety.vm-probe.txt). The second part is sim-only: machine variants
 * (presets.q35Host) with a mounted disk, swap, device-mapper, interfaces up, a serial console,
 * the boot VGA device, and kernels where vfio-pci is absent or an unloaded module.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { kerr } from '../src/backends/sim/kernel/errno.js';
import { presets, sim, type SimBinding } from '../src/backends/sim/index.js';
import { openBinding } from '../src/backends/index.js';
import type { Binding } from '../src/backends/types.js';
import { parseConsoles, parseMountInfo, parseSwaps, type HostUse } from '../src/device/host_use.js';
import { DriverError, PciDevice, pciDriverInfo, vfioDriverName } from '../src/device/pci.js';
import { VfioDevice } from '../src/device/vfio_device.js';
import { ERRNO, IommuError, VfioContainer, VfioGroup } from '../src/index.js';
import { VFIO_TYPE1v2_IOMMU } from '../src/ioasid/vfio_uapi.js';
import { modeCase, why } from './compat_modes.js';
import { claimDevices, deviceMachine } from './drivers/devices.js';
import { BACKEND, expectErrno } from './helpers.js';

/** The DriverError a call throws (fails the test when it succeeds or throws anything else). */
function driverError(fn: () => unknown): DriverError {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(DriverError);
    return e as DriverError;
  }
  throw new Error('expected a DriverError, but the call succeeded');
}

const ROOT_9P = '0000:00:03.0';
const RESULTS_9P = '0000:00:04.0';
const machine = deviceMachine();

describe(`the test VM's machine [${BACKEND}]`, () => {
  it('the virtio-9p functions carry the mounted root file system and results share: refused (EBUSY), nothing changes', () => {
    const b = openBinding(BACKEND);
    const root = new PciDevice(b, ROOT_9P);
    // guest-init also bind-mounts the host's /tmp from the root share
    const uses: HostUse[] = [
      { kind: 'share', bdf: ROOT_9P, tag: 'hostroot', mountPoint: '/' },
      { kind: 'share', bdf: ROOT_9P, tag: 'hostroot', mountPoint: '/run/hosttmp' },
    ];
    expect(root.hostUses()).toEqual(uses);
    expect(new PciDevice(b, RESULTS_9P).hostUses()).toEqual([{ kind: 'share', bdf: RESULTS_9P, tag: 'results', mountPoint: '/run/results' }]);
    const e = driverError(() => root.bindDriver('vfio-pci'));
    expect([e.errno, e.code, e.reason, e.syscall, e.bdf, e.driver]).toEqual([ERRNO.EBUSY, 'EBUSY', 'in-use', 'bindDriver', ROOT_9P, 'vfio-pci']);
    expect(e.uses).toEqual(uses);
    expect(e.message).toContain('virtio share "hostroot" is mounted on /');
    expect(driverError(() => root.unbind()).reason).toBe('in-use');
    expect(driverError(() => root.release()).reason).toBe('in-use');
    expect(driverError(() => root.restoreDriver({ driver: null, driverOverride: null })).reason).toBe('in-use');
    expect(root.driverState()).toEqual({ driver: 'virtio-pci', driverOverride: null });
    // Nothing to find on functions the host does not use: the edus, the bridge, the ICH9 functions.
    for (const bdf of ['0000:00:00.0', '0000:00:01.0', '0000:00:02.0', '0000:00:1f.2', '0000:01:01.0']) expect(new PciDevice(b, bdf).hostUses()).toEqual([]);
  });

  it('a driver the kernel does not have is refused (ENODEV, no-driver) before anything changes', () => {
    const b = openBinding(BACKEND);
    const pci = new PciDevice(b, ROOT_9P);
    // The driver check comes first: even an in-use function gets the ENODEV.
    const e = driverError(() => pci.bindDriver('no-such-driver'));
    expect([e.code, e.reason]).toEqual(['ENODEV', 'no-driver']);
    expect(e.message).toContain('no PCI driver no-such-driver');
    // The test kernel is built without modules: nothing is loadable.
    expect(pciDriverInfo(b, 'no-such-driver')).toEqual({ name: 'no-such-driver', registered: false, module: null });
    expect(pciDriverInfo(b, 'vfio-pci')).toEqual({ name: 'vfio-pci', registered: true, module: null });
    expect(() => pci.bindDriver('../vfio-pci')).toThrow(RangeError);
    expect(pci.driverState()).toEqual({ driver: 'virtio-pci', driverOverride: null });
  });

  describe.skipIf(!machine.soloEdu)(`an edu alone in its group${machine.noSoloReason ? ` (skipped: ${machine.noSoloReason})` : ''}`, () => {
    const bdf = machine.soloEdu!;
    let release: () => void = () => {};
    let b: Binding;
    beforeAll(() => {
      release = claimDevices([bdf]);
      b = openBinding(BACKEND);
    });
    afterAll(() => {
      // Whatever happened, the edu ends as guest-init left it.
      new PciDevice(b, bdf).restoreDriver({ driver: 'vfio-pci', driverOverride: 'vfio-pci' });
      release();
    });

    it('unbind, bind vfio-pci again, restore: each step checked in sysfs', () => {
      const pci = new PciDevice(b, bdf);
      const before = pci.driverState();
      expect(before).toEqual({ driver: 'vfio-pci', driverOverride: 'vfio-pci' });
      pci.restoreDriver({ driver: null, driverOverride: null });
      expect([pci.driver, pci.driverOverride, pci.vfioCdev]).toEqual([null, null, null]);
      const change = pci.bindDriver('vfio-pci');
      expect([change.driver, change.changed, change.previous]).toEqual(['vfio-pci', true, { driver: null, driverOverride: null }]);
      expect([pci.driver, pci.driverOverride]).toEqual(['vfio-pci', 'vfio-pci']);
      expect(pci.vfioCdev).toMatch(/^\/dev\/vfio\/devices\/vfio\d+$/);
      change.restore();
      expect(pci.driverState()).toEqual({ driver: null, driverOverride: null });
      {
        using again = pci.bindDriver();                  // vfioDriverName: vfio-pci (no modules.alias)
        expect(again.driver).toBe('vfio-pci');
        using dev = VfioDevice.open(b, pci);             // the cdev opens
        expect(dev.fd).toBeGreaterThanOrEqual(0);
      } // dev closes, then `again` restores: driverless
      expect(pci.driverState()).toEqual({ driver: null, driverOverride: null });
      pci.restoreDriver(before);
      expect(pci.driverState()).toEqual(before);
      expect(pci.vfioCdev).not.toBeNull();
    });

    it('a bind the driver\'s probe refuses is rolled back: virtio-pci declines edu (ENODEV), vfio-pci is back', () => {
      const pci = new PciDevice(b, bdf);
      const e = driverError(() => pci.bindDriver('virtio-pci'));
      expect([e.code, e.reason, e.driver]).toEqual(['ENODEV', 'bind-failed', 'virtio-pci']);
      // The kernel's answer came from the driver's bind file (really_probe returns the probe's error).
      expect([(e.cause as IommuError).syscall, (e.cause as IommuError).code]).toEqual(['write', 'ENODEV']);
      expect(e.message).toContain('vfio-pci is back');
      expect(pci.driverState()).toEqual({ driver: 'vfio-pci', driverOverride: 'vfio-pci' });
      using dev = VfioDevice.open(b, pci);
      expect(dev.fd).toBeGreaterThanOrEqual(0);
    });

    it('while this process holds the cdev open, nothing unbinds it (the kernel would wait forever), force or not', () => {
      const pci = new PciDevice(b, bdf);
      const dev = VfioDevice.open(b, pci);
      try {
        for (const f of [
          () => pci.unbind(), () => pci.unbind({ force: true }), () => pci.release(),
          () => pci.bindDriver('virtio-pci', { force: true }), () => pci.restoreDriver({ driver: null, driverOverride: null }, { force: true }),
        ]) {
          const e = driverError(f);
          expect([e.code, e.reason]).toEqual(['EBUSY', 'device-open']);
        }
        // Another binding of this process counts too (linux: one process; sim: the same binding).
        expect(driverError(() => new PciDevice(BACKEND === 'linux' ? openBinding('linux') : b, bdf).unbind()).reason).toBe('device-open');
        expect(pci.driverState()).toEqual({ driver: 'vfio-pci', driverOverride: 'vfio-pci' });
      } finally {
        dev.close();
      }
      pci.unbind();
      expect(pci.driver).toBeNull();
      pci.restoreDriver({ driver: 'vfio-pci', driverOverride: 'vfio-pci' });
    });

    for (const mc of [modeCase('iommufd', 'type1v2'), modeCase('kernel-compat', 'type1v2')]) {
      it.skipIf(!!mc.skip)(`a device got through a VFIO group (src/compat, ${mc.mode} mode) counts as open too${why(mc.skip)}`, () => {
        const pci = new PciDevice(b, bdf);
        using container = VfioContainer.open(b, { mode: mc.mode, iommuType: mc.iommuType });
        using group = VfioGroup.forDevice(b, bdf, { mode: mc.mode });
        group.setContainer(container);
        container.setIommu(VFIO_TYPE1v2_IOMMU);
        const dev = group.getDevice(bdf);
        try {
          expect([dev.origin, driverError(() => pci.unbind({ force: true })).reason]).toEqual([mc.mode === 'iommufd' ? 'cdev' : 'group', 'device-open']);
        } finally {
          dev.close();
        }
        expect(pci.driver).toBe('vfio-pci');
      });
    }
  });
});

describe('procfs parsers (texts as the VM\'s kernel prints them)', () => {
  it('mountinfo: fields, the separator, octal escapes', () => {
    const text = '21 1 0:20 / / ro,relatime - 9p hostroot ro,access=client,trans=virtio\n' +
      '30 21 254:1 / /mnt/my\\040disk rw,relatime shared:1 master:2 - ext4 /dev/vda1 rw\n';
    expect(parseMountInfo(text)).toEqual([
      { dev: '0:20', mountPoint: '/', fstype: '9p', source: 'hostroot' },
      { dev: '254:1', mountPoint: '/mnt/my disk', fstype: 'ext4', source: '/dev/vda1' },
    ]);
  });
  it('swaps and consoles', () => {
    expect(parseSwaps('Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n/dev/vda2                               partition\t1048572\t\t0\t\t-2\n/swap\\040file                          file\t\t1024\t\t0\t\t-3\n'))
      .toEqual(['/dev/vda2', '/swap file']);
    expect(parseConsoles('ttyS0                -W- (EC  p a)    4:64\ntty0                 -WU (E     )    4:1\n')).toEqual(['ttyS0', 'tty0']);
  });
});

/** The virtio disks and partitions in /sys/class/block. */
const virtioDisks = (b: Binding): string[] => b.readdir('/sys/class/block').filter((n) => n.startsWith('vd'));

const SIM_ONLY = BACKEND === 'linux' ? ' (skipped on linux: machine variants exist only in the sim)' : '';

describe.skipIf(BACKEND === 'linux')(`a host using its devices (presets.q35Host)${SIM_ONLY}`, () => {
  const host = (): { b: SimBinding; pci: (bdf: string) => PciDevice } => {
    const b = sim({ machine: presets.q35Host() });
    return { b, pci: (bdf) => new PciDevice(b, bdf) };
  };

  it('finds every use: mounts, swap, device-mapper, interfaces up, the console, the boot VGA, a busy group sibling', () => {
    const { pci } = host();
    const uses = (bdf: string): HostUse[] => pci(bdf).hostUses();
    expect(uses('0000:00:01.0')).toEqual([{ kind: 'boot-vga', bdf: '0000:00:01.0' }]);
    expect(uses('0000:00:02.0')).toEqual([
      { kind: 'mount', bdf: '0000:00:02.0', device: 'vda1', mountPoint: '/' },
      { kind: 'swap', bdf: '0000:00:02.0', device: 'vda2' },
    ]);
    expect(uses('0000:00:03.0')).toEqual([{ kind: 'holder', bdf: '0000:00:03.0', device: 'vdb1', holder: 'dm-0' }]);
    expect(uses('0000:00:04.0')).toEqual([{ kind: 'netdev', bdf: '0000:00:04.0', interface: 'eth0' }]);
    expect(uses('0000:00:06.0')).toEqual([{ kind: 'console', bdf: '0000:00:06.0', console: 'ttyS4' }]);
    expect(uses('0000:00:07.0')).toEqual([{ kind: 'netdev', bdf: '0000:00:07.0', interface: 'eth2' }]);
    expect(uses('0000:00:0a.0')).toEqual([{ kind: 'mount', bdf: '0000:00:0a.0', device: 'nvme0n1p1', mountPoint: '/var' }]);
    for (const free of ['0000:00:00.0', '0000:00:05.0', '0000:00:07.1', '0000:00:08.0', '0000:00:09.0']) expect(uses(free)).toEqual([]);
  });

  it('NVMe multipath: a head disk hangs off its subsystem; it is in use through a controller when no other path is left', () => {
    const { b, pci } = host();
    // The layout of drivers/nvme/host (multipath.c): head and partitions under the virtual
    // subsystem, one hidden path disk per controller, linked from the head's multipath/.
    expect(b.readlink('/sys/class/block/nvme0n1p1')).toBe('../../devices/virtual/nvme-subsystem/nvme-subsys0/nvme0n1/nvme0n1p1');
    expect(b.readlink('/sys/class/block/nvme0n1/multipath/nvme0c0n1')).toBe('../../../../../pci0000:00/0000:00:0a.0/nvme/nvme0/nvme0c0n1');
    expect(b.readdir('/sys/class/block/nvme1n1/multipath')).toEqual(['nvme1c1n1', 'nvme1c2n1']);
    const single = driverError(() => pci('0000:00:0a.0').bindDriver('vfio-pci'));
    expect(single.uses).toEqual([{ kind: 'mount', bdf: '0000:00:0a.0', device: 'nvme0n1p1', mountPoint: '/var' }]);
    // Two controllers reach nvme1n1: taking one leaves the other path, and /srv stays usable.
    expect([pci('0000:00:0b.0').hostUses(), pci('0000:00:0c.0').hostUses()]).toEqual([[], []]);
    const first = pci('0000:00:0b.0').bindDriver('vfio-pci');
    expect(b.readdir('/sys/class/block/nvme1n1/multipath')).toEqual(['nvme1c2n1']);
    const last = driverError(() => pci('0000:00:0c.0').bindDriver('vfio-pci'));
    expect(last.uses).toEqual([{ kind: 'mount', bdf: '0000:00:0c.0', device: 'nvme1n1p1', mountPoint: '/srv' }]);
    first.restore();
    // The subsystem keeps instance 1 (nvme_free_ctrl leaves it to the subsystem): the controller comes back as nvme3.
    expect(b.readdir('/sys/class/block/nvme1n1/multipath')).toEqual(['nvme1c2n1', 'nvme1c3n1']);
    expect(b.readdir('/sys/devices/virtual/nvme-subsystem/nvme-subsys1')).toEqual(['nvme1n1', 'nvme2', 'nvme3', 'subsysnqn']);
  });

  it('refuses each of them with EBUSY and the uses; the disk, interface and console stay', () => {
    const { b, pci } = host();
    for (const [bdf, kinds] of [
      ['0000:00:01.0', ['boot-vga']], ['0000:00:02.0', ['mount', 'swap']], ['0000:00:03.0', ['holder']],
      ['0000:00:04.0', ['netdev']], ['0000:00:06.0', ['console']],
    ] as const) {
      const before = pci(bdf).driverState();
      const e = driverError(() => pci(bdf).bindDriver('vfio-pci'));
      expect([e.code, e.reason, e.uses.map((u) => u.kind)]).toEqual(['EBUSY', 'in-use', kinds]);
      if (before.driver !== null) expect(driverError(() => pci(bdf).unbind()).uses.map((u) => u.kind)).toEqual(kinds);
      expect(pci(bdf).driverState()).toEqual(before);
    }
    expect(virtioDisks(b)).toEqual(['vda', 'vda1', 'vda2', 'vdb', 'vdb1', 'vdc']);
    expect(b.readdir('/sys/class/net')).toEqual(['eth0', 'eth1', 'eth2']);
    expect(b.readlink('/sys/class/tty/ttyS4')).toBe('../../devices/pci0000:00/0000:00:06.0/0000:00:06.0:0/0000:00:06.0:0.0/tty/ttyS4');
  });

  it('a sibling in the IOMMU group counts: the edu next to an interface that is up is refused', () => {
    const { pci } = host();
    const edu = pci('0000:00:07.1');
    expect(edu.groupDevices()).toEqual(['0000:00:07.0', '0000:00:07.1']);
    const e = driverError(() => edu.bindDriver('vfio-pci'));
    expect([e.code, e.bdf, e.uses]).toEqual(['EBUSY', '0000:00:07.1', [{ kind: 'netdev', bdf: '0000:00:07.0', interface: 'eth2' }]]);
    expect(e.message).toContain('0000:00:07.0: network interface eth2 is up');
    expect(edu.driver).toBeNull();
    // force takes it: binding the edu itself takes nothing from the host.
    expect(edu.bindDriver('vfio-pci', { force: true }).driver).toBe('vfio-pci');
    expect(pci('0000:00:07.0').driver).toBe('virtio-pci');
  });

  it('takes what the host does not use, and gives it back: an interface that is down, an unused disk', () => {
    const { b, pci } = host();
    const nic = pci('0000:00:05.0');
    const change = nic.bindDriver();
    expect([change.driver, change.previous]).toEqual(['vfio-pci', { driver: 'virtio-pci', driverOverride: null }]);
    expect(b.readdir('/sys/class/net')).toEqual(['eth0', 'eth2']);
    expect(nic.vfioCdev).toBe('/dev/vfio/devices/vfio0');
    change.restore();
    expect(nic.driverState()).toEqual({ driver: 'virtio-pci', driverOverride: null });
    expect(b.readlink('/sys/class/net/eth1')).toBe('../../devices/pci0000:00/0000:00:05.0/virtio3/net/eth1');
    expect(b.readText('/sys/class/net/eth1/operstate')).toBe('down\n');
    {
      using disk = pci('0000:00:09.0').bindDriver('vfio-pci');
      expect(disk.changed).toBe(true);
      expect(virtioDisks(b)).not.toContain('vdc');
    }
    expect(b.readText('/sys/class/block/vdc/dev')).toBe('254:32\n');
  });

  it('force takes a mounted disk (the mount stays, its disk is gone); restore brings the disk back', () => {
    const { b, pci } = host();
    const disk = pci('0000:00:02.0');
    const change = disk.bindDriver('vfio-pci', { force: true });
    expect(disk.driver).toBe('vfio-pci');
    expect(virtioDisks(b)).toEqual(['vdb', 'vdb1', 'vdc']);
    expect(b.readText('/proc/self/mountinfo')).toContain(' 254:1 / / rw,relatime - ext4 /dev/vda1 rw\n');
    change.restore({ force: true });
    expect(disk.driverState()).toEqual({ driver: 'virtio-pci', driverOverride: null });
    expect(b.readlink('/sys/class/block/vda1')).toBe('../../devices/pci0000:00/0000:00:02.0/virtio0/block/vda/vda1');
    expect(disk.hostUses().map((u) => u.kind)).toEqual(['mount', 'swap']);
    disk.unbind({ force: true });
    expect(disk.driver).toBeNull();
  });

  it('a failed bind puts the host driver back: serial declines a NIC (ENODEV), eth1 returns', () => {
    const { b, pci } = host();
    const nic = pci('0000:00:05.0');
    const e = driverError(() => nic.bindDriver('serial'));
    expect([e.code, e.reason, (e.cause as IommuError).code]).toEqual(['ENODEV', 'bind-failed', 'ENODEV']);
    expect(nic.driverState()).toEqual({ driver: 'virtio-pci', driverOverride: null });
    expect(b.readdir('/sys/class/net')).toEqual(['eth0', 'eth1', 'eth2']);
  });

  it('restoreDriver to a driver that will not take the function: bind-failed with the kernel\'s errno and where it is left', () => {
    const { pci } = host();
    const nic = pci('0000:00:05.0');
    const e = driverError(() => nic.restoreDriver({ driver: 'serial', driverOverride: null }));
    // bind_store: the driver's ID table does not match a NIC (ENODEV); the unbind already happened.
    expect([e.code, e.reason, e.syscall, (e.cause as IommuError).syscall]).toEqual(['ENODEV', 'bind-failed', 'restoreDriver', 'write']);
    expect(e.message).toContain('it has no driver now');
    nic.restoreDriver({ driver: 'virtio-pci', driverOverride: null });
    expect(nic.hostUses()).toEqual([]);
  });

  it('when putting back fails too, the error says so and what the function has now (restore-failed)', () => {
    const { b, pci } = host();
    // The old driver's bind file fails: the sim's stand-in for a driver that will not take the function back.
    b.kernel.vfs.addAttr('/sys/bus/pci/drivers/virtio-pci/bind', { write: () => kerr(ERRNO.ENOMEM) });
    const nic = pci('0000:00:05.0');
    const e = driverError(() => nic.bindDriver('serial'));
    expect([e.code, e.reason, (e.cause as IommuError).code]).toEqual(['ENOMEM', 'restore-failed', 'ENODEV']);
    expect(e.message).toContain('putting back virtio-pci failed');
    expect(e.message).toContain('it has no driver now');
    expect(nic.driverState()).toEqual({ driver: null, driverOverride: null });
  });

  it('without vfio-pci (the host of the original report): refused with ENODEV, the disk keeps its driver', () => {
    const b = sim({ machine: presets.q35Host({ vfioPci: 'n' }) });
    const disk = new PciDevice(b, '0000:00:09.0');
    expect(vfioDriverName(b, disk.modalias)).toBe('vfio-pci');
    const e = driverError(() => disk.bindDriver());
    expect([e.code, e.reason, e.driver]).toEqual(['ENODEV', 'no-driver', 'vfio-pci']);
    expect(disk.driverState()).toEqual({ driver: 'virtio-pci', driverOverride: null });
    expect(b.readdir('/sys/class/block')).toContain('vdc');
    expect(b.readdir('/sys/bus/pci/drivers')).toEqual(['nvme', 'pcieport', 'serial', 'virtio-pci']);
  });

  it('vfio-pci built as a module but not loaded: ENODEV naming the modprobe to run; never loaded for you', () => {
    const b = sim({ machine: presets.q35Host({ vfioPci: 'm' }) });
    const disk = new PciDevice(b, '0000:00:09.0');
    // modules.alias names the module; unloaded, it has no /sys/module/vfio_pci/drivers to map it.
    expect(vfioDriverName(b, disk.modalias)).toBe('vfio_pci');
    expect(pciDriverInfo(b, 'vfio-pci')).toEqual({ name: 'vfio-pci', registered: false, module: 'vfio_pci' });
    const e = driverError(() => disk.bindDriver());
    expect([e.code, e.reason]).toEqual(['ENODEV', 'driver-not-loaded']);
    expect(e.message).toContain('`modprobe vfio_pci`');
    expect(disk.driver).toBe('virtio-pci');
    expect(pciDriverInfo(b, 'nope')).toEqual({ name: 'nope', registered: false, module: null });
  });

  it('publishes what Linux does: /proc texts, class links, holders, mount tags', () => {
    const { b } = host();
    expect(b.readText('/proc/swaps')).toBe('Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n/dev/vda2                               partition\t1048572\t\t0\t\t-2\n');
    expect(b.readText('/proc/consoles')).toBe('ttyS4                -W- (EC Np a)    4:68\n');
    expect(b.readText('/proc/self/mountinfo').split('\n')[0]).toBe('19 1 254:1 / / rw,relatime - ext4 /dev/vda1 rw');
    expect(b.readlink('/sys/block/vda')).toBe('../devices/pci0000:00/0000:00:02.0/virtio0/block/vda');
    expect(b.readlink('/sys/dev/block/254:17')).toBe('../../devices/pci0000:00/0000:00:03.0/virtio1/block/vdb/vdb1');
    expect(b.readlink('/sys/class/block/vdb1/holders/dm-0')).toBe('../../../../../../../virtual/block/dm-0');
    expect(b.readdir('/sys/class/block/vda/holders')).toEqual([]);
    expect(b.readText('/sys/class/block/vda2/start')).toBe(`${2048 + 14 * 2 * 1024 * 1024}\n`);
    expect(b.readText('/sys/class/net/eth0/flags')).toBe('0x1003\n');
    expect(b.readText('/sys/class/net/eth1/flags')).toBe('0x1002\n');
    expect(b.readlink('/sys/bus/virtio/devices/virtio2')).toBe('../../../devices/pci0000:00/0000:00:04.0/virtio2');
    expect(b.readlink('/sys/bus/pci/devices/0000:00:04.0/virtio2/driver')).toBe('../../../../bus/virtio/drivers/virtio_net');
    expect(b.readText('/sys/bus/pci/devices/0000:00:01.0/boot_vga')).toBe('1\n');
    expect(() => b.readText('/sys/bus/pci/devices/0000:00:08.0/boot_vga')).toThrow(IommuError);
    // The VM's machine as its kernel showed it (test/host-safety.vm-probe.txt).
    const vm = sim({ machine: presets.q35Edu() });
    expect(vm.readText('/sys/bus/virtio/devices/virtio0/mount_tag')).toBe('hostroot\0');
    expect(vm.readlink('/sys/bus/virtio/devices/virtio1')).toBe('../../../devices/pci0000:00/0000:00:04.0/virtio1');
    expect(vm.readlink('/sys/bus/virtio/devices/virtio1/driver')).toBe('../../../../bus/virtio/drivers/9pnet_virtio');
    expect(vm.readText('/sys/bus/virtio/devices/virtio1/modalias')).toBe('virtio:d00000009v00001AF4\n');
    expect(vm.readText('/proc/consoles')).toBe('ttyS0                -W- (EC Np a)    4:64\n');
    expect(vm.readlink('/sys/class/tty/ttyS0')).toBe('../../devices/pnp0/00:02/00:02:0/00:02:0.0/tty/ttyS0');
    expect(vm.readText('/proc/self/mountinfo').split('\n').slice(0, 7)).toEqual([
      '19 1 0:17 / / rw,relatime - 9p hostroot rw', '20 19 0:18 / /dev rw,relatime - devtmpfs devtmpfs rw',
      '21 19 0:19 / /proc rw,relatime - proc proc rw', '22 19 0:20 / /sys rw,relatime - sysfs sysfs rw',
      '23 19 0:21 / /run rw,relatime - tmpfs tmpfs rw', '24 23 0:22 / /run/results rw,relatime - 9p results rw',
      '25 23 0:17 /tmp /run/hosttmp rw,relatime - 9p hostroot rw',
    ]);
    expectErrno(() => vm.readText('/proc/swaps'), 'ENOENT');
  });
});
