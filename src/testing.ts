/**
 * The kernel's selftest command (IOMMU_TEST_CMD), exposed as a separate testing extension: on
 * linux it needs a kernel built with CONFIG_IOMMUFD_TEST (else ENOTTY); the sim offers the same
 * ops. It lets the kernel's own selftests be ported and run unchanged on both backends.
 *
 * @module ioasid/testing
 */
import { Command } from './ioasid/codec.js';
import type { Iommufd } from './ioasid/iommufd.js';
import { IOMMU_TEST_CMD, IOMMU_TEST_OP, iommu_test_cmd_members as M } from './ioasid/uapi.js';

export { MOCK_APERTURE_LAST, MOCK_APERTURE_START, MOCK_PAGE_SIZE, MOCK_FLAGS_ACCESS_WRITE, MOCK_ACCESS_RW_WRITE,
  MOCK_ACCESS_RW_SLOW_PATH, MOCK_FLAGS_ACCESS_CREATE_NEEDS_PIN_PAGES, IOMMU_TEST_OP, MOCK_HUGE_PAGE_SIZE,
  MOCK_FLAGS_DEVICE_NO_DIRTY, MOCK_FLAGS_DEVICE_PASID, MOCK_NESTED_DOMAIN_IOTLB_ID_MAX, MOCK_NESTED_DOMAIN_IOTLB_NUM,
  MOCK_IOMMUPT_DEFAULT, MOCK_IOMMUPT_HUGE, IOMMU_HWPT_DATA_SELFTEST, IOMMU_TEST_IOTLB_DEFAULT,
  IOMMU_HWPT_INVALIDATE_DATA_SELFTEST, IOMMU_HWPT_INVALIDATE_DATA_SELFTEST_INVALID, IOMMU_TEST_INVALIDATE_FLAG_ALL,
  IOMMU_HW_INFO_TYPE_SELFTEST, IOMMU_HW_INFO_SELFTEST_REGVAL, IOMMU_TEST_PASID_RESERVED, MOCK_PASID_WIDTH,
  IOMMU_TEST_DEV_CACHE_DEFAULT, MOCK_DEV_CACHE_ID_MAX, MOCK_DEV_CACHE_NUM, IOMMU_VIOMMU_TYPE_SELFTEST,
  IOMMU_VIOMMU_INVALIDATE_DATA_SELFTEST, IOMMU_VIOMMU_INVALIDATE_DATA_SELFTEST_INVALID, IOMMU_VEVENTQ_TYPE_SELFTEST,
  IOMMU_HW_QUEUE_TYPE_SELFTEST, IOMMU_TEST_HW_QUEUE_MAX } from './ioasid/uapi.js';

export class IommufdTest {
  private readonly c = new Command(IOMMU_TEST_CMD);

  constructor(readonly ctx: Iommufd) {}

  private run(op: number, id: number, fill: (c: Command, off: (m: keyof typeof M, f: string) => number) => void = () => {}): Command {
    const c = this.c.reset();
    c.dv.setUint32(4, op, true);
    c.dv.setUint32(8, id, true);
    fill(c, (m, f) => M[m].off[f]!);
    this.ctx.binding.ioctl(this.ctx.fd, IOMMU_TEST_CMD.request, c.buf);
    return c;
  }

  /** Reserve [start, start+length) in an IOAS, as a device's reserved region would. */
  addReserved(ioasId: number, start: bigint, length: bigint): void {
    this.run(IOMMU_TEST_OP.ADD_RESERVED, ioasId, (c, o) => {
      c.dv.setBigUint64(o('add_reserved', 'start'), start, true);
      c.dv.setBigUint64(o('add_reserved', 'length'), length, true);
    });
  }

  /** EIO unless every page of [uptr, uptr+length) has exactly `refs` pins. */
  checkRefs(uptr: bigint, length: bigint, refs: number): void {
    this.run(IOMMU_TEST_OP.MD_CHECK_REFS, 0, (c, o) => {
      c.dv.setBigUint64(o('check_refs', 'uptr'), uptr, true);
      c.dv.setBigUint64(o('check_refs', 'length'), length, true);
      c.dv.setUint32(o('check_refs', 'refs'), refs, true);
    });
  }

  /** An in-kernel access object on an IOAS; returns its fd (close it with closeAccess). */
  createAccess(ioasId: number, flags = 0): number {
    const c = this.run(IOMMU_TEST_OP.CREATE_ACCESS, ioasId, (c, o) => c.dv.setUint32(o('create_access', 'flags'), flags, true));
    return c.dv.getUint32(M.create_access.off.out_access_fd!, true);
  }

  closeAccess(fd: number): void {
    this.ctx.binding.close(fd);
  }

  accessReplaceIoas(accessFd: number, ioasId: number): void {
    this.run(IOMMU_TEST_OP.ACCESS_REPLACE_IOAS, accessFd, (c, o) => c.dv.setUint32(o('access_replace_ioas', 'ioas_id'), ioasId, true));
  }

  /** Pin [iova, iova+length) through the access; returns the pin's id. uptr 0 skips the page check. */
  accessPages(accessFd: number, iova: bigint, length: bigint, flags = 0, uptr = 0n): number {
    const c = this.run(IOMMU_TEST_OP.ACCESS_PAGES, accessFd, (c, o) => {
      c.dv.setUint32(o('access_pages', 'flags'), flags, true);
      c.dv.setBigUint64(o('access_pages', 'iova'), iova, true);
      c.dv.setBigUint64(o('access_pages', 'length'), length, true);
      c.dv.setBigUint64(o('access_pages', 'uptr'), uptr, true);
    });
    return c.dv.getUint32(M.access_pages.off.out_access_pages_id!, true);
  }

  destroyAccessPages(accessFd: number, pagesId: number): void {
    this.run(IOMMU_TEST_OP.DESTROY_ACCESS_PAGES, accessFd, (c, o) => c.dv.setUint32(o('destroy_access_pages', 'access_pages_id'), pagesId, true));
  }

  /** Copy between IOVA space and user memory at `uptr` (flags: MOCK_ACCESS_RW_WRITE, _SLOW_PATH). */
  accessRw(accessFd: number, iova: bigint, uptr: bigint, length: bigint, flags = 0): void {
    this.run(IOMMU_TEST_OP.ACCESS_RW, accessFd, (c, o) => {
      c.dv.setBigUint64(o('access_rw', 'iova'), iova, true);
      c.dv.setBigUint64(o('access_rw', 'length'), length, true);
      c.dv.setBigUint64(o('access_rw', 'uptr'), uptr, true);
      c.dv.setUint32(o('access_rw', 'flags'), flags, true);
    });
  }

  /** A mock device bound and attached to `ptId` (an IOAS or HWPT): its selftest, HWPT and device ids. */
  mockDomain(ptId: number): { stdevId: number; hwptId: number; idevId: number } {
    const c = this.run(IOMMU_TEST_OP.MOCK_DOMAIN, ptId);
    const o = M.mock_domain.off;
    return { stdevId: c.dv.getUint32(o.out_stdev_id!, true), hwptId: c.dv.getUint32(o.out_hwpt_id!, true), idevId: c.dv.getUint32(o.out_idev_id!, true) };
  }

  /** MOCK_DOMAIN_FLAGS: a mock device with MOCK_FLAGS_DEVICE_NO_DIRTY / _PASID. */
  mockDomainFlags(ptId: number, devFlags: number): { stdevId: number; hwptId: number; idevId: number } {
    const c = this.run(IOMMU_TEST_OP.MOCK_DOMAIN_FLAGS, ptId, (c, o) => c.dv.setUint32(o('mock_domain_flags', 'dev_flags'), devFlags, true));
    const o = M.mock_domain.off;
    return { stdevId: c.dv.getUint32(o.out_stdev_id!, true), hwptId: c.dv.getUint32(o.out_hwpt_id!, true), idevId: c.dv.getUint32(o.out_idev_id!, true) };
  }

  /** TRIGGER_IOPF: the mock device raises a page request (grpid, perm, addr) on a PASID (0: the RID). */
  triggerIopf(idevId: number, pasid: number, opts: { grpid?: number; perm?: number; addr?: bigint } = {}): void {
    this.run(IOMMU_TEST_OP.TRIGGER_IOPF, 0, (c, o) => {
      c.dv.setUint32(o('trigger_iopf', 'dev_id'), idevId, true);
      c.dv.setUint32(o('trigger_iopf', 'pasid'), pasid, true);
      c.dv.setUint32(o('trigger_iopf', 'grpid'), opts.grpid ?? 2, true);
      c.dv.setUint32(o('trigger_iopf', 'perm'), opts.perm ?? 3, true);
      c.dv.setBigUint64(o('trigger_iopf', 'addr'), opts.addr ?? 0xdeadbeafn, true);
    });
  }

  /** TRIGGER_VEVENT: the mock device reports a vEVENT (its virt_id) to its vIOMMU's SELFTEST queue. */
  triggerVevent(idevId: number): void {
    this.run(IOMMU_TEST_OP.TRIGGER_VEVENT, 0, (c, o) => c.dv.setUint32(o('trigger_vevent', 'dev_id'), idevId, true));
  }

  /** PASID_ATTACH: attach the mock device's PASID to an IOAS or HWPT; returns the HWPT id. */
  pasidAttach(stdevId: number, pasid: number, ptId: number): number {
    const c = this.run(IOMMU_TEST_OP.PASID_ATTACH, stdevId, (c, o) => {
      c.dv.setUint32(o('pasid_attach', 'pasid'), pasid, true);
      c.dv.setUint32(o('pasid_attach', 'pt_id'), ptId, true);
    });
    return c.dv.getUint32(M.pasid_attach.off.pt_id!, true);
  }

  pasidReplace(stdevId: number, pasid: number, ptId: number): number {
    const c = this.run(IOMMU_TEST_OP.PASID_REPLACE, stdevId, (c, o) => {
      c.dv.setUint32(o('pasid_replace', 'pasid'), pasid, true);
      c.dv.setUint32(o('pasid_replace', 'pt_id'), ptId, true);
    });
    return c.dv.getUint32(M.pasid_replace.off.pt_id!, true);
  }

  pasidDetach(stdevId: number, pasid: number): void {
    this.run(IOMMU_TEST_OP.PASID_DETACH, stdevId, (c, o) => c.dv.setUint32(o('pasid_detach', 'pasid'), pasid, true));
  }

  /** PASID_CHECK_HWPT: EINVAL unless `pasid` is attached to `hwptId` (0: unless it is detached). */
  pasidCheckHwpt(stdevId: number, pasid: number, hwptId: number): void {
    this.run(IOMMU_TEST_OP.PASID_CHECK_HWPT, stdevId, (c, o) => {
      c.dv.setUint32(o('pasid_check', 'pasid'), pasid, true);
      c.dv.setUint32(o('pasid_check', 'hwpt_id'), hwptId, true);
    });
  }

  /** MD_CHECK_MAP: EINVAL unless the mock domain maps [iova, +length) to the pages under uptr. */
  checkMap(hwptId: number, iova: bigint, length: bigint, uptr: bigint): void {
    this.run(IOMMU_TEST_OP.MD_CHECK_MAP, hwptId, (c, o) => {
      c.dv.setBigUint64(o('check_map', 'iova'), iova, true);
      c.dv.setBigUint64(o('check_map', 'length'), length, true);
      c.dv.setBigUint64(o('check_map', 'uptr'), uptr, true);
    });
  }

  /** MD_CHECK_IOTLB: EINVAL unless the nested mock HWPT's IOTLB slot holds `value`. */
  checkIotlb(hwptId: number, iotlbId: number, value: number): void {
    this.run(IOMMU_TEST_OP.MD_CHECK_IOTLB, hwptId, (c, o) => {
      c.dv.setUint32(o('check_iotlb', 'id'), iotlbId, true);
      c.dv.setUint32(o('check_iotlb', 'iotlb'), value, true);
    });
  }

  /** DEV_CHECK_CACHE: EINVAL unless the mock device's cache slot `cacheId` holds `value`. */
  checkDevCache(idevId: number, cacheId: number, value: number): void {
    this.run(IOMMU_TEST_OP.DEV_CHECK_CACHE, idevId, (c, o) => {
      c.dv.setUint32(o('check_dev_cache', 'id'), cacheId, true);
      c.dv.setUint32(o('check_dev_cache', 'cache'), value, true);
    });
  }

  /** IOMMU_TEST_OP_DIRTY: mark the IOPTEs under each set bit dirty; returns how many bits were set. */
  setDirty(hwptId: number, iova: bigint, length: bigint, pageSize: bigint, bitmapAddr: bigint): bigint {
    const c = this.run(IOMMU_TEST_OP.DIRTY, hwptId, (c, o) => {
      c.dv.setBigUint64(o('dirty', 'iova'), iova, true);
      c.dv.setBigUint64(o('dirty', 'length'), length, true);
      c.dv.setBigUint64(o('dirty', 'page_size'), pageSize, true);
      c.dv.setBigUint64(o('dirty', 'uptr'), bitmapAddr, true);
    });
    return c.dv.getBigUint64(M.dirty.off.out_nr_dirty!, true);
  }

  /** Move a mock device (by its selftest id) to another IOAS or HWPT; returns the HWPT id. */
  mockDomainReplace(stdevId: number, ptId: number): number {
    const c = this.run(IOMMU_TEST_OP.MOCK_DOMAIN_REPLACE, stdevId, (c) => c.dv.setUint32(16, ptId, true));
    return c.dv.getUint32(16, true);
  }

  setTempMemoryLimit(limit: number): void {
    this.run(IOMMU_TEST_OP.SET_TEMP_MEMORY_LIMIT, 0, (c, o) => c.dv.setUint32(o('memory_limit', 'limit'), limit, true));
  }
}
