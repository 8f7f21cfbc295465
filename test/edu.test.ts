/**
 * DMA through the IOMMU, proved with QEMU's edu device and the userspace driver in
 * test/drivers/edu.ts: bytes round-trip RAM -> device -> RAM through IOVAs, and every way the
 * translation can refuse (nothing mapped, read-only, unmapped, detached, bus mastering off)
 * writes no byte of process memory. Interrupts arrive through eventfds (MSI and INTx).
 *
 * What the real kernel did is the oracle: each refused DMA faulted in VT-d (the guest's dmesg logs
 * "DMAR: [DMA Write NO_PASID] ... PTE Write access is not set") and left memory as it was. Every
 * check covers the whole buffer and a guard page on each side of it.
 *
 * On the sim these skip until its simulated machine publishes an edu (reason in the title).
 */
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { Iommufd, type Ioas, type UserMemory } from '../src/index.js';
import { VfioDevice } from '../src/device/vfio_device.js';
import { VFIO_IRQ_SET_ACTION_TRIGGER, VFIO_IRQ_SET_DATA_BOOL, VFIO_IRQ_SET_DATA_NONE } from '../src/device/uapi.js';
import { BACKEND, P, expectErrno, within } from './helpers.js';
import { claimDevices, deviceMachine } from './drivers/devices.js';
import { EDU_IRQ_DMA, EDU_MAX_CHUNK, EDU_REG, EduDriver } from './drivers/edu.js';

const machine = deviceMachine();
const PAGES = 4;
const LEN = PAGES * P;
const FILL = 0xee;

/**
 * `PAGES` pages with one guard page on each side: [guard][data ...][guard]. Only the data pages are
 * ever mapped for DMA; `untouched()` checks every byte of all of them against what was written.
 */
class Guarded {
  readonly mem: UserMemory;
  private expected: Uint8Array;

  constructor(ctx: Iommufd, fill: (i: number) => number) {
    this.mem = ctx.mmap(LEN + 2 * P);
    for (let i = 0; i < this.mem.length; i++) this.mem.bytes[i] = fill(i);
    this.expected = this.mem.bytes.slice();
  }

  /** The data pages (the DMA-visible part). */
  get data(): Uint8Array {
    return this.mem.bytes.subarray(P, P + LEN);
  }

  /** Map the data pages (not the guards) at `iova`. */
  map(ioas: Ioas, iova: bigint, opts: { writeable?: boolean } = {}): bigint {
    return ioas.map(this.mem, { iova, offset: P, length: LEN, ...opts });
  }

  /** Byte offsets (within the whole mapping, guards included) that differ from what was written. */
  changed(): number[] {
    const out: number[] = [];
    const b = this.mem.bytes;
    for (let i = 0; i < b.length; i++) if (b[i] !== this.expected[i]) out.push(i);
    return out;
  }

  /** Accept the current content as the new expectation. */
  settle(): void {
    this.expected = this.mem.bytes.slice();
  }

  close(): void {
    this.mem.close();
  }
}

const pattern = (seed: number) => (i: number) => (i * 7 + seed) & 0xff;

describe.skipIf(!machine.soloEdu)(`edu DMA through an IOAS [${BACKEND}]${machine.noSoloReason ? ` (skipped: ${machine.noSoloReason})` : ''}`, () => {
  const bdf = machine.soloEdu!;
  let release: () => void = () => {};
  let ctx: Iommufd;
  let dev: VfioDevice;
  let ioas: Ioas;
  let edu: EduDriver;
  let src: Guarded;
  let dst: Guarded;
  const SRC = 0x10_0000n;
  const DST = 0x20_0000n;
  /** Never mapped: one data length past DST. */
  const HOLE = 0x30_0000n;

  beforeAll(() => {
    release = claimDevices([bdf]);
  });
  afterAll(() => release());
  beforeEach(() => {
    ctx = Iommufd.open({ backend: BACKEND });
    dev = VfioDevice.open(ctx.binding, bdf);
    dev.bind(ctx);
    ioas = ctx.allocIoas();
    dev.attach(ioas);
    expect(EduDriver.probe(dev)).toBe(true);
    edu = new EduDriver(dev);
    edu.init();
    src = new Guarded(ctx, pattern(3));
    dst = new Guarded(ctx, () => FILL);
    src.map(ioas, SRC);
    dst.map(ioas, DST);
  });
  afterEach(() => {
    edu.remove();
    dev.close();
    src.close();
    dst.close();
    ctx.close();
  });

  it('init turned bus mastering on; remove turns it off', () => {
    expect(dev.config.busMaster).toBe(true);
    edu.remove();
    expect(dev.config.busMaster).toBe(false);
    edu.init();
  });

  it('memcpy: 16 KiB round-trip RAM -> device -> RAM byte for byte, guards untouched', () => {
    edu.memcpy(SRC, DST, LEN);
    expect(Buffer.compare(Buffer.from(dst.data), Buffer.from(src.data))).toBe(0);
    dst.settle();
    expect(src.changed()).toEqual([]);
    // The guard pages around dst kept their fill.
    expect(dst.mem.bytes.subarray(0, P).every((b) => b === FILL)).toBe(true);
    expect(dst.mem.bytes.subarray(P + LEN).every((b) => b === FILL)).toBe(true);
  });

  it('a chunk at an offset inside the device buffer lands at the matching IOVA offset', () => {
    edu.toDevice(SRC + 100n, 500, 1000n);
    edu.toRam(DST + 3000n, 500, 1000n);
    expect([...dst.data.subarray(3000, 3500)]).toEqual([...src.data.subarray(100, 600)]);
    expect(dst.data.subarray(0, 3000).every((b) => b === FILL)).toBe(true);
    expect(dst.data.subarray(3500).every((b) => b === FILL)).toBe(true);
  });

  it('the driver refuses transfers edu cannot do before touching the device', () => {
    expect(() => edu.toDevice(SRC, EDU_MAX_CHUNK + 1)).toThrow(RangeError);
    expect(() => edu.toDevice(SRC, 16, BigInt(EDU_MAX_CHUNK - 8))).toThrow(RangeError);
    expect(() => edu.toRam(1n << 28n, 16)).toThrow(RangeError);
    expect(() => edu.toRam(DST, 0)).toThrow(RangeError);
  });

  it('DMA to an IOVA that was never mapped writes no byte of process memory', () => {
    edu.toDevice(SRC, EDU_MAX_CHUNK);
    edu.toRam(HOLE, EDU_MAX_CHUNK);
    expect(dst.changed()).toEqual([]);
    expect(src.changed()).toEqual([]);
    // Control: the same transfer to a mapped IOVA does arrive.
    edu.toRam(DST, EDU_MAX_CHUNK);
    expect([...dst.data.subarray(0, EDU_MAX_CHUNK)]).toEqual([...src.data.subarray(0, EDU_MAX_CHUNK)]);
  });

  it('DMA from an unmapped IOVA reads none of the memory once mapped there', () => {
    const secret = new Guarded(ctx, () => 0x5e);
    try {
      const iova = secret.map(ioas, HOLE);
      ioas.unmap(iova, BigInt(LEN));
      edu.toDevice(HOLE, EDU_MAX_CHUNK);
      edu.toRam(DST, EDU_MAX_CHUNK);
      expect(dst.data.subarray(0, EDU_MAX_CHUNK).includes(0x5e)).toBe(false);
      expect(secret.changed()).toEqual([]);
    } finally {
      secret.close();
    }
  });

  it('a read-only IOVA: the device may read it, a write to it changes no byte', () => {
    const ro = new Guarded(ctx, pattern(11));
    try {
      const RO = 0x40_0000n;
      ro.map(ioas, RO, { writeable: false });
      edu.toDevice(SRC, EDU_MAX_CHUNK);
      edu.toRam(RO, EDU_MAX_CHUNK);
      edu.toRam(RO + BigInt(LEN) - BigInt(EDU_MAX_CHUNK), EDU_MAX_CHUNK);
      expect(ro.changed()).toEqual([]);
      // Reading is allowed: its bytes reach dst.
      edu.toDevice(RO, EDU_MAX_CHUNK);
      edu.toRam(DST, EDU_MAX_CHUNK);
      expect([...dst.data.subarray(0, EDU_MAX_CHUNK)]).toEqual([...ro.data.subarray(0, EDU_MAX_CHUNK)]);
    } finally {
      ro.close();
    }
  });

  it('after unmap the old IOVA no longer reaches the buffer', () => {
    edu.toDevice(SRC, EDU_MAX_CHUNK);
    edu.toRam(DST, EDU_MAX_CHUNK);
    expect(dst.data[0]).toBe(src.data[0]);
    dst.settle();
    expect(ioas.unmap(DST, BigInt(LEN))).toBe(BigInt(LEN));
    edu.toDevice(SRC + BigInt(EDU_MAX_CHUNK), EDU_MAX_CHUNK);
    edu.toRam(DST, EDU_MAX_CHUNK);
    expect(dst.changed()).toEqual([]);
  });

  it('detached, the device reaches nothing; attached again, it does', () => {
    edu.toDevice(SRC, EDU_MAX_CHUNK);
    dev.detach();
    edu.toRam(DST, EDU_MAX_CHUNK);
    expect(dst.changed()).toEqual([]);
    dev.attach(ioas);
    edu.toRam(DST, EDU_MAX_CHUNK);
    expect([...dst.data.subarray(0, EDU_MAX_CHUNK)]).toEqual([...src.data.subarray(0, EDU_MAX_CHUNK)]);
  });

  it('replace onto another IOAS: the device sees the new mappings at once', () => {
    const other = ctx.allocIoas();
    const alt = new Guarded(ctx, () => 0x77);
    try {
      alt.map(other, DST);
      src.map(other, SRC);
      dev.attach(other);
      edu.memcpy(SRC, DST, EDU_MAX_CHUNK);
      expect([...alt.data.subarray(0, EDU_MAX_CHUNK)]).toEqual([...src.data.subarray(0, EDU_MAX_CHUNK)]);
      expect(dst.changed()).toEqual([]);
    } finally {
      dev.attach(ioas);
      alt.close();
    }
  });

  it('with bus mastering off the device reaches nothing', () => {
    edu.toDevice(SRC, EDU_MAX_CHUNK);
    dev.config.busMaster = false;
    edu.toRam(DST, EDU_MAX_CHUNK);
    dev.config.busMaster = true;
    expect(dst.changed()).toEqual([]);
  });

  describe("the factorial unit (QEMU computes it beside the vCPU: STATUS bit 0 until done)", () => {
    it('n! in 32-bit arithmetic: 5, 13, 33 (2^31), 34 (0: 32 factors of two)', () => {
      expect(edu.factorial(5).value).toBe(120);
      expect(edu.factorial(13).value).toBe(1932053504);
      expect(edu.factorial(33).value).toBe(0x8000_0000);
      expect(edu.factorial(34).value).toBe(0);
    });

    it('(2^32 - 1)!: no register access takes a second (the sim used to compute it inside the FACT write), the result is 0, and STATUS bit 7 raises FACT_IRQ', async () => {
      using efd = dev.eventfd();
      edu.enableIrq('msi', efd);
      edu.bar.write32(EDU_REG.STATUS, 0x80);
      // QEMU's thread takes seconds for 2^32 - 1 multiplications: wait up to two minutes.
      const r = new EduDriver(dev, { timeoutMs: 120_000 }).factorial(0xffff_ffff);
      expect(r.value).toBe(0);
      expect(r.slowestMs).toBeLessThan(1000);
      expect(await efd.wait(within(2000))).toBe(1n);
      expect(edu.irqStatus).toBe(1); // FACT_IRQ
      edu.ackIrq();
      edu.bar.write32(EDU_REG.STATUS, 0);
      edu.disableIrq();
    }, 180_000);
  });

  describe('interrupts through eventfds', () => {
    it('MSI: a DMA with the IRQ bit signals the eventfd once; IRQ_STATUS holds the DMA bit until acked', async () => {
      using efd = dev.eventfd();
      edu.enableIrq('msi', efd);
      expect(efd.read()).toBe(0n);
      edu.toRam(DST, 64);
      expect(await efd.wait(within(2000))).toBe(1n);
      expect(edu.irqStatus).toBe(EDU_IRQ_DMA);
      edu.ackIrq();
      expect(edu.irqStatus).toBe(0);
      // edu's raise register, then the kernel's loopback trigger, each fire it once more.
      edu.sendIrq(1);
      expect(await efd.wait(within(2000))).toBe(1n);
      edu.ackIrq();
      dev.triggerIrq(1);
      expect(efd.read()).toBe(1n);
      edu.disableIrq();
    });

    it('MSI: a trigger whose descriptor is no eventfd (EINVAL) has already released the vector\'s old one (vfio_msi_set_block)', async () => {
      using efd = dev.eventfd();
      edu.enableIrq('msi', efd);
      expectErrno(() => dev.enableIrq(1, [ctx.fd]), 'EINVAL');
      edu.sendIrq(1);
      await expect(efd.wait(within(500))).rejects.toMatchObject({ name: 'TimeoutError' }); // the refused call took the old trigger away
      expect(efd.read()).toBe(0n);
      edu.ackIrq();
      dev.enableIrq(1, [efd]);
      edu.sendIrq(1);
      expect(await efd.wait(within(2000))).toBe(1n);
      edu.ackIrq();
      edu.disableIrq();
    });

    it('INTx: automasked after each interrupt until acked and unmasked', async () => {
      using efd = dev.eventfd();
      edu.enableIrq('intx', efd);
      edu.toRam(DST, 64);
      expect(await efd.wait(within(2000))).toBe(1n);
      // Still masked: another cause raised at the device is not delivered.
      edu.sendIrq(1);
      await expect(efd.wait(within(200))).rejects.toMatchObject({ name: 'TimeoutError' });
      edu.ackIrq(); // clears both causes at the device, then unmasks
      edu.sendIrq(2);
      expect(await efd.wait(within(2000))).toBe(1n);
      edu.ackIrq();
      edu.disableIrq();
    });

    it('SET_IRQS refusals: EINVAL for a bad index, vectors beyond count, two data types, trigger with nothing set', () => {
      using efd = dev.eventfd();
      expect(expectErrno(() => dev.setIrqs({ flags: VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER, index: 9, start: 0, count: 0 }), 'EINVAL').syscall).toBe('VFIO_DEVICE_SET_IRQS');
      expectErrno(() => dev.enableIrq(2, [efd]), 'EINVAL'); // MSI-X: 0 vectors
      expectErrno(() => dev.enableIrq(1, [efd], 1), 'EINVAL'); // MSI has 1 vector
      expectErrno(() => dev.setIrqs({ flags: VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_DATA_BOOL | VFIO_IRQ_SET_ACTION_TRIGGER, index: 1, start: 0, count: 1, data: [1] }), 'EINVAL');
      expectErrno(() => dev.triggerIrq(1), 'EINVAL');
      // None of them enabled anything; a valid request still works.
      dev.enableIrq(1, [efd]);
      dev.triggerIrq(1);
      expect(efd.read()).toBe(1n);
      dev.disableIrq(1);
    });
  });
});
