/**
 * The kernel's mock IOMMU (selftest.c, CONFIG_IOMMUFD_TEST): what IOMMU_TEST_OP_MOCK_DOMAIN
 * plugs in so the selftests exercise domains without hardware. Paging domains have 2 KiB pages
 * and the aperture [2^24, 2^31) (MOCK_IOMMUPT_DEFAULT), or PAGE_SIZE | 1 MiB pages and the
 * table's own aperture [0, 2^38) (MOCK_IOMMUPT_HUGE); nested domains carry four IOTLB slots that
 * IOMMU_HWPT_INVALIDATE clears; devices may refuse dirty tracking (NO_DIRTY) or offer PASIDs.
 * Each mock device is alone in its group, behind the machine's mock IOMMU unit (its capabilities:
 * machine/mock_iommu.ts); this file is the driver side (mock_ops) the iommufd core calls.
 */
import { ERRNO } from '../../../ioasid/errors.js';
import {
  IOMMU_HWPT_ALLOC_DIRTY_TRACKING, IOMMU_HWPT_ALLOC_NEST_PARENT, IOMMU_HWPT_ALLOC_PASID, IOMMU_HWPT_DATA_SELFTEST,
  IOMMU_HWPT_INVALIDATE_DATA_SELFTEST, IOMMU_HW_INFO_TYPE_SELFTEST,
  IOMMU_TEST_INVALIDATE_FLAG_ALL, IOMMU_TEST_PASID_RESERVED,
  MOCK_FLAGS_DEVICE_NO_DIRTY, MOCK_FLAGS_DEVICE_PASID, MOCK_HUGE_PAGE_SIZE, MOCK_IOMMUPT_DEFAULT, MOCK_IOMMUPT_HUGE,
  MOCK_NESTED_DOMAIN_IOTLB_NUM, MOCK_PASID_WIDTH, IOMMU_TEST_DEV_CACHE_DEFAULT, MOCK_DEV_CACHE_NUM, MOCK_DEV_CACHE_ID_MAX,
  IOMMU_VIOMMU_TYPE_SELFTEST, IOMMU_VIOMMU_INVALIDATE_DATA_SELFTEST, IOMMU_HW_QUEUE_TYPE_SELFTEST, IOMMU_TEST_HW_QUEUE_MAX,
} from '../../../ioasid/uapi.js';
import type { IommuDriverOps, ResvRegion, SimDevice, SimGroup, SimIommuUnit } from '../iommu/iommu.js';
import { NestedDomain, PagingDomain } from '../iommu/domain.js';
import { IommuUnit } from '../hw/iommu.js';
import { MOCK_PGSIZE_BITMAP, mockCaps, mockDeviceCaps } from '../hw/mock_iommu.js';
import { KernelErrno, kerr } from '../kernel/errno.js';
import type { UserArray, UserData } from './hw_pagetable.js';
import type { PhysAddr } from './access.js';
import type { HwQueue } from './hw_queue.js';
import type { Viommu, ViommuOps } from './viommu.js';
import { PAGE_SIZE, PageStore } from '../kernel/mm.js';

export { MOCK_NESTED_DOMAIN_IOTLB_ID_MAX } from '../../../ioasid/uapi.js';

/** mock_ops: the identity every mock domain's owner points at. */
const MOCK_OPS = { name: 'iommufd-mock' };

export function isMockPaging(d: PagingDomain): boolean {
  return d.owner === MOCK_OPS;
}

export function isMockNested(d: NestedDomain): boolean {
  return d.owner === MOCK_OPS;
}

let nextMockId = 0;

/** A mock device (mock_dev): alone in its group, behind the mock IOMMU unit. */
/**
 * Where mock devices come from when the selftest runs on a machine (mock_dev_create's device on
 * the iommufd_mock bus): the machine puts them in its group numbering, behind its mock unit.
 */
export interface MockDeviceHost {
  addMockDevice(flags: number): MockDevice;
  removeMockDevice(dev: MockDevice): void;
}

export class MockDevice implements SimDevice {
  readonly name: string;
  readonly rid: number;
  readonly group: SimGroup;
  readonly iommu: SimIommuUnit;
  readonly ops: IommuDriverOps;
  /** The vIOMMU and virt_id of the nested domain its RID is attached to (mdev->viommu, vdev_id). */
  viommu: Viommu | null = null;
  vdevId = 0n;
  /** The device's cache slots (mdev->cache), cleared by vIOMMU invalidations. */
  readonly cache = new Uint32Array(MOCK_DEV_CACHE_NUM).fill(IOMMU_TEST_DEV_CACHE_DEFAULT);
  /** The "fake error on the second PASID 1024 attach" state (pasid_1024_fake_error). */
  private pasid1024 = false;

  /**
   * `group`: the machine's iommu_group for it (the caller adds the device), else a private one;
   * `unit`: the machine's mock IOMMU unit, else one of its own.
   */
  constructor(
    readonly flags: number,
    group?: SimGroup,
    unit: IommuUnit = new IommuUnit(mockCaps(), 'iommufd_selftest_iommu.0'),
  ) {
    MockDevice.checkFlags(flags);
    const id = nextMockId++;
    this.name = `iommufd_mock${id}`;
    this.rid = id;
    this.group = group ?? { id: -1 - id, devices: [this], owner: null, ownerCount: 0 };
    this.iommu = unit.forDevice(mockDeviceCaps(unit.caps, flags));
    this.ops = mockOps(this);
  }

  /** mock_dev_create: unknown flags are EINVAL. */
  static checkFlags(flags: number): void {
    if (flags & ~(MOCK_FLAGS_DEVICE_NO_DIRTY | MOCK_FLAGS_DEVICE_PASID)) kerr(ERRNO.EINVAL);
  }

  driver(): string | null {
    return 'iommufd-mock';
  }

  /** mock_domain_set_dev_pasid_nop's PASID 1024 game: every second non-blocking attach fails. */
  pasid1024Attach(blocking: boolean): void {
    if (blocking) {
      this.pasid1024 = false;
    } else if (this.pasid1024) {
      this.pasid1024 = false;
      kerr(ERRNO.ENOMEM);
    } else {
      this.pasid1024 = true;
    }
  }
}

function mockOps(dev: MockDevice): IommuDriverOps {
  const noDirty = !!(dev.flags & MOCK_FLAGS_DEVICE_NO_DIRTY);
  return {
    owner: MOCK_OPS,
    maxPasidLog2: dev.flags & MOCK_FLAGS_DEVICE_PASID ? MOCK_PASID_WIDTH : 0,
    // dev_iommu_get_max_pasids: mock_dev_create always sets "pasid-num-bits" (0 without the flag): 1 << 0
    maxPasids: dev.flags & MOCK_FLAGS_DEVICE_PASID ? 2 ** MOCK_PASID_WIDTH : 1,
    capable(cap) {
      if (cap === 'cache-coherency') return true;
      if (cap === 'dirty-tracking') return !noDirty;
      return false;
    },
    /** mock_domain_alloc_paging_flags */
    allocPaging(flags: number, data: UserData | null): PagingDomain {
      const allowed = IOMMU_HWPT_ALLOC_DIRTY_TRACKING | IOMMU_HWPT_ALLOC_NEST_PARENT | IOMMU_HWPT_ALLOC_PASID;
      const dirty = !!(flags & IOMMU_HWPT_ALLOC_DIRTY_TRACKING);
      if (flags & ~allowed || (dirty && noDirty)) kerr(ERRNO.EOPNOTSUPP);
      if (data && data.type !== IOMMU_HWPT_DATA_SELFTEST && data.type !== 0) kerr(ERRNO.EOPNOTSUPP);
      let pagetableType = MOCK_IOMMUPT_DEFAULT;
      if (data) {
        // struct iommu_hwpt_selftest { iotlb; pagetable_type; }, at least up to iotlb
        const cfg = data.read(IOMMU_HWPT_DATA_SELFTEST, 8, 4);
        pagetableType = new DataView(cfg.buffer).getUint32(4, true);
      }
      if (pagetableType === MOCK_IOMMUPT_DEFAULT) {
        return new PagingDomain({
          owner: MOCK_OPS,
          pgsizeBitmap: MOCK_PGSIZE_BITMAP,
          aperture: dev.iommu.caps.aperture,
          dirtyOps: dirty,
          enforceCacheCoherency: true,
        });
      }
      if (pagetableType === MOCK_IOMMUPT_HUGE) {
        return new PagingDomain({
          owner: MOCK_OPS,
          pgsizeBitmap: BigInt(MOCK_HUGE_PAGE_SIZE) | BigInt(PAGE_SIZE),
          // amdv1's mock format: 2 KiB granule, three levels from starting_level 2 = 38 bits (7.3 answers [0, 2^38 - 1])
          aperture: { start: 0n, last: (1n << 38n) - 1n },
          dirtyOps: dirty,
          enforceCacheCoherency: true,
        });
      }
      return kerr(ERRNO.EOPNOTSUPP);
    },
    /** mock_domain_alloc_nested */
    allocNested(parent: PagingDomain, flags: number, data: UserData, viommu?: object): NestedDomain {
      if (!viommu && flags & ~IOMMU_HWPT_ALLOC_PASID) kerr(ERRNO.EOPNOTSUPP);
      if (parent.kind !== 'paging' || !isMockPaging(parent)) kerr(ERRNO.EINVAL);
      if (data.type !== IOMMU_HWPT_DATA_SELFTEST) kerr(ERRNO.EOPNOTSUPP);
      const cfg = data.read(IOMMU_HWPT_DATA_SELFTEST, 8, 4);
      const iotlb = new Uint32Array(MOCK_NESTED_DOMAIN_IOTLB_NUM).fill(new DataView(cfg.buffer).getUint32(0, true));
      const d = new NestedDomain(MOCK_OPS, parent, invalidateNested(iotlb), iotlb);
      d.viommu = viommu ?? null;
      return d;
    },
    viommuTypes: [IOMMU_VIOMMU_TYPE_SELFTEST],
    viommuInit: mockViommuInit,
    viommuInvalidate: mockViommuInvalidate,
    /** mock_domain_nop_attach / mock_domain_set_dev_pasid_nop */
    attachDev(domain, pasid) {
      // only attach_dev refuses a dirty-tracking domain; set_dev_pasid does not look
      if (pasid === null && domain.kind === 'paging' && domain.dirtyOps && noDirty) kerr(ERRNO.EINVAL);
      // a nested domain on a vIOMMU needs the device's vDEVICE there (iommufd_viommu_get_vdev_id: ENOENT)
      const viommu = domain.kind === 'nested' ? (domain.viommu as Viommu | null) : null;
      const vdevId = viommu ? viommu.vdevIdOf(dev) : 0n;
      if (pasid === null) {
        dev.viommu = viommu;
        dev.vdevId = vdevId;
      }
      if (pasid === IOMMU_TEST_PASID_RESERVED) dev.pasid1024Attach(false);
    },
    blockPasid(pasid: number) {
      if (pasid === IOMMU_TEST_PASID_RESERVED) dev.pasid1024Attach(true);
    },
    /** mock_domain_hw_info */
    hwInfo(inType: number): [number, Uint8Array] {
      if (inType !== 0 && inType !== IOMMU_HW_INFO_TYPE_SELFTEST) kerr(ERRNO.EOPNOTSUPP);
      return [IOMMU_HW_INFO_TYPE_SELFTEST, dev.iommu.caps.hwInfo()];
    },
    reservedRegions(): readonly ResvRegion[] {
      return [];
    },
  };
}

/** mock_domain_cache_invalidate_user over struct iommu_hwpt_invalidate_selftest { flags; iotlb_id; } */
function invalidateNested(iotlb: Uint32Array) {
  return (type: number, entries: UserArray): number => {
    let done = 0;
    const fail = (errno: number): never => {
      const e = new KernelErrno(errno) as KernelErrno & { done: number };
      e.done = done;
      throw e;
    };
    if (type !== IOMMU_HWPT_INVALIDATE_DATA_SELFTEST) fail(ERRNO.EINVAL);
    for (let i = 0; i < entries.length; i++) {
      // entry by entry, as the kernel copies them: an unreadable one stops the batch (EFAULT) after the earlier ones
      let raw: Uint8Array;
      try {
        raw = entries.get(i);
      } catch (e) {
        if (e instanceof KernelErrno) fail(e.errno);
        throw e;
      }
      // iommu_copy_struct_from_user_array (7.3): entry_len must be exactly the struct's size here
      // (below offsetofend(iotlb_id) or above sizeof is EINVAL)
      if (raw.length !== 8) fail(ERRNO.EINVAL);
      const dv = new DataView(raw.buffer, raw.byteOffset, 8);
      const flags = dv.getUint32(0, true);
      const id = dv.getUint32(4, true);
      if (flags & ~IOMMU_TEST_INVALIDATE_FLAG_ALL) fail(ERRNO.EOPNOTSUPP);
      if (id > MOCK_NESTED_DOMAIN_IOTLB_NUM - 1) fail(ERRNO.EINVAL);
      if (flags & IOMMU_TEST_INVALIDATE_FLAG_ALL) iotlb.fill(0);
      else iotlb[id] = 0;
      done++;
    }
    return done;
  };
}

/** sizeof(struct iommu_viommu_selftest { in_data; out_data; out_mmap_offset; out_mmap_length; }) */
const VIOMMU_SELFTEST_SIZE = 24;
/** offsetofend(struct iommu_viommu_selftest, out_data) */
const VIOMMU_SELFTEST_MIN = 8;

/**
 * mock_viommu_init: with driver data, two zeroed pages registered for mmap through the iommufd,
 * the first u32 of which (and out_data) loops in_data back; the mmap offset and length go back
 * in the struct. The returned ops are mock_viommu_ops' (HW queues on the parent domain).
 */
function mockViommuInit(viommu: Viommu, parent: PagingDomain, data: UserData | null): ViommuOps {
  let mmapOffset = 0;
  if (data) {
    const d = data.read(IOMMU_VIOMMU_TYPE_SELFTEST, VIOMMU_SELFTEST_SIZE, VIOMMU_SELFTEST_MIN);
    const dv = new DataView(d.buffer);
    const page = new PageStore(2);
    mmapOffset = viommu.ctx.mmaps.alloc(viommu.id, page, PAGE_SIZE * 2);
    const inData = dv.getUint32(0, true);
    new DataView(page.bytes.buffer).setUint32(0, inData, true);
    dv.setUint32(4, inData, true);
    dv.setBigUint64(8, BigInt(mmapOffset), true);
    dv.setBigUint64(16, BigInt(PAGE_SIZE * 2), true);
    try {
      data.write(IOMMU_VIOMMU_TYPE_SELFTEST, d, VIOMMU_SELFTEST_MIN);
    } catch (e) {
      viommu.ctx.mmaps.destroy(mmapOffset);
      throw e;
    }
  }
  /** mock_viommu->hw_queue[] */
  const queues: (HwQueue | null)[] = new Array<HwQueue | null>(IOMMU_TEST_HW_QUEUE_MAX).fill(null);
  return {
    destroy(): void {
      if (mmapOffset) viommu.ctx.mmaps.destroy(mmapOffset);
    },
    hwQueueSize: (type) => (type === IOMMU_HW_QUEUE_TYPE_SELFTEST ? 1 : 0),
    /** mock_hw_queue_init_phys: index 0 first, each next one depends on its predecessor */
    hwQueueInitPhys(q: HwQueue, index: number, basePa: PhysAddr): void {
      if (index >= IOMMU_TEST_HW_QUEUE_MAX) kerr(ERRNO.EINVAL);
      if (queues[index]) kerr(ERRNO.EEXIST);
      const prev = index ? (queues[index - 1] ?? null) : null;
      if (index && !prev) kerr(ERRNO.EIO);
      // the core must have converted the address right: the parent domain translates to it
      const pa = parent.iovaToPhys(q.baseAddr);
      if (!pa || pa.store !== basePa.store || pa.offset !== basePa.offset) kerr(ERRNO.EFAULT);
      if (prev) q.depend(prev);
      queues[index] = q;
      q.destroyOp = () => {
        queues[index] = null;
        if (prev) q.undepend(prev);
      };
    },
  };
}


/**
 * mock_viommu_cache_invalidate over struct iommu_viommu_invalidate_selftest { flags; vdev_id;
 * cache_id; }: clears cache slots of the mock device behind each vdev_id.
 */
function mockViommuInvalidate(viommu: Viommu, type: number, entries: UserArray): number {
  if (entries.length === 0 && type === IOMMU_VIOMMU_INVALIDATE_DATA_SELFTEST) return 0;
  let done = 0;
  const fail = (errno: number): never => {
    const e = new KernelErrno(errno) as KernelErrno & { done: number };
    e.done = done;
    throw e;
  };
  // iommu_copy_struct_from_full_user_array: type, then each entry as copy_struct_from_user
  if (type !== IOMMU_VIOMMU_INVALIDATE_DATA_SELFTEST || !entries.length) fail(ERRNO.EINVAL);
  // every entry is copied before any is acted on (an unreadable one: EFAULT, nothing done)
  const cmds = Array.from({ length: entries.length }, (_, i) => entries.get(i)).map((raw) => {
    if (raw.length > 12 && raw.subarray(12).some((b) => b !== 0)) fail(ERRNO.E2BIG);
    const b = new Uint8Array(12);
    b.set(raw.subarray(0, 12));
    return new DataView(b.buffer);
  });
  for (const dv of cmds) {
    const flags = dv.getUint32(0, true);
    const vdevId = dv.getUint32(4, true);
    const cacheId = dv.getUint32(8, true);
    if (flags & ~IOMMU_TEST_INVALIDATE_FLAG_ALL) fail(ERRNO.EOPNOTSUPP);
    if (cacheId > MOCK_DEV_CACHE_ID_MAX) fail(ERRNO.EINVAL);
    const dev = viommu.findDev(BigInt(vdevId));
    if (!(dev instanceof MockDevice)) fail(ERRNO.EINVAL);
    if (flags & IOMMU_TEST_INVALIDATE_FLAG_ALL) (dev as MockDevice).cache.fill(0);
    else (dev as MockDevice).cache[cacheId] = 0;
    done++;
  }
  return done;
}
