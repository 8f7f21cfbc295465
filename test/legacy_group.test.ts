/**
 * VFIO group nodes, /dev/vfio/N (drivers/vfio/group.c), with raw ioctls on both backends: one open
 * at a time, GET_STATUS, SET_CONTAINER with a legacy container or an iommufd (the kernel's compat
 * path through drivers/vfio/iommufd.c), UNSET_CONTAINER, GET_DEVICE_FD by name, the exclusion
 * between the group path and a device's cdev, hot reset by group fds, and edu DMA through an
 * iommufd used as the container.
 *
 * Expected values are what Linux 7.3 does in the test VM: the edu at 00:01.0 alone in its group,
 * the two edus behind the PCIe-to-PCI bridge in one group with the bridge (which has no driver).
 */
import { beforeEach, describe, expect, it } from 'vitest';
import type { Iommufd } from '../src/index.js';
import { PciDevice } from '../src/device/pci.js';
import { VFIO_DEVICE_IOCTLS as IOC } from '../src/device/uapi.js';
import { VfioDevice } from '../src/device/vfio_device.js';
import * as V from '../src/ioasid/vfio_uapi.js';
import { BACKEND, P, PAGE_SIZE, expectErrno } from './helpers.js';
import { deviceMachine } from './drivers/devices.js';
import { EDU_MAX_CHUNK, EduDriver } from './drivers/edu.js';
import { Legacy, useLegacy } from './drivers/legacy.js';
import { vmCounters } from './privileges.js';

const machine = deviceMachine();
const skip = !machine.soloEdu || !machine.groupedEdus;
const reason = machine.noSoloReason || machine.noGroupReason;
const PG = PAGE_SIZE;
const VIABLE = V.VFIO_GROUP_FLAGS_VIABLE;
const SET = V.VFIO_GROUP_FLAGS_CONTAINER_SET;

describe.skipIf(skip)(`VFIO groups /dev/vfio/N [${BACKEND}]${skip ? ` (skipped: ${reason})` : ''}`, () => {
  const f = useLegacy(machine);
  const { solo, pair, keep, closeFd, mem } = f;
  let ctx: Iommufd;
  let L: Legacy;
  let soloGroup = 0;
  let pairGroup = 0;
  let bridge = '';
  beforeEach(() => {
    ({ ctx, L, soloGroup, pairGroup } = f);
    bridge = new PciDevice(ctx.binding, pair[0]).groupDevices().find((d) => !pair.includes(d))!;
  });

  /** The group with a type1v2 container set. */
  function inContainer(group: number): { c: number; g: number } {
    const c = keep(L.container());
    const g = keep(L.group(group));
    L.setContainer(g, c);
    L.setIommu(c, V.VFIO_TYPE1v2_IOMMU);
    return { c, g };
  }

  it('/dev/vfio holds the container and a node for each group with a VFIO device; a group opens once (EBUSY)', () => {
    const names = ctx.binding.readdir('/dev/vfio');
    expect(names).toEqual(expect.arrayContaining(['vfio', String(soloGroup), String(pairGroup)]));
    const hostBridgeGroup = new PciDevice(ctx.binding, '0000:00:00.0').iommuGroup!;
    expect(names).not.toContain(String(hostBridgeGroup));
    expectErrno(() => L.group(hostBridgeGroup), 'ENOENT');
    const g = keep(L.group(soloGroup));
    expectErrno(() => L.group(soloGroup), 'EBUSY');
    closeFd(g);
    closeFd(keep(L.group(soloGroup)));
  });

  it('GET_STATUS: VIABLE alone (the bridge in the pair\'s group has no driver), VIABLE|CONTAINER_SET with a container; argsz and pointer checked', () => {
    const g = keep(L.group(soloGroup));
    const g2 = keep(L.group(pairGroup));
    expect(L.status(g)).toBe(VIABLE);
    expect(L.status(g2)).toBe(VIABLE);
    expectErrno(() => L.status(g, 7), 'EINVAL');
    expectErrno(() => ctx.binding.ioctl(g, V.VFIO_GROUP_GET_STATUS, null), 'EFAULT');
    const c = keep(L.container());
    L.setContainer(g, c);
    expect(L.status(g)).toBe(VIABLE | SET);
    L.unsetContainer(g);
    expect(L.status(g)).toBe(VIABLE);
    expectErrno(() => ctx.binding.ioctl(g, (0x3b << 8) | 0x7f, null), 'ENOTTY');
  });

  it('SET_CONTAINER: the fd is read and looked up first (EFAULT, EBADF), then one container per group (EINVAL); other files EBADFD', () => {
    const g = keep(L.group(soloGroup));
    const c = keep(L.container());
    expectErrno(() => ctx.binding.ioctl(g, V.VFIO_GROUP_SET_CONTAINER, null), 'EFAULT');
    expectErrno(() => L.setContainer(g, -1), 'EBADF');
    const closed = ctx.binding.eventfd(0, 0);
    ctx.binding.close(closed);
    expectErrno(() => L.setContainer(g, closed), 'EBADF');
    const efd = keep(ctx.binding.eventfd(0, 0));
    expectErrno(() => L.setContainer(g, efd), 'EBADFD');
    const memfd = keep(ctx.binding.memfdCreate('x'));
    expectErrno(() => L.setContainer(g, memfd), 'EBADFD');
    const g2 = keep(L.group(pairGroup));
    expectErrno(() => L.setContainer(g, g2), 'EBADFD');
    expectErrno(() => L.setContainer(g, g), 'EBADFD');
    expect(L.status(g)).toBe(VIABLE);
    L.setContainer(g, c);
    expectErrno(() => L.setContainer(g, c), 'EINVAL');
    expectErrno(() => L.setContainer(g, ctx.fd), 'EINVAL');
    expectErrno(() => L.setContainer(g, -1), 'EBADF');
    expect(L.status(g)).toBe(VIABLE | SET);
  });

  it('UNSET_CONTAINER: EINVAL without one, EBUSY while a device is open through the container', () => {
    const g = keep(L.group(soloGroup));
    expectErrno(() => L.unsetContainer(g), 'EINVAL');
    const c = keep(L.container());
    L.setContainer(g, c);
    L.setIommu(c, V.VFIO_TYPE1v2_IOMMU);
    const d = keep(L.deviceFd(g, solo));
    expectErrno(() => L.unsetContainer(g), 'EBUSY');
    expect(L.info(c).dmaAvail).toBe(65535);
    closeFd(d);
    L.unsetContainer(g);
    expect(L.status(g)).toBe(VIABLE);
    expectErrno(() => L.unsetContainer(g), 'EINVAL');
    expectErrno(() => L.info(c), 'EINVAL'); // the container lost its driver with its last group
  });

  describe('GET_DEVICE_FD', () => {
    it('needs a container (EINVAL) and, for a legacy one, VFIO_SET_IOMMU (EINVAL)', () => {
      const g = keep(L.group(soloGroup));
      expectErrno(() => L.deviceFd(g, solo), 'EINVAL');
      const c = keep(L.container());
      L.setContainer(g, c);
      expectErrno(() => L.deviceFd(g, solo), 'EINVAL');
      L.setIommu(c, V.VFIO_TYPE1v2_IOMMU);
      const d = keep(L.deviceFd(g, solo));
      expect(L.device(d).info().pci).toBe(true);
    });

    it('the name: unknown, another group\'s device or a non-VFIO member ENODEV; options after a space EINVAL; unterminated EINVAL/EFAULT', () => {
      const { g } = inContainer(pairGroup);
      expectErrno(() => L.deviceFd(g, '0000:00:1f.7'), 'ENODEV');
      expectErrno(() => L.deviceFd(g, solo), 'ENODEV');
      expectErrno(() => L.deviceFd(g, bridge), 'ENODEV');
      expectErrno(() => L.deviceFd(g, pair[0].slice(0, -1)), 'ENODEV'); // a prefix of the name
      expectErrno(() => L.deviceFd(g, `${pair[0]}x`), 'ENODEV');
      expectErrno(() => L.deviceFd(g, `${pair[0]}\tx`), 'ENODEV');
      expectErrno(() => L.deviceFd(g, `${pair[0]} foo`), 'EINVAL');
      expectErrno(() => L.deviceFd(g, `${pair[0]} vf_token=00000000-0000-0000-0000-000000000000`), 'EINVAL');
      expectErrno(() => ctx.binding.ioctl(g, V.VFIO_GROUP_GET_DEVICE_FD, null), 'EFAULT');
      expectErrno(() => ctx.binding.ioctl(g, V.VFIO_GROUP_GET_DEVICE_FD, new Uint8Array(P).fill(0x41)), 'EINVAL');
      const spaced = keep(L.deviceFd(g, `${pair[0]}   `)); // trailing spaces are fine
      expect(L.device(spaced).info().pci).toBe(true);
    });

    it('a group\'s device fd: device ioctls work, BIND_IOMMUFD is EINVAL, ATTACH/DETACH are not there (ENOTTY)', () => {
      const { g } = inContainer(soloGroup);
      const dev = L.device(keep(L.deviceFd(g, solo)));
      expect(dev.info()).toMatchObject({ pci: true, numRegions: 9, numIrqs: 5 });
      expectErrno(() => dev.bind(ctx), 'EINVAL');
      expectErrno(() => dev.attach(1), 'ENOTTY');
      expectErrno(() => dev.detach(), 'ENOTTY');
      expect(dev.config.vendor).toBe(0x1234);
    });

    it('closing the group with a device open keeps the group open (EBUSY) and its container; the device\'s close ends both', () => {
      const { c, g } = inContainer(soloGroup);
      const m = mem(4 * P);
      const base = vmCounters(ctx.binding).locked;
      L.map(c, m.addr, 0x100000n, 4n * PG);
      const d = keep(L.deviceFd(g, solo));
      closeFd(g);
      expectErrno(() => L.group(soloGroup), 'EBUSY');
      expect(L.info(c).dmaAvail).toBe(65534);
      closeFd(d);
      expect(vmCounters(ctx.binding).locked).toBe(base);
      expectErrno(() => L.info(c), 'EINVAL');
      closeFd(keep(L.group(soloGroup)));
    });

    it('hot reset of a group-opened device: info names groups (no devids), the reset takes group fds', () => {
      const { g } = inContainer(pairGroup);
      const dev = L.device(keep(L.deviceFd(g, pair[0])));
      const info = new Uint8Array(12 + 8 * 4);
      const dv = new DataView(info.buffer);
      dv.setUint32(0, info.length, true);
      ctx.binding.ioctl(dev.fd, IOC.GET_PCI_HOT_RESET_INFO.request, info);
      const bus = (bdf: string) => parseInt(bdf.slice(5, 7), 16);
      const devfn = (bdf: string) => (parseInt(bdf.slice(8, 10), 16) << 3) | Number(bdf.slice(11));
      expect([dv.getUint32(4, true), dv.getUint32(8, true)]).toEqual([0, 2]);
      expect([0, 1].map((i) => [dv.getUint32(12 + 8 * i, true), dv.getUint8(18 + 8 * i), dv.getUint8(19 + 8 * i)]))
        .toEqual(pair.map((b) => [pairGroup, bus(b), devfn(b)]));
      const reset = (...fds: number[]) => {
        const b = new Uint8Array(12 + 4 * fds.length);
        const d = new DataView(b.buffer);
        d.setUint32(0, b.length, true);
        d.setUint32(8, fds.length, true);
        fds.forEach((fd, i) => d.setInt32(12 + 4 * i, fd, true));
        ctx.binding.ioctl(dev.fd, IOC.PCI_HOT_RESET.request, b);
      };
      expectErrno(() => reset(), 'EINVAL'); // an empty array is for cdevs
      expectErrno(() => reset(g, g, g), 'EINVAL'); // more fds than affected devices
      expectErrno(() => reset(-1), 'EBADF');
      expectErrno(() => reset(ctx.fd), 'EINVAL'); // not a group
      const other = keep(L.group(soloGroup));
      expectErrno(() => reset(other), 'EINVAL'); // does not cover the affected devices
      reset(g);
      expect(dev.info().pci).toBe(true);
    });
  });

  describe('the group path excludes the cdev path', () => {
    const cdevOf = (bdf: string) => VfioDevice.open(ctx.binding, bdf);

    it('with the group open a cdev opens but cannot bind (EBUSY); after the group closes it can', () => {
      const g = keep(L.group(soloGroup));
      const dev = cdevOf(solo);
      try {
        expectErrno(() => dev.bind(ctx), 'EBUSY');
        expect(dev.devId).toBeNull();
        closeFd(g);
        expect(dev.bind(ctx)).toBeGreaterThan(0);
        // Now bound through the cdev: the group cannot be opened.
        expectErrno(() => L.group(soloGroup), 'EBUSY');
      } finally {
        dev.close();
      }
      closeFd(keep(L.group(soloGroup)));
    });

    it('a device open through the group: its cdev cannot bind either (EBUSY); the other member of the group neither', () => {
      const { g } = inContainer(pairGroup);
      keep(L.deviceFd(g, pair[0]));
      for (const bdf of pair) {
        const dev = cdevOf(bdf);
        try {
          expectErrno(() => dev.bind(ctx), 'EBUSY');
        } finally {
          dev.close();
        }
      }
    });

    it('a bind refused for another reason still leaves the group openable (the block is undone)', () => {
      const dev = cdevOf(solo);
      try {
        expectErrno(() => dev.bind(-5), 'EINVAL');
        const efd = ctx.binding.eventfd(0, 0);
        expectErrno(() => dev.bind(efd), 'EBADFD');
        ctx.binding.close(efd);
      } finally {
        dev.close();
      }
      closeFd(keep(L.group(soloGroup)));
    });
  });

  describe('an iommufd as the container (the kernel\'s compat path)', () => {
    it('SET_CONTAINER makes the compat IOAS; GET_DEVICE_FD needs no SET_IOMMU and binds the device to it', () => {
      const g = keep(L.group(soloGroup));
      expect(ctx.getVfioIoas()).toBeNull();
      L.setContainer(g, ctx.fd);
      expect(L.status(g)).toBe(VIABLE | SET);
      const id = ctx.getVfioIoas()!;
      expect(id).toBeGreaterThan(0);
      const ioas = ctx.ioas(id);
      // No device yet: the whole space. Once one opens, the VT-d aperture minus the MSI window.
      expect(ioas.iovaRanges().ranges).toEqual([{ start: 0n, last: 0xffff_ffff_ffff_ffffn }]);
      const d = keep(L.deviceFd(g, solo));
      expect(ioas.iovaRanges().ranges).toEqual([{ start: 0n, last: 0xfedf_ffffn }, { start: 0xfef0_0000n, last: (1n << 39n) - 1n }]);
      expectErrno(() => ctx.destroy(id), 'EBUSY'); // the device's HWPT holds it
      // Unlike a legacy container, UNSET is allowed with the device open; the device keeps the group's DMA.
      L.unsetContainer(g);
      expect(L.status(g)).toBe(0);
      expect(L.device(d).info().pci).toBe(true);
    });

    it('an IOAS chosen with IOMMU_VFIO_IOAS first is used; without a compat IOAS the first device open is ENODEV', () => {
      const g = keep(L.group(soloGroup));
      const mine = ctx.allocIoas();
      ctx.setVfioIoas(mine);
      L.setContainer(g, ctx.fd);
      expect(ctx.getVfioIoas()).toBe(mine.id);
      ctx.clearVfioIoas();
      expectErrno(() => L.deviceFd(g, solo), 'ENODEV');
      ctx.setVfioIoas(mine);
      keep(L.deviceFd(g, solo));
      expect(mine.iovaRanges().ranges.length).toBe(2);
    });

    it('type1 on the iommufd: MAP_DMA before the device, then edu DMA round-trips through the compat IOAS', () => {
      const g = keep(L.group(soloGroup));
      L.setContainer(g, ctx.fd);
      L.setIommu(ctx.fd, V.VFIO_TYPE1v2_IOMMU);
      const src = mem(P);
      const dst = mem(P);
      for (let i = 0; i < P; i++) src.bytes[i] = (i * 5 + 9) & 0xff;
      L.map(ctx.fd, src.addr, 0x100000n, PG);
      L.map(ctx.fd, dst.addr, 0x200000n, PG);
      const dev = L.device(keep(L.deviceFd(g, solo)));
      const edu = new EduDriver(dev);
      edu.init();
      edu.memcpy(0x100000n, 0x200000n, EDU_MAX_CHUNK);
      expect([...dst.bytes.subarray(0, EDU_MAX_CHUNK)]).toEqual([...src.bytes.subarray(0, EDU_MAX_CHUNK)]);
      edu.remove();
    });

    it('the iommufd path claims DMA ownership at GET_DEVICE_FD: the group cannot then join a legacy container elsewhere', () => {
      const g = keep(L.group(pairGroup));
      L.setContainer(g, ctx.fd);
      keep(L.deviceFd(g, pair[0]));
      L.unsetContainer(g);
      // The device is still bound to the iommufd, which owns the group's DMA.
      const c = keep(L.container());
      expectErrno(() => L.setContainer(g, c), 'EPERM');
      expect(L.status(g)).toBe(0);
    });
  });
});
