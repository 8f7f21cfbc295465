/**
 * Pin accounting (pages.c iopt_pages_update_pinned): pages are pinned lazily (here by an access
 * object), each page of a mapping once, and charged against RLIMIT_MEMLOCK to the user (default)
 * or the process (RLIMIT_MODE = mm) unless the caller has CAP_IPC_LOCK. Both modes move VmPin.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { MOCK_FLAGS_ACCESS_CREATE_NEEDS_PIN_PAGES } from '../src/testing.js';
import { BACKEND, PAGE_SIZE, expectErrno, hugepageAligned, useIommufd } from './helpers.js';
import { restrictPinning, vmCounters } from './privileges.js';

const PG = PAGE_SIZE;
const LIMIT_PAGES = 16;

describe(`pin accounting [${BACKEND}]`, () => {
  const f = useIommufd();
  let undo: (() => void) | null = null;
  afterEach(() => {
    undo?.();
    undo = null;
  });

  function pinScenario(mode: 'user' | 'mm') {
    if (mode === 'mm') f.ctx.setRlimitMode('mm');
    const big = hugepageAligned(f.ctx, 32 * 4096);
    const ioas = f.ctx.allocIoas();
    const base = 0x100000n;
    undo = restrictPinning(f.ctx.binding, { ipcLock: false, memlockBytes: LIMIT_PAGES * 4096 });
    // Mapping with nothing attached pins and charges nothing.
    ioas.mapUser(big.addr, 32n * PG, { iova: base });
    const before = vmCounters(f.ctx.binding);
    const fd = f.test.createAccess(ioas.id, MOCK_FLAGS_ACCESS_CREATE_NEEDS_PIN_PAGES);
    const first = f.test.accessPages(fd, base, BigInt(LIMIT_PAGES) * PG);
    expect(vmCounters(f.ctx.binding).pinned - before.pinned).toBe(LIMIT_PAGES);
    if (mode === 'mm') expect(vmCounters(f.ctx.binding).locked - before.locked).toBe(LIMIT_PAGES);
    // One page over the limit: ENOMEM, and nothing more is pinned or charged.
    expectErrno(() => f.test.accessPages(fd, base + BigInt(LIMIT_PAGES) * PG, PG), 'ENOMEM');
    f.test.checkRefs(big.addr + BigInt(LIMIT_PAGES) * PG, PG, 0);
    expect(vmCounters(f.ctx.binding).pinned - before.pinned).toBe(LIMIT_PAGES);
    // Pinning the same pages again costs nothing: each page of a mapping is pinned once.
    const again = f.test.accessPages(fd, base, BigInt(LIMIT_PAGES) * PG);
    f.test.checkRefs(big.addr, BigInt(LIMIT_PAGES) * PG, 1);
    f.test.destroyAccessPages(fd, again);
    // Releasing makes room again.
    f.test.destroyAccessPages(fd, first);
    expect(vmCounters(f.ctx.binding).pinned).toBe(before.pinned);
    const other = f.test.accessPages(fd, base + BigInt(LIMIT_PAGES) * PG, BigInt(LIMIT_PAGES) * PG);
    f.test.destroyAccessPages(fd, other);
    f.test.closeAccess(fd);
    ioas.unmapAll();
    big.close();
  }

  it('per-user accounting (default): ENOMEM past RLIMIT_MEMLOCK, each page charged once', () => {
    pinScenario('user');
  });

  it('per-process accounting (RLIMIT_MODE=mm): the same limit on the mm, VmLck moves too', () => {
    pinScenario('mm');
  });

  it('CAP_IPC_LOCK exempts from the limit', () => {
    const ioas = f.ctx.allocIoas();
    const big = hugepageAligned(f.ctx, 32 * 4096);
    undo = restrictPinning(f.ctx.binding, { ipcLock: true, memlockBytes: 4 * 4096 });
    ioas.mapUser(big.addr, 32n * PG, { iova: 0x100000n });
    const fd = f.test.createAccess(ioas.id, MOCK_FLAGS_ACCESS_CREATE_NEEDS_PIN_PAGES);
    const id = f.test.accessPages(fd, 0x100000n, 32n * PG);
    f.test.destroyAccessPages(fd, id);
    f.test.closeAccess(fd);
    ioas.unmapAll();
    big.close();
  });

  it('IOAS_COPY shares the pages: pinning through the copy is not charged again', () => {
    const big = hugepageAligned(f.ctx, LIMIT_PAGES * 4096);
    const a = f.ctx.allocIoas();
    const b = f.ctx.allocIoas();
    undo = restrictPinning(f.ctx.binding, { ipcLock: false, memlockBytes: LIMIT_PAGES * 4096 });
    a.mapUser(big.addr, BigInt(LIMIT_PAGES) * PG, { iova: 0x100000n });
    b.copyFrom(a, 0x100000n, BigInt(LIMIT_PAGES) * PG, { iova: 0x200000n });
    const fa = f.test.createAccess(a.id, MOCK_FLAGS_ACCESS_CREATE_NEEDS_PIN_PAGES);
    const fb = f.test.createAccess(b.id, MOCK_FLAGS_ACCESS_CREATE_NEEDS_PIN_PAGES);
    const pa = f.test.accessPages(fa, 0x100000n, BigInt(LIMIT_PAGES) * PG);
    const pb = f.test.accessPages(fb, 0x200000n, BigInt(LIMIT_PAGES) * PG); // at the limit already
    f.test.checkRefs(big.addr, BigInt(LIMIT_PAGES) * PG, 1);
    f.test.destroyAccessPages(fb, pb);
    f.test.destroyAccessPages(fa, pa);
    f.test.closeAccess(fa);
    f.test.closeAccess(fb);
    big.close();
  });
});
