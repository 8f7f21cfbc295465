/**
 * QEMU's educational PCI device "edu" (hw/misc/edu.c, 1234:11e8): a 1 MiB register BAR, a
 * factorial unit, interrupt raise/ack registers and a DMA engine with a 4 KiB buffer at device
 * address 0x40000. Register semantics follow QEMU, including its access-size rules (the memory
 * core drops accesses smaller than 4 bytes; below 0x80 only 4-byte accesses reach the registers,
 * above only 4 and 8) and the 28-bit DMA mask that clamps addresses.
 *
 * A DMA read that fails (IOMMU fault, or bus mastering off) leaves zeros in the device buffer, as
 * QEMU's unassigned-memory reads do (the VM's edu showed it); a failed write changes no memory.
 *
 * The factorial runs beside the register file, as QEMU's edu_fact_thread does: writing FACT sets
 * the computing status bit and returns; the unit advances FACT_STEPS_PER_ACCESS multiplications
 * before each later register access (device time passing between accesses) and finishes on the
 * next event-loop turn, so every access costs a bounded amount whatever the value. Until it is
 * done STATUS shows bit 0 and FACT reads the value written; then FACT holds the 32-bit wrapped
 * factorial and FACT_IRQ is raised if STATUS bit 7 asks. The product is 0 once it holds 32
 * factors of two (by the 34th multiplication at most), and stays 0, so the unit stops there.
 *
 * Differences from QEMU, by design: the DMA completes synchronously when the command is written
 * (QEMU runs it 100 ms later on a timer: the command's start bit clears then); a DMA whose
 * device-side range leaves the buffer moves no byte (QEMU 7.2 aborts the whole VM with hw_error;
 * newer QEMU logs and copies out of bounds).
 */
import { CONVENTIONAL, PciFunction, type DmaResult, type PciFunctionInit, type PciFunctionSpec } from './pci_function.js';

export const EDU_VENDOR = 0x1234;
export const EDU_DEVICE = 0x11e8;
export const EDU_ID = 0x010000ed;
export const EDU_BAR_SIZE = 1 << 20;
export const EDU_DMA_START = 0x40000;
export const EDU_DMA_SIZE = 4096;
export const EDU_FACT_IRQ = 0x00000001;
export const EDU_DMA_IRQ = 0x00000100;
export const EDU_STATUS_COMPUTING = 0x01;
export const EDU_STATUS_IRQFACT = 0x80;
export const EDU_DMA_RUN = 0x1n;
export const EDU_DMA_TO_PCI = 0x2n;
export const EDU_DMA_IRQ_CMD = 0x4n;
/** Register offsets in BAR0. */
export const EDU_REG = {
  ID: 0x00, LIVENESS: 0x04, FACT: 0x08, STATUS: 0x20, IRQ_STATUS: 0x24, IRQ_RAISE: 0x60, IRQ_ACK: 0x64,
  DMA_SRC: 0x80, DMA_DST: 0x88, DMA_CNT: 0x90, DMA_CMD: 0x98,
} as const;

const M32 = 0xffff_ffffn;
/** Multiplications the factorial unit does between two register accesses. */
export const FACT_STEPS_PER_ACCESS = 16;
const M64 = 0xffff_ffff_ffff_ffffn;

export const EDU_SPEC: PciFunctionSpec = {
  vendor: EDU_VENDOR,
  device: EDU_DEVICE,
  classCode: 0x00ff00,
  revision: 0x10,
  subsystemVendor: 0x1af4,
  subsystemDevice: 0x1100,
  interruptPin: 1,
  bars: [{ index: 0, size: EDU_BAR_SIZE, type: 'mem32' }],
  msi: { vectors: 1, is64: true, maskable: false },
};

export class Edu extends PciFunction {
  addr4 = 0;
  fact = 0;
  status = 0;
  irqStatus = 0;
  dmaSrc = 0n;
  dmaDst = 0n;
  dmaCnt = 0n;
  dmaCmd = 0n;
  readonly buffer = new Uint8Array(EDU_DMA_SIZE);
  /** QEMU's dma_mask property: DMA addresses are clamped to it. */
  dmaMask = (1n << 28n) - 1n;
  /** What the last DMA did: null = moved its bytes, a fault, or no bus mastering. */
  lastDma: DmaResult | 'out-of-range' | undefined;
  /** QEMU's LOG_GUEST_ERROR lines (clamped addresses, ranges outside the buffer). */
  readonly guestErrors: string[] = [];
  dmaCount = 0;
  /** edu_fact_thread's loop: the next factor and the product so far. */
  private factNext = 0;
  private factProduct = 1;

  constructor(init: PciFunctionInit = CONVENTIONAL) {
    super(EDU_SPEC, init);
  }

  override mmioRead(index: number, addr: number, size: number): bigint {
    if (index !== 0) return super.mmioRead(index, addr, size);
    this.factStep(FACT_STEPS_PER_ACCESS);
    // The memory core refuses accesses below min_access_size (4): the read returns 0.
    if (size < 4) return 0n;
    const ones = size === 8 ? M64 : M32;
    if (addr < 0x80 && size !== 4) return ones;
    let v: bigint;
    switch (addr) {
      case EDU_REG.ID: v = BigInt(EDU_ID); break;
      case EDU_REG.LIVENESS: v = BigInt(this.addr4); break;
      case EDU_REG.FACT: v = BigInt(this.fact); break;
      case EDU_REG.STATUS: v = BigInt(this.status); break;
      case EDU_REG.IRQ_STATUS: v = BigInt(this.irqStatus); break;
      case EDU_REG.DMA_SRC: v = this.dmaSrc; break;
      case EDU_REG.DMA_DST: v = this.dmaDst; break;
      case EDU_REG.DMA_CNT: v = this.dmaCnt; break;
      case EDU_REG.DMA_CMD: v = this.dmaCmd; break;
      default: v = M64;
    }
    return v & ones;
  }

  override mmioWrite(index: number, addr: number, size: number, value: bigint): void {
    if (index !== 0) return super.mmioWrite(index, addr, size, value);
    this.factStep(FACT_STEPS_PER_ACCESS);
    if (size < 4 || (addr < 0x80 && size !== 4)) return;
    const val = value & (size === 8 ? M64 : M32);
    const running = (this.dmaCmd & EDU_DMA_RUN) !== 0n;
    switch (addr) {
      case EDU_REG.LIVENESS:
        this.addr4 = Number(~val & M32);
        break;
      case EDU_REG.FACT:
        if (this.status & EDU_STATUS_COMPUTING) break;
        this.startFactorial(Number(val & M32));
        break;
      case EDU_REG.STATUS:
        if (val & BigInt(EDU_STATUS_IRQFACT)) this.status |= EDU_STATUS_IRQFACT;
        else this.status &= ~EDU_STATUS_IRQFACT;
        break;
      case EDU_REG.IRQ_RAISE:
        this.raiseIrq(Number(val & M32));
        break;
      case EDU_REG.IRQ_ACK:
        this.lowerIrq(Number(val & M32));
        break;
      case EDU_REG.DMA_SRC:
        if (!running) this.dmaSrc = val;
        break;
      case EDU_REG.DMA_DST:
        if (!running) this.dmaDst = val;
        break;
      case EDU_REG.DMA_CNT:
        if (!running) this.dmaCnt = val;
        break;
      case EDU_REG.DMA_CMD:
        if (!(val & EDU_DMA_RUN) || running) break;
        this.dmaCmd = val;
        this.runDma();
        break;
    }
  }

  /** The FACT write: the value is latched, the computing bit set, and the unit woken. */
  private startFactorial(val: number): void {
    this.fact = val;
    this.factNext = val;
    this.factProduct = 1;
    this.status |= EDU_STATUS_COMPUTING;
    setImmediate(() => this.factStep(Infinity)).unref();
  }

  /**
   * edu_fact_thread's `ret *= val--` in 32-bit arithmetic, `steps` factors at most; when done
   * (no factor left, or a product of 0, which no factor changes) FACT takes the result, the
   * computing bit clears and FACT_IRQ is raised if asked.
   */
  private factStep(steps: number): void {
    if (!(this.status & EDU_STATUS_COMPUTING)) return;
    let v = this.factNext;
    let ret = this.factProduct;
    for (; v > 0 && ret !== 0 && steps > 0; steps--) ret = Math.imul(ret, v--) >>> 0;
    this.factNext = v;
    this.factProduct = ret;
    if (v > 0 && ret !== 0) return;
    this.fact = ret;
    this.status &= ~EDU_STATUS_COMPUTING;
    if (this.status & EDU_STATUS_IRQFACT) this.raiseIrq(EDU_FACT_IRQ);
  }

  /** edu_dma_timer, done at once. */
  private runDma(): void {
    const toPci = (this.dmaCmd & EDU_DMA_TO_PCI) !== 0n;
    const devAddr = toPci ? this.dmaSrc : this.dmaDst;
    const cnt = this.dmaCnt;
    this.dmaCount++;
    if (!this.checkRange(devAddr, cnt)) {
      this.lastDma = 'out-of-range';
    } else {
      const off = Number(devAddr - BigInt(EDU_DMA_START));
      const window = this.buffer.subarray(off, off + Number(cnt));
      this.lastDma = toPci ? this.dmaWrite(this.clamp(this.dmaDst), window) : this.dmaRead(this.clamp(this.dmaSrc), window);
      // A failed read (IOMMU fault or no bus mastering) reaches QEMU's unassigned memory: the device gets zeros.
      if (!toPci && this.lastDma !== null) window.fill(0);
    }
    this.dmaCmd &= ~EDU_DMA_RUN;
    if (this.dmaCmd & EDU_DMA_IRQ_CMD) this.raiseIrq(EDU_DMA_IRQ);
  }

  /** edu_check_range: [addr, addr + cnt) inside [0x40000, 0x41000). */
  private checkRange(addr: bigint, cnt: bigint): boolean {
    const start = BigInt(EDU_DMA_START);
    const end = start + BigInt(EDU_DMA_SIZE);
    const xend = addr + cnt;
    if (xend <= M64 && addr >= start && xend <= end) return true;
    this.guestErrors.push(`EDU: DMA range 0x${addr.toString(16)}-0x${(xend - 1n).toString(16)} out of bounds (0x${start.toString(16)}-0x${(end - 1n).toString(16)})!`);
    return false;
  }

  /** edu_clamp_addr */
  private clamp(addr: bigint): bigint {
    const res = addr & this.dmaMask;
    if (res !== addr) this.guestErrors.push(`EDU: clamping DMA 0x${addr.toString(16)} to 0x${res.toString(16)}!`);
    return res;
  }

  raiseIrq(val: number): void {
    this.irqStatus = (this.irqStatus | val) >>> 0;
    if (!this.irqStatus) return;
    if (this.msiEnabled) this.msiNotify(0);
    else this.setIrq(true);
  }

  lowerIrq(val: number): void {
    this.irqStatus = (this.irqStatus & ~val) >>> 0;
    if (!this.irqStatus && !this.msiEnabled) this.setIrq(false);
  }
}
