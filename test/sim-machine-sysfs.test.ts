/**
 * What the sim machine of the test VM (presets.q35EduBare: before guest-init binds the edus) publishes, read through the Binding API, and the
 * driver core's driver_override / drivers_probe / bind / unbind / new_id behaviour. Expected
 * values are what the project's VM showed (test/sim-machine.vm-probe.txt). Sim-only: the VM binds
 * edu at boot (guest-init.sh), so these boot-state and rebinding checks would disturb the real tier.
 */
import { describe, expect, it } from 'vitest';
import { presets, sim, type SimBinding } from '../src/backends/sim/index.js';
import { mockOnly, smmuv3Platform } from '../src/backends/sim/machine/presets.js';
import type { Binding } from '../src/backends/types.js';
import { BACKEND, expectErrno } from './helpers.js';

const SKIP = BACKEND === 'linux';
const SIM_ONLY = SKIP ? ' (skipped on linux: the VM binds edu at boot; this checks the sim machine model)' : '';
const D = '/sys/bus/pci/devices';
const EDU0 = '0000:00:01.0';
const EDU1 = '0000:01:01.0';
const EDU2 = '0000:01:02.0';
const BRIDGE = '0000:00:02.0';

function exists(b: Binding, p: string): boolean {
  try {
    b.readlink(p);
    return true;
  } catch {
    return false;
  }
}

describe(`sim machine sysfs (q35Edu)${SIM_ONLY}`, () => {
  it.skipIf(SKIP)('PCI devices: links, IDs and modalias as Linux prints them', () => {
    const b = sim({ machine: presets.q35EduBare() });
    expect(b.readdir(D)).toEqual(['0000:00:00.0', EDU0, BRIDGE, '0000:00:03.0', '0000:00:04.0', '0000:00:1f.0', '0000:00:1f.2', '0000:00:1f.3', EDU1, EDU2]);
    expect(b.readlink(`${D}/${EDU0}`)).toBe('../../../devices/pci0000:00/0000:00:01.0');
    expect(b.readlink(`${D}/${EDU1}`)).toBe('../../../devices/pci0000:00/0000:00:02.0/0000:01:01.0');
    expect(b.readText(`${D}/${EDU0}/vendor`)).toBe('0x1234\n');
    expect(b.readText(`${D}/${EDU0}/device`)).toBe('0x11e8\n');
    expect(b.readText(`${D}/${EDU0}/class`)).toBe('0x00ff00\n');
    expect(b.readText(`${D}/${EDU0}/revision`)).toBe('0x10\n');
    expect(b.readText(`${D}/${EDU0}/subsystem_vendor`)).toBe('0x1af4\n');
    expect(b.readText(`${D}/${EDU0}/modalias`)).toBe('pci:v00001234d000011E8sv00001AF4sd00001100bc00scFFi00\n');
    expect(b.readText(`${D}/${EDU0}/driver_override`)).toBe('(null)\n');
    expect(b.readText(`${D}/${BRIDGE}/class`)).toBe('0x060400\n');
    expect(b.readText(`${D}/${BRIDGE}/secondary_bus_number`)).toBe('1\n');
    expect(b.readText(`${D}/0000:00:1f.0/modalias`)).toBe('pci:v00008086d00002918sv00001AF4sd00001100bc06sc01i00\n');
    expect(b.readText(`${D}/${EDU0}/resource`).split('\n')[0]).toMatch(/^0x00000000fe[0-9a-f]{6} 0x00000000fe[0-9a-f]{6} 0x0000000000040200$/);
    // The bus reset method is probed while 01:01.0 is alone on bus 1, not for 01:02.0 (the VM shows the same).
    expect(b.readText(`${D}/${EDU1}/reset_method`)).toBe('bus\n');
    expectErrno(() => b.readText(`${D}/${EDU2}/reset_method`), 'ENOENT');
    expectErrno(() => b.readText(`${D}/${EDU0}/reset_method`), 'ENOENT');
  });

  it.skipIf(SKIP)('IOMMU groups: the VM\'s numbering, links, reserved regions', () => {
    const b = sim({ machine: presets.q35EduBare() });
    expect(b.readdir('/sys/kernel/iommu_groups')).toEqual(['0', '1', '2', '3', '4', '5']);
    expect(b.readlink(`${D}/${EDU0}/iommu_group`)).toBe('../../../kernel/iommu_groups/1');
    expect(b.readlink(`${D}/${EDU1}/iommu_group`)).toBe('../../../../kernel/iommu_groups/2');
    expect(b.readdir('/sys/kernel/iommu_groups/2/devices')).toEqual([BRIDGE, EDU1, EDU2]);
    expect(b.readdir('/sys/kernel/iommu_groups/5/devices')).toEqual(['0000:00:1f.0', '0000:00:1f.2', '0000:00:1f.3']);
    expect(b.readlink(`/sys/kernel/iommu_groups/2/devices/${EDU2}`)).toBe('../../../../devices/pci0000:00/0000:00:02.0/0000:01:02.0');
    expect(b.readText('/sys/kernel/iommu_groups/1/reserved_regions')).toBe('0x00000000fee00000 0x00000000feefffff msi\n');
    expect(b.readText('/sys/kernel/iommu_groups/1/type')).toBe('DMA\n');
    // Following the link works like path lookup.
    expect(b.readdir(`${D}/${EDU0}/iommu_group/devices`)).toEqual([EDU0]);
  });

  it.skipIf(SKIP)('the VT-d unit: /sys/class/iommu/dmar0 registers and device links', () => {
    const b = sim({ machine: presets.q35EduBare() });
    expect(b.readText('/sys/class/iommu/dmar0/intel-iommu/cap')).toBe('d2008c22260286\n');
    expect(b.readText('/sys/class/iommu/dmar0/intel-iommu/ecap')).toBe('f00f4a\n');
    expect(b.readlink(`${D}/${EDU0}/iommu`)).toBe('../../virtual/iommu/dmar0');
    expect(b.readlink(`${D}/${EDU1}/iommu`)).toBe('../../../virtual/iommu/dmar0');
    expect(b.readlink(`/sys/class/iommu/dmar0/devices/${EDU1}`)).toBe('../../../../pci0000:00/0000:00:02.0/0000:01:01.0');
  });

  it.skipIf(SKIP)('at boot only the virtio-9p functions have a driver; vfio-pci binds nothing', () => {
    const b = sim({ machine: presets.q35EduBare() });
    expect(b.readlink(`${D}/0000:00:03.0/driver`)).toBe('../../../bus/pci/drivers/virtio-pci');
    expectErrno(() => b.readlink(`${D}/${EDU0}/driver`), 'ENOENT');
    expect(b.readdir('/sys/bus/pci/drivers')).toEqual(['pcieport', 'vfio-pci', 'virtio-pci']);
    expect(b.readdir('/sys/bus/pci/drivers/vfio-pci')).toEqual(['bind', 'new_id', 'remove_id', 'uevent', 'unbind']);
    expectErrno(() => b.readdir('/dev/vfio/devices'), 'ENOENT');
    expect(b.readText(`${D}/0000:00:03.0/enable`)).toBe('1\n');
    expect(b.readText(`${D}/${EDU0}/enable`)).toBe('0\n');
  });
});

describe(`driver_override, drivers_probe, bind, unbind (the VM's answers)${SIM_ONLY}`, () => {
  const bindEdu = (b: SimBinding, bdf: string): void => {
    b.writeText(`${D}/${bdf}/driver_override`, 'vfio-pci');
    b.writeText('/sys/bus/pci/drivers_probe', bdf);
  };

  it.skipIf(SKIP)('driver_override text rules and probing without a match', () => {
    const b = sim({ machine: presets.q35EduBare() });
    expectErrno(() => b.writeText('/sys/bus/pci/drivers_probe', '0000:09:00.0'), 'ENODEV');
    expectErrno(() => b.writeText('/sys/bus/pci/drivers_probe', 'garbage'), 'ENODEV');
    b.writeText('/sys/bus/pci/drivers_probe', EDU0);
    expectErrno(() => b.readlink(`${D}/${EDU0}/driver`), 'ENOENT');
    expectErrno(() => b.writeText('/sys/bus/pci/drivers/vfio-pci/bind', EDU0), 'ENODEV');
    b.writeText(`${D}/${EDU0}/driver_override`, 'foo');
    expect(b.readText(`${D}/${EDU0}/driver_override`)).toBe('foo\n');
    b.writeText('/sys/bus/pci/drivers_probe', `${EDU0}\n`);
    expectErrno(() => b.readlink(`${D}/${EDU0}/driver`), 'ENOENT');
    b.writeText(`${D}/${EDU0}/driver_override`, '');
    expect(b.readText(`${D}/${EDU0}/driver_override`)).toBe('foo\n');
    b.writeText(`${D}/${EDU0}/driver_override`, '\n');
    expect(b.readText(`${D}/${EDU0}/driver_override`)).toBe('(null)\n');
    b.writeText(`${D}/${EDU0}/driver_override`, 'vfio-pci\nxyz');
    expect(b.readText(`${D}/${EDU0}/driver_override`)).toBe('vfio-pci\n');
    expectErrno(() => b.writeText(`${D}/${EDU0}/driver_override`, 'x'.repeat(4095)), 'EINVAL');
  });

  it.skipIf(SKIP)('vfio-pci refuses a bridge: drivers_probe still succeeds, nothing is bound', () => {
    const b = sim({ machine: presets.q35EduBare() });
    bindEdu(b, BRIDGE);
    expectErrno(() => b.readlink(`${D}/${BRIDGE}/driver`), 'ENOENT');
    // Through the driver's bind file the probe's error comes back.
    expectErrno(() => b.writeText('/sys/bus/pci/drivers/vfio-pci/bind', BRIDGE), 'EINVAL');
  });

  it.skipIf(SKIP)('binding edu: driver link, vfio-dev/vfio0, /dev/vfio/devices/vfio0, class link', () => {
    const b = sim({ machine: presets.q35EduBare() });
    bindEdu(b, EDU0);
    expect(b.readlink(`${D}/${EDU0}/driver`)).toBe('../../../bus/pci/drivers/vfio-pci');
    expect(b.readdir(`${D}/${EDU0}/vfio-dev`)).toEqual(['vfio0']);
    const v = `${D}/${EDU0}/vfio-dev/vfio0`;
    expect(b.readdir(v)).toEqual(['dev', 'device', 'subsystem', 'uevent']);
    expect(b.readText(`${v}/dev`)).toBe('252:0\n');
    expect(b.readText(`${v}/uevent`)).toBe('MAJOR=252\nMINOR=0\nDEVNAME=vfio/devices/vfio0\n');
    expect(b.readlink(`${v}/device`)).toBe('../../../0000:00:01.0');
    expect(b.readlink(`${v}/subsystem`)).toBe('../../../../../class/vfio-dev');
    expect(b.readlink('/sys/class/vfio-dev/vfio0')).toBe('../../devices/pci0000:00/0000:00:01.0/vfio-dev/vfio0');
    expect(b.readdir('/dev/vfio/devices')).toEqual(['vfio0']);
    expect(b.readlink(`/sys/bus/pci/drivers/vfio-pci/${EDU0}`)).toBe('../../../../devices/pci0000:00/0000:00:01.0');
    const fd = b.open('/dev/vfio/devices/vfio0');
    b.close(fd);
    // An override naming another driver does not unbind; bind through the file needs a match.
    b.writeText(`${D}/${EDU0}/driver_override`, 'foo');
    b.writeText('/sys/bus/pci/drivers_probe', EDU0);
    expect(b.readlink(`${D}/${EDU0}/driver`)).toBe('../../../bus/pci/drivers/vfio-pci');
    expectErrno(() => b.writeText('/sys/bus/pci/drivers/vfio-pci/bind', EDU0), 'ENODEV');
    b.writeText(`${D}/${EDU0}/driver_override`, 'vfio-pci');
    expectErrno(() => b.writeText('/sys/bus/pci/drivers/vfio-pci/bind', EDU0), 'EBUSY');
  });

  it.skipIf(SKIP)('unbind removes the device node; the minor is reused; the edus behind the bridge are vfio1, vfio2', () => {
    const b = sim({ machine: presets.q35EduBare() });
    bindEdu(b, EDU0);
    b.writeText('/sys/bus/pci/drivers/vfio-pci/unbind', EDU0);
    expectErrno(() => b.readlink(`${D}/${EDU0}/driver`), 'ENOENT');
    expectErrno(() => b.readdir('/dev/vfio/devices'), 'ENOENT');
    expect(exists(b, '/sys/class/vfio-dev/vfio0')).toBe(false);
    expectErrno(() => b.writeText('/sys/bus/pci/drivers/vfio-pci/unbind', EDU0), 'ENODEV');
    expectErrno(() => b.writeText('/sys/bus/pci/drivers/vfio-pci/unbind', '0000:09:00.0'), 'ENODEV');
    b.writeText('/sys/bus/pci/drivers/vfio-pci/bind', EDU0);
    expect(b.readdir('/dev/vfio/devices')).toEqual(['vfio0']);
    bindEdu(b, EDU1);
    bindEdu(b, EDU2);
    expect(b.readdir('/dev/vfio/devices')).toEqual(['vfio0', 'vfio1', 'vfio2']);
    expect(b.readdir(`${D}/${EDU2}/vfio-dev`)).toEqual(['vfio2']);
    expect(b.readlink(`${D}/${EDU2}/vfio-dev/vfio2/subsystem`)).toBe('../../../../../../class/vfio-dev');
    expect(b.readdir('/sys/bus/pci/drivers/vfio-pci')).toEqual([EDU0, EDU1, EDU2, 'bind', 'new_id', 'remove_id', 'uevent', 'unbind']);
  });

  it.skipIf(SKIP)('new_id binds every unbound matching function without an override; remove_id forgets the ID', () => {
    const b = sim({ machine: presets.q35EduBare() });
    b.writeText('/sys/bus/pci/drivers/vfio-pci/new_id', '1234 11e8');
    expect(b.readdir('/dev/vfio/devices')).toEqual(['vfio0', 'vfio1', 'vfio2']);
    expectErrno(() => b.writeText('/sys/bus/pci/drivers/vfio-pci/new_id', '1234 11e8'), 'EEXIST');
    expectErrno(() => b.writeText('/sys/bus/pci/drivers/vfio-pci/new_id', '1234'), 'EINVAL');
    b.writeText('/sys/bus/pci/drivers/vfio-pci/remove_id', '1234 11e8');
    expectErrno(() => b.writeText('/sys/bus/pci/drivers/vfio-pci/remove_id', '1234 11e8'), 'ENODEV');
  });

  it.skipIf(SKIP)('kernel drivers hold their group\'s DMA ownership count; unbinding releases it', () => {
    const b = sim({ machine: presets.q35EduBare() });
    const m = b.kernel.machine;
    const virtio = m.device('0000:00:03.0')!;
    expect(virtio.group.ownerCount).toBe(1);
    b.writeText('/sys/bus/pci/drivers/virtio-pci/unbind', '0000:00:03.0');
    expect(virtio.group.ownerCount).toBe(0);
    b.writeText('/sys/bus/pci/drivers_probe', '0000:00:03.0');
    expect(virtio.group.ownerCount).toBe(1);
    // vfio-pci manages DMA itself: binding it takes no ownership.
    bindEdu(b, EDU0);
    expect(m.device(EDU0)!.group.ownerCount).toBe(0);
    // A group a user owns refuses kernel drivers (iommu_device_use_default_domain: EBUSY), which
    // drivers_probe reports as EINVAL (the VM's answer, test/device_group.test.ts).
    b.writeText('/sys/bus/pci/drivers/virtio-pci/unbind', '0000:00:03.0');
    virtio.group.owner = {};
    virtio.group.ownerCount = 1;
    expectErrno(() => b.writeText('/sys/bus/pci/drivers_probe', '0000:00:03.0'), 'EINVAL');
  });
});

describe(`other machines${SIM_ONLY}`, () => {
  it.skipIf(SKIP)('the machine of docs/machine.md boots as described', () => {
    const b = sim({
      machine: {
        name: 'two root ports',
        iommu: { kind: 'vtd', options: { snoopControl: true } },
        pci: [
          { slot: 0, kind: 'pci', model: presets.q35HostBridge },
          { slot: 0x1c, kind: 'root-port', acs: { caps: 0x1f }, driver: 'pcieport', bus: [{ slot: 0, kind: 'endpoint', model: presets.edu }] },
          { slot: 0x1d, kind: 'root-port', driver: 'pcieport', bus: [
            { slot: 0, fn: 0, kind: 'endpoint', model: presets.edu },
            { slot: 0, fn: 1, kind: 'endpoint', model: presets.fixed({ vendor: 0x8086, device: 0x1234, classCode: 0x020000 }), driver: 'e1000e' },
          ] },
        ],
      },
    });
    const m = b.kernel.machine;
    const g = (bdf: string): number => m.device(bdf)!.group.id;
    expect([g('0000:00:00.0'), g('0000:00:1c.0'), g('0000:00:1d.0'), g('0000:01:00.0'), g('0000:02:00.0'), g('0000:02:00.1')]).toEqual([0, 1, 2, 3, 2, 2]);
    expect(m.device('0000:02:00.1')!.driver()).toBe('e1000e');
    expect(m.device('0000:00:1d.0')!.group.ownerCount).toBe(1);
    expect(m.device('0000:01:00.0')!.iommu.caps.enforceCacheCoherency).toBe(true);
  });

  it.skipIf(SKIP)('smmuv3Platform: ACS decides; pcieport binds the ports; SW MSI window in reserved_regions', () => {
    const b = sim({ machine: smmuv3Platform() });
    const group = (bdf: string): string => b.readlink(`${D}/${bdf}/iommu_group`).split('/').pop()!;
    expect(group('0000:01:00.0')).not.toBe(group('0000:00:01.0'));
    expect(group('0000:04:00.0')).not.toBe(group('0000:05:00.0'));
    expect(group('0000:06:00.0')).toBe(group('0000:06:00.1'));
    expect(b.readlink(`${D}/0000:00:01.0/driver`)).toBe('../../../bus/pci/drivers/pcieport');
    expect(b.readText(`/sys/kernel/iommu_groups/${group('0000:01:00.0')}/reserved_regions`)).toBe('0x0000000008000000 0x00000000080fffff msi\n');
  });

  it.skipIf(SKIP)('mockOnly: no PCI devices, no groups until mock devices exist, which take the lowest free number', () => {
    const b = sim({ machine: mockOnly() });
    expectErrno(() => b.readdir(D), 'ENOENT');
    const m = b.kernel.machine;
    const d0 = m.addMockDevice();
    const d1 = m.addMockDevice();
    expect([d0.group.id, d1.group.id, d0.name]).toEqual([0, 1, 'iommufd_mock0']);
    m.removeMockDevice(d0);
    expect(m.addMockDevice().group.id).toBe(0);
    expect(d1.iommu.caps.model).toBe('mock');
  });

  it.skipIf(SKIP)('on q35Edu mock devices are numbered after the PCI groups', () => {
    const b = sim({ machine: presets.q35EduBare() });
    expect(b.kernel.machine.addMockDevice().group.id).toBe(6);
  });
});
