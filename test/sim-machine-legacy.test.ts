/**
 * The sim's legacy VFIO interfaces in kernels and machines the test VM is not: the build options
 * (CONFIG_IOMMUFD_VFIO_CONTAINER, CONFIG_VFIO_GROUP=n), a group that is not viable because a kernel
 * driver holds a member, and a group whose last VFIO device goes away while the group is open.
 * Expected values follow Linux 7.3's code (drivers/vfio/group.c, container.c,
 * drivers/iommu/iommufd/main.c); legacy_container.test.ts and legacy_group.test.ts check the VM's
 * configuration against the real kernel. Sim-only: no VM here is built or wired this way.
 */
import { describe, expect, it } from 'vitest';
import { sim, type SimBinding } from '../src/backends/sim/index.js';
import { edu, fixed, q35EduCdevOnly, q35EduIommufdContainer } from '../src/backends/sim/machine/presets.js';
import type { MachineDesc } from '../src/backends/sim/machine/machine.js';
import { Machine } from '../src/backends/sim/machine/machine.js';
import { SimVfs } from '../src/backends/sim/kernel/vfs.js';
import { Iommufd } from '../src/index.js';
import { VfioDevice } from '../src/device/vfio_device.js';
import * as V from '../src/ioasid/vfio_uapi.js';
import { BACKEND, expectErrno } from './helpers.js';
import { Legacy } from './drivers/legacy.js';

const SKIP = BACKEND === 'linux';
const SIM_ONLY = SKIP ? ' (skipped on linux: a unit test of the sim machine model)' : '';

/** An edu and a NIC sharing a slot (conventional PCI functions share a group); the NIC keeps its kernel driver. */
function sharedSlot(): MachineDesc {
  return {
    name: 'edu beside a NIC',
    iommu: { kind: 'vtd' },
    pci: [
      { slot: 0, kind: 'pci', model: fixed({ vendor: 0x8086, device: 0x29c0, classCode: 0x060000 }) },
      { slot: 2, fn: 0, kind: 'pci', model: edu },
      { slot: 2, fn: 1, kind: 'pci', model: fixed({ vendor: 0x8086, device: 0x100e, classCode: 0x020000 }), driver: 'e1000' },
    ],
    vfioPci: ['0000:00:02.0'],
  };
}

describe.skipIf(SKIP)(`legacy VFIO on other kernels and machines [sim machine]${SIM_ONLY}`, () => {
  const groupOf = (b: SimBinding, bdf: string) => b.kernel.machine.device(bdf)!.group.id;

  it('CONFIG_IOMMUFD_VFIO_CONTAINER: /dev/vfio/vfio opens an iommufd with mm accounting, groups take it as their container', () => {
    const b = sim({ machine: q35EduIommufdContainer() });
    const ctx = new Iommufd(b, '/dev/vfio/vfio');
    expect(ctx.getRlimitMode()).toBe('mm');
    expect(ctx.allocIoas().id).toBe(1);
    expect(new Iommufd(b).getRlimitMode()).toBe('user'); // /dev/iommu keeps per-user accounting
    expectErrno(() => b.readText('/sys/module/vfio_iommu_type1/parameters/dma_entry_limit'), 'ENOENT');
    const L = new Legacy(b);
    const g = L.group(groupOf(b, '0000:00:01.0'));
    L.setContainer(g, ctx.fd);
    expect(L.status(g)).toBe(V.VFIO_GROUP_FLAGS_VIABLE | V.VFIO_GROUP_FLAGS_CONTAINER_SET);
    expect(ctx.getVfioIoas()).toBe(2);
    // type1 is served by iommufd's compat layer: no UPDATE_VADDR, no dirty logging.
    expect(L.checkExtension(ctx.fd, V.VFIO_UPDATE_VADDR)).toBe(0);
    const dev = L.device(L.deviceFd(g, '0000:00:01.0'));
    expect(dev.info().pci).toBe(true);
    dev.close();
    ctx.close();
  });

  it('CONFIG_VFIO_GROUP=n: no /dev/vfio/vfio and no group nodes; devices are reached through their cdevs only', () => {
    const b = sim({ machine: q35EduCdevOnly() });
    expect(b.readdir('/dev/vfio')).toEqual(['devices']);
    expectErrno(() => b.open('/dev/vfio/vfio'), 'ENOENT');
    expectErrno(() => b.open(`/dev/vfio/${groupOf(b, '0000:00:01.0')}`), 'ENOENT');
    const ctx = Iommufd.open({ backend: b });
    const dev = VfioDevice.open(b, '0000:00:01.0');
    expect(dev.bind(ctx)).toBe(1);
    dev.close();
    ctx.close();
  });

  it('a kernel build with a legacy container needs groups (Kconfig dependency)', () => {
    expect(() => new Machine({ ...q35EduCdevOnly(), vfio: { group: false, container: 'vfio' } }, new SimVfs())).toThrow(/depend on CONFIG_VFIO_GROUP/);
  });

  it('a group with a member bound to a kernel driver: not viable; a legacy container cannot take it (EPERM), an iommufd can but the device open is EPERM', () => {
    const b = sim({ machine: sharedSlot() });
    const L = new Legacy(b);
    const gid = groupOf(b, '0000:00:02.0');
    expect(groupOf(b, '0000:00:02.1')).toBe(gid);
    const g = L.group(gid);
    expect(L.status(g)).toBe(0);
    const c = L.container();
    expectErrno(() => L.setContainer(g, c), 'EPERM');
    expect(L.status(g)).toBe(0);
    const ctx = Iommufd.open({ backend: b });
    L.setContainer(g, ctx.fd);
    expect(L.status(g)).toBe(V.VFIO_GROUP_FLAGS_VIABLE | V.VFIO_GROUP_FLAGS_CONTAINER_SET);
    expectErrno(() => L.deviceFd(g, '0000:00:02.0'), 'EPERM');
    L.unsetContainer(g);
    // Unbinding the NIC's driver makes the group viable.
    b.writeText('/sys/bus/pci/drivers/e1000/unbind', '0000:00:02.1');
    expect(L.status(g)).toBe(V.VFIO_GROUP_FLAGS_VIABLE);
    L.setContainer(g, c);
    L.setIommu(c, V.VFIO_TYPE1v2_IOMMU);
    const d = L.deviceFd(g, '0000:00:02.0');
    // With the group owned, the kernel driver cannot bind back (EBUSY from its DMA setup).
    expectErrno(() => b.writeText('/sys/bus/pci/drivers/e1000/bind', '0000:00:02.1'), 'EBUSY');
    b.close(d);
    b.close(g);
    b.close(c);
    ctx.close();
  });

  it('the last VFIO device of a group unbinds while the group is open: the node goes, the open group answers ENODEV', () => {
    const b = sim({ machine: sharedSlot() });
    const L = new Legacy(b);
    b.writeText('/sys/bus/pci/drivers/e1000/unbind', '0000:00:02.1');
    const gid = groupOf(b, '0000:00:02.0');
    const g = L.group(gid);
    const c = L.container();
    L.setContainer(g, c);
    L.setIommu(c, V.VFIO_TYPE1v2_IOMMU);
    b.writeText('/sys/bus/pci/drivers/vfio-pci/unbind', '0000:00:02.0');
    expect(b.readdir('/dev/vfio')).toEqual(['vfio']);
    expectErrno(() => L.status(g), 'ENODEV');
    expectErrno(() => L.info(c), 'EINVAL'); // the group left the container with its device
    expectErrno(() => L.setContainer(g, c), 'ENODEV');
    b.close(g);
    b.close(c);
  });
});
