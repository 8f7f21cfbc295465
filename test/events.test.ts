/**
 * Waiting for events without blocking the event loop: EventFd, FaultQueue and VeventQueue wait
 * through Binding.pollAsync (on linux a poll(2) on a worker thread, on the sim the file's own
 * wake-up). On both tiers: a pending wait lets timers run, an abort or a close ends it and leaves
 * nothing behind (the fd still works, no descriptor or worker is left), and the things that
 * happen — an interrupt from edu (MSI, INTx, a DMA's completion), an I/O page fault, a vEVENT —
 * each resolve a wait that was pending before they happened.
 */
import { readdirSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { beforeEach, describe, expect, it } from 'vitest';
import { EventFd, SimBinding, type Binding } from '../src/index.js';
import { openBinding } from '../src/backends/index.js';
import { EFD_NONBLOCK, POLLIN, POLLNVAL } from '../src/backends/types.js';
import { IOMMU_VEVENTQ_TYPE_SELFTEST, IOMMU_VIOMMU_TYPE_SELFTEST, IOMMU_TEST_IOTLB_DEFAULT, IOMMU_HWPT_DATA_SELFTEST } from '../src/testing.js';
import { BACKEND, iopfSetup, useIommufd, within } from './helpers.js';
import { hwptSelftestData, vdeviceAlloc, viommuAlloc } from './selftest_utils.js';
import { deviceMachine, useEdu } from './drivers/devices.js';
import { EDU_IRQ_DMA } from './drivers/edu.js';

/** How late a 10 ms timer may fire while a wait is pending (TCG in the VM is slow; a blocking wait would hold it for the wait's whole deadline). */
const TIMER_BOUND_MS = 1000;

/** The process's open descriptors (linux: /proc/self/fd, which includes the poller's eventfd while it polls). */
function openFds(b: Binding): number {
  return b instanceof SimBinding ? b.proc.openFds().length : readdirSync('/proc/self/fd').length;
}

/**
 * Resolves once `fn()` holds, looking after each timer turn, for at most 2 s: the linux poller
 * lets go of its eventfd in the callback of its last poll, one worker round trip after a wait ends.
 */
async function eventually(fn: () => boolean): Promise<void> {
  for (const t0 = Date.now(); !fn() && Date.now() - t0 < 2000; ) await new Promise((r) => setTimeout(r, 5));
}

/** A 10 ms timer: how long after it was set it fired (ms), running `then` in its callback. */
function timer10(then: () => void = () => {}): Promise<number> {
  const t0 = performance.now();
  return new Promise((r) => setTimeout(() => {
    then();
    r(performance.now() - t0);
  }, 10));
}

describe(`eventfd waits [${BACKEND}]`, () => {
  let b: Binding;
  let before: number;
  beforeEach(() => {
    b = openBinding(BACKEND);
    before = openFds(b);
  });

  it('a pending wait lets a 10 ms timer fire on time, and the signal the timer sends resolves it with the count', async () => {
    using efd = new EventFd(b);
    const waited = efd.wait(within(10_000));
    expect(await timer10(() => efd.signal(3n))).toBeLessThan(TIMER_BOUND_MS);
    expect(await waited).toBe(3n);
    expect(efd.read()).toBe(0n); // the wait took the count
  });

  it('abort rejects with the signal\'s AbortError; afterwards the eventfd works, and no descriptor is left behind', async () => {
    const efd = new EventFd(b);
    const ac = new AbortController();
    const waited = efd.wait({ signal: ac.signal });
    await timer10();
    ac.abort();
    await expect(waited).rejects.toMatchObject({ name: 'AbortError' });
    await eventually(() => openFds(b) === before + 1);
    expect(openFds(b)).toBe(before + 1); // only the eventfd itself
    const again = efd.wait(within(10_000));
    efd.signal();
    expect(await again).toBe(1n);
    // an aborted signal refuses at once, before anything is registered
    await expect(efd.wait({ signal: AbortSignal.abort() })).rejects.toMatchObject({ name: 'AbortError' });
    efd.close();
    await eventually(() => openFds(b) === before);
    expect(openFds(b)).toBe(before);
  });

  it('a deadline (AbortSignal.timeout) rejects with TimeoutError when nothing fires', async () => {
    using efd = new EventFd(b);
    await expect(efd.wait(within(50))).rejects.toMatchObject({ name: 'TimeoutError' });
  });

  it('close while waiting rejects with EBADF; a for await loop over events() ends instead', async () => {
    const efd = new EventFd(b);
    const waited = efd.wait();
    await timer10();
    efd.close();
    await expect(waited).rejects.toMatchObject({ code: 'EBADF' });

    const other = new EventFd(b);
    const seen: bigint[] = [];
    const loop = (async () => {
      for await (const n of other.events()) seen.push(n);
    })();
    other.signal(2n);
    await eventually(() => seen.length === 1);
    other.close();
    await loop; // ended, not thrown
    expect(seen).toEqual([2n]);
    await eventually(() => openFds(b) === before);
    expect(openFds(b)).toBe(before);
  });

  it('events(): each signal in turn; an abort throws out of the loop', async () => {
    using efd = new EventFd(b);
    const ac = new AbortController();
    const seen: bigint[] = [];
    setTimeout(() => efd.signal(1n), 5);
    await expect((async () => {
      for await (const n of efd.events({ signal: ac.signal })) {
        seen.push(n);
        if (seen.length < 3) setTimeout(() => efd.signal(BigInt(seen.length + 1)), 5);
        else setTimeout(() => ac.abort(), 5);
      }
    })()).rejects.toMatchObject({ name: 'AbortError' });
    expect(seen).toEqual([1n, 2n, 3n]);
  });

  it('pollAsync answers as poll(2) does: POLLNVAL at once for a closed fd, a negative fd never ready (an abort ends it), bad numbers rejected (EBADF, EINVAL)', async () => {
    const fd = b.eventfd(0, EFD_NONBLOCK);
    b.close(fd);
    expect(await b.pollAsync(fd, POLLIN)).toBe(POLLNVAL);
    const ac = new AbortController();
    const never = b.pollAsync(-1, POLLIN, ac.signal);
    await timer10();
    ac.abort();
    await expect(never).rejects.toMatchObject({ name: 'AbortError' });
    await expect(b.pollAsync(2 ** 31, POLLIN)).rejects.toMatchObject({ code: 'EBADF', syscall: 'poll' });
    await expect(b.pollAsync(0, 0x10000)).rejects.toMatchObject({ code: 'EINVAL', syscall: 'poll' });
    await eventually(() => openFds(b) === before);
    expect(openFds(b)).toBe(before);
  });

  it("six pending waits (more than libuv's four pool threads) leave the pool free: file reads complete, then each wait resolves", async () => {
    const efds = Array.from({ length: 6 }, () => new EventFd(b));
    try {
      const waits = efds.map((e) => e.wait(within(10_000)));
      await timer10();
      const reads = Array.from({ length: 6 }, () => readFile('/proc/self/status', 'utf8'));
      expect((await Promise.all(reads)).every((t) => t.includes('Pid:'))).toBe(true);
      efds.forEach((e, i) => e.signal(BigInt(i + 1)));
      expect(await Promise.all(waits)).toEqual([1n, 2n, 3n, 4n, 5n, 6n]);
    } finally {
      for (const e of efds) e.close();
    }
  });
});

const machine = deviceMachine();

describe.skipIf(!machine.soloEdu)(`edu interrupts resolve waits [${BACKEND}]${machine.noSoloReason ? ` (skipped: ${machine.noSoloReason})` : ''}`, () => {
  const e = useEdu(machine.soloEdu!);

  it('MSI: a wait pending before edu raises its interrupt (IRQ_RAISE) resolves with one count', async () => {
    const { dev, edu } = e;
    using efd = dev.eventfd();
    edu.enableIrq('msi', efd);
    const waited = efd.wait(within(10_000));
    await timer10();
    edu.sendIrq(1);
    expect(await waited).toBe(1n);
    edu.ackIrq();
  });

  it("MSI: a DMA's completion interrupt resolves the wait; a 10 ms timer fires on time meanwhile", async () => {
    const { ctx, dev, ioas, edu } = e;
    const DST = 0x20_0000n;
    using buf = ctx.mmap(4096);
    ioas.map(buf, { iova: DST });
    using efd = dev.eventfd();
    edu.enableIrq('msi', efd);
    const waited = efd.wait(within(10_000));
    edu.startToRam(DST, 64);
    expect(await timer10()).toBeLessThan(TIMER_BOUND_MS);
    expect(await waited).toBe(1n);
    expect(edu.irqStatus).toBe(EDU_IRQ_DMA); // the interrupt was the DMA's
    edu.ackIrq();
  });

  it('bus mastering off: an MSI (a bus-master write) is lost, INTx (a wire) still arrives', async () => {
    const { dev, edu } = e;
    using efd = dev.eventfd();
    edu.enableIrq('msi', efd);
    dev.config.busMaster = false;
    edu.sendIrq(1);
    await expect(efd.wait(within(500))).rejects.toMatchObject({ name: 'TimeoutError' });
    edu.ackIrq();
    dev.config.busMaster = true;
    edu.sendIrq(1);
    expect(await efd.wait(within(10_000))).toBe(1n);
    edu.ackIrq();
    edu.disableIrq();
    edu.enableIrq('intx', efd);
    dev.config.busMaster = false;
    edu.sendIrq(1);
    expect(await efd.wait(within(10_000))).toBe(1n);
    dev.config.busMaster = true;
    edu.ackIrq();
  });

  it('INTx: a pending wait resolves; events() gets the next one once acked and unmasked', async () => {
    const { dev, edu } = e;
    using efd = dev.eventfd();
    edu.enableIrq('intx', efd);
    const waited = efd.wait(within(10_000));
    edu.sendIrq(1);
    expect(await waited).toBe(1n);
    const seen: bigint[] = [];
    edu.ackIrq(); // unmasks
    edu.sendIrq(2);
    for await (const n of efd.events(within(10_000))) {
      seen.push(n);
      break;
    }
    expect(seen).toEqual([1n]);
    edu.ackIrq();
  });
});

describe(`fault queue and vEVENTQ waits [${BACKEND}]`, () => {
  const f = useIommufd();

  it('a fault queue wait pending before the device faults resolves with the group; a timer fires meanwhile', async () => {
    const { dev, fq } = iopfSetup(f, 7);
    const waited = fq.wait(within(10_000));
    expect(await timer10(() => f.test.triggerIopf(dev.idevId, 7, { grpid: 4, addr: 0x5000n }))).toBeLessThan(TIMER_BOUND_MS);
    const [g, ...more] = await waited;
    expect(more).toEqual([]);
    expect([g!.pasid, g!.grpid, g!.addr]).toEqual([7, 4, 0x5000n]);
    fq.respond(g!.cookie);
  });

  it('fault queue: abort releases the wait and the queue still delivers; close while waiting rejects with EBADF', async () => {
    const { dev, fq } = iopfSetup(f, 7);
    const ac = new AbortController();
    const waited = fq.wait({ signal: ac.signal });
    ac.abort();
    await expect(waited).rejects.toMatchObject({ name: 'AbortError' });
    f.test.triggerIopf(dev.idevId, 7, { grpid: 1 });
    const [g] = await fq.wait(within(10_000));
    fq.respond(g!.cookie);
    const pending = fq.wait();
    fq.close();
    await expect(pending).rejects.toMatchObject({ code: 'EBADF' });
    const ended: unknown[] = [];
    for await (const batch of fq) ended.push(batch); // a closed queue's iterator ends at once
    expect(ended).toEqual([]);
  });

  it('vEVENTQ: a pending wait resolves with the vIOMMU\'s event (the vDEVICE\'s virt_id); an overflow reads as LOST_EVENTS', async () => {
    const { ctx, test: t } = f;
    const ioas = ctx.allocIoas();
    const dev = t.mockDomain(ioas.id);
    const parent = ctx.allocHwpt({ devId: dev.idevId, ptId: ioas.id, nestParent: true });
    const viommuId = viommuAlloc(ctx, dev.idevId, parent.id, IOMMU_VIOMMU_TYPE_SELFTEST);
    const nested = ctx.allocHwpt({ devId: dev.idevId, ptId: viommuId, data: { type: IOMMU_HWPT_DATA_SELFTEST, bytes: hwptSelftestData(IOMMU_TEST_IOTLB_DEFAULT) } });
    using q = ctx.allocVeventQueue({ viommuId, type: IOMMU_VEVENTQ_TYPE_SELFTEST, depth: 2 });
    const vdev = vdeviceAlloc(ctx, viommuId, dev.idevId, 0x99n);
    t.mockDomainReplace(dev.stdevId, nested.id);
    const virtId = new Uint8Array([0x99, 0, 0, 0]);

    const waited = q.wait(within(10_000));
    expect(await timer10(() => t.triggerVevent(dev.idevId))).toBeLessThan(TIMER_BOUND_MS);
    expect(await waited).toEqual([{ lostEvents: false, sequence: 0, data: virtId }]);
    // three events into a depth-2 queue
    for (let i = 0; i < 3; i++) t.triggerVevent(dev.idevId);
    expect(await q.wait(within(10_000))).toEqual([
      { lostEvents: false, sequence: 1, data: virtId },
      { lostEvents: false, sequence: 2, data: virtId },
      { lostEvents: true, sequence: 3, data: new Uint8Array(0) },
    ]);
    const ac = new AbortController();
    const aborted = q.wait({ signal: ac.signal });
    ac.abort();
    await expect(aborted).rejects.toMatchObject({ name: 'AbortError' });
    t.mockDomainReplace(dev.stdevId, ioas.id);
    ctx.destroy(vdev);
  });
});
