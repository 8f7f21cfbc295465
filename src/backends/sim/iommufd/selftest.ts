/**
 * IOMMU_TEST_CMD (selftest.c): what the kernel offers its own selftests when built with
 * CONFIG_IOMMUFD_TEST, so those tests can be ported and run on both backends: ADD_RESERVED,
 * MD_CHECK_REFS, the access object path (CREATE_ACCESS, ACCESS_PAGES, ACCESS_RW,
 * DESTROY_ACCESS_PAGES, ACCESS_REPLACE_IOAS), SET_TEMP_MEMORY_LIMIT, and the mock IOMMU
 * (mock_iommu.ts): MOCK_DOMAIN(_FLAGS) creates a mock device bound and attached to an IOAS or
 * HWPT, MOCK_DOMAIN_REPLACE, MD_CHECK_MAP, MD_CHECK_IOTLB, DIRTY.
 */
import { ERRNO } from '../../../ioasid/errors.js';
import {
  IOMMU_TEST_OP, MOCK_ACCESS_RW_SLOW_PATH, MOCK_ACCESS_RW_WRITE, MOCK_FLAGS_ACCESS_CREATE_NEEDS_PIN_PAGES,
  MOCK_FLAGS_ACCESS_SYZ, MOCK_FLAGS_ACCESS_WRITE, IOMMU_VEVENTQ_TYPE_SELFTEST, MOCK_DEV_CACHE_ID_MAX, iommu_test_cmd_members as T,
} from '../../../ioasid/uapi.js';
import type { HwptNested, HwptPaging } from './hw_pagetable.js';
import { kerr } from '../kernel/errno.js';
import { shouldFailSlab } from '../kernel/fault_inject.js';
import { IOMMU_PGFAULT_FLAGS_LAST_PAGE, IOMMU_PGFAULT_FLAGS_PASID_VALID } from './eventq.js';
import { deviceAttach, deviceBind, deviceDetach, deviceReplace, deviceUnbind, faultTarget, NO_PASID, type IommufdDevice } from './device.js';
import { MOCK_NESTED_DOMAIN_IOTLB_ID_MAX, MockDevice, isMockPaging, isMockNested } from './mock_iommu.js';
import { accessPinPages, accessUnpinPages, contig } from './access.js';
import { IOMMU_READ, IOMMU_WRITE, areaPage, areaPageOffset } from './io_pagetable.js';
import type { IoasObject } from './ioas.js';
import type { IommufdCtx, SimObject } from './main.js';
import { PAGE_SIZE } from '../kernel/mm.js';
import type { SimFile } from '../kernel/process.js';
import type { Ucmd } from './ucmd.js';

const MAX = 0xffff_ffff_ffff_ffffn;
const PAGE = BigInt(PAGE_SIZE);

interface AccessItem {
  iova: bigint;
  length: bigint;
  id: number;
}

/** An in-kernel access (iommufd_access) plus the selftest's file that owns it. */
class SelftestAccess implements SimObject, SimFile {
  readonly kind = 'selftest_access';
  ioasId = 0;
  items: AccessItem[] = [];
  nextId = 0;
  readonly alignment: bigint;

  constructor(
    readonly ctx: IommufdCtx,
    readonly needsPin: boolean,
  ) {
    this.alignment = needsPin ? PAGE : 1n;
  }

  get ioas(): IoasObject | null {
    return this.ioasId ? this.ctx.get<IoasObject>(this.ioasId, 'IOAS') : null;
  }

  /** iommufd_access_change_ioas */
  attach(ioasId: number): void {
    if (ioasId === this.ioasId) return;
    const next = ioasId ? this.ctx.get<IoasObject>(ioasId, 'IOAS') : null;
    if (next) {
      if (shouldFailSlab()) kerr(ERRNO.ENOMEM); // iopt_add_access's xa_alloc (fault injection)
      next.iopt.accessAlignments.set(this, this.alignment);
      try {
        next.iopt.recalculateAlignment();
      } catch (e) {
        next.iopt.accessAlignments.delete(this);
        throw e;
      }
      next.iopt.notifier = notifierFor(this.ctx, next);
      this.ctx.ref(ioasId, 1);
    }
    const cur = this.ioas;
    if (cur) {
      this.unmap(0n, MAX);
      cur.iopt.accessAlignments.delete(this);
      cur.iopt.recalculateAlignment();
      this.ctx.ref(this.ioasId, -1);
    }
    this.ioasId = ioasId;
  }

  /** The selftest driver's unmap callback: drop every item intersecting the range. */
  unmap(iova: bigint, length: bigint): void {
    const last = iova + length - 1n;
    const keep: AccessItem[] = [];
    for (const it of this.items) {
      if (iova > it.iova + it.length - 1n || last < it.iova) keep.push(it);
      else this.unpinPages(it.iova, it.length);
    }
    this.items = keep;
  }

  /** iommufd_access_pin_pages: all or nothing. */
  pinPages(iova: bigint, length: bigint, write: boolean): void {
    accessPinPages(this.ioas, iova, length, write, false);
  }

  unpinPages(iova: bigint, length: bigint): void {
    const ioas = this.ioas;
    if (ioas) accessUnpinPages(ioas, iova, length, false);
  }

  /** iommufd_access_rw */
  rw(iova: bigint, buf: Uint8Array, write: boolean): void {
    if (!buf.length) kerr(ERRNO.EINVAL);
    const last = iova + BigInt(buf.length) - 1n;
    if (last > MAX) kerr(ERRNO.EOVERFLOW);
    const ioas = this.ioas;
    if (!ioas) kerr(ERRNO.ENOENT);
    let done = 0;
    for (const [area, cur, end] of contig(ioas, iova, last)) {
      if (!(area.prot & (write ? IOMMU_WRITE : IOMMU_READ))) kerr(ERRNO.EPERM);
      const n = Number(end - cur) + 1;
      area.pages.rw(areaPage(area, cur), areaPageOffset(area, cur), buf.subarray(done, done + n), write);
      done += n;
    }
  }

  /** Closing the access fd destroys the access and drops its hold on the context. */
  release(): void {
    this.attach(0);
    const id = this.ctx.idOf(this);
    if (id) this.ctx.remove(id);
    this.ctx.release();
  }

  destroy(): void {
    if (this.ioasId) this.attach(0);
  }
}

/** iommufd_access_notify_unmap: every access attached to this IOAS is told (internal ones are not). */
function notifierFor(ctx: IommufdCtx, ioas: IoasObject) {
  return {
    notifyUnmap(iova: bigint, length: bigint): void {
      for (const e of ctx.objects.values()) {
        if (e?.type === 'ACCESS' && e.obj instanceof SelftestAccess && e.obj.ioas === ioas) e.obj.unmap(iova, length);
      }
    },
  };
}

function accessFromFd(ctx: IommufdCtx, fd: number): SelftestAccess {
  let f: SimFile;
  try {
    f = ctx.proc.file(fd);
  } catch {
    return kerr(77 /* EBADFD */);
  }
  if (!(f instanceof SelftestAccess)) kerr(77);
  return f;
}

const o = (m: keyof typeof T, f: string): number => T[m].off[f]!;

export function selftestHandler(ctx: IommufdCtx, u: Ucmd): void {
  const id = u.u32(8);
  switch (u.u32(4)) {
    case IOMMU_TEST_OP.ADD_RESERVED: {
      const start = u.u64(o('add_reserved', 'start'));
      const length = u.u64(o('add_reserved', 'length'));
      if (!length) kerr(ERRNO.EINVAL);
      if (start + length - 1n > MAX) kerr(ERRNO.EOVERFLOW);
      ctx.get<IoasObject>(id, 'IOAS').iopt.reserve(start, start + length - 1n, null);
      return;
    }
    case IOMMU_TEST_OP.MD_CHECK_REFS: {
      const uptr = u.u64(o('check_refs', 'uptr'));
      const length = u.u64(o('check_refs', 'length'));
      const refs = u.u32(o('check_refs', 'refs'));
      if (length % PAGE || uptr % PAGE || uptr + length > MAX) kerr(ERRNO.EINVAL);
      for (let a = Number(uptr), n = Number(length); n > 0; n -= PAGE_SIZE, a += PAGE_SIZE) {
        if (ctx.proc.mm.pinCount(a) !== refs) kerr(ERRNO.EIO);
      }
      return;
    }
    case IOMMU_TEST_OP.CREATE_ACCESS: {
      const flags = u.u32(o('create_access', 'flags'));
      if (flags & ~MOCK_FLAGS_ACCESS_CREATE_NEEDS_PIN_PAGES) kerr(ERRNO.EOPNOTSUPP);
      if (shouldFailSlab()) kerr(ERRNO.ENOMEM); // iommufd_test_alloc_access: the selftest_access and its file
      const access = new SelftestAccess(ctx, !!(flags & MOCK_FLAGS_ACCESS_CREATE_NEEDS_PIN_PAGES));
      ctx.abortOnError(ctx.add('ACCESS', access), () => {
        access.attach(id);
        u.setU32(o('create_access', 'out_access_fd'), ctx.proc.unusedFd());
        u.respond();
      });
      ctx.hold();
      ctx.proc.installFd(access); // fd_install, once the response reached the user
      return;
    }
    case IOMMU_TEST_OP.ACCESS_REPLACE_IOAS:
      accessFromFd(ctx, id).attach(u.u32(o('access_replace_ioas', 'ioas_id')));
      return;
    case IOMMU_TEST_OP.ACCESS_PAGES: {
      const iova = u.u64(o('access_pages', 'iova'));
      const length = u.u64(o('access_pages', 'length'));
      const flags = u.u32(o('access_pages', 'flags'));
      if (length > 16n * 1024n * 1024n) kerr(ERRNO.ENOMEM);
      if (flags & ~(MOCK_FLAGS_ACCESS_WRITE | MOCK_FLAGS_ACCESS_SYZ)) kerr(ERRNO.EOPNOTSUPP);
      const access = accessFromFd(ctx, id);
      if (!access.needsPin) kerr(ERRNO.EOPNOTSUPP);
      if (shouldFailSlab()) kerr(ERRNO.ENOMEM); // the page array (fault injection)
      access.pinPages(iova, length, !!(flags & MOCK_FLAGS_ACCESS_WRITE));
      try {
        if (shouldFailSlab()) kerr(ERRNO.ENOMEM); // the item
        u.setU32(o('access_pages', 'out_access_pages_id'), access.nextId);
        u.respond();
      } catch (e) {
        access.unpinPages(iova, length);
        throw e;
      }
      access.items.push({ iova, length, id: access.nextId++ });
      return;
    }
    case IOMMU_TEST_OP.DESTROY_ACCESS_PAGES: {
      const access = accessFromFd(ctx, id);
      const itemId = u.u32(o('destroy_access_pages', 'access_pages_id'));
      const i = access.items.findIndex((it) => it.id === itemId);
      if (i < 0) kerr(ERRNO.ENOENT);
      const [it] = access.items.splice(i, 1);
      access.unpinPages(it!.iova, it!.length);
      return;
    }
    case IOMMU_TEST_OP.ACCESS_RW: {
      const iova = u.u64(o('access_rw', 'iova'));
      const length = u.u64(o('access_rw', 'length'));
      const uptr = Number(u.u64(o('access_rw', 'uptr')));
      const flags = u.u32(o('access_rw', 'flags'));
      if (length > 16n * 1024n * 1024n) kerr(ERRNO.ENOMEM);
      if (flags & ~(MOCK_ACCESS_RW_WRITE | MOCK_ACCESS_RW_SLOW_PATH | MOCK_FLAGS_ACCESS_SYZ)) kerr(ERRNO.EOPNOTSUPP);
      const access = accessFromFd(ctx, id);
      if (shouldFailSlab()) kerr(ERRNO.ENOMEM); // kvzalloc of the bounce buffer (fault injection)
      const tmp = new Uint8Array(Number(length));
      const write = !!(flags & MOCK_ACCESS_RW_WRITE);
      if (write) ctx.proc.mm.copyFromUser(uptr, tmp);
      access.rw(iova, tmp, write);
      if (!write) ctx.proc.mm.copyToUser(uptr, tmp);
      return;
    }
    case IOMMU_TEST_OP.MOCK_DOMAIN:
    case IOMMU_TEST_OP.MOCK_DOMAIN_FLAGS: {
      mockDomain(ctx, u, id, u.u32(4) === IOMMU_TEST_OP.MOCK_DOMAIN_FLAGS ? u.u32(o('mock_domain_flags', 'dev_flags')) : 0);
      return;
    }
    case IOMMU_TEST_OP.MOCK_DOMAIN_REPLACE: {
      const sobj = ctx.get<SelftestDevice>(id, 'SELFTEST');
      const ptId = deviceReplace(sobj.idev!, NO_PASID, u.u32(o('mock_domain_replace', 'pt_id')));
      u.setU32(o('mock_domain_replace', 'pt_id'), ptId);
      u.respond();
      return;
    }
    case IOMMU_TEST_OP.MD_CHECK_MAP:
      checkMap(ctx, id, u.u64(o('check_map', 'iova')), u.u64(o('check_map', 'length')), u.u64(o('check_map', 'uptr')));
      return;
    case IOMMU_TEST_OP.MD_CHECK_IOTLB: {
      const nested = mockNested(ctx, id);
      const iotlbId = u.u32(o('check_iotlb', 'id'));
      if (iotlbId > MOCK_NESTED_DOMAIN_IOTLB_ID_MAX || nested.domain.data[iotlbId] !== u.u32(o('check_iotlb', 'iotlb'))) kerr(ERRNO.EINVAL);
      return;
    }
    case IOMMU_TEST_OP.PASID_ATTACH: {
      const idev = ctx.get<SelftestDevice>(id, 'SELFTEST').idev!;
      const pasid = u.u32(o('pasid_attach', 'pasid'));
      u.setU32(o('pasid_attach', 'pt_id'), deviceAttach(idev, pasid, u.u32(o('pasid_attach', 'pt_id'))));
      try {
        u.respond();
      } catch (e) {
        deviceDetach(idev, pasid);
        throw e;
      }
      return;
    }
    case IOMMU_TEST_OP.PASID_REPLACE: {
      const sobj = ctx.get<SelftestDevice>(id, 'SELFTEST');
      const ptId = deviceReplace(sobj.idev!, u.u32(o('pasid_replace', 'pasid')), u.u32(o('pasid_replace', 'pt_id')));
      u.setU32(o('pasid_replace', 'pt_id'), ptId);
      u.respond();
      return;
    }
    case IOMMU_TEST_OP.PASID_DETACH:
      deviceDetach(ctx.get<SelftestDevice>(id, 'SELFTEST').idev!, u.u32(o('pasid_detach', 'pasid')));
      return;
    case IOMMU_TEST_OP.PASID_CHECK_HWPT: {
      // iommufd_test_pasid_check_hwpt: hwpt_id 0 asks "detached?"
      const sobj = ctx.get<SelftestDevice>(id, 'SELFTEST');
      const pasid = u.u32(o('pasid_check', 'pasid'));
      const attached = sobj.idev!.group.pasidAttach.get(pasid)?.hwpt ?? null;
      const hwptId = u.u32(o('pasid_check', 'hwpt_id'));
      if (!hwptId) {
        if (attached) kerr(ERRNO.EINVAL);
        return;
      }
      const e = ctx.entry(hwptId);
      if (!e) kerr(ERRNO.ENOENT);
      if (e.type !== 'HWPT_PAGING' && e.type !== 'HWPT_NESTED') kerr(ERRNO.EINVAL);
      if (attached?.domain !== (e.obj as HwptPaging | HwptNested).domain) kerr(ERRNO.EINVAL);
      return;
    }
    case IOMMU_TEST_OP.TRIGGER_IOPF: {
      // iommufd_test_trigger_iopf -> iommu_report_device_fault: a one-fault group (LAST_PAGE)
      const idev = ctx.get<IommufdDevice>(u.u32(o('trigger_iopf', 'dev_id')), 'DEVICE');
      if (!(idev.dev instanceof MockDevice)) kerr(ERRNO.EINVAL);
      const pasid = u.u32(o('trigger_iopf', 'pasid'));
      const t = faultTarget(idev, pasid === NO_PASID ? null : pasid, true);
      if (!t) return; // no handler: the request is answered INVALID by the IOMMU core, nothing queued
      t.hwpt.fault!.enqueue({
        faults: [{
          flags: IOMMU_PGFAULT_FLAGS_LAST_PAGE | (pasid === NO_PASID ? 0 : IOMMU_PGFAULT_FLAGS_PASID_VALID),
          pasid,
          grpid: u.u32(o('trigger_iopf', 'grpid')),
          perm: u.u32(o('trigger_iopf', 'perm')),
          addr: u.u64(o('trigger_iopf', 'addr')),
        }],
        devId: idev.id,
        handle: t.handle,
        cookie: 0,
        response: null,
      });
      return;
    }
    case IOMMU_TEST_OP.TRIGGER_VEVENT: {
      // iommufd_test_trigger_vevent: struct iommu_viommu_event_selftest { virt_id; }
      const idev = ctx.get<IommufdDevice>(u.u32(o('trigger_vevent', 'dev_id')), 'DEVICE');
      const mdev = idev.dev as MockDevice;
      if (!mdev.viommu || !mdev.vdevId) kerr(ERRNO.ENOENT);
      const rec = new Uint8Array(4);
      new DataView(rec.buffer).setUint32(0, Number(mdev.vdevId & 0xffff_ffffn), true);
      mdev.viommu.reportEvent(IOMMU_VEVENTQ_TYPE_SELFTEST, rec);
      return;
    }
    case IOMMU_TEST_OP.DEV_CHECK_CACHE: {
      // iommufd_test_dev_check_cache: a mock device's cache slot holds the value
      const idev = ctx.get<IommufdDevice>(id, 'DEVICE');
      if (!(idev.dev instanceof MockDevice)) kerr(ERRNO.EINVAL);
      const cacheId = u.u32(o('check_dev_cache', 'id'));
      if (cacheId > MOCK_DEV_CACHE_ID_MAX || idev.dev.cache[cacheId] !== u.u32(o('check_dev_cache', 'cache'))) kerr(ERRNO.EINVAL);
      return;
    }
    case IOMMU_TEST_OP.DIRTY: {
      const n = testDirty(ctx, id, u);
      u.setU64(o('dirty', 'out_nr_dirty'), BigInt(n));
      u.respond();
      return;
    }
    case IOMMU_TEST_OP.SET_TEMP_MEMORY_LIMIT:
      if (u.u32(o('memory_limit', 'limit')) < 12) kerr(ERRNO.EINVAL);
      return;
    default:
      kerr(ERRNO.EOPNOTSUPP);
  }
}

// ---- the mock device (selftest_obj TYPE_IDEV) ------------------------------------------------------

/** The selftest object that owns a mock device: destroying it detaches, unbinds and unplugs. */
class SelftestDevice implements SimObject {
  mock: MockDevice | null = null;
  idev: IommufdDevice | null = null;
  constructor(readonly ctx: IommufdCtx) {}

  destroy(): void {
    const idev = this.idev;
    if (idev) {
      for (const pasid of [...idev.group.pasidAttach.keys()]) if (idev.attachedAt(pasid)) deviceDetach(idev, pasid);
      deviceUnbind(idev);
      this.idev = null;
    }
    // mock_dev_destroy: on a machine its iommu_group number is free again
    if (this.mock) this.ctx.machine?.removeMockDevice(this.mock);
    this.mock = null;
  }
}

/**
 * iommufd_test_mock_domain: ids are taken in the kernel's order (selftest obj, device, HWPT); the
 * selftest object is finalized last, so until then its own id names nothing (ENOENT). On any
 * failure, the response included, the object's destroy detaches, unbinds and unplugs what was
 * made (out_detach, out_unbind, out_mdev, then the abort).
 */
function mockDomain(ctx: IommufdCtx, u: Ucmd, ptId: number, devFlags: number): void {
  const sobj = new SelftestDevice(ctx);
  const stdevId = ctx.alloc('SELFTEST', sobj);
  try {
    if (shouldFailSlab()) kerr(ERRNO.ENOMEM); // mock_dev_create (fault injection)
    const mock = (sobj.mock = ctx.machine ? ctx.machine.addMockDevice(devFlags) : new MockDevice(devFlags));
    const idev = (sobj.idev = deviceBind(ctx, mock, false));
    u.setU32(o('mock_domain', 'out_hwpt_id'), deviceAttach(idev, NO_PASID, ptId));
    u.setU32(o('mock_domain', 'out_stdev_id'), stdevId);
    u.setU32(o('mock_domain', 'out_idev_id'), idev.id);
    u.respond();
  } catch (e) {
    ctx.abort(stdevId);
    throw e;
  }
  ctx.finalize(stdevId);
}

/** get_md_pagetable: a paging HWPT whose domain the mock driver made (EINVAL otherwise). */
function mockPaging(ctx: IommufdCtx, id: number): HwptPaging {
  const hwpt = ctx.get<HwptPaging>(id, 'HWPT_PAGING');
  if (!isMockPaging(hwpt.domain)) kerr(ERRNO.EINVAL);
  return hwpt;
}

function mockNested(ctx: IommufdCtx, id: number): HwptNested {
  const hwpt = ctx.get<HwptNested>(id, 'HWPT_NESTED');
  if (!isMockNested(hwpt.domain)) kerr(ERRNO.EINVAL);
  return hwpt;
}

/** iommufd_test_md_check_pa: every domain page under [iova, +length) is the page under uptr. */
function checkMap(ctx: IommufdCtx, id: number, iova: bigint, length: bigint, uptr: bigint): void {
  const domain = mockPaging(ctx, id).domain;
  const size = BigInt(domain.pageSize);
  if (iova % size || length % size || uptr % size || uptr + length > MAX) kerr(ERRNO.EINVAL);
  for (; length; length -= size, iova += size, uptr += size) {
    const user = ctx.proc.mm.phys(Number(uptr));
    const io = domain.iovaToPhys(iova);
    if (!io || io.store !== user.store || io.offset !== user.offset) kerr(ERRNO.EINVAL);
  }
}

/** iommufd_test_dirty: mark the IOPTEs under each set bit of the user's bitmap dirty. */
function testDirty(ctx: IommufdCtx, id: number, u: Ucmd): number {
  const iova = u.u64(o('dirty', 'iova'));
  const length = u.u64(o('dirty', 'length'));
  const pageSize = u.u64(o('dirty', 'page_size'));
  const uptr = u.u64(o('dirty', 'uptr'));
  if (!pageSize || !length || iova % pageSize || length % pageSize || !uptr) kerr(ERRNO.EINVAL);
  const max = Number(length / pageSize);
  if (max > 16 * 1024 * 1024 * 8) kerr(ERRNO.EOVERFLOW);
  const hwpt = mockPaging(ctx, id);
  if (!hwpt.domain.dirtyTracking) kerr(ERRNO.EINVAL);
  if (shouldFailSlab()) kerr(ERRNO.ENOMEM); // kvzalloc of the bitmap copy (fault injection)
  const bits = new Uint8Array(Math.ceil(max / 8));
  ctx.proc.mm.copyFromUser(Number(uptr), bits);
  let count = 0;
  for (let i = 0; i < max; i++) {
    if (!(bits[i >> 3]! & (1 << (i & 7)))) continue;
    hwpt.domain.markDirty(iova + BigInt(i) * pageSize);
    count++;
  }
  return count;
}
