/**
 * A userspace driver for QEMU's `edu` device (1234:11e8, hw/misc/edu.c), in the manner of the
 * kernel's vfio selftest drivers (tools/testing/selftests/vfio/lib/drivers): probe, init, remove,
 * memcpy by DMA, optional MSI or INTx through an eventfd.
 *
 * edu's DMA engine copies between an IOVA and its own 4 KiB buffer at BAR0 offset 0x40000, one
 * direction per command; a memcpy is therefore src IOVA -> device buffer -> dst IOVA. Registers are
 * accessed with pread/pwrite on BAR0 (the sim maps a BAR but cannot trap loads and stores to it),
 * 4 bytes below 0x80, 8 above.
 *
 * QEMU 7.2 checks a transfer against the buffer with an off-by-one and aborts the whole VM when
 * it fails, so every transfer is checked here first and kept to EDU_MAX_CHUNK (2048) bytes at the
 * start of the buffer. edu drives only 28 address bits (its dma_mask): IOVAs must be below 2^28.
 */
import type { EventFd } from '../../src/device/eventfd.js';
import type { VfioRegion } from '../../src/device/region.js';
import type { VfioDevice } from '../../src/device/vfio_device.js';
import { VFIO_PCI_INTX_IRQ_INDEX, VFIO_PCI_MSI_IRQ_INDEX } from '../../src/device/uapi.js';

export const EDU_VENDOR = 0x1234;
export const EDU_DEVICE = 0x11e8;

/** BAR0 registers. */
export const EDU_REG = {
  /** 0x010000ed: major 1, minor 0, 'ed'. */
  ID: 0x00,
  /** Reads back the bitwise inverse of what was written. */
  LIVENESS: 0x04,
  FACTORIAL: 0x08,
  STATUS: 0x20,
  IRQ_STATUS: 0x24,
  /** Writing sets bits in IRQ_STATUS and raises the interrupt. */
  IRQ_RAISE: 0x60,
  /** Writing clears bits in IRQ_STATUS (lowers INTx when none is left). */
  IRQ_ACK: 0x64,
  DMA_SRC: 0x80,
  DMA_DST: 0x88,
  DMA_COUNT: 0x90,
  DMA_CMD: 0x98,
} as const;

export const EDU_ID = 0x010000ed;
/** DMA_CMD bits: start (clears when the transfer is done), direction, interrupt when done. */
export const EDU_DMA_START = 0x1;
export const EDU_DMA_TO_RAM = 0x2;
export const EDU_DMA_IRQ = 0x4;
/** STATUS bit 0: the factorial unit is computing (FACTORIAL reads the value written until it clears). */
export const EDU_STATUS_COMPUTING = 0x1;
/** IRQ_STATUS bit a finished DMA with EDU_DMA_IRQ sets. */
export const EDU_IRQ_DMA = 0x100;
/** The device's DMA buffer, in its own (BAR-side) address space. */
export const EDU_BUFFER = 0x40000n;
export const EDU_BUFFER_SIZE = 4096;
/** The largest transfer QEMU 7.2 accepts without aborting the VM (see above). */
export const EDU_MAX_CHUNK = 2048;
/** edu's DMA mask: 28 address bits. */
export const EDU_DMA_LIMIT = 1n << 28n;

export type EduIrqMode = 'none' | 'msi' | 'intx';

export interface EduOptions {
  /** How long one transfer may take before wait() gives up (ms). Each takes ~100 ms of guest time. */
  timeoutMs?: number;
}

/** Sleep without yielding to the event loop (the driver's API is synchronous, like the ioctls). */
function sleepMs(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

export class EduDriver {
  readonly bar: VfioRegion;
  private readonly timeoutMs: number;
  private irqMode: EduIrqMode = 'none';
  private initialized = false;

  constructor(
    readonly device: VfioDevice,
    opts: EduOptions = {},
  ) {
    this.bar = device.region(0);
    this.timeoutMs = opts.timeoutMs ?? 10_000;
  }

  /** True when config space says 1234:11e8 (the device must be bound to an iommufd). */
  static probe(device: VfioDevice): boolean {
    const c = device.config;
    return c.vendor === EDU_VENDOR && c.device === EDU_DEVICE;
  }

  /** Check the ID and liveness registers and enable bus mastering. */
  init(): void {
    if (this.initialized) throw new Error('edu: already initialized');
    const id = this.bar.read32(EDU_REG.ID);
    if (id !== EDU_ID) throw new Error(`edu: unexpected ID register 0x${id.toString(16)}`);
    this.bar.write32(EDU_REG.LIVENESS, 0x5a5a1234);
    const live = this.bar.read32(EDU_REG.LIVENESS);
    if (live !== (~0x5a5a1234 >>> 0)) throw new Error(`edu: liveness check read 0x${live.toString(16)}`);
    this.device.config.busMaster = true;
    this.initialized = true;
  }

  /** Disable interrupts and bus mastering. */
  remove(): void {
    if (!this.initialized) return;
    this.disableIrq();
    this.device.config.busMaster = false;
    this.initialized = false;
  }

  private check(deviceOffset: bigint, iova: bigint, length: number): void {
    if (!this.initialized) throw new Error('edu: not initialized');
    if (!Number.isInteger(length) || length <= 0 || length > EDU_MAX_CHUNK) {
      throw new RangeError(`edu: transfer of ${length} bytes (1..${EDU_MAX_CHUNK})`);
    }
    if (deviceOffset < 0n || deviceOffset + BigInt(length) > BigInt(EDU_MAX_CHUNK)) {
      throw new RangeError(`edu: device buffer range [${deviceOffset}, +${length}) outside the first ${EDU_MAX_CHUNK} bytes`);
    }
    if (iova < 0n || iova + BigInt(length) > EDU_DMA_LIMIT) {
      throw new RangeError(`edu: IOVA 0x${iova.toString(16)} (+${length}) beyond the 28-bit DMA mask`);
    }
  }

  private start(src: bigint, dst: bigint, length: number, cmd: number): void {
    if (this.bar.read64(EDU_REG.DMA_CMD) & BigInt(EDU_DMA_START)) throw new Error('edu: a transfer is still running');
    this.bar.write64(EDU_REG.DMA_SRC, src);
    this.bar.write64(EDU_REG.DMA_DST, dst);
    this.bar.write64(EDU_REG.DMA_COUNT, BigInt(length));
    this.bar.write64(EDU_REG.DMA_CMD, BigInt(cmd | EDU_DMA_START | (this.irqMode === 'none' ? 0 : EDU_DMA_IRQ)));
  }

  /** Start a RAM -> device transfer: `length` bytes from `iova` into the buffer at `deviceOffset`. */
  startToDevice(iova: bigint, length: number, deviceOffset = 0n): void {
    this.check(deviceOffset, iova, length);
    this.start(iova, EDU_BUFFER + deviceOffset, length, 0);
  }

  /** Start a device -> RAM transfer: `length` bytes of the buffer at `deviceOffset` to `iova`. */
  startToRam(iova: bigint, length: number, deviceOffset = 0n): void {
    this.check(deviceOffset, iova, length);
    this.start(EDU_BUFFER + deviceOffset, iova, length, EDU_DMA_TO_RAM);
  }

  /** Poll DMA_CMD until the start bit clears; throws after the timeout. Returns the ms waited. */
  wait(): number {
    const t0 = performance.now();
    for (let spin = 0; ; spin++) {
      if (!(this.bar.read64(EDU_REG.DMA_CMD) & BigInt(EDU_DMA_START))) return performance.now() - t0;
      if (performance.now() - t0 > this.timeoutMs) throw new Error(`edu: DMA not done after ${this.timeoutMs} ms`);
      if (spin > 16) sleepMs(1);
    }
  }

  /** RAM -> device buffer, waited for. */
  toDevice(iova: bigint, length: number, deviceOffset = 0n): void {
    this.startToDevice(iova, length, deviceOffset);
    this.wait();
  }

  /** Device buffer -> RAM, waited for. */
  toRam(iova: bigint, length: number, deviceOffset = 0n): void {
    this.startToRam(iova, length, deviceOffset);
    this.wait();
  }

  /** Copy `length` bytes from `src` to `dst` (IOVAs) through the device buffer, in chunks. */
  memcpy(src: bigint, dst: bigint, length: number): void {
    for (let done = 0; done < length; done += EDU_MAX_CHUNK) {
      const n = Math.min(EDU_MAX_CHUNK, length - done);
      this.toDevice(src + BigInt(done), n);
      this.toRam(dst + BigInt(done), n);
    }
  }

  // ---- the factorial unit --------------------------------------------------------------------

  /**
   * n! in edu's 32-bit arithmetic: write FACTORIAL, poll STATUS until the computing bit clears
   * (QEMU computes in a thread beside the vCPU), read FACTORIAL. Also returns how many STATUS
   * reads saw the unit busy and the slowest single register access (ms).
   */
  factorial(n: number): { value: number; busyPolls: number; slowestMs: number } {
    let slowestMs = 0;
    const timed = <T>(fn: () => T): T => {
      const t0 = performance.now();
      const v = fn();
      slowestMs = Math.max(slowestMs, performance.now() - t0);
      return v;
    };
    timed(() => this.bar.write32(EDU_REG.FACTORIAL, n));
    const t0 = performance.now();
    let busyPolls = 0;
    for (; timed(() => this.bar.read32(EDU_REG.STATUS)) & EDU_STATUS_COMPUTING; busyPolls++) {
      if (performance.now() - t0 > this.timeoutMs) throw new Error(`edu: factorial of ${n} not done after ${this.timeoutMs} ms`);
      if (busyPolls > 16) sleepMs(1);
    }
    return { value: timed(() => this.bar.read32(EDU_REG.FACTORIAL)), busyPolls, slowestMs };
  }

  // ---- interrupts ----------------------------------------------------------------------------

  /**
   * Deliver edu's interrupt to `efd`: over MSI (vfio-pci programs the MSI capability) or INTx
   * (automasked: call ackIrq() after each one). DMA commands then ask for an interrupt.
   */
  enableIrq(mode: Exclude<EduIrqMode, 'none'>, efd: EventFd): void {
    const index = mode === 'msi' ? VFIO_PCI_MSI_IRQ_INDEX : VFIO_PCI_INTX_IRQ_INDEX;
    this.device.enableIrq(index, [efd]);
    this.irqMode = mode;
  }

  disableIrq(): void {
    if (this.irqMode === 'none') return;
    this.device.disableIrq(this.irqMode === 'msi' ? VFIO_PCI_MSI_IRQ_INDEX : VFIO_PCI_INTX_IRQ_INDEX);
    this.irqMode = 'none';
  }

  /** The device's pending interrupt causes (IRQ_STATUS). */
  get irqStatus(): number {
    return this.bar.read32(EDU_REG.IRQ_STATUS);
  }

  /** Acknowledge `bits` at the device; for INTx also unmask the line VFIO masked. */
  ackIrq(bits = this.irqStatus): void {
    this.bar.write32(EDU_REG.IRQ_ACK, bits);
    if (this.irqMode === 'intx') this.device.unmaskIrq(VFIO_PCI_INTX_IRQ_INDEX);
  }

  /** Make the device raise its interrupt with `bits` in IRQ_STATUS (edu's IRQ_RAISE register). */
  sendIrq(bits = 1): void {
    this.bar.write32(EDU_REG.IRQ_RAISE, bits);
  }
}
