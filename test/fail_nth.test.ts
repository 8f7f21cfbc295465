/**
 * Port of tools/testing/selftests/iommu/iommufd_fail_nth.c: FIXTURE(basic_fail_nth) and its 8
 * TEST_FAIL_NTH cases, on both tiers.
 *
 * The C harness runs each case's body with the task's fail-nth set to 1, 2, 3 ... until a run no
 * longer reaches its Nth injection point: every failable allocation (failslab, fail_page_alloc)
 * and, on the sim, every pin and user copy on the body's path fails once, and the teardown checks
 * that nothing was left behind (MD_CHECK_REFS). A Node.js process runs code of its own between
 * the body's syscalls, and the kernel counts every failable allocation of the task, so the port
 * arms /proc/thread-self/fail-nth right before each syscall of the body and reads it back and
 * disarms it right after, carrying what is left of N to the next one: across the body's
 * syscalls the Nth point fails, as in the C. The numbers of points differ between the sim and
 * the kernel (each counts its own allocations); nothing here depends on them.
 *
 * Beyond the C suite the teardown also checks the pins and locked memory (VmPin/VmLck), the
 * process's descriptors, the kernel's taint flags (a WARN taints it) on linux, and the simulated
 * machine (mock devices, group ownership) on sim.
 */
import { readFileSync, readdirSync } from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';
import { Iommufd, IommuError, isErrno, openBinding, SimBinding, UserMemory, type Binding, type Ioas } from '../src/index.js';
import { MAP_ANONYMOUS, MAP_SHARED, O_RDWR, PROT_READ, PROT_WRITE } from '../src/backends/types.js';
import {
  IOCTLS, IOMMU_HWPT_ALLOC_DIRTY_TRACKING, IOMMU_HWPT_ALLOC_NEST_PARENT, IOMMU_HWPT_ALLOC_PASID, IOMMU_HWPT_FAULT_ID_VALID,
} from '../src/ioasid/uapi.js';
import * as V from '../src/ioasid/vfio_uapi.js';
import {
  IOMMU_HWPT_DATA_SELFTEST, IOMMU_HWPT_INVALIDATE_DATA_SELFTEST, IOMMU_HW_QUEUE_TYPE_SELFTEST, IOMMU_TEST_DEV_CACHE_DEFAULT,
  IOMMU_TEST_IOTLB_DEFAULT, IOMMU_VEVENTQ_TYPE_SELFTEST, IOMMU_VIOMMU_INVALIDATE_DATA_SELFTEST, IOMMU_VIOMMU_TYPE_SELFTEST,
  IommufdTest, MOCK_ACCESS_RW_SLOW_PATH, MOCK_ACCESS_RW_WRITE, MOCK_APERTURE_START, MOCK_FLAGS_ACCESS_CREATE_NEEDS_PIN_PAGES,
  MOCK_FLAGS_ACCESS_WRITE, MOCK_FLAGS_DEVICE_PASID,
} from '../src/testing.js';
import { BACKEND } from './helpers.js';
import { vmCounters } from './privileges.js';
import {
  HWPT_SELFTEST_SIZE, IOMMU_HWPT_DATA_NONE, IOMMU_HW_INFO_TYPE_DEFAULT, TEST_HW_INFO_SIZE, faultAlloc, getHwInfo,
  hwQueueAlloc, hwptAlloc, vdeviceAlloc, veventqAlloc, viommuAlloc,
} from './selftest_utils.js';

const PROT_RW = PROT_READ | PROT_WRITE;

/** The syscalls of the Binding seam: the ones a body's calls arm. */
const SYSCALLS = new Set<string | symbol>([
  'open', 'close', 'ioctl', 'ioctlInt', 'mmap', 'munmap', 'memfdCreate', 'ftruncate', 'read', 'write', 'pread', 'pwrite', 'eventfd', 'poll',
]);

/**
 * struct fail_nth_state and the harness's functions: the task's fail-nth file, the iteration,
 * and what is left of N between the body's syscalls.
 */
class FailNth {
  readonly procFd: number;
  iteration = 0;
  /** What the task's fail-nth would hold now if the body ran with nothing in between (0: reached, or not armed). */
  private left = 0;
  /** The backend with each syscall armed with what is left of N. */
  readonly binding: Binding;
  private readonly buf = new Uint8Array(300);

  /** fail_nth_first */
  constructor(readonly base: Binding) {
    this.procFd = base.open('/proc/thread-self/fail-nth', O_RDWR);
    this.binding = new Proxy(base, {
      get: (target, key) => {
        const v = Reflect.get(target, key) as unknown;
        if (!SYSCALLS.has(key) || typeof v !== 'function') return v;
        return (...args: unknown[]) => this.syscall(() => (v as (...a: unknown[]) => unknown).apply(target, args));
      },
    });
  }

  /** __fail_nth_enable: from here on the body's Nth injection point fails. */
  enable(): void {
    if (this.iteration) this.left = this.iteration;
  }

  /** One syscall of the body: arm the task right before it, read back and disarm right after. */
  private syscall<T>(call: () => T): T {
    if (!this.left) return call();
    this.write(String(this.left));
    try {
      return call();
    } finally {
      this.left = this.readAndDisable();
    }
  }

  /**
   * fail_nth_next's read and disable. The file's own user copies count too where user copies
   * are injection points (the sim; a kernel with FAULT_INJECTION_USERCOPY): a read that fails
   * EFAULT was the one the counter had left (1), and a failing disable is tried again.
   */
  private readAndDisable(): number {
    let text: string;
    try {
      const n = this.base.pread(this.procFd, this.buf, 0);
      text = new TextDecoder().decode(this.buf.subarray(0, n));
    } catch (e) {
      if (!isErrno(e, 'EFAULT')) throw e;
      text = '1\n';
    }
    try {
      this.write('0');
    } catch (e) {
      if (!isErrno(e, 'EFAULT')) throw e;
      this.write('0');
    }
    expect(text).toMatch(/^\d+\n$/); // ASSERT_LT(1, res): "%u\n"
    return Number(text.slice(0, -1));
  }

  private write(text: string): void {
    const bytes = new TextEncoder().encode(text);
    expect(this.base.pwrite(this.procFd, bytes, 0)).toBe(bytes.length);
  }

  /** Whether the last run reached its Nth point; disarms what is left. */
  reached(): boolean {
    const r = this.left === 0;
    this.left = 0;
    return r;
  }

  /** fail_nth_next: go on with N + 1 after a run that reached its Nth point, stop after one that did not. */
  next(): boolean {
    expect(this.iteration).toBeLessThan(1000);
    if (this.iteration !== 0 && !this.reached()) return false;
    this.iteration++;
    return true;
  }

  close(): void {
    this.base.close(this.procFd);
  }
}

/** A body's result as the C's: 0, or -1 when a call failed (an IommuError; anything else is a bug). */
function bodyResult(body: () => void): number {
  try {
    body();
    return 0;
  } catch (e) {
    if (e instanceof IommuError) return -1;
    throw e;
  }
}

/**
 * What must come back to where it was after each teardown: pins and locked memory, the
 * process's descriptors, and on linux the taint flags (a WARN sets bit 9), on sim the machine's
 * mock devices and group owners and the user's locked_vm.
 */
function leakState(b: Binding): unknown {
  const common = { vm: vmCounters(b) };
  if (b instanceof SimBinding) {
    const m = b.kernel.machine as unknown as { groups: Map<number, { owner: unknown; ownerCount: number }>; mocks: Set<unknown> };
    return {
      ...common,
      fds: b.proc.openFds(),
      userLockedVm: b.proc.user.lockedVm,
      mocks: m.mocks.size,
      groups: [...m.groups].map(([id, g]) => [id, g.owner === null ? null : 'owned', g.ownerCount]),
    };
  }
  return { ...common, fds: readdirSync('/proc/self/fd').length, tainted: readFileSync('/proc/sys/kernel/tainted', 'utf8') };
}

// ---- the selftest's globals -------------------------------------------------------------------------

const base = openBinding(BACKEND);
const PAGE_SIZE = base.pageSize;
const BUFFER_SIZE = 2 * 1024 * 1024;

/** setup_buffer: `buffer` (shared anonymous) and `mfd_buffer`, a shared mapping of the memfd `mfd`. */
const buffer = base.mmap(0n, BUFFER_SIZE, PROT_RW, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
const mfd = base.memfdCreate('buffer', 0);
base.ftruncate(mfd, BUFFER_SIZE);
const mfdBuffer = base.mmap(0n, BUFFER_SIZE, PROT_RW, MAP_SHARED, mfd, 0);

/** The C bodies' stack arrays, in user memory made before any run (a run makes no other syscall). */
const stack = base.mmap(0n, 64 * 1024, PROT_RW, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
const RANGES = stack; // struct iommu_iova_range ranges[10]
const TMP = stack + 4096n; // uint16_t tmp[32]
const TMP_BIG = stack + 8192n; // uint64_t tmp_big[4096]
const INFO = new UserMemory(base, stack + 8192n + 32768n, TEST_HW_INFO_SIZE); // struct iommu_test_hw_info
const SELFTEST_DATA = new UserMemory(base, stack + 8192n + 36864n, HWPT_SELFTEST_SIZE); // struct iommu_hwpt_selftest

/**
 * setup_fault_injection: failslab and fail_page_alloc ignore sleeping allocations by default;
 * let every allocation be failed and quiet the log.
 */
function setupFaultInjection(b: Binding): boolean {
  const D = '/sys/kernel/debug';
  try {
    b.writeText(`${D}/failslab/ignore-gfp-wait`, 'N');
  } catch {
    return false;
  }
  b.writeText(`${D}/fail_page_alloc/ignore-gfp-wait`, 'N');
  b.writeText(`${D}/fail_page_alloc/ignore-gfp-highmem`, 'N');
  for (const d of b.readdir(D)) {
    if (!d.startsWith('fail')) continue;
    try {
      b.writeText(`${D}/${d}/verbose`, '0');
    } catch {
      // writeat() ignores a directory without the file
    }
  }
  return true;
}
const haveFaultInjection = setupFaultInjection(base);
/** The project's test VM builds its kernel with fault injection: there, its absence fails the cases instead of skipping them. */
const runCases = haveFaultInjection || process.env.IOASID_IN_GUEST === '1';

describe(`/proc/thread-self/fail-nth [${BACKEND}]`, () => {
  /** What one pwrite answers (bytes written or the errno), then what a pread at 0 reads back. */
  function writeRead(fd: number, text: string): [number | string, string] {
    let w: number | string;
    try {
      w = base.pwrite(fd, new TextEncoder().encode(text), 0);
    } catch (e) {
      w = (e as IommuError).code;
    }
    const buf = new Uint8Array(32);
    const got = new TextDecoder().decode(buf.subarray(0, base.pread(fd, buf, 0)));
    base.pwrite(fd, new TextEncoder().encode('0'), 0);
    return [w, got];
  }

  it('proc_fail_nth_write / proc_fail_nth_read: kstrtouint rules in, "%u\\n" out, 0 disarms', () => {
    const fd = base.open('/proc/thread-self/fail-nth', O_RDWR);
    try {
      const buf = new Uint8Array(32);
      expect(new TextDecoder().decode(buf.subarray(0, base.pread(fd, buf, 0)))).toBe('0\n');
      expect(writeRead(fd, '5')).toEqual([1, '5\n']);
      expect(writeRead(fd, '7\n')).toEqual([2, '7\n']);
      expect(writeRead(fd, '0x10')).toEqual([4, '16\n']);
      expect(writeRead(fd, '010')).toEqual([3, '8\n']);
      expect(writeRead(fd, '+3')).toEqual([2, '3\n']);
      expect(writeRead(fd, '4294967295')).toEqual([10, '4294967295\n']);
      expect(writeRead(fd, '4294967296')).toEqual(['ERANGE', '0\n']);
      expect(writeRead(fd, '-1')).toEqual(['EINVAL', '0\n']);
      expect(writeRead(fd, ' 1')).toEqual(['EINVAL', '0\n']);
      expect(writeRead(fd, '1 ')).toEqual(['EINVAL', '0\n']);
      expect(writeRead(fd, '')).toEqual(['EINVAL', '0\n']);
      base.pwrite(fd, new TextEncoder().encode('12'), 0);
      expect(base.pread(fd, buf, 1)).toBe(2); // "2\n" from offset 1
      expect(base.pread(fd, buf, 3)).toBe(0);
      base.pwrite(fd, new TextEncoder().encode('0'), 0);
    } finally {
      base.close(fd);
    }
  });

  it.runIf(runCases)("the fault attributes' debugfs numbers: ul (kstrtoull), u32 (kstrtoull, the low 32 bits kept), atomic_t (kstrtoll, signed)", () => {
    // fs/debugfs/file.c and lib/fault-inject.c: simple_attr_write parses the text with kstrtoull
    // (kstrtoll for a signed attribute) and the set function stores it in the attribute's type
    const D = '/sys/kernel/debug/failslab';
    /** What a write answers (ok or the errno), then what the file reads. */
    const writeRead = (name: string, text: string): [string, string] => {
      let w = 'ok';
      try {
        base.writeText(`${D}/${name}`, text);
      } catch (e) {
        w = (e as IommuError).code;
      }
      return [w, base.readText(`${D}/${name}`)];
    };
    const saved = ['interval', 'verbose_ratelimit_burst', 'times'].map((n) => [n, base.readText(`${D}/${n}`)] as const);
    try {
      expect(writeRead('interval', '18446744073709551615')).toEqual(['ok', '18446744073709551615\n']);
      expect(writeRead('interval', '18446744073709551616')).toEqual(['ERANGE', '18446744073709551615\n']);
      expect(writeRead('interval', '0x10\n')).toEqual(['ok', '16\n']);
      expect(writeRead('interval', '-1')).toEqual(['EINVAL', '16\n']);
      expect(writeRead('verbose_ratelimit_burst', '4294967297')).toEqual(['ok', '1\n']);
      expect(writeRead('times', '-1')).toEqual(['ok', '-1\n']);
      expect(writeRead('times', '4294967294')).toEqual(['ok', '-2\n']);
      expect(writeRead('times', '9223372036854775808')).toEqual(['ERANGE', '-2\n']);
      expect(writeRead('times', '-9223372036854775808')).toEqual(['ok', '0\n']);
      expect(writeRead('times', '-9223372036854775809')).toEqual(['ERANGE', '0\n']);
    } finally {
      for (const [name, text] of saved) base.writeText(`${D}/${name}`, text);
    }
  });

  it('the Nth point fails once: the file reads 0 after, and nothing fails after it', () => {
    const fd = base.open('/proc/thread-self/fail-nth', O_RDWR);
    const ctx = new Iommufd(base);
    try {
      base.pwrite(fd, new TextEncoder().encode('1'), 0);
      const result = bodyResult(() => ctx.allocIoas()); // IOAS_ALLOC's first point: the copy in (sim), the kzalloc (kernel)
      const buf = new Uint8Array(32);
      const left = new TextDecoder().decode(buf.subarray(0, base.pread(fd, buf, 0)));
      expect([result, left]).toEqual([-1, '0\n']);
      expect(bodyResult(() => ctx.allocIoas())).toBe(0);
      expect(ctx.allocIoas().id).toBe(2); // the failed one took no id
    } finally {
      ctx.close();
      base.close(fd);
    }
  });
});

// ---- FIXTURE(basic_fail_nth) ---------------------------------------------------------------------------

interface Self {
  fd: Iommufd | null;
  accessId: number;
  stdevId: number;
  pasid: number;
}

function setup(): Self {
  return { fd: null, accessId: 0, stdevId: 0, pasid: 0 };
}

/** FIXTURE_TEARDOWN: close the access fd, detach the PASID, teardown_iommufd (close, then MD_CHECK_REFS through a new fd). */
function teardown(self: Self): void {
  if (self.accessId) base.close(self.accessId); // the access FD holds the iommufd open until it closes
  if (self.pasid && self.stdevId && self.fd) {
    try {
      new IommufdTest(self.fd).pasidDetach(self.stdevId, self.pasid);
    } catch {
      // _test_cmd_pasid_detach's result is not checked
    }
  }
  if (!self.fd) return;
  self.fd.close();
  const again = new Iommufd(base);
  try {
    new IommufdTest(again).checkRefs(buffer, BigInt(BUFFER_SIZE), 0);
  } finally {
    again.close();
  }
}

const swept: Record<string, number> = {};

/**
 * TEST_FAIL_NTH: run the body once unarmed (it must succeed), then with N = 1, 2, ... until a run
 * does not reach its Nth point; that last run must succeed. Teardown and the leak check follow
 * every run.
 */
function testFailNth(name: string, body: (self: Self, nth: FailNth) => void): void {
  const title = `${name}${runCases ? '' : ' (skipped: fault injection is not enabled in this kernel)'}`;
  (runCases ? it : it.skip)(title, () => {
    const nth = new FailNth(base);
    const clean = leakState(base);
    let self = setup();
    let result = bodyResult(() => body(self, nth));
    expect(result).toBe(0);
    while (nth.next()) {
      teardown(self);
      expect(leakState(base)).toEqual(clean);
      self = setup();
      result = bodyResult(() => body(self, nth));
    }
    teardown(self);
    expect(leakState(base)).toEqual(clean);
    nth.close();
    expect(result).toBe(0);
    swept[name] = nth.iteration - 1;
  });
}

/** open("/dev/iommu", O_RDWR) on the armed backend, with the selftest command beside it. */
function openIommufd(self: Self, nth: FailNth): [Iommufd, IommufdTest] {
  self.fd = new Iommufd(nth.binding);
  return [self.fd, new IommufdTest(self.fd)];
}

describe(`iommufd_fail_nth basic_fail_nth [${BACKEND}]`, () => {
  afterAll(() => {
    if (Object.keys(swept).length) console.log(`fail_nth [${BACKEND}] injection points reached per case: ${JSON.stringify(swept)}`);
  });

  /* Cover ioas.c */
  testFailNth('basic', (self, nth) => {
    nth.enable();
    const [fd] = openIommufd(self, nth);
    const ioas = fd.allocIoas();
    fd.ioctl(fd.cmd(IOCTLS.IOAS_IOVA_RANGES).u32('num_iovas', 10).u32('ioas_id', ioas.id).u64('allowed_iovas', RANGES));
    userBytes(RANGES, (ranges) => {
      ranges.setBigUint64(0, 16n * 1024n, true);
      ranges.setBigUint64(8, BigInt(BUFFER_SIZE + 16 * 1024 * 600 - 1), true);
    }, 16);
    fd.ioctl(fd.cmd(IOCTLS.IOAS_ALLOW_IOVAS).u32('ioas_id', ioas.id).u32('num_iovas', 1).u64('allowed_iovas', RANGES));
    const iova = ioas.mapUser(buffer, BigInt(BUFFER_SIZE));
    ioas.copyFrom(ioas, iova, 10n * 16n); // length = sizeof(ranges)
    ioas.unmap(iova, BigInt(BUFFER_SIZE));
    bodyResult(() => ioas.unmap(iova, BigInt(BUFFER_SIZE))); // failure path of no IOVA to unmap
  });

  /* iopt_area_fill_domains() and iopt_area_fill_domain(): map_domain and map_file_domain, the same steps around a MAP or a MAP_FILE */
  const mapDomain = (map: (ioas: Ioas) => void) => (self: Self, nth: FailNth) => {
    const [fd, test] = openIommufd(self, nth);
    const ioas = fd.allocIoas();
    test.setTempMemoryLimit(32);
    nth.enable();
    const { stdevId } = test.mockDomain(ioas.id);
    map(ioas);
    fd.destroy(stdevId);
    test.mockDomain(ioas.id);
  };
  testFailNth('map_domain', mapDomain((ioas) => ioas.mapUser(buffer, 262144n)));
  testFailNth('map_file_domain', mapDomain((ioas) => ioas.mapFile(mfd, 0n, 262144n)));

  testFailNth('map_two_domains', (self, nth) => {
    const [fd, test] = openIommufd(self, nth);
    const ioas = fd.allocIoas();
    test.setTempMemoryLimit(32);
    const { stdevId } = test.mockDomain(ioas.id);
    nth.enable();
    const { stdevId: stdevId2 } = test.mockDomain(ioas.id);
    ioas.mapUser(buffer, 262144n);
    fd.destroy(stdevId);
    fd.destroy(stdevId2);
    test.mockDomain(ioas.id);
    test.mockDomain(ioas.id);
  });

  testFailNth('access_rw', (self, nth) => {
    const [fd, test] = openIommufd(self, nth);
    const ioas = fd.allocIoas();
    test.setTempMemoryLimit(32);
    const iova = ioas.mapUser(buffer, 262144n);
    nth.enable();
    self.accessId = test.createAccess(ioas.id, 0);
    test.accessRw(self.accessId, iova, TMP, 64n, 0); // READ
    test.accessRw(self.accessId, iova, TMP, 64n, MOCK_ACCESS_RW_WRITE);
    test.accessRw(self.accessId, iova, TMP, 64n, MOCK_ACCESS_RW_SLOW_PATH);
    test.accessRw(self.accessId, iova, TMP, 64n, MOCK_ACCESS_RW_SLOW_PATH | MOCK_ACCESS_RW_WRITE);
    test.accessRw(self.accessId, iova, TMP_BIG, 32768n, MOCK_ACCESS_RW_SLOW_PATH);
    test.closeAccess(self.accessId);
    self.accessId = 0;
  });

  /* pages.c access functions (access_pin), iopt_pages_fill_xarray() (access_pin_domain: a mock domain first) */
  const accessPin = (withDomain: boolean) => (self: Self, nth: FailNth) => {
    const [fd, test] = openIommufd(self, nth);
    const ioas = fd.allocIoas();
    test.setTempMemoryLimit(32);
    const stdevId = withDomain ? test.mockDomain(ioas.id).stdevId : 0;
    const iova = ioas.mapUser(buffer, BigInt(BUFFER_SIZE));
    self.accessId = test.createAccess(ioas.id, MOCK_FLAGS_ACCESS_CREATE_NEEDS_PIN_PAGES);
    nth.enable();
    const accessPagesId = test.accessPages(self.accessId, iova, BigInt(BUFFER_SIZE), 0, buffer);
    test.destroyAccessPages(self.accessId, accessPagesId);
    test.closeAccess(self.accessId);
    self.accessId = 0;
    if (withDomain) fd.destroy(stdevId);
  };
  testFailNth('access_pin', accessPin(false));
  testFailNth('access_pin_domain', accessPin(true));

  /* device.c */
  testFailNth('device', (self, nth) => {
    new DataView(SELFTEST_DATA.bytes.buffer, SELFTEST_DATA.bytes.byteOffset, 8).setUint32(0, IOMMU_TEST_IOTLB_DEFAULT, true);
    const [fd, test] = openIommufd(self, nth);
    const ioas = fd.allocIoas();
    const ioas2 = fd.allocIoas();
    const iova = MOCK_APERTURE_START;
    ioas.mapUser(buffer, BigInt(PAGE_SIZE), { iova });
    ioas2.mapUser(buffer, BigInt(PAGE_SIZE), { iova });
    nth.enable();
    const dev = test.mockDomainFlags(ioas.id, MOCK_FLAGS_DEVICE_PASID);
    self.stdevId = dev.stdevId;
    const idevId = dev.idevId;
    getHwInfo(fd, idevId, IOMMU_HW_INFO_TYPE_DEFAULT, INFO, TEST_HW_INFO_SIZE);
    let hwptId = hwptAlloc(fd, idevId, ioas.id, 0, IOMMU_HWPT_ALLOC_PASID, IOMMU_HWPT_DATA_NONE, null, 0);
    test.mockDomainReplace(self.stdevId, ioas2.id);
    test.mockDomainReplace(self.stdevId, hwptId);
    hwptId = hwptAlloc(fd, idevId, ioas.id, 0, IOMMU_HWPT_ALLOC_NEST_PARENT | IOMMU_HWPT_ALLOC_PASID, IOMMU_HWPT_DATA_NONE, null, 0);
    const viommuId = viommuAlloc(fd, idevId, hwptId, IOMMU_VIOMMU_TYPE_SELFTEST);
    vdeviceAlloc(fd, viommuId, idevId, 0n);
    hwQueueAlloc(fd, viommuId, IOMMU_HW_QUEUE_TYPE_SELFTEST, 0, iova, BigInt(PAGE_SIZE));
    const { faultId, faultFd } = faultAlloc(fd);
    nth.binding.close(faultFd);
    hwptAlloc(fd, idevId, hwptId, faultId, IOMMU_HWPT_FAULT_ID_VALID, IOMMU_HWPT_DATA_SELFTEST, SELFTEST_DATA, HWPT_SELFTEST_SIZE);
    const [, veventqFd] = veventqAlloc(fd, viommuId, IOMMU_VEVENTQ_TYPE_SELFTEST, 2);
    nth.binding.close(veventqFd);
    const testHwptId = hwptAlloc(fd, idevId, ioas.id, 0, IOMMU_HWPT_ALLOC_PASID, IOMMU_HWPT_DATA_NONE, null, 0);

    /* Tests for pasid attach/replace/detach */
    self.pasid = 200;
    try {
      test.pasidAttach(self.stdevId, self.pasid, hwptId);
    } catch (e) {
      self.pasid = 0;
      throw e;
    }
    test.pasidReplace(self.stdevId, self.pasid, testHwptId);
    test.pasidDetach(self.stdevId, self.pasid);
    self.pasid = 0;
  });
});

// ---- beyond the C suite: every command of the uAPI table, swept on the sim ----------------------------

const SIM = base instanceof SimBinding ? base : null;
const MAX = 0xffff_ffff_ffff_ffffn;
const A0 = MOCK_APERTURE_START;
const FILE_IOVA = A0 + 0x40000n; // right after the user area: COPY can span both
const FAR = A0 + 0x1f0000n; // a map of 1.25 MiB here needs new table pages in every domain
const USER_DATA = stack + 48n * 1024n; // iommu_viommu_selftest, invalidation entries, dirty bitmap
const VFIO_ARG = stack + 52n * 1024n;

/** The world every command is swept in: two IOASes, devices, HWPTs of each kind, a vIOMMU, queues, an access. */
interface World {
  fd: Iommufd;
  test: IommufdTest;
  a: number;
  b: number;
  d1: { stdevId: number; idevId: number };
  d2: { stdevId: number; idevId: number; hwptId: number };
  pasidHwpt: number;
  parent: number;
  dirty: number;
  viommu: number;
  nestedV: number;
  nested: number;
  iopf: number;
  faultId: number;
  access: number;
  accessItem: number;
}

/**
 * IOAS A: 256 KiB of `buffer` at the mock aperture's start and 64 KiB of the memfd right after;
 * IOAS B empty. Device 1 (PASID capable) on a PASID-compatible paging HWPT of A, then on a nested
 * HWPT of a vIOMMU (with its vDEVICE 0x99); device 2 on A's automatic HWPT. A NEST_PARENT and a
 * dirty-tracking HWPT on A, a nested HWPT on the parent, an IOPF-capable nested HWPT on the
 * parent with its fault queue, an access pinning 2 pages of A, and A as the VFIO compat IOAS.
 */
function buildWorld(nth: FailNth): World {
  const fd = new Iommufd(nth.binding);
  const test = new IommufdTest(fd);
  const a = fd.allocIoas();
  const b = fd.allocIoas();
  a.mapUser(buffer, 256n * 1024n, { iova: A0 });
  a.mapFile(mfd, 0n, 64n * 1024n, { iova: FILE_IOVA });
  const d1 = test.mockDomainFlags(a.id, MOCK_FLAGS_DEVICE_PASID);
  const d2 = test.mockDomain(a.id);
  const pasidHwpt = hwptAlloc(fd, d1.idevId, a.id, 0, IOMMU_HWPT_ALLOC_PASID, IOMMU_HWPT_DATA_NONE, null, 0);
  test.mockDomainReplace(d1.stdevId, pasidHwpt);
  const parent = hwptAlloc(fd, d1.idevId, a.id, 0, IOMMU_HWPT_ALLOC_NEST_PARENT | IOMMU_HWPT_ALLOC_PASID, IOMMU_HWPT_DATA_NONE, null, 0);
  const dirty = hwptAlloc(fd, d1.idevId, a.id, 0, IOMMU_HWPT_ALLOC_DIRTY_TRACKING, IOMMU_HWPT_DATA_NONE, null, 0);
  new DataView(SELFTEST_DATA.bytes.buffer, SELFTEST_DATA.bytes.byteOffset, 8).setUint32(0, IOMMU_TEST_IOTLB_DEFAULT, true);
  const viommu = viommuAlloc(fd, d1.idevId, parent, IOMMU_VIOMMU_TYPE_SELFTEST);
  vdeviceAlloc(fd, viommu, d1.idevId, 0x99n);
  const nestedV = hwptAlloc(fd, d1.idevId, viommu, 0, IOMMU_HWPT_ALLOC_PASID, IOMMU_HWPT_DATA_SELFTEST, SELFTEST_DATA, HWPT_SELFTEST_SIZE);
  test.mockDomainReplace(d1.stdevId, nestedV);
  const nested = hwptAlloc(fd, d1.idevId, parent, 0, IOMMU_HWPT_ALLOC_PASID, IOMMU_HWPT_DATA_SELFTEST, SELFTEST_DATA, HWPT_SELFTEST_SIZE);
  const { faultId } = faultAlloc(fd);
  const iopf = hwptAlloc(fd, d1.idevId, parent, faultId, IOMMU_HWPT_FAULT_ID_VALID | IOMMU_HWPT_ALLOC_PASID, IOMMU_HWPT_DATA_SELFTEST, SELFTEST_DATA, HWPT_SELFTEST_SIZE);
  const access = test.createAccess(a.id, MOCK_FLAGS_ACCESS_CREATE_NEEDS_PIN_PAGES);
  const accessItem = test.accessPages(access, A0, 2n * BigInt(PAGE_SIZE));
  fd.setVfioIoas(a);
  return { fd, test, a: a.id, b: b.id, d1, d2, pasidHwpt, parent, dirty, viommu, nestedV, nested, iopf, faultId, access, accessItem };
}

/** Close the world and every descriptor it (or the swept command) opened. */
function closeWorld(w: World, fds: number[]): void {
  w.fd.close();
  for (const fd of SIM!.proc.openFds()) if (!fds.includes(fd)) base.close(fd);
}

/** A user buffer of raw bytes in the stack memory (ranges, driver data, VFIO structs). */
function userBytes(addr: bigint, fill: (dv: DataView) => void, length = 256): bigint {
  const bytes = base.view(addr, length);
  bytes.fill(0);
  fill(new DataView(bytes.buffer, bytes.byteOffset, length));
  return addr;
}

type Ctx = import('../src/backends/sim/iommufd/main.js').IommufdCtx;
type AnyObj = Record<string, unknown> & { id?: number };

/**
 * Everything a failed command must leave as it was, read from the sim's insides: the object
 * table (ids, types, users), each IOAS's areas (with their pages' refs and pins), reserved and
 * allowed ranges, alignment and domains, what each paging domain maps, each nested domain's
 * IOTLB, group attachments, vIOMMU vDEVICEs and queues, fault queues, mmap regions, the
 * context's holders, the process's descriptors, pins of every test page, locked_vm, and the
 * machine's mock devices and group owners.
 */
function simSnapshot(w: World): unknown {
  const b = SIM!;
  const ctx = b.proc.fileOrNull(w.fd.fd) as unknown as Ctx;
  const ids = new Map<unknown, string>();
  for (const [id, e] of ctx.objects) if (e) ids.set(e.obj, `${e.type}:${id}`);
  const tag = (o: unknown): string => (o === null ? 'none' : (ids.get(o) ?? 'other'));
  const domainOwner = new Map<unknown, string>();
  for (const [id, e] of ctx.objects) if (e && (e.type === 'HWPT_PAGING' || e.type === 'HWPT_NESTED')) domainOwner.set((e.obj as unknown as { domain: unknown }).domain, `hwpt:${id}`);
  const pagesTag = new Map<unknown, number>();
  const objects = [...ctx.objects].map(([id, e]) => {
    if (!e) return [id, 'tombstone'];
    const o = e.obj as unknown as AnyObj;
    const row: unknown[] = [id, e.type, e.users];
    if (e.type === 'IOAS') {
      const iopt = o.iopt as import('../src/backends/sim/iommufd/io_pagetable.js').IoPagetable;
      row.push({
        areas: [...iopt.areas.range(0n, MAX)].map((ar) => {
          if (!pagesTag.has(ar.pages)) pagesTag.set(ar.pages, pagesTag.size);
          return [ar.start, ar.last, ar.pageIndex, ar.pageOffset, ar.prot, ar.numAccesses, ar.numLocks, ar.domainPinned, pagesTag.get(ar.pages), ar.pages.refs, ar.pages.npinned];
        }),
        reserved: iopt.reserved.map((r) => [r.start, r.last, domainOwner.get(r.owner) ?? tag(r.owner)]),
        allowed: iopt.allowed.map((r) => [r.start, r.last]),
        align: iopt.iovaAlignment,
        small: iopt.disableLargePages,
        domains: iopt.domains.map((d) => domainOwner.get(d) ?? 'unowned'),
        accessAligns: [...iopt.accessAlignments.values()],
        hwpts: (o.hwpts as AnyObj[]).map((h) => h.id),
      });
    } else if (e.type === 'HWPT_PAGING') {
      const d = o.domain as import('../src/backends/sim/iommu/domain.js').PagingDomain;
      row.push({ mapped: d.mapped, runs: d.mappedRuns(), dirty: d.dirtyTracking, fault: tag(o.fault ?? null), auto: o.autoDomain });
    } else if (e.type === 'HWPT_NESTED') {
      row.push({ iotlb: [...(o.domain as { data: Uint32Array }).data], fault: tag(o.fault ?? null) });
    } else if (e.type === 'VIOMMU') {
      row.push({ vdevs: [...(o.vdevs as Map<bigint, AnyObj>)].map(([v, d]) => [v, d.id]), veventqs: (o.veventqs as AnyObj[]).map((q) => q.id) });
    } else if (e.type === 'FAULT' || e.type === 'VEVENTQ') {
      row.push({ deliver: (o.deliver as unknown[]).length, awaiting: (o.awaiting as Map<number, unknown> | undefined)?.size ?? 0 });
    } else if (e.type === 'DEVICE') {
      row.push({ vdev: tag(o.vdev ?? null) });
    }
    return row;
  });
  const groups = [...ctx.igroups].map(([gid, g]) => [gid, g.refs, [...g.pasidAttach].map(([pasid, at]) => [pasid, tag(at.hwpt), [...at.devices.keys()]])]);
  const pins = (addr: bigint, len: number) => {
    const out: number[] = [];
    for (let off = 0; off < len; off += PAGE_SIZE) out.push(b.proc.mm.pinCount(Number(addr) + off));
    return out.join('');
  };
  const c = ctx as unknown as { holders: number; mmaps: { regions: { start: number; length: number; ownerId: number }[] } };
  return {
    objects,
    groups,
    mmaps: c.mmaps.regions.map((r) => [r.start, r.length, r.ownerId]),
    holders: c.holders,
    vfio: ctx.vfioIoasId,
    mode: ctx.accountMode,
    pins: [pins(buffer, BUFFER_SIZE), pins(mfdBuffer, BUFFER_SIZE)],
    proc: leakState(b),
    lockedVm: b.proc.mm.lockedVm,
  };
}

interface Sweep {
  name: string;
  /** The kernel keeps what the command did when only copying its result back fails (the last point). */
  commits?: boolean;
  /** Unarmed steps the command needs beyond the world. */
  prep?: (w: World) => void;
  call: (w: World) => unknown;
}

const vfioCall = (w: World, request: number, bytes: Uint8Array) => w.fd.binding.ioctl(w.fd.fd, request, bytes);

function vfioStruct(size: number, fill: (dv: DataView) => void): Uint8Array {
  const bytes = new Uint8Array(size);
  const dv = new DataView(bytes.buffer);
  dv.setUint32(0, size, true);
  fill(dv);
  return bytes;
}

const SWEEPS: Sweep[] = [
  { name: 'IOMMU_DESTROY (IOAS)', call: (w) => w.fd.destroy(w.b) },
  { name: 'IOMMU_DESTROY (paging HWPT)', call: (w) => w.fd.destroy(w.dirty) },
  { name: 'IOMMU_IOAS_ALLOC', call: (w) => w.fd.allocIoas() },
  {
    name: 'IOMMU_IOAS_ALLOW_IOVAS',
    call: (w) => {
      const uptr = userBytes(USER_DATA, (dv) => {
        dv.setBigUint64(0, 0x10000n, true);
        dv.setBigUint64(8, 0x1ffffn, true);
        dv.setBigUint64(16, 0x100000n, true);
        dv.setBigUint64(24, 0x1fffffn, true);
      });
      w.fd.ioctl(w.fd.cmd(IOCTLS.IOAS_ALLOW_IOVAS).u32('ioas_id', w.b).u32('num_iovas', 2).u64('allowed_iovas', uptr));
    },
  },
  { name: 'IOMMU_IOAS_COPY (into the IOAS with domains)', commits: true, call: (w) => w.fd.ioas(w.a).copyFrom(w.fd.ioas(w.a), A0, 64n * 1024n) },
  { name: 'IOMMU_IOAS_COPY (two areas, new table pages in 4 domains)', commits: true, call: (w) => w.fd.ioas(w.a).copyFrom(w.fd.ioas(w.a), A0, 0x50000n, { iova: FAR }) },
  { name: 'IOMMU_IOAS_COPY (two areas, to an IOAS without domains)', commits: true, call: (w) => w.fd.ioas(w.b).copyFrom(w.fd.ioas(w.a), A0 + 0x30000n, 0x18000n) },
  {
    name: 'IOMMU_IOAS_IOVA_RANGES',
    call: (w) => w.fd.ioctl(w.fd.cmd(IOCTLS.IOAS_IOVA_RANGES).u32('ioas_id', w.a).u32('num_iovas', 10).u64('allowed_iovas', USER_DATA)),
  },
  { name: 'IOMMU_IOAS_MAP (4 domains)', commits: true, call: (w) => w.fd.ioas(w.a).mapUser(buffer + 0x80000n, 0x40000n) },
  { name: 'IOMMU_IOAS_MAP (fixed, new table pages in 4 domains)', commits: true, call: (w) => w.fd.ioas(w.a).mapUser(buffer + 0x80000n, 0x140000n, { iova: FAR }) },
  { name: 'IOMMU_IOAS_MAP (no domain)', commits: true, call: (w) => w.fd.ioas(w.b).mapUser(buffer, 0x40000n) },
  { name: 'IOMMU_IOAS_MAP_FILE', commits: true, call: (w) => w.fd.ioas(w.a).mapFile(mfd, 0x10000n, 0x10000n) },
  { name: 'IOMMU_IOAS_UNMAP', commits: true, call: (w) => w.fd.ioas(w.a).unmap(FILE_IOVA, 64n * 1024n) },
  { name: 'IOMMU_IOAS_UNMAP (all, an access told to let go)', commits: true, call: (w) => w.fd.ioas(w.a).unmapAll() },
  { name: 'IOMMU_OPTION (RLIMIT_MODE get)', call: (w) => w.fd.getRlimitMode() },
  { name: 'IOMMU_OPTION (HUGE_PAGES set)', commits: true, call: (w) => w.fd.ioas(w.b).setHugePages(false) },
  { name: 'IOMMU_VFIO_IOAS (GET)', call: (w) => w.fd.getVfioIoas() },
  { name: 'IOMMU_VFIO_IOAS (SET)', call: (w) => w.fd.setVfioIoas(w.b) },
  { name: 'IOMMU_HWPT_ALLOC (paging on an IOAS)', call: (w) => hwptAlloc(w.fd, w.d2.idevId, w.a, 0, 0, IOMMU_HWPT_DATA_NONE, null, 0) },
  {
    name: 'IOMMU_HWPT_ALLOC (paging; areas over several table pages)',
    prep: (w) => w.fd.ioas(w.a).mapUser(buffer + 0x80000n, 0x140000n, { iova: FAR }),
    call: (w) => hwptAlloc(w.fd, w.d2.idevId, w.a, 0, 0, IOMMU_HWPT_DATA_NONE, null, 0),
  },
  {
    name: 'IOMMU_HWPT_ALLOC (paging, fault queue)',
    call: (w) => hwptAlloc(w.fd, w.d2.idevId, w.a, w.faultId, IOMMU_HWPT_FAULT_ID_VALID, IOMMU_HWPT_DATA_NONE, null, 0),
  },
  {
    name: 'IOMMU_HWPT_ALLOC (nested on a parent)',
    call: (w) => hwptAlloc(w.fd, w.d1.idevId, w.parent, 0, 0, IOMMU_HWPT_DATA_SELFTEST, SELFTEST_DATA, HWPT_SELFTEST_SIZE),
  },
  {
    name: 'IOMMU_HWPT_ALLOC (nested on a vIOMMU)',
    call: (w) => hwptAlloc(w.fd, w.d1.idevId, w.viommu, 0, 0, IOMMU_HWPT_DATA_SELFTEST, SELFTEST_DATA, HWPT_SELFTEST_SIZE),
  },
  { name: 'IOMMU_GET_HW_INFO', call: (w) => getHwInfo(w.fd, w.d1.idevId, IOMMU_HW_INFO_TYPE_DEFAULT, INFO, TEST_HW_INFO_SIZE) },
  { name: 'IOMMU_HWPT_SET_DIRTY_TRACKING', call: (w) => w.fd.ioctl(w.fd.cmd(IOCTLS.HWPT_SET_DIRTY_TRACKING).u32('hwpt_id', w.dirty).u32('flags', 1)) },
  {
    name: 'IOMMU_HWPT_GET_DIRTY_BITMAP',
    prep: (w) => {
      w.fd.ioctl(w.fd.cmd(IOCTLS.HWPT_SET_DIRTY_TRACKING).u32('hwpt_id', w.dirty).u32('flags', 1));
      w.test.setDirty(w.dirty, A0, 0x40000n, BigInt(PAGE_SIZE), userBytes(USER_DATA, (dv) => dv.setUint32(0, 0x0f0f0f0f, true)));
    },
    call: (w) => w.fd.ioctl(w.fd.cmd(IOCTLS.HWPT_GET_DIRTY_BITMAP).u32('hwpt_id', w.dirty).u64('iova', A0).u64('length', 0x40000n)
      .u64('page_size', BigInt(PAGE_SIZE)).u64('data', userBytes(USER_DATA + 1024n, () => {}))),
  },
  {
    name: 'IOMMU_HWPT_INVALIDATE (nested)',
    commits: true,
    call: (w) => w.fd.ioctl(w.fd.cmd(IOCTLS.HWPT_INVALIDATE).u32('hwpt_id', w.nested).u64('data_uptr', userBytes(USER_DATA, (dv) => dv.setUint32(4, 1, true)))
      .u32('data_type', IOMMU_HWPT_INVALIDATE_DATA_SELFTEST).u32('entry_len', 8).u32('entry_num', 1)),
  },
  {
    name: 'IOMMU_HWPT_INVALIDATE (vIOMMU)',
    commits: true,
    call: (w) => w.fd.ioctl(w.fd.cmd(IOCTLS.HWPT_INVALIDATE).u32('hwpt_id', w.viommu).u64('data_uptr', userBytes(USER_DATA, (dv) => dv.setUint32(4, 0x99, true)))
      .u32('data_type', IOMMU_VIOMMU_INVALIDATE_DATA_SELFTEST).u32('entry_len', 12).u32('entry_num', 1)),
  },
  { name: 'IOMMU_FAULT_QUEUE_ALLOC', call: (w) => faultAlloc(w.fd) },
  {
    name: 'IOMMU_VIOMMU_ALLOC (driver data, mmap region)',
    call: (w) => viommuAlloc(w.fd, w.d1.idevId, w.parent, IOMMU_VIOMMU_TYPE_SELFTEST, { uptr: userBytes(USER_DATA, (dv) => dv.setUint32(0, 0xcafe, true)), len: 24 }),
  },
  { name: 'IOMMU_VDEVICE_ALLOC', call: (w) => vdeviceAlloc(w.fd, w.viommu, w.d2.idevId, 0x88n) },
  { name: 'IOMMU_VEVENTQ_ALLOC', call: (w) => veventqAlloc(w.fd, w.viommu, IOMMU_VEVENTQ_TYPE_SELFTEST, 2) },
  { name: 'IOMMU_HW_QUEUE_ALLOC', call: (w) => hwQueueAlloc(w.fd, w.viommu, IOMMU_HW_QUEUE_TYPE_SELFTEST, 0, A0 + 0x10n, BigInt(PAGE_SIZE)) },
  { name: 'IOMMU_IOAS_NOIOMMU_GET_PA (EOPNOTSUPP)', call: (w) => w.fd.ioctl(w.fd.cmd(IOCTLS.IOAS_NOIOMMU_GET_PA).u32('ioas_id', w.a).u64('iova', A0)) },
  {
    name: 'IOMMU_IOAS_CHANGE_PROCESS (EINVAL: user memory is mapped)',
    call: (w) => w.fd.ioctl(w.fd.cmd(IOCTLS.IOAS_CHANGE_PROCESS)),
  },
  {
    name: 'IOMMU_IOAS_CHANGE_PROCESS',
    prep: (w) => {
      w.fd.ioas(w.a).unmap(A0, 256n * 1024n);
    },
    call: (w) => w.fd.ioctl(w.fd.cmd(IOCTLS.IOAS_CHANGE_PROCESS)),
  },
  // ---- IOMMU_TEST_CMD
  { name: 'TEST_OP_ADD_RESERVED', call: (w) => w.test.addReserved(w.b, 0x10000n, 0x10000n) },
  { name: 'TEST_OP_MOCK_DOMAIN (IOAS with areas and domains)', call: (w) => w.test.mockDomain(w.a) },
  {
    name: 'TEST_OP_MOCK_DOMAIN (an IOAS whose areas span table pages: new automatic HWPT)',
    prep: (w) => {
      w.fd.ioas(w.b).mapUser(buffer, 0x40000n, { iova: A0 });
      w.fd.ioas(w.b).mapUser(buffer + 0x80000n, 0x140000n, { iova: FAR });
    },
    call: (w) => w.test.mockDomain(w.b),
  },
  { name: 'TEST_OP_MOCK_DOMAIN (empty IOAS)', call: (w) => w.test.mockDomain(w.b) },
  { name: 'TEST_OP_MOCK_DOMAIN (onto a HWPT)', call: (w) => w.test.mockDomain(w.dirty) },
  { name: 'TEST_OP_MOCK_DOMAIN_FLAGS', call: (w) => w.test.mockDomainFlags(w.a, MOCK_FLAGS_DEVICE_PASID) },
  { name: 'TEST_OP_MOCK_DOMAIN_REPLACE (to an IOAS: new automatic HWPT)', commits: true, call: (w) => w.test.mockDomainReplace(w.d2.stdevId, w.b) },
  { name: 'TEST_OP_MOCK_DOMAIN_REPLACE (to a HWPT)', commits: true, call: (w) => w.test.mockDomainReplace(w.d2.stdevId, w.dirty) },
  { name: 'TEST_OP_MD_CHECK_MAP', call: (w) => w.test.checkMap(w.d2.hwptId, A0, 256n * 1024n, buffer) },
  { name: 'TEST_OP_MD_CHECK_REFS', call: (w) => w.test.checkRefs(buffer + 0x100000n, 0x10000n, 0) },
  { name: 'TEST_OP_CREATE_ACCESS', call: (w) => w.test.createAccess(w.a, MOCK_FLAGS_ACCESS_CREATE_NEEDS_PIN_PAGES) },
  { name: 'TEST_OP_ACCESS_PAGES', call: (w) => w.test.accessPages(w.access, A0 + 0x8000n, 0x30000n, MOCK_FLAGS_ACCESS_WRITE, buffer + 0x8000n) },
  { name: 'TEST_OP_ACCESS_PAGES (two areas)', call: (w) => w.test.accessPages(w.access, A0 + 0x3c000n, 0x8000n) },
  { name: 'TEST_OP_ACCESS_PAGES (file pages)', call: (w) => w.test.accessPages(w.access, FILE_IOVA, 0x4000n) },
  { name: 'TEST_OP_DESTROY_ACCESS_PAGES', call: (w) => w.test.destroyAccessPages(w.access, w.accessItem) },
  { name: 'TEST_OP_ACCESS_RW (read)', call: (w) => w.test.accessRw(w.access, A0 + 3n, TMP, 100n) },
  { name: 'TEST_OP_ACCESS_RW (write)', call: (w) => w.test.accessRw(w.access, A0 + 3n, TMP, 100n, MOCK_ACCESS_RW_WRITE) },
  { name: 'TEST_OP_ACCESS_RW (slow path, file)', call: (w) => w.test.accessRw(w.access, FILE_IOVA, TMP, 100n, MOCK_ACCESS_RW_SLOW_PATH) },
  { name: 'TEST_OP_SET_TEMP_MEMORY_LIMIT', call: (w) => w.test.setTempMemoryLimit(32) },
  { name: 'TEST_OP_ACCESS_REPLACE_IOAS', call: (w) => w.test.accessReplaceIoas(w.access, w.b) },
  {
    name: 'TEST_OP_DIRTY',
    commits: true,
    prep: (w) => w.fd.ioctl(w.fd.cmd(IOCTLS.HWPT_SET_DIRTY_TRACKING).u32('hwpt_id', w.dirty).u32('flags', 1)),
    call: (w) => w.test.setDirty(w.dirty, A0, 0x40000n, BigInt(PAGE_SIZE), userBytes(USER_DATA, (dv) => dv.setUint32(0, 0x5555, true))),
  },
  { name: 'TEST_OP_MD_CHECK_IOTLB', call: (w) => w.test.checkIotlb(w.nested, 0, IOMMU_TEST_IOTLB_DEFAULT) },
  {
    name: 'TEST_OP_TRIGGER_IOPF',
    prep: (w) => w.test.pasidAttach(w.d1.stdevId, 300, w.iopf),
    call: (w) => w.test.triggerIopf(w.d1.idevId, 300),
  },
  { name: 'TEST_OP_DEV_CHECK_CACHE', call: (w) => w.test.checkDevCache(w.d1.idevId, 0, IOMMU_TEST_DEV_CACHE_DEFAULT) },
  {
    name: 'TEST_OP_TRIGGER_VEVENT',
    prep: (w) => veventqAlloc(w.fd, w.viommu, IOMMU_VEVENTQ_TYPE_SELFTEST, 2),
    call: (w) => w.test.triggerVevent(w.d1.idevId),
  },
  { name: 'TEST_OP_PASID_ATTACH (HWPT)', call: (w) => w.test.pasidAttach(w.d1.stdevId, 200, w.parent) },
  { name: 'TEST_OP_PASID_ATTACH (nested)', call: (w) => w.test.pasidAttach(w.d1.stdevId, 200, w.nested) },
  {
    name: 'TEST_OP_PASID_REPLACE',
    commits: true,
    prep: (w) => w.test.pasidAttach(w.d1.stdevId, 200, w.parent),
    call: (w) => w.test.pasidReplace(w.d1.stdevId, 200, w.pasidHwpt),
  },
  { name: 'TEST_OP_PASID_DETACH', prep: (w) => w.test.pasidAttach(w.d1.stdevId, 200, w.parent), call: (w) => w.test.pasidDetach(w.d1.stdevId, 200) },
  { name: 'TEST_OP_PASID_CHECK_HWPT', call: (w) => w.test.pasidCheckHwpt(w.d1.stdevId, 0, w.nestedV) },
  // ---- the VFIO type1 container ioctls on the iommufd (vfio_compat.c), on IOAS A
  { name: 'VFIO_GET_API_VERSION', call: (w) => w.fd.binding.ioctlInt(w.fd.fd, V.VFIO_GET_API_VERSION, 0) },
  { name: 'VFIO_CHECK_EXTENSION', call: (w) => w.fd.binding.ioctlInt(w.fd.fd, V.VFIO_CHECK_EXTENSION, V.VFIO_TYPE1v2_IOMMU) },
  { name: 'VFIO_SET_IOMMU (TYPE1v2)', call: (w) => w.fd.binding.ioctlInt(w.fd.fd, V.VFIO_SET_IOMMU, V.VFIO_TYPE1v2_IOMMU) },
  { name: 'VFIO_IOMMU_GET_INFO', call: (w) => vfioCall(w, V.VFIO_IOMMU_GET_INFO, vfioStruct(256, () => {})) },
  {
    name: 'VFIO_IOMMU_MAP_DMA',
    call: (w) => vfioCall(w, V.VFIO_IOMMU_MAP_DMA, vfioStruct(V.vfio_iommu_type1_dma_map.size, (dv) => {
      dv.setUint32(4, V.VFIO_DMA_MAP_FLAG_READ | V.VFIO_DMA_MAP_FLAG_WRITE, true);
      dv.setBigUint64(8, buffer + 0x100000n, true);
      dv.setBigUint64(16, A0 + 0x400000n, true);
      dv.setBigUint64(24, 0x20000n, true);
    })),
  },
  {
    name: 'VFIO_IOMMU_UNMAP_DMA',
    commits: true,
    call: (w) => vfioCall(w, V.VFIO_IOMMU_UNMAP_DMA, vfioStruct(V.vfio_iommu_type1_dma_unmap.size, (dv) => {
      dv.setBigUint64(8, FILE_IOVA, true);
      dv.setBigUint64(16, 0x10000n, true);
    })),
  },
];

const pointsPerCommand: Record<string, number> = {};

describe(`fault injection at every point of every command [${BACKEND}]`, () => {
  const nth = SIM ? new FailNth(base) : null;
  afterAll(() => {
    nth?.close();
    if (Object.keys(pointsPerCommand).length) {
      console.log(`fail_nth sweep: injection points per command\n${Object.entries(pointsPerCommand).map(([k, v]) => `  ${String(v).padStart(4)}  ${k}`).join('\n')}`);
    }
  });

  /** One run with the Nth point armed (0: none): outcome, whether N was reached, the state before and after. */
  function runOnce(s: Sweep, n: number): { outcome: string; reached: boolean; before: unknown; after: unknown } {
    const fds = SIM!.proc.openFds();
    const clean = leakState(base);
    const w = buildWorld(nth!);
    s.prep?.(w);
    const before = simSnapshot(w);
    nth!.iteration = n;
    nth!.enable();
    let outcome = 'ok';
    try {
      s.call(w);
    } catch (e) {
      if (!(e instanceof IommuError)) throw e;
      outcome = e.code;
    }
    const reached = n > 0 && nth!.reached();
    const after = simSnapshot(w);
    closeWorld(w, fds);
    expect(leakState(base), `${s.name}: leak after N=${n}`).toEqual(clean);
    return { outcome, reached, before, after };
  }

  for (const s of SWEEPS) {
    (SIM ? it : it.skip)(`${s.name}${SIM ? '' : ' (skipped: reads the sim\'s state; the kernel tier runs the C port above)'}`, () => {
      const ref = runOnce(s, 0);
      const failed: ReturnType<typeof runOnce>[] = [];
      for (let n = 1; ; n++) {
        expect(n).toBeLessThan(1000);
        const r = runOnce(s, n);
        if (!r.reached) {
          expect(r.outcome).toBe(ref.outcome);
          expect(r.after).toEqual(ref.after);
          break;
        }
        failed.push(r);
      }
      failed.forEach((r, i) => {
        const n = i + 1;
        expect(['ENOMEM', 'EFAULT'], `${s.name}: N=${n} failed ${r.outcome}`).toContain(r.outcome);
        if (s.commits && n === failed.length && ref.outcome === 'ok') {
          expect(r.outcome, `${s.name}: the last point is the copy of the result`).toBe('EFAULT');
          expect(r.after, `${s.name}: N=${n} keeps what the kernel keeps`).toEqual(ref.after);
        } else {
          expect(r.after, `${s.name}: N=${n} (${r.outcome}) changed the state`).toEqual(r.before);
        }
      });
      pointsPerCommand[s.name] = failed.length;
    });
  }
});
