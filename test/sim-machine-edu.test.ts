/**
 * The sim's model of QEMU's edu device: its register file (values and access-size behaviour as
 * the VM's edu showed them, test/sim-machine.vm-probe.txt, and QEMU's hw/misc/edu.c) and its DMA
 * through an IOMMU unit and a toy domain: bytes move only through valid translations, faults are
 * logged and touch nothing, no DMA at all without bus mastering. Sim-only: the backend-agnostic edu
 * tests drive the same model through vfio on both backends.
 */
import { describe, expect, it } from 'vitest';
import { Edu, EDU_REG, FACT_STEPS_PER_ACCESS } from '../src/backends/sim/hw/edu.js';
import { IommuUnit } from '../src/backends/sim/hw/iommu.js';
import { PCI_COMMAND, PCI_COMMAND_MASTER, PCI_COMMAND_MEMORY, PCI_MSI_FLAGS, PCI_MSI_FLAGS_ENABLE, type IrqSink } from '../src/backends/sim/hw/pci_function.js';
import { vtdCaps, vtdRegisters } from '../src/backends/sim/hw/vtd.js';
import { BACKEND } from './helpers.js';
import { FlatMap } from './sim-machine-toys.js';

const SKIP = BACKEND === 'linux';
const SIM_ONLY = SKIP ? ' (skipped on linux: a unit test of the sim machine model)' : '';
const RID = 0x08;

function rig(): { edu: Edu; unit: IommuUnit; dom: FlatMap; mem: Uint8Array; irqs: string[] } {
  const edu = new Edu();
  const unit = new IommuUnit(vtdCaps(vtdRegisters()), 'dmar0');
  const dom = new FlatMap();
  const mem = new Uint8Array(4 * 4096);
  dom.map(0x10_0000n, mem, 0, 2 * 4096);
  dom.map(0x20_0000n, mem, 2 * 4096, 4096, false);
  unit.setTranslation(RID, null, dom);
  edu.dmaPort = unit.port(RID);
  const irqs: string[] = [];
  const sink: IrqSink = { intx: (a) => irqs.push(a ? 'intx+' : 'intx-'), msi: (v) => irqs.push(`msi${v}`) };
  edu.irqSink = sink;
  edu.cfgWrite(PCI_COMMAND, 2, PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER);
  return { edu, unit, dom, mem, irqs };
}

const r32 = (e: Edu, a: number): number => Number(e.mmioRead(0, a, 4));
const w32 = (e: Edu, a: number, v: number): void => e.mmioWrite(0, a, 4, BigInt(v));
const w64 = (e: Edu, a: number, v: bigint): void => e.mmioWrite(0, a, 8, v);

function dma(e: Edu, src: bigint, dst: bigint, cnt: number, cmd: bigint): void {
  w64(e, EDU_REG.DMA_SRC, src);
  w64(e, EDU_REG.DMA_DST, dst);
  w64(e, EDU_REG.DMA_CNT, BigInt(cnt));
  w64(e, EDU_REG.DMA_CMD, cmd);
}

describe(`edu register file${SIM_ONLY}`, () => {
  it.skipIf(SKIP)('identification, liveness (reads back the inverse), factorial, status, unknown offsets', () => {
    const { edu } = rig();
    expect(r32(edu, EDU_REG.ID)).toBe(0x010000ed);
    w32(edu, EDU_REG.LIVENESS, 0x12345678);
    expect(r32(edu, EDU_REG.LIVENESS)).toBe(0xedcba987);
    w32(edu, EDU_REG.FACT, 5);
    expect(r32(edu, EDU_REG.FACT)).toBe(120);
    expect(r32(edu, EDU_REG.STATUS)).toBe(0);
    w32(edu, EDU_REG.FACT, 13);
    expect(r32(edu, EDU_REG.FACT)).toBe(1932053504); // 13! mod 2^32, as QEMU's uint32_t loop
    expect(r32(edu, 0x100)).toBe(0xffffffff);
    expect(r32(edu, 0x84)).toBe(0xffffffff);
    expect(r32(edu, 0x40000)).toBe(0xffffffff); // the DMA buffer is not MMIO-visible
  });

  it.skipIf(SKIP)('QEMU access sizes: below 4 bytes reads 0 and writes are dropped; 8-byte below 0x80 reads all ones', () => {
    const { edu } = rig();
    expect(edu.mmioRead(0, 0, 2)).toBe(0n);
    expect(edu.mmioRead(0, 0, 1)).toBe(0n);
    expect(edu.mmioRead(0, 0, 8)).toBe(0xffff_ffff_ffff_ffffn);
    w32(edu, EDU_REG.LIVENESS, 0x12345678);
    edu.mmioWrite(0, EDU_REG.LIVENESS, 2, 1n);
    expect(r32(edu, EDU_REG.LIVENESS)).toBe(0xedcba987);
    w32(edu, EDU_REG.DMA_SRC, 0x11223344);
    expect(edu.mmioRead(0, EDU_REG.DMA_SRC, 8)).toBe(0x11223344n);
    w64(edu, EDU_REG.DMA_SRC, 0x1122334455667788n);
    expect(edu.mmioRead(0, EDU_REG.DMA_SRC, 8)).toBe(0x1122334455667788n);
    edu.mmioWrite(0, EDU_REG.DMA_SRC, 2, 0x0201n);
    expect(edu.mmioRead(0, EDU_REG.DMA_SRC, 8)).toBe(0x1122334455667788n);
  });

  it.skipIf(SKIP)('raise/ack: INTx level follows irq status; with MSI enabled each raise is a message', () => {
    const { edu, irqs } = rig();
    w32(edu, EDU_REG.IRQ_RAISE, 1);
    expect(r32(edu, EDU_REG.IRQ_STATUS)).toBe(1);
    w32(edu, EDU_REG.IRQ_RAISE, 2);
    w32(edu, EDU_REG.IRQ_ACK, 1);
    w32(edu, EDU_REG.IRQ_ACK, 2);
    expect(irqs).toEqual(['intx+', 'intx-']);
    edu.cfgWrite(edu.msiCap + PCI_MSI_FLAGS, 2, PCI_MSI_FLAGS_ENABLE);
    w32(edu, EDU_REG.IRQ_RAISE, 1);
    w32(edu, EDU_REG.IRQ_RAISE, 1);
    expect(irqs).toEqual(['intx+', 'intx-', 'msi0', 'msi0']);
    // Factorial with the IRQFACT status bit raises FACT_IRQ (0x1) when done.
    w32(edu, EDU_REG.IRQ_ACK, 0xffffffff);
    w32(edu, EDU_REG.STATUS, 0x80);
    w32(edu, EDU_REG.FACT, 3);
    expect(r32(edu, EDU_REG.IRQ_STATUS)).toBe(1);
    expect(r32(edu, EDU_REG.STATUS)).toBe(0x80);
  });
});

describe(`edu factorial unit: completion through the status bit${SIM_ONLY}`, () => {
  it.skipIf(SKIP)('a huge factorial: the write returns at once; STATUS shows computing and FACT the value until done; each access is bounded', () => {
    const { edu } = rig();
    const t0 = performance.now();
    w32(edu, EDU_REG.FACT, 0xffffffff);
    expect(edu.status & 1).toBe(1);
    let busy = 0;
    while (r32(edu, EDU_REG.STATUS) & 1) {
      expect(r32(edu, EDU_REG.FACT)).toBe(0xffffffff); // QEMU keeps the value until the thread stores the result
      busy++;
    }
    expect(busy).toBeGreaterThan(0);
    expect(busy).toBeLessThanOrEqual(Math.ceil(34 / FACT_STEPS_PER_ACCESS)); // 34 factors make 2^32 divide the product
    expect(r32(edu, EDU_REG.FACT)).toBe(0);
    expect(performance.now() - t0).toBeLessThan(100);
    // A write while computing is ignored, as QEMU's is.
    w32(edu, EDU_REG.FACT, 40);
    w32(edu, EDU_REG.FACT, 5);
    while (r32(edu, EDU_REG.STATUS) & 1);
    expect(r32(edu, EDU_REG.FACT)).toBe(0);
  });

  it.skipIf(SKIP)('with no register access the computation finishes on the next event-loop turn and raises FACT_IRQ', async () => {
    const { edu, irqs } = rig();
    w32(edu, EDU_REG.STATUS, 0x80);
    w32(edu, EDU_REG.FACT, 100);
    expect(edu.status).toBe(0x81);
    expect(irqs).toEqual([]);
    await new Promise((r) => setImmediate(r));
    expect(edu.status).toBe(0x80);
    expect(edu.fact).toBe(0);
    expect(irqs).toEqual(['intx+']);
  });
});

describe(`edu DMA through the IOMMU${SIM_ONLY}`, () => {
  it.skipIf(SKIP)('RAM -> device -> RAM round trip; the start bit clears; the DMA interrupt is raised when asked', () => {
    const { edu, mem, irqs, unit } = rig();
    mem.set([1, 2, 3, 4, 5, 6, 7, 8], 0x10);
    dma(edu, 0x10_0010n, 0x40000n, 8, 1n);
    expect(edu.mmioRead(0, EDU_REG.DMA_CMD, 8)).toBe(0n);
    dma(edu, 0x40000n, 0x10_1000n, 8, 1n | 2n | 4n);
    expect([...mem.subarray(0x1000, 0x1008)]).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
    expect(edu.mmioRead(0, EDU_REG.DMA_CMD, 8)).toBe(6n);
    expect(r32(edu, EDU_REG.IRQ_STATUS)).toBe(0x100);
    expect(irqs).toEqual(['intx+']);
    expect(unit.faults).toEqual([]);
  });

  it.skipIf(SKIP)('DMA to an unmapped IOVA: a not-present fault is logged, no byte of memory changes', () => {
    const { edu, mem, unit } = rig();
    edu.buffer.fill(0xee);
    dma(edu, 0x40000n, 0x30_0000n, 16, 3n);
    expect(edu.lastDma).toMatchObject({ reason: 'not-present', iova: 0x30_0000n, write: true, rid: RID });
    expect(unit.faults).toHaveLength(1);
    expect(mem.every((b) => b === 0)).toBe(true);
    // Straddling the end of a mapping: all or nothing.
    dma(edu, 0x40000n, 0x10_1ff8n, 16, 3n);
    expect(edu.lastDma).toMatchObject({ reason: 'not-present', iova: 0x10_2000n });
    expect(mem.every((b) => b === 0)).toBe(true);
    // A read fault gives the device zeros (QEMU's unassigned read), never the process's bytes; the rest stays.
    mem.fill(0x77, 0, 4096);
    dma(edu, 0x30_0000n, 0x40000n, 16, 1n);
    expect(edu.buffer.subarray(0, 16).every((b) => b === 0)).toBe(true);
    expect(edu.buffer.subarray(16).every((b) => b === 0xee)).toBe(true);
  });

  it.skipIf(SKIP)('writes to a read-only IOVA fault "permission"; with no domain every DMA is "blocked"', () => {
    const { edu, mem, unit } = rig();
    dma(edu, 0x40000n, 0x20_0000n, 4, 3n);
    expect(edu.lastDma).toMatchObject({ reason: 'permission' });
    unit.setTranslation(RID, null, null);
    dma(edu, 0x10_0000n, 0x40000n, 4, 1n);
    expect(edu.lastDma).toMatchObject({ reason: 'blocked' });
    expect(mem.every((b) => b === 0)).toBe(true);
  });

  it.skipIf(SKIP)('without bus mastering no request reaches the IOMMU: nothing moves, nothing is logged', () => {
    const { edu, mem, unit } = rig();
    edu.cfgWrite(PCI_COMMAND, 2, PCI_COMMAND_MEMORY);
    edu.buffer.fill(0x55);
    dma(edu, 0x40000n, 0x10_0000n, 16, 3n);
    expect(edu.lastDma).toBe('no-bus-master');
    expect(edu.masterAborts).toBe(1);
    expect(unit.faults).toEqual([]);
    expect(mem.every((b) => b === 0)).toBe(true);
    expect(edu.mmioRead(0, EDU_REG.DMA_CMD, 8)).toBe(2n);
    dma(edu, 0x10_0000n, 0x40000n, 16, 1n);
    expect(edu.buffer.subarray(0, 16).every((b) => b === 0)).toBe(true);
    expect(edu.buffer[16]).toBe(0x55);
  });

  it.skipIf(SKIP)('28-bit DMA mask clamps addresses; a device range outside the 4 KiB buffer moves nothing', () => {
    const { edu, mem } = rig();
    mem[0] = 0x42;
    dma(edu, 0x1_0010_0000n, 0x40000n, 1, 1n);
    expect(edu.buffer[0]).toBe(0x42);
    expect(edu.guestErrors[0]).toMatch(/clamping DMA 0x100100000 to 0x100000/);
    dma(edu, 0x10_0000n, 0x40800n, 0x801, 1n);
    expect(edu.lastDma).toBe('out-of-range');
    expect(edu.buffer.subarray(0x800).every((b) => b === 0)).toBe(true);
  });
});
