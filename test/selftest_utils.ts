/**
 * The helpers of tools/testing/selftests/iommu/iommufd_utils.h that the typed API does not cover
 * one to one: raw HWPT_ALLOC / HWPT_INVALIDATE / GET_HW_INFO with the selftest's own assertions,
 * fault queues and IOPF triggering, raw mmap with arbitrary flags, and the hugetlb probe. Each is
 * named after the C helper it ports.
 */
import { readFileSync } from 'node:fs';
import { expect } from 'vitest';
import { UserMemory, type Ioas, type Iommufd } from '../src/index.js';
import { MAP_ANONYMOUS, MAP_HUGETLB, MAP_SHARED, PROT_READ, PROT_WRITE } from '../src/backends/types.js';
import { IOCTLS } from '../src/ioasid/uapi.js';
import {
  IOMMU_HW_INFO_SELFTEST_REGVAL, IOMMU_HW_INFO_TYPE_SELFTEST, IOMMU_TEST_DEV_CACHE_DEFAULT, IommufdTest, MOCK_DEV_CACHE_NUM,
} from '../src/testing.js';
import { BACKEND } from './helpers.js';

export { MAP_HUGETLB, IOMMU_TEST_DEV_CACHE_DEFAULT };
export const PROT_RW = PROT_READ | PROT_WRITE;
export const MAP_SHARED_ANON = MAP_SHARED | MAP_ANONYMOUS;

/** iommufd_test.h */
export const IOMMU_HWPT_DATA_NONE = 0;
export const IOMMU_HW_INFO_TYPE_DEFAULT = 0;
/** sizeof(struct iommu_test_hw_info) { flags; test_reg; } */
export const TEST_HW_INFO_SIZE = 8;
/** sizeof(struct iommu_hwpt_selftest) { iotlb; pagetable_type; } */
export const HWPT_SELFTEST_SIZE = 8;
/** sizeof(struct iommu_hwpt_invalidate_selftest) { flags; iotlb_id; } */
export const INV_SELFTEST_SIZE = 8;

/** test_ioctl_ioas_alloc: IOMMU_IOAS_ALLOC, asserting the new id is not 0. */
export function ioasAlloc(ctx: Iommufd): Ioas {
  const ioas = ctx.allocIoas();
  expect(ioas.id).not.toBe(0);
  return ioas;
}

/** The selftest module's default temporary memory limit (test_ioctl_set_default_memory_limit). */
export const DEFAULT_MEMORY_LIMIT = 65536;

/** test_ioctl_set_default_memory_limit: the limit is the module's, shared by every iommufd. */
export function setDefaultMemoryLimit(t: IommufdTest): void {
  t.setTempMemoryLimit(DEFAULT_MEMORY_LIMIT);
}

/** test_cmd_dev_check_cache_all */
export function devCheckCacheAll(t: IommufdTest, idevId: number, expected: number): void {
  for (let c = 0; c < MOCK_DEV_CACHE_NUM; c++) t.checkDevCache(idevId, c, expected);
}

/** User memory holding `bytes` (a page, zero past them), for commands that take a user pointer. */
function userCopy(ctx: Iommufd, bytes: Uint8Array): UserMemory {
  const mem = ctx.mmap(Math.max(4096, Math.ceil(bytes.length / 4096) * 4096));
  mem.bytes.set(bytes);
  return mem;
}

/**
 * _test_cmd_hwpt_alloc: `data` null passes a NULL data_uptr (with whatever `dataLen` says); bytes
 * are copied into a user page for the call; user memory is passed as it is (no syscall but the ioctl).
 * Returns out_hwpt_id.
 */
export function hwptAlloc(
  ctx: Iommufd, devId: number, ptId: number, ftId: number, flags: number, dataType: number,
  data: Uint8Array | UserMemory | null, dataLen: number,
): number {
  const mem = data instanceof Uint8Array ? userCopy(ctx, data) : null;
  const uptr = mem ? mem.addr : data instanceof UserMemory ? data.addr : 0n;
  try {
    const c = ctx.cmd(IOCTLS.HWPT_ALLOC).u32('flags', flags).u32('dev_id', devId).u32('pt_id', ptId)
      .u32('data_type', dataType).u32('data_len', dataLen).u64('data_uptr', uptr).u32('fault_id', ftId);
    ctx.ioctl(c);
    return c.get32('out_hwpt_id');
  } finally {
    mem?.close();
  }
}

/** _test_cmd_viommu_alloc (flags 0): `data` null passes a NULL data_uptr. Returns out_viommu_id. */
export function viommuAlloc(ctx: Iommufd, devId: number, hwptId: number, type: number, data: { uptr: bigint; len: number } | null = null): number {
  const c = ctx.cmd(IOCTLS.VIOMMU_ALLOC).u32('dev_id', devId).u32('hwpt_id', hwptId).u32('type', type);
  if (data) c.u64('data_uptr', data.uptr).u32('data_len', data.len);
  ctx.ioctl(c);
  return c.get32('out_viommu_id');
}

/** _test_cmd_vdevice_alloc. Returns out_vdevice_id. */
export function vdeviceAlloc(ctx: Iommufd, viommuId: number, devId: number, virtId: bigint): number {
  const c = ctx.cmd(IOCTLS.VDEVICE_ALLOC).u32('viommu_id', viommuId).u32('dev_id', devId).u64('virt_id', virtId);
  ctx.ioctl(c);
  return c.get32('out_vdevice_id');
}

/** _test_cmd_hw_queue_alloc. Returns out_hw_queue_id. */
export function hwQueueAlloc(ctx: Iommufd, viommuId: number, type: number, idx: number, baseAddr: bigint, length: bigint): number {
  const c = ctx.cmd(IOCTLS.HW_QUEUE_ALLOC).u32('viommu_id', viommuId).u32('type', type).u32('index', idx)
    .u64('nesting_parent_iova', baseAddr).u64('length', length);
  ctx.ioctl(c);
  return c.get32('out_hw_queue_id');
}

/** _test_cmd_veventq_alloc. Returns [out_veventq_id, out_veventq_fd]. */
export function veventqAlloc(ctx: Iommufd, viommuId: number, type: number, depth: number): [number, number] {
  const c = ctx.cmd(IOCTLS.VEVENTQ_ALLOC).u32('viommu_id', viommuId).u32('type', type).u32('veventq_depth', depth);
  ctx.ioctl(c);
  return [c.get32('out_veventq_id'), c.get32('out_veventq_fd')];
}

/** _test_cmd_hwpt_invalidate: entry_num goes in through `nreqs.n` and comes back there, error or not. */
export function hwptInvalidate(
  ctx: Iommufd, hwptId: number, reqs: Uint8Array | null, dataType: number, entryLen: number, nreqs: { n: number },
): void {
  const mem = reqs ? userCopy(ctx, reqs) : null;
  const c = ctx.cmd(IOCTLS.HWPT_INVALIDATE).u32('hwpt_id', hwptId).u64('data_uptr', mem?.addr ?? 0n)
    .u32('data_type', dataType).u32('entry_len', entryLen).u32('entry_num', nreqs.n);
  try {
    ctx.ioctl(c);
  } finally {
    nreqs.n = c.get32('entry_num');
    mem?.close();
  }
}

/** struct iommu_hwpt_invalidate_selftest[] */
export function invReqs(...reqs: { flags: number; iotlbId: number }[]): Uint8Array {
  const b = new Uint8Array(Math.max(2, reqs.length) * INV_SELFTEST_SIZE);
  const dv = new DataView(b.buffer);
  reqs.forEach((r, i) => {
    dv.setUint32(i * 8, r.flags >>> 0, true);
    dv.setUint32(i * 8 + 4, r.iotlbId >>> 0, true);
  });
  return b;
}

/** struct iommu_hwpt_selftest { .iotlb = iotlb } */
export function hwptSelftestData(iotlb: number): Uint8Array {
  const b = new Uint8Array(HWPT_SELFTEST_SIZE);
  new DataView(b.buffer).setUint32(0, iotlb, true);
  return b;
}

/**
 * _test_cmd_get_hw_info with its assertions: the type is SELFTEST, data_len is the kernel's
 * sizeof(struct iommu_test_hw_info), a larger user buffer's tail is zeroed, test_reg and flags
 * hold their values within data_len. `data` null passes NULL.
 */
export function getHwInfo(
  ctx: Iommufd, devId: number, dataType: number, data: UserMemory | null, dataLen: number,
): { capabilities: bigint; maxPasid: number } {
  const c = ctx.cmd(IOCTLS.GET_HW_INFO).u32('dev_id', devId).u32('data_len', dataLen)
    .u32('out_data_type', dataType).u64('data_uptr', data?.addr ?? 0n);
  if (dataType !== IOMMU_HW_INFO_TYPE_DEFAULT) c.u32('flags', 1 /* IOMMU_HW_INFO_FLAG_INPUT_TYPE */);
  ctx.ioctl(c);
  expect(c.get32('out_data_type')).toBe(IOMMU_HW_INFO_TYPE_SELFTEST);
  const kernelLen = c.get32('data_len');
  expect(kernelLen).toBe(TEST_HW_INFO_SIZE);
  if (data) {
    const b = data.bytes;
    if (dataLen > kernelLen) expect(b.subarray(kernelLen, dataLen).every((x) => x === 0)).toBe(true);
    const dv = new DataView(b.buffer, b.byteOffset, 8);
    if (dataLen >= 8) expect(dv.getUint32(4, true)).toBe(IOMMU_HW_INFO_SELFTEST_REGVAL);
    if (dataLen >= 4) expect(dv.getUint32(0, true)).toBe(0);
  }
  return { capabilities: c.get64('out_capabilities'), maxPasid: c.dv.getUint8(c.off.out_max_pasid_log2!) };
}

/** _test_ioctl_fault_alloc (asserts both ids non-zero) */
export function faultAlloc(ctx: Iommufd): { faultId: number; faultFd: number } {
  const c = ctx.cmd(IOCTLS.FAULT_QUEUE_ALLOC);
  ctx.ioctl(c);
  const out = { faultId: c.get32('out_fault_id'), faultFd: c.get32('out_fault_fd') };
  expect(out.faultId).not.toBe(0);
  expect(out.faultFd).not.toBe(0);
  return out;
}

/**
 * _test_cmd_trigger_iopf: IOMMU_TEST_OP_TRIGGER_IOPF (grpid 2, perm R|W, addr 0xdeadbeaf), read
 * the fault from the queue, answer IOMMUFD_PAGE_RESP_SUCCESS with its cookie.
 */
export function triggerIopf(ctx: Iommufd, devId: number, pasid: number, faultFd: number): void {
  new IommufdTest(ctx).triggerIopf(devId, pasid, { grpid: 0x2, perm: 0x3 /* IOMMU_PGFAULT_PERM_READ | _WRITE */, addr: 0xdeadbeafn });
  const fault = new Uint8Array(40); // struct iommu_hwpt_pgfault
  expect(ctx.binding.read(faultFd, fault)).toBeGreaterThan(0);
  const response = new Uint8Array(8); // struct iommu_hwpt_page_response { cookie; code = SUCCESS }
  new DataView(response.buffer).setUint32(0, new DataView(fault.buffer).getUint32(36, true), true);
  expect(ctx.binding.write(faultFd, response)).toBeGreaterThan(0);
}

/** mmap(0, length, prot, flags, -1, 0) through the tier's backend. */
export function mmapAnon(ctx: Iommufd, length: number, flags: number, prot = PROT_RW): bigint {
  return ctx.binding.mmap(0n, length, prot, flags, -1, 0);
}

/**
 * Free hugetlb pages of the default size on the real kernel (the guest reserves some at boot).
 * The sim models MAP_HUGETLB as whole, naturally aligned 2 MiB mappings and never runs out.
 */
export function hugetlbPagesFree(): number {
  if (BACKEND !== 'linux') return Infinity;
  const m = /HugePages_Free:\s+(\d+)/.exec(readFileSync('/proc/meminfo', 'utf8'));
  return m ? Number(m[1]) : 0;
}

/** Why a test that mmaps MAP_HUGETLB memory cannot run here, or null when it can (2 huge pages free). */
export const NO_HUGETLB: string | null = hugetlbPagesFree() < 2 ? 'no free hugetlb pages (vm.nr_hugepages is 0)' : null;
