/**
 * Isolation groups on the device side: devices the IOMMU cannot tell apart (here two edus behind a
 * PCIe-to-PCI bridge, docs/devices.md) are owned as one. Binding a device claims DMA ownership of
 * its whole group for one iommufd (iommu_device_claim_dma_owner), so the group cannot be split
 * between iommufds, its devices share one translation, and ownership ends only when the last of
 * them is closed. Expected values are what Linux 7.3 answered in the test VM.
 *
 * The sibling's driver is changed through sysfs in some tests and always restored to vfio-pci.
 * On the sim these skip until its machine publishes the same topology (reason in the title).
 */
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { Iommufd, type IommuError } from '../src/index.js';
import { PciDevice, type DriverError } from '../src/device/pci.js';
import { VfioDevice } from '../src/device/vfio_device.js';
import { BACKEND, P, expectErrno } from './helpers.js';
import { claimDevices, deviceMachine } from './drivers/devices.js';
import { EDU_MAX_CHUNK, EduDriver } from './drivers/edu.js';

const machine = deviceMachine();

describe.skipIf(!machine.groupedEdus)(`one IOMMU group, two devices [${BACKEND}]${machine.noGroupReason ? ` (skipped: ${machine.noGroupReason})` : ''}`, () => {
  const [bdfA, bdfB] = machine.groupedEdus ?? ['', ''];
  let release: () => void = () => {};
  let c1: Iommufd;
  let c2: Iommufd;
  const open: VfioDevice[] = [];
  const openDev = (bdf: string): VfioDevice => {
    const d = VfioDevice.open(c1.binding, bdf);
    open.push(d);
    return d;
  };

  beforeAll(() => {
    release = claimDevices([bdfA, bdfB]);
  });
  afterAll(() => release());
  beforeEach(() => {
    c1 = Iommufd.open({ backend: BACKEND });
    c2 = new Iommufd(c1.binding);
  });
  afterEach(() => {
    for (const d of open.splice(0)) d.close();
    // Whatever a test did to the drivers, both functions end bound to vfio-pci again.
    for (const bdf of [bdfA, bdfB]) {
      const p = new PciDevice(c1.binding, bdf);
      if (p.driver !== 'vfio-pci') {
        p.release();
        p.bindDriver('vfio-pci');
      }
      expect(p.driver).toBe('vfio-pci');
    }
    c2.close();
    c1.close();
  });

  it('B cannot bind to a second iommufd while A holds the group (EPERM); to the same one it can', () => {
    const a = openDev(bdfA);
    const b = openDev(bdfB);
    a.bind(c1);
    expect(expectErrno(() => b.bind(c2), 'EPERM').syscall).toBe('VFIO_DEVICE_BIND_IOMMUFD');
    expect(b.devId).toBeNull();
    expectErrno(() => b.info(), 'EINVAL');
    expect(b.bind(c1)).not.toBe(a.devId);
    expect(b.info().pci).toBe(true);
  });

  it('ownership ends with the last device: closing A alone keeps c1 the owner, closing B too frees the group', () => {
    const a = openDev(bdfA);
    const b = openDev(bdfB);
    a.bind(c1);
    b.bind(c1);
    a.close();
    const a2 = openDev(bdfA);
    expectErrno(() => a2.bind(c2), 'EPERM');
    b.close();
    expect(a2.bind(c2)).toBeGreaterThan(0);
    const b2 = openDev(bdfB);
    expect(b2.bind(c2)).toBeGreaterThan(0);
    expectErrno(() => openDev(bdfB).bind(c1), 'EINVAL'); // the cdev is already bound (by b2)
  });

  it('while the group is bound through cdevs its legacy group node cannot be opened (EBUSY)', () => {
    const group = new PciDevice(c1.binding, bdfA).iommuGroup!;
    const a = openDev(bdfA);
    a.bind(c1);
    expectErrno(() => c1.binding.open(`/dev/vfio/${group}`), 'EBUSY');
    a.close();
    c1.binding.close(c1.binding.open(`/dev/vfio/${group}`));
  });

  it('the group has one translation: B cannot attach elsewhere (EINVAL); attached to the same IOAS it shares the HWPT', () => {
    const a = openDev(bdfA);
    const b = openDev(bdfB);
    a.bind(c1);
    b.bind(c1);
    const i1 = c1.allocIoas();
    const i2 = c1.allocIoas();
    const h1 = a.attach(i1);
    expect(expectErrno(() => b.attach(i2), 'EINVAL').syscall).toBe('VFIO_DEVICE_ATTACH_IOMMUFD_PT');
    expect(b.attach(i1)).toBe(h1);
    // Replacing A moves the whole group: B's DMA now goes through i2 as well.
    const h2 = a.attach(i2);
    expect(h2).not.toBe(h1);
    expect(b.attach(i2)).toBe(h2);
    expectErrno(() => c1.destroy(h1), 'ENOENT');
    i1.destroy();
  });

  it("replacing A's translation moves B's DMA too (edu on B reaches the new IOAS, not the old)", () => {
    const a = openDev(bdfA);
    const b = openDev(bdfB);
    a.bind(c1);
    b.bind(c1);
    const i1 = c1.allocIoas();
    const i2 = c1.allocIoas();
    const src = c1.mmap(P);
    const old = c1.mmap(P);
    const now = c1.mmap(P);
    try {
      src.bytes.forEach((_, i) => (src.bytes[i] = (i * 5 + 1) & 0xff));
      old.bytes.fill(0xee);
      now.bytes.fill(0xee);
      const SRC = 0x10_0000n;
      const DST = 0x20_0000n;
      i1.map(src, { iova: SRC });
      i2.map(src, { iova: SRC });
      i1.map(old, { iova: DST });
      i2.map(now, { iova: DST });
      a.attach(i1);
      b.attach(i1);
      const edu = new EduDriver(b);
      edu.init();
      a.attach(i2);
      edu.memcpy(SRC, DST, EDU_MAX_CHUNK);
      edu.remove();
      expect([...now.bytes.subarray(0, EDU_MAX_CHUNK)]).toEqual([...src.bytes.subarray(0, EDU_MAX_CHUNK)]);
      expect(old.bytes.every((x) => x === 0xee)).toBe(true);
    } finally {
      for (const d of [a, b]) d.detach();
      src.close();
      old.close();
      now.close();
    }
  });

  it('a sibling with no driver does not stop A binding; vfio-pci can take it while A is bound (it manages DMA itself)', () => {
    const pB = new PciDevice(c1.binding, bdfB);
    pB.release();
    expect([pB.driver, pB.driverOverride, pB.vfioCdev]).toEqual([null, null, null]);
    const a = openDev(bdfA);
    expect(a.bind(c1)).toBeGreaterThan(0);
    expect(pB.bindDriver('vfio-pci').driver).toBe('vfio-pci');
    const b = openDev(bdfB);
    expectErrno(() => b.bind(c2), 'EPERM');
    expect(b.bind(c1)).toBeGreaterThan(0);
  });

  it('a DMA-API driver cannot probe a sibling while the group is owned: drivers_probe fails EINVAL, the bind file EBUSY', () => {
    const pB = new PciDevice(c1.binding, bdfB);
    pB.release();
    const a = openDev(bdfA);
    a.bind(c1);
    // virtio-pci uses the kernel's DMA API: probing it needs the group's default domain
    // (iommu_device_use_default_domain -> EBUSY), which drivers_probe reports as EINVAL...
    pB.setDriverOverride('virtio-pci');
    expect(expectErrno(() => pB.probe(), 'EINVAL').syscall).toBe('write');
    expect(pB.driver).toBeNull();
    // ... and the driver's bind file as it is; bindDriver then puts the old state back.
    pB.setDriverOverride(null);
    const e = expectErrno(() => pB.bindDriver('virtio-pci'), 'EBUSY') as DriverError;
    expect([e.reason, (e.cause as IommuError).syscall]).toEqual(['bind-failed', 'write']);
    expect(pB.driverState()).toEqual({ driver: null, driverOverride: null });
    a.close();
    // With the group free the probe is accepted: virtio-pci declines a non-virtio device, which
    // drivers_probe does not report (nothing is bound) and the bind file does (ENODEV).
    pB.setDriverOverride('virtio-pci');
    pB.probe();
    expect(pB.driver).toBeNull();
    pB.setDriverOverride(null);
    expect((expectErrno(() => pB.bindDriver('virtio-pci'), 'ENODEV') as DriverError).reason).toBe('bind-failed');
    expect(pB.driverState()).toEqual({ driver: null, driverOverride: null });
  });
});
