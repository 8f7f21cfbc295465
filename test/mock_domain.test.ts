/**
 * Port of the kernel selftest FIXTURE(iommufd_mock_domain) from
 * tools/testing/selftests/iommu/iommufd.c, all six variants: one_domain, two_domains,
 * one_domain_hugepage, two_domains_hugepage (MAP_HUGETLB|MAP_POPULATE, 2 * HUGEPAGE_SIZE),
 * one_domain_file, one_domain_file_hugepage (memfd; "hugepage" only changes the buffer size and
 * step there: the C helpers map the memfd without MAP_HUGETLB). One `it` per TEST_F, named after
 * it; the steps follow the C source.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { MemFd, type Ioas, type UserMemory } from '../src/index.js';
import { MAP_POPULATE } from '../src/backends/types.js';
import { IOMMU_HWPT_ALLOC_NEST_PARENT } from '../src/ioasid/uapi.js';
import {
  IOMMU_HWPT_DATA_SELFTEST, IOMMU_HWPT_INVALIDATE_DATA_SELFTEST, IOMMU_TEST_IOTLB_DEFAULT, MOCK_APERTURE_START,
  MOCK_FLAGS_ACCESS_CREATE_NEEDS_PIN_PAGES, MOCK_PAGE_SIZE,
} from '../src/testing.js';
import { BACKEND, BUFFER_SIZE, HUGEPAGE_SIZE, P, PAGE_SIZE, expectErrno, useIommufd } from './helpers.js';
import {
  HWPT_SELFTEST_SIZE, INV_SELFTEST_SIZE, IOMMU_HWPT_DATA_NONE, IOMMU_TEST_DEV_CACHE_DEFAULT, MAP_HUGETLB,
  MAP_SHARED_ANON, NO_HUGETLB, devCheckCacheAll, hwptAlloc, hwptInvalidate, ioasAlloc, mmapAnon,
} from './selftest_utils.js';

const PG = PAGE_SIZE;
const BUF = BigInt(BUFFER_SIZE);

interface Variant {
  name: string;
  mockDomains: number;
  hugepages: boolean;
  file: boolean;
}

const VARIANTS: Variant[] = [
  { name: 'one_domain', mockDomains: 1, hugepages: false, file: false },
  { name: 'two_domains', mockDomains: 2, hugepages: false, file: false },
  { name: 'one_domain_hugepage', mockDomains: 1, hugepages: true, file: false },
  { name: 'two_domains_hugepage', mockDomains: 2, hugepages: true, file: false },
  { name: 'one_domain_file', mockDomains: 1, hugepages: false, file: true },
  { name: 'one_domain_file_hugepage', mockDomains: 1, hugepages: true, file: true },
];

describe.each(VARIANTS)(`iommufd_mock_domain $name [${BACKEND}]`, (variant) => {
  const f = useIommufd();
  const self = {
    ioasId: 0, hwptId: 0, hwptIds: [0, 0], stdevIds: [0, 0], idevIds: [0, 0], mmapFlags: 0, mmapBufSize: 0,
  };
  let ioas: Ioas;
  /** The selftests' global memfd `mfd` and its BUFFER_SIZE shared mapping `mfd_buffer`. */
  let mfd: MemFd;
  let mfdBuffer: UserMemory;

  /** Only the tests that mmap with the variant's flags need hugetlb memory. */
  const hugetlbSkip = variant.hugepages && !variant.file ? NO_HUGETLB : null;
  const itHugetlb = (name: string, fn: () => void) =>
    it.skipIf(hugetlbSkip)(hugetlbSkip ? `${name} (skipped: ${hugetlbSkip})` : name, fn);

  // FIXTURE_SETUP(iommufd_mock_domain)
  beforeEach(() => {
    Object.assign(self, { ioasId: 0, hwptId: 0, hwptIds: [0, 0], stdevIds: [0, 0], idevIds: [0, 0] });
    ioas = ioasAlloc(f.ctx);
    self.ioasId = ioas.id;
    for (let i = 0; i !== variant.mockDomains; i++) {
      const d = f.test.mockDomain(self.ioasId);
      self.stdevIds[i] = d.stdevId;
      self.hwptIds[i] = d.hwptId;
      self.idevIds[i] = d.idevId;
      devCheckCacheAll(f.test, self.idevIds[0]!, IOMMU_TEST_DEV_CACHE_DEFAULT);
    }
    self.hwptId = self.hwptIds[0]!;
    self.mmapFlags = MAP_SHARED_ANON;
    self.mmapBufSize = P * 8;
    if (variant.hugepages) {
      // MAP_POPULATE will cause the kernel to fail mmap if THPs are not available.
      self.mmapFlags |= MAP_HUGETLB | MAP_POPULATE;
      self.mmapBufSize = HUGEPAGE_SIZE * 2;
    }
    mfd = new MemFd(f.ctx.binding, 'buffer', BUFFER_SIZE);
    mfdBuffer = mfd.map(BUFFER_SIZE);
  });

  afterEach(() => {
    mfdBuffer.close();
    mfd.close();
  });

  /** check_mock_iova: the kernel checks that the user pages made it to each mock domain. */
  function checkMockIova(ptr: bigint, iova: bigint, length: bigint): void {
    f.test.checkMap(self.hwptId, iova, length, ptr);
    if (self.hwptIds[1]) f.test.checkMap(self.hwptIds[1], iova, length, ptr);
  }

  /** memfd_mmap(length, PROT_READ|PROT_WRITE, MAP_SHARED, &mfd) */
  function memfdMmap(length: number): { mfd: MemFd; buf: UserMemory } {
    const m = new MemFd(f.ctx.binding, 'buffer', length);
    expect(m.fd).toBeGreaterThan(0);
    return { mfd: m, buf: m.map(length) };
  }

  function testBasicMmap(): void {
    const bufSize = self.mmapBufSize;
    // Simple one page map
    const iova = ioas.mapUser(f.buffer.addr, PG);
    checkMockIova(f.buffer.addr, iova, PG);

    const buf = mmapAnon(f.ctx, bufSize, self.mmapFlags);
    // EFAULT half way through mapping
    f.ctx.binding.munmap(buf + BigInt(bufSize / 2), bufSize / 2);
    expectErrno(() => ioas.mapUser(buf, BigInt(bufSize)), 'EFAULT');
    // EFAULT on first page
    f.ctx.binding.munmap(buf, bufSize / 2);
    expectErrno(() => ioas.mapUser(buf, BigInt(bufSize)), 'EFAULT');
  }

  function testBasicFile(): void {
    const bufSize = self.mmapBufSize;
    // Simple one page map
    const iova = ioas.mapFile(mfd, 0n, PG);
    checkMockIova(mfdBuffer.addr, iova, PG);

    const tmp = memfdMmap(bufSize);
    expectErrno(() => ioas.mapFile(tmp.mfd, 0n, BigInt(bufSize) + 1n), 'EINVAL');
    tmp.mfd.truncate(0);
    expectErrno(() => ioas.mapFile(tmp.mfd, 0n, BigInt(bufSize)), 'EINVAL');
    tmp.mfd.close();
    tmp.buf.close(); // (the C test leaves the mapping to process exit)
  }

  itHugetlb('basic', () => {
    if (variant.file) testBasicFile();
    else testBasicMmap();
  });

  it('ro_unshare (a memfd stands in for /proc/self/exe: the sim has no executable file)', () => {
    // The C test maps a page of /proc/self/exe MAP_PRIVATE; any file page in a private mapping
    // takes the same path (a read-only long-term pin must unshare it first). Give it content.
    using file = new MemFd(f.ctx.binding, 'ro_unshare', P);
    const shared = file.map(P);
    shared.bytes.fill(0x5a);
    shared.close();
    const buf = file.map(P, 0, { shared: false });

    // There have been lots of changes to the "unshare" mechanism in get_user_pages(), make sure
    // it works right. The write to the page after we map it for reading should not change the
    // assigned PFN.
    const iova = ioas.mapUser(buf.addr, PG, { writeable: false }); // IOMMU_IOAS_MAP_READABLE only
    checkMockIova(buf.addr, iova, PG);
    buf.bytes.fill(1);
    checkMockIova(buf.addr, iova, PG);
    buf.close();
  });

  /** all_aligns and all_aligns_copy: the same loops, the latter adding a domain per map. */
  function allAligns(copy: boolean): void {
    const testStep = variant.hugepages ? self.mmapBufSize / 16 : MOCK_PAGE_SIZE;
    const bufSize = self.mmapBufSize;
    let mfdTmp: MemFd | null = null;
    let buf: bigint;
    if (variant.file) {
      const m = memfdMmap(bufSize);
      mfdTmp = m.mfd;
      buf = m.buf.addr;
    } else {
      buf = mmapAnon(f.ctx, bufSize, self.mmapFlags);
    }
    f.test.checkRefs(buf, BigInt(bufSize), 0);

    // Map every combination of page size and alignment within a big region, less for hugepage
    // case as it takes so long to finish. (For hugepages `end` starts at buf_size, so the inner
    // loop does not run at all: the C test only maps in the non-huge variants.)
    for (let start = 0; start < bufSize; start += testStep) {
      let end = variant.hugepages ? bufSize : start + MOCK_PAGE_SIZE;
      for (; end < bufSize; end += MOCK_PAGE_SIZE) {
        const length = BigInt(end - start);
        const iova = mfdTmp ? ioas.mapFile(mfdTmp, BigInt(start), length) : ioas.mapUser(buf + BigInt(start), length);
        let mockStdevId = 0;
        const oldId = self.hwptIds[1]!;
        if (copy) {
          // Add and destroy a domain while the area exists
          const d = f.test.mockDomain(self.ioasId);
          mockStdevId = d.stdevId;
          self.hwptIds[1] = d.hwptId;
        }
        checkMockIova(buf + BigInt(start), iova, length);
        const first = Math.floor(start / P) * P;
        f.test.checkRefs(buf + BigInt(first), BigInt(Math.floor(end / P) * P - first), 1);
        if (copy) {
          f.ctx.destroy(mockStdevId);
          self.hwptIds[1] = oldId;
        }
        ioas.unmap(iova, length);
      }
    }
    f.test.checkRefs(buf, BigInt(bufSize), 0);
    f.ctx.binding.munmap(buf, bufSize);
    mfdTmp?.close();
  }

  itHugetlb('all_aligns', () => allAligns(false));

  itHugetlb('all_aligns_copy', () => allAligns(true));

  it('user_copy', () => {
    const buf = variant.file ? mfdBuffer.addr : f.buffer.addr;
    const mapIn = (dst: Ioas) => (variant.file ? dst.mapFile(mfd, 0n, BUF) : dst.mapUser(buf, BUF));
    // copy_cmd: flags FIXED_IOVA | WRITEABLE, dst = the fixture's IOAS at MOCK_APERTURE_START
    const copy = (src: Ioas, srcIova: bigint) => ioas.copyFrom(src, srcIova, BUF, { iova: MOCK_APERTURE_START, readable: false });

    // Pin the pages in an IOAS with no domains then copy to an IOAS with domains
    const ioas2 = ioasAlloc(f.ctx);
    let srcIova = mapIn(ioas2);
    const accessFd = f.test.createAccess(ioas2.id, MOCK_FLAGS_ACCESS_CREATE_NEEDS_PIN_PAGES);
    f.test.accessPages(accessFd, srcIova, BUF, 0, buf);
    copy(ioas2, srcIova);
    checkMockIova(buf, MOCK_APERTURE_START, BUF);

    // Now replace the ioas with a new one
    const newIoas = ioasAlloc(f.ctx);
    srcIova = mapIn(newIoas);
    f.test.accessReplaceIoas(accessFd, newIoas.id);

    // Destroy the old ioas and cleanup copied mapping
    ioas.unmap(MOCK_APERTURE_START, BUF);
    f.ctx.destroy(ioas2.id);

    // Then run the same test again with the new ioas
    const pagesId = f.test.accessPages(accessFd, srcIova, BUF, 0, buf);
    copy(newIoas, srcIova);
    checkMockIova(buf, MOCK_APERTURE_START, BUF);

    f.test.destroyAccessPages(accessFd, pagesId);
    f.test.closeAccess(accessFd);
    f.ctx.destroy(newIoas.id);
  });

  it('replace', () => {
    const ioas2 = ioasAlloc(f.ctx);
    f.test.mockDomainReplace(self.stdevIds[0]!, ioas2.id);
    // Replacing the IOAS causes the prior HWPT to be deallocated, thus we should get ENOENT
    // when we try to use it.
    if (variant.mockDomains === 1) expectErrno(() => f.test.mockDomainReplace(self.stdevIds[0]!, self.hwptIds[0]!), 'ENOENT');

    f.test.mockDomainReplace(self.stdevIds[0]!, ioas2.id);
    if (variant.mockDomains >= 2) {
      f.test.mockDomainReplace(self.stdevIds[0]!, self.hwptIds[1]!);
      f.test.mockDomainReplace(self.stdevIds[0]!, self.hwptIds[1]!);
      f.test.mockDomainReplace(self.stdevIds[0]!, self.hwptIds[0]!);
    }

    f.test.mockDomainReplace(self.stdevIds[0]!, self.ioasId);
    f.ctx.destroy(ioas2.id);
  });

  it('alloc_hwpt', () => {
    const alloc = (devId: number, flags: number) => hwptAlloc(f.ctx, devId, self.ioasId, 0, flags, IOMMU_HWPT_DATA_NONE, null, 0);
    for (let i = 0; i !== variant.mockDomains; i++) {
      const idev = self.idevIds[i]!;
      const stdev = self.stdevIds[i]!;
      expectErrno(() => alloc(idev, ~IOMMU_HWPT_ALLOC_NEST_PARENT >>> 0), 'EOPNOTSUPP');
      const hwptId = [alloc(idev, 0), alloc(idev, IOMMU_HWPT_ALLOC_NEST_PARENT)] as const;

      // Do a hw_pagetable rotation test
      f.test.mockDomainReplace(stdev, hwptId[0]);
      expectErrno(() => f.ctx.destroy(hwptId[0]), 'EBUSY');
      f.test.mockDomainReplace(stdev, hwptId[1]);
      expectErrno(() => f.ctx.destroy(hwptId[1]), 'EBUSY');
      f.test.mockDomainReplace(stdev, self.ioasId);
      f.ctx.destroy(hwptId[1]);

      const stddevId = f.test.mockDomain(hwptId[0]).stdevId;
      f.ctx.destroy(stddevId);
      f.ctx.destroy(hwptId[0]);
    }
  });
});

/**
 * Beyond the selftests: driver data longer than the driver's struct. The kernel's
 * __iommu_copy_struct_from_user refuses `data_len > sizeof` with EINVAL before it would look at
 * the tail (so never E2BIG), for HWPT_ALLOC data and for each HWPT_INVALIDATE entry alike.
 */
describe(`driver data longer than the driver's struct [${BACKEND}]`, () => {
  const f = useIommufd();

  it('HWPT_ALLOC nested data and HWPT_INVALIDATE entries past sizeof are EINVAL, zero tail or not', () => {
    const ioas = f.ctx.allocIoas();
    const d = f.test.mockDomain(ioas.id);
    const parent = hwptAlloc(f.ctx, d.idevId, ioas.id, 0, IOMMU_HWPT_ALLOC_NEST_PARENT, IOMMU_HWPT_DATA_NONE, null, 0);
    const data = new Uint8Array(16);
    new DataView(data.buffer).setUint32(0, IOMMU_TEST_IOTLB_DEFAULT, true);
    const nested = (len: number) => hwptAlloc(f.ctx, d.idevId, parent, 0, 0, IOMMU_HWPT_DATA_SELFTEST, data, len);
    for (const len of [HWPT_SELFTEST_SIZE + 1, 12, 16]) expectErrno(() => nested(len), 'EINVAL');
    data[10] = 1;
    expectErrno(() => nested(12), 'EINVAL');
    const hwpt = nested(HWPT_SELFTEST_SIZE);

    const n = { n: 1 };
    const entry = new Uint8Array(16);
    new DataView(entry.buffer).setUint32(4, 2, true); // iotlb_id 2
    expectErrno(() => hwptInvalidate(f.ctx, hwpt, entry, IOMMU_HWPT_INVALIDATE_DATA_SELFTEST, 16, n), 'EINVAL');
    expect(n.n).toBe(0);
    f.test.checkIotlb(hwpt, 2, IOMMU_TEST_IOTLB_DEFAULT);
    n.n = 1;
    hwptInvalidate(f.ctx, hwpt, entry, IOMMU_HWPT_INVALIDATE_DATA_SELFTEST, INV_SELFTEST_SIZE, n);
    expect(n.n).toBe(1);
    f.test.checkIotlb(hwpt, 2, 0);
  });
});
