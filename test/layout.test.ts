/**
 * Every struct layout, ioctl number, minimum size and constant in src/ioasid/uapi.ts, checked against
 * what gcc computes from the REAL kernel headers (include/uapi/linux/iommufd.h and
 * drivers/iommu/iommufd/iommufd_test.h of linux-source-7.3). The C program is generated from the TS
 * data, so a wrong offset in uapi.ts turns this test red.
 *
 * Also checks each ioctl's struct and last field against the kernel's own iommufd_ioctl_ops[] table
 * (drivers/iommu/iommufd/main.c), which is where the kernel's min_size comes from.
 *
 * Without gcc or the kernel tree the checks skip (with the reason in the name); under CI they fail.
 */
import { execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest';
import * as uapi from '../src/ioasid/uapi.js';
import {
  IOCTLS, IOMMU_TEST_CMD, iommu_iova_range, iommu_test_cmd, iommu_test_cmd_members,
  type IoctlDesc, type StructLayout,
} from '../src/ioasid/uapi.js';
import * as vfioUapi from '../src/ioasid/vfio_uapi.js';
import * as deviceUapi from '../src/device/uapi.js';
import { C_LOOP_EXIT_SKIP, compileCLoop } from '../bench/c-loop.js';
import { fetchKernelTree, findGcc, findKernelTree, kernelHeaders } from '../bench/kernel-headers.js';

// ---- what to check: one C expression per number in uapi.ts ---------------------------------------

interface Check {
  /** Group the check reports under (a struct, 'ioctls', 'constants'). */
  readonly group: string;
  readonly what: string;
  readonly expr: string;
  readonly want: bigint;
}

const WIDTH = { u8: 1, u16: 2, u32: 4, s32: 4, u64: 8 } as const;
const checks: Check[] = [];

function add(group: string, what: string, expr: string, want: number | bigint): void {
  checks.push({ group, what, expr, want: BigInt(want) });
}

/** User pointers declared as u64 in the layouts (`__u64 __user *`): no signedness to compare. */
const POINTERS = new Set(['vfio_bitmap.data', 'vfio_iommu_type1_dirty_bitmap_get.bitmap.data']);

/** sizeof, and each field's offset, width and signedness, of `struct <s.name>`. */
function checkStruct(s: StructLayout): void {
  const t = `struct ${s.name}`;
  add(s.name, 'sizeof', `sizeof(${t})`, s.size);
  for (const f of s.fields) {
    if (s === iommu_test_cmd && f.name === '__union') continue;
    const lv = `((${t} *)0)->${f.name}`;
    const elem = f.count > 1 ? `${lv}[0]` : lv;
    add(s.name, `offsetof ${f.name}`, `offsetof(${t}, ${f.name})`, f.off);
    add(s.name, `sizeof ${f.name}`, `sizeof(${lv})`, WIDTH[f.type] * f.count);
    // A VFIO capability's `header` is a struct vfio_info_cap_header, declared as two u32 (8 bytes, 4-aligned).
    if (f.name === 'header' || POINTERS.has(`${s.name}.${f.name}`)) continue;
    add(s.name, `signed ${f.name}`, `((__typeof__(${elem}))-1 < 0)`, f.type === 's32' ? 1 : 0);
  }
}

/** The anonymous union of iommu_test_cmd: where it starts and ends. */
function checkTestCmdUnion(): void {
  const u = iommu_test_cmd.fields.find((f) => f.name === '__union');
  if (!u) throw new Error('iommu_test_cmd has no __union');
  const t = 'struct iommu_test_cmd';
  add('iommu_test_cmd', 'offsetof union', `offsetof(${t}, add_reserved)`, u.off);
  add('iommu_test_cmd', 'sizeof union', `offsetof(${t}, last) - offsetof(${t}, add_reserved)`, u.count);
}

/** Each union member's fields at their offsets in iommu_test_cmd, and where the member ends. */
function checkTestCmdMember(member: string, s: StructLayout): void {
  const t = 'struct iommu_test_cmd';
  const group = `iommu_test_cmd.${member}`;
  const lm = `((${t} *)0)->${member}`;
  add(group, 'offsetofend', `offsetof(${t}, ${member}) + sizeof(${lm})`, s.size);
  for (const f of s.fields) {
    add(group, `offsetof ${f.name}`, `offsetof(${t}, ${member}.${f.name})`, f.off);
    add(group, `sizeof ${f.name}`, `sizeof(${lm}.${f.name})`, WIDTH[f.type] * f.count);
    add(group, `signed ${f.name}`, `((__typeof__(${lm}.${f.name}))-1 < 0)`, f.type === 's32' ? 1 : 0);
  }
}

/** The request macro and min size (offsetofend of the last field) of one ioctl. */
function checkIoctl(d: IoctlDesc): void {
  const t = `struct ${d.struct.name}`;
  add('ioctls', `${d.name} request`, d.name, d.request);
  add('ioctls', `${d.name} minSize`, `offsetof(${t}, ${d.last}) + sizeof(((${t} *)0)->${d.last})`, d.minSize);
}

const structs = new Map<string, StructLayout>();
for (const d of Object.values(IOCTLS)) structs.set(d.struct.name, d.struct);
structs.set(iommu_iova_range.name, iommu_iova_range);
structs.set(iommu_test_cmd.name, iommu_test_cmd);
for (const s of structs.values()) checkStruct(s);
checkTestCmdUnion();
for (const [m, s] of Object.entries(iommu_test_cmd_members)) checkTestCmdMember(m, s);
for (const d of [...Object.values(IOCTLS), IOMMU_TEST_CMD]) checkIoctl(d);

const CONSTANTS = [
  'IOMMUFD_TYPE', 'IOMMUFD_CMD_BASE',
  'IOMMU_IOAS_MAP_FIXED_IOVA', 'IOMMU_IOAS_MAP_WRITEABLE', 'IOMMU_IOAS_MAP_READABLE',
  'IOMMU_OPTION_RLIMIT_MODE', 'IOMMU_OPTION_HUGE_PAGES', 'IOMMU_OPTION_OP_SET', 'IOMMU_OPTION_OP_GET',
  'IOMMU_VFIO_IOAS_GET', 'IOMMU_VFIO_IOAS_SET', 'IOMMU_VFIO_IOAS_CLEAR',
  'IOMMU_HWPT_ALLOC_NEST_PARENT', 'IOMMU_HWPT_ALLOC_DIRTY_TRACKING', 'IOMMU_HWPT_FAULT_ID_VALID',
  'IOMMU_HWPT_ALLOC_PASID',
  'MOCK_APERTURE_START', 'MOCK_APERTURE_LAST', 'MOCK_PAGE_SIZE', 'MOCK_FLAGS_ACCESS_WRITE',
  'MOCK_FLAGS_ACCESS_SYZ', 'MOCK_ACCESS_RW_WRITE', 'MOCK_ACCESS_RW_SLOW_PATH',
  'MOCK_FLAGS_ACCESS_CREATE_NEEDS_PIN_PAGES', 'MOCK_HUGE_PAGE_SIZE', 'MOCK_FLAGS_DEVICE_NO_DIRTY', 'MOCK_FLAGS_DEVICE_PASID',
  'MOCK_PASID_WIDTH', 'MOCK_NESTED_DOMAIN_IOTLB_ID_MAX', 'MOCK_NESTED_DOMAIN_IOTLB_NUM', 'MOCK_IOMMUPT_DEFAULT',
  'MOCK_IOMMUPT_HUGE', 'MOCK_DEV_CACHE_ID_MAX', 'MOCK_DEV_CACHE_NUM', 'IOMMU_HWPT_DATA_SELFTEST', 'IOMMU_TEST_IOTLB_DEFAULT',
  'IOMMU_HWPT_INVALIDATE_DATA_SELFTEST', 'IOMMU_HWPT_INVALIDATE_DATA_SELFTEST_INVALID', 'IOMMU_TEST_INVALIDATE_FLAG_ALL',
  'IOMMU_HW_INFO_TYPE_SELFTEST', 'IOMMU_HW_INFO_SELFTEST_REGVAL', 'IOMMU_TEST_PASID_RESERVED',
  'IOMMU_TEST_DEV_CACHE_DEFAULT', 'IOMMU_VIOMMU_TYPE_SELFTEST', 'IOMMU_VIOMMU_INVALIDATE_DATA_SELFTEST',
  'IOMMU_VIOMMU_INVALIDATE_DATA_SELFTEST_INVALID', 'IOMMU_VEVENTQ_TYPE_SELFTEST', 'IOMMU_HW_QUEUE_TYPE_SELFTEST',
  'IOMMU_TEST_HW_QUEUE_MAX',
] as const;
for (const name of CONSTANTS) add('constants', name, name, uapi[name]);
for (const [op, v] of Object.entries(uapi.IOMMU_TEST_OP)) add('constants', `IOMMU_TEST_OP_${op}`, `IOMMU_TEST_OP_${op}`, v);

// ---- VFIO (include/uapi/linux/vfio.h): the container structs and the device-fd uAPI ------------

for (const s of [
  vfioUapi.vfio_iommu_type1_dma_map, vfioUapi.vfio_iommu_type1_dma_unmap, vfioUapi.vfio_iommu_type1_info,
  vfioUapi.vfio_info_cap_header, vfioUapi.vfio_iommu_type1_info_cap_iova_range, vfioUapi.vfio_iommu_type1_info_dma_avail,
  vfioUapi.vfio_iova_range, vfioUapi.vfio_iommu_type1_info_cap_migration, vfioUapi.vfio_bitmap,
  vfioUapi.vfio_iommu_type1_dirty_bitmap, vfioUapi.vfio_iommu_type1_dirty_bitmap_get, vfioUapi.vfio_group_status,
  deviceUapi.vfio_region_sparse_mmap_area, deviceUapi.vfio_region_info_cap_sparse_mmap, deviceUapi.vfio_region_info_cap_type,
  deviceUapi.iommu_hw_info_vtd,
]) checkStruct(s);
for (const d of Object.values(deviceUapi.VFIO_DEVICE_IOCTLS)) {
  checkStruct(d.struct);
  checkIoctl(d);
}
for (const [name, v] of Object.entries(vfioUapi)) {
  if (typeof v === 'number' && /^VFIO_/.test(name) && !/_MINSZ$/.test(name)) {
    // vfio_uapi.ts names the reserved type 6 without the kernel's __VFIO_RESERVED_ prefix.
    add('vfio constants', name, name === 'VFIO_TYPE1_NESTING_IOMMU' ? '__VFIO_RESERVED_TYPE1_NESTING_IOMMU' : name, v);
  }
}
for (const [name, v] of Object.entries(deviceUapi)) {
  // VFIO_PCI_DEVID_NOT_OWNED is -1 in vfio.h and goes into a __u32 field
  if (typeof v === 'number' && /^(VFIO_|IOMMU_HW_|PCI_)/.test(name)) add('vfio device constants', name, name === 'VFIO_PCI_DEVID_NOT_OWNED' ? `(__u32)${name}` : name, v);
}

const GROUPS = [...new Set(checks.map((c) => c.group))];

/** A C program printing `<index> <value>` for every check. */
function program(testHeader: string): string {
  const lines = checks.map((c, i) => `\tprintf("${i} %llu\\n", (unsigned long long)(${c.expr}));`);
  return [
    '#include <stddef.h>', '#include <stdio.h>', '#include <linux/iommufd.h>', '#include <linux/vfio.h>',
    '#include <linux/pci_regs.h>', `#include "${testHeader}"`,
    'int main(void)', '{', ...lines, '\treturn 0;', '}', '',
  ].join('\n');
}

// ---- where gcc and the headers are ---------------------------------------------------------------

const CI = Boolean(process.env.CI);
const gcc = findGcc();
let tree = findKernelTree();
let missing = gcc ? undefined : 'gcc not found';
if (!missing && !tree) {
  try {
    tree = fetchKernelTree();
  } catch (e) {
    const err = e as Error & { stderr?: string };
    const why = err.stderr?.trim().split('\n').pop() || err.message.split('\n')[0];
    missing = `kernel tree missing and scripts/vm/fetch-source.sh failed: ${why}`;
  }
}
const skip = missing !== undefined && !CI;
if (skip) console.warn(`layout.test.ts: skipping the gcc checks: ${missing}`);

describe.skipIf(skip)(`uapi.ts layouts equal gcc's from the kernel headers${skip ? ` (skipped: ${missing})` : ''}`, () => {
  let work = '';
  const got = new Map<number, bigint>();

  beforeAll(() => {
    if (missing) throw new Error(`CI requires gcc and the kernel headers: ${missing}`);
    work = mkdtempSync(join(tmpdir(), 'ioasid-layout-'));
    const h = kernelHeaders(tree!, work);
    // The tree's vfio.h beside its iommufd.h, so the host's older copy cannot shadow it.
    copyFileSync(join(tree!, 'include/uapi/linux/vfio.h'), join(work, 'include/linux/vfio.h'));
    writeFileSync(join(work, 'layout.c'), program(h.iommufdTestH));
    const bin = join(work, 'layout');
    // vfio.h straight from the tree still has what `make headers` strips or defines: __user and
    // (for an older host linux/stddef.h) __counted_by.
    const vfioDefs = ['-D__user=', '-D__counted_by(m)='];
    execFileSync(gcc!, ['-std=gnu11', '-Wall', '-Werror', ...h.cflags, ...vfioDefs, '-o', bin, join(work, 'layout.c')], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    for (const line of execFileSync(bin, { encoding: 'utf8' }).trim().split('\n')) {
      const [i, v] = line.split(' ');
      got.set(Number(i), BigInt(v!));
    }
  });

  afterAll(() => {
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it('printed every check', () => {
    expect(got.size).toBe(checks.length);
  });

  it.each(GROUPS)('%s', (group) => {
    const diff = checks
      .map((c, i) => ({ ...c, got: got.get(i) }))
      .filter((c) => c.group === group && c.got !== c.want)
      .map((c) => `${c.what}: uapi.ts ${c.want}, gcc ${c.got}`);
    expect(diff).toEqual([]);
  });

  it("matches the kernel's iommufd_ioctl_ops[] struct and last field for every ioctl", () => {
    const main = readFileSync(join(tree!, 'drivers/iommu/iommufd/main.c'), 'utf8');
    const ops = new Map<string, string>();
    for (const m of main.matchAll(/IOCTL_OP\(\s*(IOMMU_\w+),\s*\w+,\s*struct\s+(\w+),\s*(\w+)\s*\)/g)) {
      ops.set(m[1]!, `${m[2]}.${m[3]}`);
    }
    const ours = new Map([...Object.values(IOCTLS), IOMMU_TEST_CMD].map((d) => [d.name, `${d.struct.name}.${d.last}`]));
    expect(Object.fromEntries(ours)).toEqual(Object.fromEntries(ops));
  });

  it('bench/c/map_unmap.c builds against the same header (and says so when /dev/iommu is missing)', () => {
    const bin = compileCLoop();
    onTestFinished(() => rmSync(dirname(bin), { recursive: true, force: true }));
    if (existsSync('/dev/iommu')) {
      const out = JSON.parse(execFileSync(bin, ['100', 'fixed'], { encoding: 'utf8' })) as Record<string, unknown>;
      expect(out).toMatchObject({ n: 100, mode: 'fixed', attach: 'none' });
      const mock = JSON.parse(execFileSync(bin, ['100', 'auto', 'mock'], { encoding: 'utf8' })) as Record<string, unknown>;
      expect(mock).toMatchObject({ n: 100, mode: 'auto', attach: 'mock' });
      return;
    }
    let status: number | null = null;
    let stderr = '';
    try {
      execFileSync(bin, ['100'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    } catch (e) {
      ({ status, stderr } = e as { status: number; stderr: string });
    }
    expect(status).toBe(C_LOOP_EXIT_SKIP);
    expect(stderr).toMatch(/\/dev\/iommu is missing/);
  });
});
