/**
 * Shared fixture for the conformance tests: every test runs on the backend named by
 * IOASID_BACKEND (sim by default; the real-kernel tier runs them with `linux` inside the VM).
 * Expected values are what the Linux kernel does (ported from its selftests), never our output.
 */
import { afterEach, beforeEach, expect } from 'vitest';
import { Iommufd, IommuError, containerUapi as V, type ErrnoCode, type Hwpt, type Ioas, type UserMemory } from '../src/index.js';
import { defaultBackendName } from '../src/backends/index.js';
import type { BackendName } from '../src/backends/types.js';
import { IOMMU_HWPT_DATA_SELFTEST, IommufdTest, MOCK_FLAGS_DEVICE_PASID, MOCK_IOMMUPT_HUGE } from '../src/testing.js';

/** The tier's backend: IOASID_BACKEND, else the sim; a misspelt name fails every suite instead of running the sim. */
export const BACKEND: BackendName = defaultBackendName();
export const PAGE_SIZE = 4096n;
export const P = 4096;
export const BUFFER_SIZE = 16 * P;
export const U64_MAX = 0xffff_ffff_ffff_ffffn;

export function expectErrno(fn: () => unknown, code: ErrnoCode): IommuError {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(IommuError);
    expect((e as IommuError).code).toBe(code);
    return e as IommuError;
  }
  throw new Error(`expected ${code}, but the call succeeded`);
}

/** A wait's deadline: the options of an event wait whose signal aborts with a TimeoutError after `ms`. */
export function within(ms: number): { signal: AbortSignal } {
  return { signal: AbortSignal.timeout(ms) };
}

/** The errno a call fails with, or 0 when it succeeds. */
export function errnoOf(fn: () => unknown): number {
  try {
    fn();
    return 0;
  } catch (e) {
    if (e instanceof IommuError) return e.errno;
    throw e;
  }
}

export interface Fixture {
  ctx: Iommufd;
  test: IommufdTest;
  /** 16 pages of shared anonymous memory, like the selftests' `buffer`. */
  buffer: UserMemory;
}

/**
 * The selftests' harness: a fresh iommufd per test; on teardown close it and check through a new
 * iommufd that no page of `buffer` is still pinned (IOMMU_TEST_OP_MD_CHECK_REFS).
 */
export function useIommufd(): Fixture {
  const f = {} as Fixture;
  beforeEach(() => {
    f.ctx = Iommufd.open({ backend: BACKEND });
    f.test = new IommufdTest(f.ctx);
    f.buffer = hugepageAligned(f.ctx, BUFFER_SIZE);
  });
  afterEach(() => {
    const binding = f.ctx.binding;
    f.ctx.close();
    const again = new Iommufd(binding);
    try {
      new IommufdTest(again).checkRefs(f.buffer.addr, BigInt(BUFFER_SIZE), 0);
    } finally {
      again.close();
      f.buffer.close();
    }
  });
  return f;
}

/**
 * A mock device whose PASID `pasid` is attached to an IOPF-capable nested HWPT, with the fault
 * queue its page requests land in (the RID goes on a PASID-compatible HWPT first: a RID on a
 * non-compatible domain forbids PASID attaches).
 */
export function iopfSetup(f: Fixture, pasid: number) {
  const { ctx, test: t } = f;
  const ioas = ctx.allocIoas();
  const dev = t.mockDomainFlags(ioas.id, MOCK_FLAGS_DEVICE_PASID);
  const s2 = ctx.allocHwpt({ devId: dev.idevId, ptId: ioas.id, pasid: true });
  t.mockDomainReplace(dev.stdevId, s2.id);
  const parent = ctx.allocHwpt({ devId: dev.idevId, ptId: ioas.id, nestParent: true });
  const fq = ctx.allocFaultQueue();
  const data = { type: IOMMU_HWPT_DATA_SELFTEST, bytes: new Uint8Array(8) };
  const iopf = ctx.allocHwpt({ devId: dev.idevId, ptId: parent.id, pasid: true, faultId: fq.id, data });
  t.pasidAttach(dev.stdevId, pasid, iopf.id);
  return { ioas, dev, parent, fq, iopf };
}

export const HUGEPAGE_SIZE = 2 * 1024 * 1024;

/**
 * MAP_SHARED|MAP_ANONYMOUS memory at a HUGEPAGE_SIZE-aligned address, as the selftests' global
 * `buffer` is: automatic IOVAs take their alignment from the source address, so the expected
 * values of area_auto_iova and reserved_overflow depend on it.
 */
export function hugepageAligned(ctx: Iommufd, size: number): UserMemory {
  const probe = ctx.mmap(size + HUGEPAGE_SIZE);
  const aligned = (probe.addr + BigInt(HUGEPAGE_SIZE) - 1n) & ~(BigInt(HUGEPAGE_SIZE) - 1n);
  probe.close();
  return ctx.mmap(size, { fixedAddress: aligned });
}

/** A raw ioctl on the fixture's iommufd with arbitrary bytes (for size/layout rules). */
export function rawIoctl(ctx: Iommufd, request: number, bytes: Uint8Array | null): number {
  return ctx.binding.ioctl(ctx.fd, request, bytes);
}

/** Run the `ioasid` command in this process (src/cli/main.ts): exit status, stdout and stderr. */
export async function ioasid(...args: string[]): Promise<{ code: number; out: string; err: string }> {
  const { main } = await import('../src/cli/main.js');
  const out: string[] = [];
  const err: string[] = [];
  const code = await main(args, { out: (l) => out.push(l), err: (l) => err.push(l) });
  return { code, out: out.join('\n'), err: err.join('\n') };
}

/** struct vfio_iommu_type1_dma_map's bytes, any field as given. */
export function mapDmaBytes(argsz: number, flags: number, vaddr: bigint, iova: bigint, size: bigint): Uint8Array {
  const b = new Uint8Array(V.vfio_iommu_type1_dma_map.size);
  const d = new DataView(b.buffer);
  d.setUint32(0, argsz, true);
  d.setUint32(4, flags, true);
  d.setBigUint64(8, vaddr, true);
  d.setBigUint64(16, iova, true);
  d.setBigUint64(24, size, true);
  return b;
}

/** struct vfio_iommu_type1_dma_unmap's bytes; the kernel writes the bytes unmapped back at 16. */
export function unmapDmaBytes(argsz: number, flags: number, iova: bigint, size: bigint): Uint8Array {
  const b = new Uint8Array(V.vfio_iommu_type1_dma_unmap.size);
  const d = new DataView(b.buffer);
  d.setUint32(0, argsz, true);
  d.setUint32(4, flags, true);
  d.setBigUint64(8, iova, true);
  d.setBigUint64(16, size, true);
  return b;
}

// ---- pinning over memory that cannot be pinned ------------------------------------------------

/** A user address with nothing mapped at it: pinning from it fails on the first page (EFAULT). */
export function unmappedAddress(ctx: Iommufd): bigint {
  const m = ctx.mmap(P);
  m.close();
  return m.addr;
}

/**
 * How many bytes the process's peak RSS rose while `fn` ran. Kernel-side work does not show; a
 * sim that kept per-page bookkeeping for a whole 2^38-byte range would (2^26 pages).
 */
export function peakRssGrowth(fn: () => void): number {
  const before = process.resourceUsage().maxRSS;
  fn();
  return (process.resourceUsage().maxRSS - before) * 1024;
}

/**
 * A paging HWPT of the mock IOMMU's MOCK_IOMMUPT_HUGE format (PAGE_SIZE and 1 MiB pages, aperture
 * [0, 2^38): a 2^38-byte area fits at IOVA 0) filling `ioas`; its mock device is attached to an
 * IOAS of its own. Returns the HWPT and the device's selftest object id.
 */
export function hugeMockHwpt(f: Fixture, ioas: Ioas): { hwpt: Hwpt; stdevId: number } {
  const dev = f.test.mockDomain(f.ctx.allocIoas().id);
  const bytes = new Uint8Array(8);
  bytes[4] = MOCK_IOMMUPT_HUGE; // struct iommu_hwpt_selftest { iotlb; pagetable_type; }
  const hwpt = f.ctx.allocHwpt({ devId: dev.idevId, ptId: ioas.id, data: { type: IOMMU_HWPT_DATA_SELFTEST, bytes } });
  return { hwpt, stdevId: dev.stdevId };
}
