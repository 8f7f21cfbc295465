/**
 * A userspace driver for QEMU's `edu` device (PCI 1234:11e8, hw/misc/edu.c) written with ioasid's
 * device abstractions, and a program that uses it; docs/driver-guide.md walks through it. It runs
 * on the sim with no hardware (the sim's default machine has three edus on vfio-pci) and on Linux
 * with an edu bound to vfio-pci (`IOASID_BACKEND=linux`). The package ships it: copy it into a
 * project set up as docs/install.md says, compile, and run
 *
 *   node out/edu-driver.js [BDF]          (in the ioasid repository: node dist/examples/edu-driver.js)
 */
import { fileURLToPath } from 'node:url';
import { Iommufd, VfioDevice, findPciDevices, vfio, type EventFd, type Ioas, type VfioRegion, type WaitOptions } from 'ioasid';

const EDU = { vendor: 0x1234, device: 0x11e8 };
/** BAR0 registers. */
const REG = {
  id: 0x00, liveness: 0x04, factorial: 0x08, status: 0x20, irqStatus: 0x24, irqAck: 0x64,
  dmaSrc: 0x80, dmaDst: 0x88, dmaCount: 0x90, dmaCmd: 0x98,
} as const;
const EDU_ID = 0x010000ed;
/** STATUS bit 7: raise the factorial interrupt when a computation ends. */
const STATUS_IRQ_FACT = 0x80;
/** IRQ_STATUS causes. */
const IRQ_FACT = 0x001;
const IRQ_DMA = 0x100;
/** DMA_CMD bits: start, direction device -> RAM, interrupt when done. */
const DMA_START = 1n;
const DMA_TO_RAM = 2n;
const DMA_IRQ = 4n;
/** The device's own 4 KiB DMA buffer, in its address space. */
const BUFFER = 0x40000n;
/** At most this much per transfer: QEMU 7.2 checks the buffer's bounds off by one and stops the VM on a miss. */
const CHUNK = 2048;
/** edu drives 28 address bits. */
const DMA_LIMIT = 1n << 28n;

export interface EduOptions {
  /** How long an operation may wait for its interrupt when no signal is given (ms). */
  timeoutMs?: number;
}

export class EduDriver implements Disposable {
  /** The last operation queued: edu has one factorial unit, one DMA engine and one interrupt. */
  private tail: Promise<unknown> = Promise.resolve();
  private closed = false;

  private constructor(
    readonly device: VfioDevice,
    readonly bar: VfioRegion,
    private readonly irq: EventFd,
    private readonly timeoutMs: number,
  ) {}

  /** Open the edu at `bdf`, hand it to the iommufd of `ioas` and let it DMA through `ioas`. */
  static open(bdf: string, ioas: Ioas, opts: EduOptions = {}): EduDriver {
    const device = VfioDevice.open(ioas.ctx.binding, bdf);
    try {
      device.bind(ioas.ctx);
      device.attach(ioas);
      const { config } = device;
      if (config.vendor !== EDU.vendor || config.device !== EDU.device) throw new Error(`${bdf} is not an edu`);
      if (config.findCapability(vfio.PCI_CAP_ID_MSI) === null) throw new Error(`${bdf} has no MSI capability`);
      const bar = device.region(0);
      if (bar.read32(REG.id) !== EDU_ID) throw new Error(`${bdf}: unexpected ID register`);
      // Reset: VFIO_DEVICE_RESET where the function has one; edu has none, so put back what we use.
      if (device.info().reset) device.reset();
      bar.write32(REG.irqAck, bar.read32(REG.irqStatus));
      bar.write32(REG.status, STATUS_IRQ_FACT);
      const irq = device.eventfd();
      device.enableIrq(vfio.VFIO_PCI_MSI_IRQ_INDEX, [irq]);
      config.busMaster = true;
      return new EduDriver(device, bar, irq, opts.timeoutMs ?? 10_000);
    } catch (e) {
      device.close();
      throw e;
    }
  }

  /** n! in edu's 32-bit arithmetic, computed by the device; done when it raises its interrupt. */
  factorial(n: number, opts: WaitOptions = {}): Promise<number> {
    return this.exclusive(async () => {
      this.bar.write32(REG.factorial, n);
      await this.interrupt(IRQ_FACT, opts);
      return this.bar.read32(REG.factorial);
    });
  }

  /** Copy `length` bytes from IOVA `from` to IOVA `to` by DMA, through the device's buffer. */
  dma(from: bigint, to: bigint, length: number, opts: WaitOptions = {}): Promise<void> {
    const end = BigInt(length);
    if (!Number.isSafeInteger(length) || length <= 0 || from < 0n || to < 0n || from + end > DMA_LIMIT || to + end > DMA_LIMIT) {
      return Promise.reject(new RangeError(`edu: cannot copy ${length} bytes from 0x${from.toString(16)} to 0x${to.toString(16)} (28-bit IOVAs)`));
    }
    return this.exclusive(async () => {
      for (let done = 0; done < length; done += CHUNK) {
        const n = BigInt(Math.min(CHUNK, length - done));
        await this.transfer(from + BigInt(done), BUFFER, n, 0n, opts);
        await this.transfer(BUFFER, to + BigInt(done), n, DMA_TO_RAM, opts);
      }
    });
  }

  private async transfer(src: bigint, dst: bigint, count: bigint, direction: bigint, opts: WaitOptions): Promise<void> {
    this.bar.write64(REG.dmaSrc, src);
    this.bar.write64(REG.dmaDst, dst);
    this.bar.write64(REG.dmaCount, count);
    this.bar.write64(REG.dmaCmd, DMA_START | direction | DMA_IRQ);
    await this.interrupt(IRQ_DMA, opts);
  }

  /** Wait for the MSI without blocking the event loop, then acknowledge it at the device. */
  private async interrupt(cause: number, opts: WaitOptions): Promise<void> {
    await this.irq.wait({ signal: opts.signal ?? AbortSignal.timeout(this.timeoutMs) });
    const status = this.bar.read32(REG.irqStatus);
    this.bar.write32(REG.irqAck, status);
    if (!(status & cause)) throw new Error(`edu: interrupt for 0x${status.toString(16)}, not 0x${cause.toString(16)}`);
  }

  private exclusive<T>(op: () => Promise<T>): Promise<T> {
    if (this.closed) return Promise.reject(new Error('edu: closed'));
    const run = this.tail.then(op);
    this.tail = run.catch(() => undefined);
    return run;
  }

  /** Quiesce the device and give it back: a pending operation rejects (its eventfd closes). */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.bar.write32(REG.status, 0);
    this.device.config.busMaster = false;
    this.device.disableIrq(vfio.VFIO_PCI_MSI_IRQ_INDEX);
    this.irq.close();
    this.device.close();
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

/** Compute 10! and copy a page by DMA on the first edu (or `bdf`); returns what happened. */
export async function main(bdf?: string): Promise<string> {
  using ctx = Iommufd.open(); // the sim, or the kernel with IOASID_BACKEND=linux
  bdf ??= findPciDevices(ctx.binding, EDU).find((d) => d.vfioCdev !== null)?.bdf;
  if (!bdf) throw new Error('no edu bound to vfio-pci here');
  const ioas = ctx.allocIoas();
  using edu = EduDriver.open(bdf, ioas);
  const fact = await edu.factorial(10);
  if (fact !== 3628800) throw new Error(`edu: 10! = ${fact}`);

  using src = ctx.mmap(4096);
  using dst = ctx.mmap(4096);
  src.bytes.forEach((_, i, b) => (b[i] = i * 7));
  ioas.map(src, { iova: 0x10_0000n, writeable: false });
  ioas.map(dst, { iova: 0x20_0000n });
  await edu.dma(0x10_0000n, 0x20_0000n, 4096);
  if (!src.bytes.every((v, i) => dst.bytes[i] === v)) throw new Error('edu: the copy differs');
  return `${bdf}: 10! = ${fact}; 4096 bytes copied by DMA`;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) console.log(await main(process.argv[2]));
