/**
 * The sim's vfio-pci cdev (/dev/vfio/devices/vfioN) on the default machine: the ioctls' validation
 * order and errnos, region info, config space virtualisation, BAR access, interrupts, attach/detach
 * and close, each expected value taken from what the VM's kernel answered for edu
 * (test/sim-machine.vm-probe.txt). iommufd's half of BIND (device.ts bindDevice) is being written
 * elsewhere; these tests stand in a recording binder for it (FakeIommufd) so the VFIO layer can be
 * checked on its own. Sim-only for that reason; the backend-agnostic device tests run on both.
 */
import { beforeEach, describe, expect, it } from 'vitest';
import type { BoundDevice, SimDevice } from '../src/backends/sim/iommu/iommu.js';
import { kerr } from '../src/backends/sim/kernel/errno.js';
import { sim, type SimBinding } from '../src/backends/sim/index.js';
import type { IommufdCtx } from '../src/backends/sim/iommufd/main.js';
import { EDU_REG } from '../src/backends/sim/hw/edu.js';
import * as U from '../src/device/uapi.js';
import { EFD_NONBLOCK, MAP_ANONYMOUS, MAP_PRIVATE, MAP_SHARED, PROT_READ, PROT_WRITE } from '../src/backends/types.js';
import { ERRNO } from '../src/ioasid/errors.js';
import { BACKEND, errnoOf, expectErrno } from './helpers.js';
import { FlatMap } from './sim-machine-toys.js';

const SKIP = BACKEND === 'linux';
const SIM_ONLY = SKIP ? ' (skipped on linux: drives the sim VFIO layer with a stand-in for iommufd\'s bind)' : '';
const D = '/sys/bus/pci/devices';
const EDU0 = '0000:00:01.0';
const CFG = 7 * 2 ** 40;

/** A recording stand-in for iommufd's bind: DMA ownership per group, one FlatMap domain per pt id. */
class FakeIommufd {
  nextDevId = 1;
  readonly domains = new Map<number, FlatMap>();
  readonly calls: string[] = [];

  bind = (ctx: IommufdCtx, dev: SimDevice): BoundDevice => {
    const g = dev.group;
    if (g.ownerCount && g.owner !== ctx) kerr(ERRNO.EPERM);
    g.owner = ctx;
    g.ownerCount++;
    const devId = this.nextDevId++;
    this.calls.push(`bind ${dev.name}`);
    return {
      devId,
      attach: (ptId, pasid) => {
        if (ptId === 9999) kerr(ERRNO.ENOENT);
        let dom = this.domains.get(ptId);
        if (!dom) this.domains.set(ptId, (dom = new FlatMap()));
        dev.iommu.setTranslation(dev.rid, pasid ?? null, dom);
        this.calls.push(`attach ${ptId}${pasid === undefined ? '' : ` pasid ${pasid}`}`);
        return ptId + 100;
      },
      detach: (pasid) => {
        dev.iommu.setTranslation(dev.rid, pasid ?? null, null);
        this.calls.push(`detach${pasid === undefined ? '' : ` pasid ${pasid}`}`);
      },
      unbind: () => {
        if (--g.ownerCount === 0) g.owner = null;
        this.calls.push(`unbind ${dev.name}`);
      },
    };
  };
}

function u32s(...v: number[]): Uint8Array {
  const b = new Uint8Array(v.length * 4);
  const dv = new DataView(b.buffer);
  v.forEach((x, i) => dv.setUint32(4 * i, x >>> 0, true));
  return b;
}

function words(b: Uint8Array): number[] {
  const dv = new DataView(b.buffer, b.byteOffset, b.length);
  return Array.from({ length: b.length / 4 }, (_, i) => dv.getUint32(4 * i, true));
}

function bindArg(iommufd: number, argsz = 24, flags = 0, tail: number[] = []): Uint8Array {
  const b = new Uint8Array(Math.max(argsz, 24));
  const dv = new DataView(b.buffer);
  dv.setUint32(0, argsz, true);
  dv.setUint32(4, flags, true);
  dv.setInt32(8, iommufd, true);
  tail.forEach((x, i) => (b[24 + i] = x));
  return b;
}

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');

interface Rig {
  b: SimBinding;
  fake: FakeIommufd;
  iommufd: number;
  open(bdf?: string): number;
  bind(fd: number): number;
  pr(fd: number, off: number, n: number): Uint8Array;
  pw(fd: number, off: number, bytes: Uint8Array | number[]): number;
}

function rig(): Rig {
  const b = sim();
  const fake = new FakeIommufd();
  b.kernel.machine.bindDevice = fake.bind;
  const iommufd = b.open('/dev/iommu');
  const r: Rig = {
    b, fake, iommufd,
    open(bdf = EDU0) {
      b.writeText(`${D}/${bdf}/driver_override`, 'vfio-pci');
      b.writeText('/sys/bus/pci/drivers_probe', bdf);
      return b.open(`/dev/vfio/devices/${b.readdir(`${D}/${bdf}/vfio-dev`)[0]}`);
    },
    bind(fd) {
      const arg = bindArg(iommufd);
      b.ioctl(fd, U.VFIO_DEVICE_IOCTLS.BIND_IOMMUFD.request, arg);
      return new DataView(arg.buffer).getUint32(12, true);
    },
    pr(fd, off, n) {
      const buf = new Uint8Array(n);
      expect(b.pread(fd, buf, off)).toBe(n);
      return buf;
    },
    pw(fd, off, bytes) {
      return b.pwrite(fd, Uint8Array.from(bytes), off);
    },
  };
  return r;
}

const irqSet = (flags: number, index: number, start: number, count: number, data: number[] = [], width = 4): Uint8Array => {
  const b = new Uint8Array(20 + data.length * width);
  const dv = new DataView(b.buffer);
  [20 + data.length * width, flags, index, start, count].forEach((v, i) => dv.setUint32(4 * i, v, true));
  data.forEach((v, i) => (width === 4 ? dv.setInt32(20 + 4 * i, v, true) : dv.setUint8(20 + i, v)));
  return b;
};
const NONE = U.VFIO_IRQ_SET_DATA_NONE;
const BOOL = U.VFIO_IRQ_SET_DATA_BOOL;
const EVFD = U.VFIO_IRQ_SET_DATA_EVENTFD;
const MASK = U.VFIO_IRQ_SET_ACTION_MASK;
const UNMASK = U.VFIO_IRQ_SET_ACTION_UNMASK;
const TRIG = U.VFIO_IRQ_SET_ACTION_TRIGGER;

describe(`vfio cdev: before and at VFIO_DEVICE_BIND_IOMMUFD${SIM_ONLY}`, () => {
  let r: Rig;
  beforeEach(() => {
    r = rig();
  });

  it.skipIf(SKIP)('every ioctl but BIND, and every read or write, is EINVAL until bound', () => {
    const fd = r.open();
    expectErrno(() => r.b.ioctl(fd, U.VFIO_DEVICE_IOCTLS.GET_INFO.request, u32s(24, 0, 0, 0, 0, 0)), 'EINVAL');
    expectErrno(() => r.b.ioctl(fd, U.VFIO_DEVICE_IOCTLS.GET_REGION_INFO.request, new Uint8Array(32)), 'EINVAL');
    expectErrno(() => r.b.ioctl(fd, U.VFIO_DEVICE_IOCTLS.ATTACH_IOMMUFD_PT.request, u32s(16, 0, 1, 0)), 'EINVAL');
    expectErrno(() => r.b.ioctl(fd, 0x3b00 | 130, new Uint8Array(64)), 'EINVAL');
    expectErrno(() => r.b.pread(fd, new Uint8Array(4), CFG), 'EINVAL');
    expectErrno(() => r.b.pwrite(fd, new Uint8Array(4), CFG), 'EINVAL');
  });

  it.skipIf(SKIP)('BIND checks argsz, flags, the fd, then binds once; a second open cannot bind', () => {
    const fd = r.open();
    const efd = r.b.eventfd(0, EFD_NONBLOCK);
    const e = expectErrno(() => r.b.ioctl(fd, U.VFIO_DEVICE_IOCTLS.BIND_IOMMUFD.request, bindArg(r.iommufd, 12)), 'EINVAL');
    expect(e.syscall).toBe('VFIO_DEVICE_BIND_IOMMUFD');
    expectErrno(() => r.b.ioctl(fd, U.VFIO_DEVICE_IOCTLS.BIND_IOMMUFD.request, bindArg(r.iommufd, 24, 2)), 'EINVAL');
    expectErrno(() => r.b.ioctl(fd, U.VFIO_DEVICE_IOCTLS.BIND_IOMMUFD.request, bindArg(r.iommufd, 24, 1)), 'EFAULT');
    expectErrno(() => r.b.ioctl(fd, U.VFIO_DEVICE_IOCTLS.BIND_IOMMUFD.request, bindArg(-1)), 'EINVAL');
    expectErrno(() => r.b.ioctl(fd, U.VFIO_DEVICE_IOCTLS.BIND_IOMMUFD.request, bindArg(efd)), 'EBADFD');
    expectErrno(() => r.b.ioctl(fd, U.VFIO_DEVICE_IOCTLS.BIND_IOMMUFD.request, bindArg(999)), 'EBADF');
    expectErrno(() => r.b.ioctl(fd, U.VFIO_DEVICE_IOCTLS.BIND_IOMMUFD.request, bindArg(r.iommufd, 32, 0, [0, 0, 0, 0, 0, 0, 0, 1])), 'E2BIG');
    expect(r.fake.calls).toEqual([]);
    expect(r.bind(fd)).toBe(1);
    expectErrno(() => r.bind(fd), 'EINVAL');
    const fd2 = r.b.open('/dev/vfio/devices/vfio0');
    expectErrno(() => r.bind(fd2), 'EINVAL');
    expect(r.fake.calls).toEqual([`bind ${EDU0}`]);
  });

  it.skipIf(SKIP)('a failing iommufd bind leaves the device closed and unbound', () => {
    const fd = r.open();
    r.b.kernel.machine.bindDevice = () => kerr(ERRNO.ENODEV);
    expectErrno(() => r.bind(fd), 'ENODEV');
    expectErrno(() => r.b.ioctl(fd, U.VFIO_DEVICE_IOCTLS.GET_INFO.request, u32s(24, 0, 0, 0, 0, 0)), 'EINVAL');
    expect(r.b.readText(`${D}/${EDU0}/enable`)).toBe('0\n');
  });
});

describe(`vfio cdev: device ioctls on edu${SIM_ONLY}`, () => {
  let r: Rig;
  let fd: number;
  beforeEach(() => {
    r = rig();
    fd = r.open();
    r.bind(fd);
  });

  it.skipIf(SKIP)('GET_INFO: PCI, no RESET (edu has no function reset), 9 regions, 5 IRQ indexes', () => {
    for (const [argsz, want] of [[24, [24, 2, 9, 5, 0, 0]], [16, [16, 2, 9, 5, 0, 0]], [64, [64, 2, 9, 5, 0, 0]]] as const) {
      const arg = u32s(argsz, 0, 0, 0, 7, 7);
      r.b.ioctl(fd, U.VFIO_DEVICE_IOCTLS.GET_INFO.request, arg);
      expect(words(arg)).toEqual(argsz === 16 ? [...want.slice(0, 4), 7, 7] : want);
    }
    expectErrno(() => r.b.ioctl(fd, U.VFIO_DEVICE_IOCTLS.GET_INFO.request, u32s(12, 0, 0, 0, 0, 0)), 'EINVAL');
    expectErrno(() => r.b.ioctl(fd, U.VFIO_DEVICE_IOCTLS.GET_INFO.request, u32s(8, 0, 0, 0, 0, 0)), 'EINVAL');
  });

  it.skipIf(SKIP)('GET_REGION_INFO: BAR0 1 MiB (READ|WRITE|MMAP), empty BARs, config 256 bytes, VGA and beyond EINVAL', () => {
    const info = (i: number): number[] | string => {
      const a = new Uint8Array(32);
      const dv = new DataView(a.buffer);
      dv.setUint32(0, 32, true);
      dv.setUint32(4, 0xff, true);
      dv.setUint32(8, i, true);
      dv.setUint32(12, 0xff, true);
      const e = errnoOf(() => r.b.ioctl(fd, U.VFIO_DEVICE_IOCTLS.GET_REGION_INFO.request, a));
      if (e) return `errno ${e}`;
      return [dv.getUint32(4, true), dv.getUint32(12, true), Number(dv.getBigUint64(16, true)), Number(dv.getBigUint64(24, true) / 2n ** 40n)];
    };
    expect(info(0)).toEqual([7, 0xff, 1 << 20, 0]);
    for (let i = 1; i <= 6; i++) expect(info(i)).toEqual([0, 0xff, 0, i]);
    expect(info(7)).toEqual([3, 0xff, 256, 7]);
    for (const i of [8, 9, 10]) expect(info(i)).toBe(`errno ${ERRNO.EINVAL}`);
    expectErrno(() => r.b.ioctl(fd, U.VFIO_DEVICE_IOCTLS.GET_REGION_INFO.request, u32s(16, 0, 0, 0, 0, 0, 0, 0)), 'EINVAL');
  });

  it.skipIf(SKIP)('GET_IRQ_INFO: INTx maskable and automasked, one MSI vector, no MSI-X, ERR and REQ', () => {
    const got = [0, 1, 2, 3, 4].map((i) => {
      const a = u32s(16, 0xff, i, 0xff);
      r.b.ioctl(fd, U.VFIO_DEVICE_IOCTLS.GET_IRQ_INFO.request, a);
      return words(a);
    });
    expect(got).toEqual([[16, 7, 0, 1], [16, 9, 1, 1], [16, 9, 2, 0], [16, 9, 3, 1], [16, 9, 4, 1]]);
    expectErrno(() => r.b.ioctl(fd, U.VFIO_DEVICE_IOCTLS.GET_IRQ_INFO.request, u32s(16, 0, 5, 0)), 'EINVAL');
    expectErrno(() => r.b.ioctl(fd, U.VFIO_DEVICE_IOCTLS.GET_IRQ_INFO.request, u32s(12, 0, 0, 0)), 'EINVAL');
  });

  it.skipIf(SKIP)('RESET is EINVAL, hot reset info ENODEV on the root bus, unknown ioctls ENOTTY, features ENOTTY', () => {
    expectErrno(() => r.b.ioctl(fd, U.VFIO_DEVICE_RESET, null), 'EINVAL');
    expectErrno(() => r.b.ioctlInt(fd, U.VFIO_DEVICE_RESET, 0), 'EINVAL');
    expectErrno(() => r.b.ioctl(fd, U.VFIO_DEVICE_IOCTLS.GET_PCI_HOT_RESET_INFO.request, u32s(76, 0, 0, ...new Array(16).fill(0))), 'ENODEV');
    expectErrno(() => r.b.ioctl(fd, 0x3b00 | 130, new Uint8Array(64)), 'ENOTTY');
    expectErrno(() => r.b.ioctl(fd, U.VFIO_DEVICE_IOCTLS.FEATURE.request, u32s(8, (1 << 18) | (1 << 16))), 'ENOTTY');
    expectErrno(() => r.b.ioctl(fd, U.VFIO_DEVICE_IOCTLS.FEATURE.request, u32s(8, (1 << 17) | (1 << 16))), 'EINVAL');
    expectErrno(() => r.b.ioctl(fd, U.VFIO_DEVICE_IOCTLS.FEATURE.request, u32s(8, 1 << 20)), 'EINVAL');
  });

  it.skipIf(SKIP)('config space: the vconfig equals the device at open; size checks are EFAULT; reads chunk by alignment', () => {
    const cfg = r.pr(fd, CFG, 256);
    const phys = r.b.kernel.machine.device(EDU0)!.fn.config;
    expect(hex(cfg)).toBe(hex(phys.subarray(0, 256)));
    // The VM's edu: 1234:11e8, command IO|MEM|SERR, status CAP_LIST, class 00ff00 rev 10, MSI at 0x40, INTA on irq 10.
    expect(hex(cfg.subarray(0, 12))).toBe('3412e811030110001000ff00');
    expect(hex(cfg.subarray(0, 4))).toBe('3412e811');
    expect(hex(cfg.subarray(4, 8))).toBe('03011000');
    expect(hex(cfg.subarray(8, 12))).toBe('1000ff00');
    expect(hex(cfg.subarray(0x34, 0x35))).toBe('40');
    expect(hex(cfg.subarray(0x3c, 0x3e))).toBe('0a01');
    expect(hex(cfg.subarray(0x40, 0x50))).toBe('05008000000000000000000000000000');
    expectErrno(() => r.b.pread(fd, new Uint8Array(4096), CFG), 'EFAULT');
    expectErrno(() => r.b.pread(fd, new Uint8Array(4), CFG + 0x100), 'EFAULT');
    expectErrno(() => r.b.pread(fd, new Uint8Array(4), CFG + 0xfe), 'EFAULT');
    expect(hex(r.pr(fd, CFG + 0xfc, 4))).toBe('00000000');
    expect(hex(r.pr(fd, CFG, 3))).toBe('3412e8');
    expect(r.b.pread(fd, new Uint8Array(0), CFG)).toBe(0);
  });

  it.skipIf(SKIP)('config writes: IDs read-only, BARs virtual (sizing), command reaches the device, INTx disable emulated', () => {
    const m = r.b.kernel.machine.device(EDU0)!.fn;
    expect(r.pw(fd, CFG, [0xff, 0xff])).toBe(2);
    expect(hex(r.pr(fd, CFG, 4))).toBe('3412e811');
    const bar0 = m.get32(0x10);
    r.pw(fd, CFG + 0x10, [0xff, 0xff, 0xff, 0xff]);
    expect(hex(r.pr(fd, CFG + 0x10, 4))).toBe('0000f0ff');
    expect(hex(r.pr(fd, CFG + 0x14, 4))).toBe('00000000');
    expect(m.get32(0x10)).toBe(bar0);
    r.pw(fd, CFG + 0x30, [0xff, 0xff, 0xff, 0xff]);
    expect(hex(r.pr(fd, CFG + 0x30, 4))).toBe('00000000');
    r.pw(fd, CFG + 4, [0x07, 0x01]);
    expect(hex(r.pr(fd, CFG + 4, 2))).toBe('0701');
    expect(m.command).toBe(0x0107);
    r.pw(fd, CFG + 4, [0x07, 0x05]);
    expect(hex(r.pr(fd, CFG + 4, 2))).toBe('0705');
    expect(m.command).toBe(0x0507);
    r.pw(fd, CFG + 4, [0x07, 0x01, 0x00, 0x00]);
    expect(hex(r.pr(fd, CFG + 4, 4))).toBe('07011000');
    expect(m.command).toBe(0x0107);
    r.pw(fd, CFG + 0x3c, [0x55]);
    expect(hex(r.pr(fd, CFG + 0x3c, 2))).toBe('5501');
    expect(m.config[0x3c]).toBe(0x0a);
    r.pw(fd, CFG + 0x0c, [0x10]);
    expect(m.config[0x0c]).toBe(0x10);
    r.pw(fd, CFG + 0x80, [0x12, 0x34, 0x56, 0x78]);
    expect(hex(r.pr(fd, CFG + 0x80, 4))).toBe('12345678');
    r.pw(fd, CFG + 0x2c, [0x12, 0x34, 0x56, 0x78]);
    expect(hex(r.pr(fd, CFG + 0x2c, 4))).toBe('f41a0011');
    // MSI flags: the enable bit only comes through SET_IRQS; the device keeps its 64-bit flag, the copy does not.
    r.pw(fd, CFG + 0x42, [0x01, 0x00]);
    expect(hex(r.pr(fd, CFG + 0x40, 16))).toBe('05000000000000000000000000000000');
    expect(hex(m.config.subarray(0x40, 0x50))).toBe('05008000000000000000000000000000');
    r.pw(fd, CFG + 0x44, [0x00, 0x10, 0xe0, 0xfe]);
    expect(hex(r.pr(fd, CFG + 0x40, 16))).toBe('050000000010e0fe0000000000000000');
    expect(hex(m.config.subarray(0x40, 0x50))).toBe('05008000000000000000000000000000');
  });

  it.skipIf(SKIP)('BAR0: edu registers with QEMU\'s access sizes; beyond BAR0 and empty regions EINVAL; memory disable EIO', () => {
    expect(hex(r.pr(fd, 0, 4))).toBe('ed000001');
    r.pw(fd, 4, [0x78, 0x56, 0x34, 0x12]);
    expect(hex(r.pr(fd, 4, 4))).toBe('87a9cbed');
    expect(hex(r.pr(fd, 0, 2))).toBe('0000');
    expect(hex(r.pr(fd, 0, 1))).toBe('00');
    expect(hex(r.pr(fd, 0, 8))).toBe('ffffffffffffffff');
    expect(hex(r.pr(fd, 1, 3))).toBe('000000');
    r.pw(fd, 4, [0x01, 0x00]);
    expect(hex(r.pr(fd, 4, 4))).toBe('87a9cbed');
    r.pw(fd, 8, [5, 0, 0, 0]);
    expect(hex(r.pr(fd, 8, 4))).toBe('78000000');
    expect(hex(r.pr(fd, 0x80, 8))).toBe('0000000000000000');
    expect(hex(r.pr(fd, 0x84, 4))).toBe('ffffffff');
    expect(hex(r.pr(fd, 0x40000, 8))).toBe('ffffffffffffffff');
    expectErrno(() => r.b.pread(fd, new Uint8Array(4), 0x100000), 'EINVAL');
    const straddle = new Uint8Array(4);
    expect(r.b.pread(fd, straddle, 0xffffe)).toBe(2);
    for (const i of [1, 6, 8, 9, 20]) expectErrno(() => r.b.pread(fd, new Uint8Array(4), i * 2 ** 40), 'EINVAL');
    // mmap (vfio_pci_core_mmap): config space EINVAL; BAR0 maps shared within its length, private or past it EINVAL.
    expectErrno(() => r.b.mmap(0n, 4096, PROT_READ, MAP_SHARED, fd, CFG), 'EINVAL');
    expectErrno(() => r.b.mmap(0n, 4096, PROT_READ, MAP_PRIVATE, fd, 0), 'EINVAL');
    expectErrno(() => r.b.mmap(0n, 2 << 20, PROT_READ, MAP_SHARED, fd, 0), 'EINVAL');
    const bar = r.b.mmap(0n, 4096, PROT_READ, MAP_SHARED, fd, (1 << 20) - 4096);
    // the sim cannot trap loads and stores to device memory: its bytes are out of the process's reach
    expectErrno(() => r.b.view(bar, 4), 'EFAULT');
    r.b.munmap(bar, 4096);
    r.pw(fd, CFG + 4, [0x04, 0x00]);
    expectErrno(() => r.b.pread(fd, new Uint8Array(4), 0), 'EIO');
    r.pw(fd, CFG + 4, [0x06, 0x00]);
    expect(hex(r.pr(fd, 0, 4))).toBe('ed000001');
  });

  it.skipIf(SKIP)('SET_IRQS: the VM\'s sequence for INTx, MSI, ERR and REQ', () => {
    const b = r.b;
    const set = (a: Uint8Array): number => errnoOf(() => b.ioctl(fd, U.VFIO_DEVICE_IOCTLS.SET_IRQS.request, a));
    const e1 = b.eventfd(0, EFD_NONBLOCK);
    const e2 = b.eventfd(0, EFD_NONBLOCK);
    const take = (efd: number): number => {
      const buf = new Uint8Array(8);
      try {
        b.read(efd, buf);
      } catch {
        return 0;
      }
      return Number(new DataView(buf.buffer).getBigUint64(0, true));
    };
    const raise = (v: number): number => r.pw(fd, EDU_REG.IRQ_RAISE, [v, 0, 0, 0]);
    const ack = (v: number): number => r.pw(fd, EDU_REG.IRQ_ACK, [v & 0xff, (v >> 8) & 0xff, (v >> 16) & 0xff, v >>> 24]);
    const { EINVAL, ENOTTY, EBADF } = ERRNO;
    r.pw(fd, CFG + 4, [0x06, 0x00]); // MEM|BM, the command register the VM's sequence ran with
    expect(set(irqSet(NONE | TRIG, 0, 0, 1))).toBe(EINVAL);
    expect(set(irqSet(NONE | MASK, 0, 0, 1))).toBe(EINVAL);
    expect(set(irqSet(NONE | TRIG, 0, 0, 0))).toBe(EINVAL);
    expect(set(irqSet(NONE | BOOL | TRIG, 0, 0, 1, [1], 1))).toBe(EINVAL);
    expect(set(irqSet(NONE | TRIG | MASK, 0, 0, 1))).toBe(ENOTTY);
    expect(set(irqSet(NONE, 0, 0, 1))).toBe(ENOTTY);
    expect(set(irqSet(NONE | TRIG | 64, 0, 0, 1))).toBe(EINVAL);
    expect(set(irqSet(NONE | TRIG, 5, 0, 1))).toBe(EINVAL);
    expect(set(irqSet(EVFD | TRIG, 0, 0, 2, [e1, e1]))).toBe(EINVAL);
    expect(set(irqSet(EVFD | TRIG, 0, 1, 1, [e1]))).toBe(EINVAL);
    const short = irqSet(EVFD | TRIG, 0, 0, 1, [e1]);
    new DataView(short.buffer).setUint32(0, 20, true);
    expect(set(short)).toBe(EINVAL);
    expect(set(irqSet(EVFD | TRIG, 0, 0, 1, [999]))).toBe(EBADF);
    expect(set(irqSet(EVFD | TRIG, 0, 0, 1, [r.iommufd]))).toBe(EINVAL);
    // INTx on e1.
    expect(set(irqSet(EVFD | TRIG, 0, 0, 1, [e1]))).toBe(0);
    expect(take(e1)).toBe(0);
    expect(set(irqSet(NONE | TRIG, 0, 0, 1))).toBe(0);
    expect(take(e1)).toBe(1);
    expect(set(irqSet(BOOL | TRIG, 0, 0, 1, [1], 1))).toBe(0);
    expect(take(e1)).toBe(1);
    expect(set(irqSet(NONE | MASK, 0, 0, 1))).toBe(0);
    expect(set(irqSet(NONE | TRIG, 0, 0, 1))).toBe(0);
    expect(take(e1)).toBe(1);
    expect(set(irqSet(NONE | UNMASK, 0, 0, 1))).toBe(0);
    expect(take(e1)).toBe(0);
    expect(set(irqSet(EVFD | MASK, 0, 0, 1, [e1]))).toBe(ENOTTY);
    // The device's interrupt: delivered once, then automasked (DisINTx set on the device) until unmask.
    raise(1);
    expect(take(e1)).toBe(1);
    expect(hex(r.pr(fd, CFG + 4, 2))).toBe('0600');
    expect(r.b.kernel.machine.device(EDU0)!.fn.command).toBe(0x0406); // the VM: bytes 06 04
    raise(2);
    expect(take(e1)).toBe(0);
    ack(3);
    expect(set(irqSet(NONE | UNMASK, 0, 0, 1))).toBe(0);
    expect(take(e1)).toBe(0);
    raise(1);
    expect(take(e1)).toBe(1);
    ack(0xffffffff);
    set(irqSet(NONE | UNMASK, 0, 0, 1));
    expect(set(irqSet(EVFD | TRIG, 1, 0, 1, [e1]))).toBe(EINVAL);
    expect(set(irqSet(EVFD | TRIG, 0, 0, 1, [-1]))).toBe(0);
    expect(set(irqSet(NONE | TRIG, 0, 0, 1))).toBe(0);
    expect(take(e1)).toBe(0);
    expect(set(irqSet(NONE | TRIG, 0, 0, 0))).toBe(0);
    expect(set(irqSet(NONE | TRIG, 0, 0, 0))).toBe(EINVAL);
    // MSI on e2.
    expect(set(irqSet(EVFD | TRIG, 1, 0, 2, [e2, e2]))).toBe(EINVAL);
    expect(set(irqSet(NONE | TRIG, 1, 0, 1))).toBe(EINVAL);
    expect(set(irqSet(EVFD | TRIG, 1, 0, 1, [e2]))).toBe(0);
    expect(take(e2)).toBe(0);
    const dev = r.b.kernel.machine.device(EDU0)!.fn;
    expect(dev.msiEnabled).toBe(true);
    expect(hex(r.pr(fd, CFG + 0x40, 4))).toBe('05008000');
    expect(set(irqSet(NONE | TRIG, 1, 0, 1))).toBe(0);
    expect(take(e2)).toBe(1);
    expect(set(irqSet(NONE | MASK, 1, 0, 1))).toBe(ENOTTY);
    raise(1);
    expect(take(e2)).toBe(1);
    raise(1);
    expect(take(e2)).toBe(1);
    ack(0xffffffff);
    expect(set(irqSet(EVFD | TRIG, 0, 0, 1, [e1]))).toBe(EINVAL);
    expect(set(irqSet(EVFD | TRIG, 1, 0, 1, [e1]))).toBe(0);
    set(irqSet(NONE | TRIG, 1, 0, 1));
    expect([take(e1), take(e2)]).toEqual([1, 0]);
    expect(set(irqSet(EVFD | TRIG, 1, 0, 1, [-1]))).toBe(0);
    set(irqSet(NONE | TRIG, 1, 0, 1));
    expect(take(e1)).toBe(0);
    expect(set(irqSet(NONE | TRIG, 1, 0, 0))).toBe(0);
    expect(dev.msiEnabled).toBe(false);
    expect(set(irqSet(NONE | TRIG, 2, 0, 0))).toBe(EINVAL);
    expect(set(irqSet(EVFD | TRIG, 2, 0, 1, [e1]))).toBe(EINVAL);
    // ERR and REQ: single eventfds with loopback.
    expect(set(irqSet(NONE | TRIG, 3, 0, 1))).toBe(EINVAL);
    expect(set(irqSet(EVFD | TRIG, 3, 0, 1, [e1]))).toBe(0);
    set(irqSet(NONE | TRIG, 3, 0, 1));
    expect(take(e1)).toBe(1);
    set(irqSet(BOOL | TRIG, 3, 0, 1, [1], 1));
    expect(take(e1)).toBe(1);
    expect(set(irqSet(NONE | MASK, 3, 0, 1))).toBe(ENOTTY);
    expect(set(irqSet(NONE | TRIG, 3, 0, 0))).toBe(0);
    expect(set(irqSet(NONE | TRIG, 3, 0, 1))).toBe(EINVAL);
    expect(set(irqSet(EVFD | TRIG, 4, 0, 1, [e1]))).toBe(0);
    set(irqSet(NONE | TRIG, 4, 0, 1));
    expect(take(e1)).toBe(1);
    expect(set(irqSet(EVFD | TRIG, 4, 0, 1, [-1]))).toBe(0);
    expect(set(irqSet(EVFD | TRIG, 4, 0, 1, [-2]))).toBe(EINVAL);
  });
});

describe(`vfio cdev: attach, DMA, close${SIM_ONLY}`, () => {
  it.skipIf(SKIP)('ATTACH/DETACH_IOMMUFD_PT validate, drive the bound device and write back the pt id', () => {
    const r = rig();
    const fd = r.open();
    r.bind(fd);
    const at = (...w: number[]): number => errnoOf(() => r.b.ioctl(fd, U.VFIO_DEVICE_IOCTLS.ATTACH_IOMMUFD_PT.request, u32s(...w)));
    expect(at(8, 0, 2, 0)).toBe(ERRNO.EINVAL);
    expect(at(16, 2, 2, 0)).toBe(ERRNO.EINVAL);
    expect(at(12, 1, 2, 1)).toBe(ERRNO.EINVAL);
    expect(at(16, 0, 9999, 0)).toBe(ERRNO.ENOENT);
    const arg = u32s(16, 0, 2, 0);
    r.b.ioctl(fd, U.VFIO_DEVICE_IOCTLS.ATTACH_IOMMUFD_PT.request, arg);
    expect(words(arg)).toEqual([16, 0, 102, 0]);
    const arg12 = u32s(12, 0, 2);
    r.b.ioctl(fd, U.VFIO_DEVICE_IOCTLS.ATTACH_IOMMUFD_PT.request, arg12);
    expect(words(arg12)).toEqual([12, 0, 102]);
    const dt = (...w: number[]): number => errnoOf(() => r.b.ioctl(fd, U.VFIO_DEVICE_IOCTLS.DETACH_IOMMUFD_PT.request, u32s(...w)));
    expect(dt(4, 0, 0)).toBe(ERRNO.EINVAL);
    expect(dt(12, 2, 0)).toBe(ERRNO.EINVAL);
    expect(dt(12, 1, 1)).toBe(0);
    expect(dt(8, 0)).toBe(0);
    expect(dt(8, 0)).toBe(0);
    expect(r.fake.calls).toEqual([`bind ${EDU0}`, 'attach 2', 'attach 2', 'detach']);
  });

  it.skipIf(SKIP)('edu DMA through vfio: bus mastering via config space, translation via the attached domain, faults logged', () => {
    const r = rig();
    const b = r.b;
    const fd = r.open();
    r.bind(fd);
    r.b.ioctl(fd, U.VFIO_DEVICE_IOCTLS.ATTACH_IOMMUFD_PT.request, u32s(16, 0, 2, 0));
    const dom = r.fake.domains.get(2)!;
    const addr = b.mmap(0n, 8192, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    const mem = b.view(addr, 8192);
    dom.map(0x10_0000n, mem, 0, 8192);
    mem.set([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16]);
    const reg64 = (off: number, v: bigint): void => {
      const buf = new Uint8Array(8);
      new DataView(buf.buffer).setBigUint64(0, v, true);
      expect(b.pwrite(fd, buf, off)).toBe(8);
    };
    const run = (src: bigint, dst: bigint, cnt: number, cmd: bigint): void => {
      reg64(EDU_REG.DMA_SRC, src);
      reg64(EDU_REG.DMA_DST, dst);
      reg64(EDU_REG.DMA_CNT, BigInt(cnt));
      reg64(EDU_REG.DMA_CMD, cmd);
    };
    // Bus mastering is off after open (vfio_pci_core_enable clears it): nothing moves.
    run(0x10_0000n, 0x40000n, 16, 1n);
    run(0x40000n, 0x10_1000n, 16, 3n);
    expect(mem.subarray(0x1000, 0x1010).every((x) => x === 0)).toBe(true);
    r.pw(fd, CFG + 4, [0x06, 0x00]);
    run(0x10_0000n, 0x40000n, 16, 1n);
    run(0x40000n, 0x10_1000n, 16, 3n);
    expect([...mem.subarray(0x1000, 0x1010)]).toEqual([...mem.subarray(0, 16)]);
    const unit = b.kernel.machine.iommu!;
    expect(unit.faults).toEqual([]);
    run(0x40000n, 0x30_0000n, 16, 3n);
    expect(unit.faults).toEqual([{ iova: 0x30_0000n, write: true, reason: 'not-present', rid: 0x08, pasid: null }]);
    // Detached: the blocking domain.
    r.b.ioctl(fd, U.VFIO_DEVICE_IOCTLS.DETACH_IOMMUFD_PT.request, u32s(8, 0));
    run(0x40000n, 0x10_1000n, 16, 3n);
    expect(unit.faults.at(-1)).toMatchObject({ reason: 'blocked' });
  });

  it.skipIf(SKIP)('close: interrupts off, the device\'s saved config back (bus mastering off), DMA ownership released', () => {
    const r = rig();
    const fd = r.open();
    r.bind(fd);
    const dev = r.b.kernel.machine.device(EDU0)!;
    expect(r.b.readText(`${D}/${EDU0}/enable`)).toBe('1\n');
    r.pw(fd, CFG + 4, [0x07, 0x01]);
    const e = r.b.eventfd(0, EFD_NONBLOCK);
    r.b.ioctl(fd, U.VFIO_DEVICE_IOCTLS.SET_IRQS.request, irqSet(EVFD | TRIG, 1, 0, 1, [e]));
    expect(dev.fn.msiEnabled).toBe(true);
    r.b.close(fd);
    expect(dev.fn.command).toBe(0x0103);
    expect(dev.fn.msiEnabled).toBe(false);
    expect(dev.group.ownerCount).toBe(0);
    expect(r.b.readText(`${D}/${EDU0}/enable`)).toBe('0\n');
    expect(r.fake.calls.at(-1)).toBe(`unbind ${EDU0}`);
    // The device can be bound again through a new open.
    expect(r.bind(r.b.open('/dev/vfio/devices/vfio0'))).toBe(2);
  });

  it.skipIf(SKIP)('a refused MSI trigger (a descriptor that is no eventfd) leaves the function\'s config space as it was; so does enable then disable', () => {
    const r = rig();
    const fd = r.open();
    r.bind(fd);
    const dev = r.b.kernel.machine.device(EDU0)!;
    const before = dev.fn.config.slice();
    expectErrno(() => r.b.ioctl(fd, U.VFIO_DEVICE_IOCTLS.SET_IRQS.request, irqSet(EVFD | TRIG, 1, 0, 1, [r.iommufd])), 'EINVAL');
    expect(dev.fn.config).toEqual(before); // the sim used to leave the MSI address programmed
    const e = r.b.eventfd(0, EFD_NONBLOCK);
    r.b.ioctl(fd, U.VFIO_DEVICE_IOCTLS.SET_IRQS.request, irqSet(EVFD | TRIG, 1, 0, 1, [e]));
    expect(dev.fn.msiEnabled).toBe(true);
    expect(dev.fn.cfgRead(dev.fn.msiCap + 4, 4)).not.toBe(0);
    r.b.ioctl(fd, U.VFIO_DEVICE_IOCTLS.SET_IRQS.request, irqSet(NONE | TRIG, 1, 0, 0));
    expect(dev.fn.config).toEqual(before);
  });

  it.skipIf(SKIP)('unbinding vfio-pci while the device is open: the request eventfd fires; the sim refuses (EBUSY) where the kernel waits', () => {
    const r = rig();
    const fd = r.open();
    r.bind(fd);
    const e = r.b.eventfd(0, EFD_NONBLOCK);
    r.b.ioctl(fd, U.VFIO_DEVICE_IOCTLS.SET_IRQS.request, irqSet(EVFD | TRIG, 4, 0, 1, [e]));
    expectErrno(() => r.b.writeText('/sys/bus/pci/drivers/vfio-pci/unbind', EDU0), 'EBUSY');
    const buf = new Uint8Array(8);
    r.b.read(e, buf);
    expect(buf[0]).toBe(1);
    r.b.close(fd);
    r.b.writeText('/sys/bus/pci/drivers/vfio-pci/unbind', EDU0);
    expectErrno(() => r.b.open('/dev/vfio/devices/vfio0'), 'ENOENT');
  });

  it.skipIf(SKIP)('the shared group behind the bridge: hot reset info lists both edus by devid (the VM\'s answer), hot reset needs count 0', () => {
    const r = rig();
    const a = r.open('0000:01:01.0');
    const bfd = r.open('0000:01:02.0');
    expect(r.bind(a)).toBe(1);
    expect(r.bind(bfd)).toBe(2);
    const small = u32s(12, 0, 0);
    expectErrno(() => r.b.ioctl(a, U.VFIO_DEVICE_IOCTLS.GET_PCI_HOT_RESET_INFO.request, small), 'ENOSPC');
    expect(words(small)).toEqual([12, 0, 2]);
    const info = u32s(76, 0, 0, ...new Array(16).fill(0));
    r.b.ioctl(a, U.VFIO_DEVICE_IOCTLS.GET_PCI_HOT_RESET_INFO.request, info);
    expect(hex(info.subarray(0, 28))).toBe('4c000000030000000200000001000000000001080200000000000110');
    expectErrno(() => r.b.ioctl(a, U.VFIO_DEVICE_IOCTLS.PCI_HOT_RESET.request, u32s(16, 0, 1, 5)), 'EINVAL');
    expectErrno(() => r.b.ioctl(a, U.VFIO_DEVICE_IOCTLS.PCI_HOT_RESET.request, u32s(12, 1, 0)), 'EINVAL');
    r.b.ioctl(a, U.VFIO_DEVICE_IOCTLS.PCI_HOT_RESET.request, u32s(12, 0, 0));
    // The other function closed: its devid is no longer known, but the group stays owned through this iommufd.
    r.b.close(bfd);
    r.b.ioctl(a, U.VFIO_DEVICE_IOCTLS.GET_PCI_HOT_RESET_INFO.request, info);
    expect(words(info).slice(1, 6)).toEqual([3, 2, 1, 0x08010000, 0]);
  });
});
