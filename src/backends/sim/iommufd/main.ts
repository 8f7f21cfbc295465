/**
 * The simulated iommufd file (main.c): the object table, the ioctl dispatcher built from the one
 * uAPI table, DESTROY, OPTION, VFIO_IOAS and release. Object kinds live in their own files
 * (ioas.ts, selftest.ts); handlers validate first and change state last.
 *
 * The object table is immutable data updated with immer: a failing command cannot leave a
 * half-made entry behind, and ids follow the kernel's xarray (lowest free id in [1, 2^31-1]).
 */
import { enableMapSet, produce } from 'immer';
import { ERRNO, IommuError } from '../../../ioasid/errors.js';
import {
  IOCTLS, IOMMU_OPTION_HUGE_PAGES, IOMMU_OPTION_OP_GET, IOMMU_OPTION_OP_SET, IOMMU_OPTION_RLIMIT_MODE,
  IOMMU_TEST_CMD, IOMMU_VFIO_IOAS_CLEAR, IOMMU_VFIO_IOAS_GET, IOMMU_VFIO_IOAS_SET, type IoctlDesc,
} from '../../../ioasid/uapi.js';
import { VFIO_LEGACY_IOCTL_NAMES } from '../../../ioasid/vfio_uapi.js';
import { CAP_SYS_RESOURCE } from '../../types.js';
import { kerr, KernelErrno } from '../kernel/errno.js';
import { shouldFailSlab } from '../kernel/fault_inject.js';
import { IoasObject, ioasHandlers } from './ioas.js';
import { AccountMode } from './pages.js';
import { currentProcess, type SimFile, type SimProcess } from '../kernel/process.js';
import { selftestHandler } from './selftest.js';
import { deviceHandlers } from './device_ioctls.js';
import { eventqHandlers } from './eventq.js';
import { hwptHandlers } from './hw_pagetable.js';
import { hwQueueHandlers } from './hw_queue.js';
import { IommufdMmaps } from './mmap.js';
import type { SimMm } from '../kernel/mm.js';
import { viommuHandlers } from './viommu.js';
import type { IommufdGroup } from './device.js';
import type { MockDeviceHost } from './mock_iommu.js';
import { Ucmd } from './ucmd.js';
import { vfioIoctl, vfioIoctlInt } from './vfio_compat.js';

enableMapSet();

export type ObjType = 'IOAS' | 'ACCESS' | 'DEVICE' | 'HWPT_PAGING' | 'HWPT_NESTED' | 'FAULT' | 'VIOMMU' | 'VDEVICE' | 'VEVENTQ' | 'HW_QUEUE' | 'SELFTEST';

/** Anything the table holds; destroy() runs once the last reference is gone. */
export interface SimObject {
  destroy(): void;
}

export interface ObjEntry {
  readonly type: ObjType;
  /** The kernel's `users`: 1 = only the table holds it; DESTROY needs exactly 1. */
  readonly users: number;
  readonly obj: SimObject;
  /** Reserved by alloc() and not yet finalized: the id is taken, but lookups do not see it. */
  readonly building?: true;
}

export type Handler = (ctx: IommufdCtx, u: Ucmd) => number | void;

const ID_MAX = 2 ** 31 - 1;

export class IommufdCtx implements SimFile {
  readonly kind = 'iommufd';
  /** id -> entry; null is a tombstone (id stays taken until close). */
  objects: ReadonlyMap<number, ObjEntry | null> = new Map();
  accountMode = AccountMode.USER;
  vfioIoasId = 0;
  /** iommufd_group per isolation group id, while a device of it is bound here. */
  readonly igroups = new Map<number, IommufdGroup>();
  /** Regions drivers offer to mmap through this fd (mt_mmap). */
  readonly mmaps = new IommufdMmaps(this);
  private readonly ucmd = new Ucmd();
  private readonly ops: (readonly [IoctlDesc, Handler] | undefined)[];

  /**
   * The calling process, as the kernel's handlers use `current` (its mm, its descriptors, its
   * capabilities): a forked child calling on its parent's iommufd maps its own memory. Outside a
   * syscall (a release, an async wake-up), the process that opened the file.
   */
  get proc(): SimProcess {
    return currentProcess(this.opener);
  }

  constructor(
    readonly opener: SimProcess,
    readonly selftest: boolean,
    /** The machine whose devices this iommufd can bind (mock devices join its group numbering). */
    readonly machine: MockDeviceHost | null = null,
  ) {
    if (shouldFailSlab()) kerr(ERRNO.ENOMEM); // iommufd_fops_open's kzalloc of the context
    this.ops = buildOps(selftest);
  }

  // ---- dispatch ------------------------------------------------------------------------------

  ioctl(request: number, arg: Uint8Array | null): number {
    const nr = request & 0xff;
    const idx = nr - 0x80;
    try {
      if (idx < 0 || idx >= this.ops.length) return this.vfioIoctl(request, arg);
      if (!arg) kerr(ERRNO.EFAULT);
      const op = this.ops[idx];
      if (arg.length < 4) kerr(ERRNO.EFAULT);
      if (!op || op[0].request !== request) kerr(ERRNO.ENOTTY);
      const u = this.ucmd;
      u.load(op[0], arg);
      return op[1](this, u) ?? 0;
    } catch (e) {
      if (e instanceof KernelErrno) throw new IommuError(e.errno, nameOf(request));
      throw e;
    }
  }

  /** Below the iommufd range: VFIO container ioctls (vfio_compat.c). */
  private vfioIoctl(request: number, arg: Uint8Array | null): number {
    return vfioIoctl(this, request, arg);
  }

  /** ioctl(fd, request, integer): only the VFIO container commands take one. */
  ioctlInt(request: number, value: number): number {
    const nr = request & 0xff;
    try {
      if (nr >= 0x80) kerr(ERRNO.EFAULT); // an iommufd command needs a struct pointer
      return vfioIoctlInt(this, request, value);
    } catch (e) {
      if (e instanceof KernelErrno) throw new IommuError(e.errno, nameOf(request));
      throw e;
    }
  }

  /** mmap(2) of the iommufd fd (iommufd_fops_mmap). */
  mmap(mm: SimMm, addr: number, length: number, prot: number, flags: number, offset: number): number {
    return this.mmaps.mmap(mm, addr, length, prot, flags, offset);
  }

  // ---- the object table ----------------------------------------------------------------------

  /** Reserve the lowest free id and publish the object at once. */
  add(type: ObjType, obj: SimObject): number {
    return this.insert({ type, users: 1, obj });
  }

  /**
   * iommufd_object_alloc: reserve the lowest free id for an object still being built (the
   * kernel's XA_ZERO_ENTRY). Lookups answer ENOENT for it until finalize(); abort() frees the id.
   */
  alloc(type: ObjType, obj: SimObject): number {
    return this.insert({ type, users: 1, obj, building: true });
  }

  /** xa_alloc: the entry at the lowest free id in [1, ID_MAX] (ENOMEM: the object's kzalloc, fault injection). */
  private insert(entry: ObjEntry): number {
    if (shouldFailSlab()) kerr(ERRNO.ENOMEM);
    let id = 1;
    while (this.objects.has(id)) id++;
    if (id > ID_MAX) kerr(ERRNO.ENOSPC);
    this.objects = produce(this.objects, (d) => {
      d.set(id, entry);
    });
    return id;
  }

  /**
   * The rest of a command that made object `id` (its driver init, the response): if that fails,
   * iommufd_object_abort_and_destroy takes the object back out and undoes it.
   */
  abortOnError(id: number, rest: () => void): void {
    try {
      rest();
    } catch (e) {
      this.remove(id);
      throw e;
    }
  }

  /** iommufd_object_finalize: publish an object reserved with alloc(). */
  finalize(id: number): void {
    this.objects = produce(this.objects, (d) => {
      const e = d.get(id);
      if (e) delete e.building;
    });
  }

  /** iommufd_object_abort_and_destroy: take back an object that was never finalized. */
  abort(id: number): void {
    const e = this.objects.get(id);
    if (!e?.building) return;
    this.objects = produce(this.objects, (d) => void d.delete(id));
    e.obj.destroy();
  }

  /** iommufd_get_object: ENOENT for a missing id, a tombstone, an object being built or another type. */
  get<T extends SimObject>(id: number, type: ObjType): T {
    const e = this.objects.get(id);
    if (!e || e.building || e.type !== type) kerr(ERRNO.ENOENT);
    return e.obj as T;
  }

  entry(id: number): ObjEntry | undefined {
    const e = this.objects.get(id);
    return e && !e.building ? e : undefined;
  }

  /**
   * iommufd_object_tombstone_user: destroy an object but keep its id taken (DESTROY answers
   * ENOENT) until the context closes, as the kernel does for a vDEVICE whose device went away.
   */
  tombstone(id: number): void {
    const e = this.objects.get(id);
    if (!e) return;
    this.objects = produce(this.objects, (d) => {
      d.set(id, null);
    });
    e.obj.destroy();
  }

  /** Take (+1) or drop (-1) a long-term reference from a dependent object. */
  ref(id: number, delta: 1 | -1): void {
    this.objects = produce(this.objects, (d) => {
      const e = d.get(id);
      if (e) e.users += delta;
    });
  }

  idOf(obj: SimObject): number {
    for (const [id, e] of this.objects) if (e?.obj === obj) return id;
    return 0;
  }

  /** iommufd_object_remove: ENOENT if missing, EBUSY if anything else holds it. */
  remove(id: number): void {
    const e = this.objects.get(id);
    if (!e || e.building) kerr(ERRNO.ENOENT);
    if (e.users !== 1) kerr(ERRNO.EBUSY);
    this.objects = produce(this.objects, (d) => {
      d.delete(id);
    });
    if (this.vfioIoasId === id) this.vfioIoasId = 0;
    e.obj.destroy();
  }

  /** Files made from this context (access, fault queue) hold it like its own fd does (iommufd_ctx_get). */
  private holders = 1;

  hold(): void {
    this.holders++;
  }

  /** The last of the iommufd fd and the files holding the context is closed: destroy everything, dependents first. */
  release(): void {
    if (--this.holders > 0) return;
    for (let pass = 0; pass < 8 && this.objects.size; pass++) {
      for (const id of [...this.objects.keys()].reverse()) {
        if (!this.objects.has(id)) continue; // went with an object destroyed before it
        const e = this.objects.get(id);
        if (!e) {
          this.objects = produce(this.objects, (d) => void d.delete(id));
        } else if (e.users === 1) {
          this.remove(id);
        }
      }
    }
    this.vfioIoasId = 0;
  }
}

// ---- handlers that belong to main.c -----------------------------------------------------------

const D = IOCTLS.DESTROY.struct.off;
function destroy(ctx: IommufdCtx, u: Ucmd): void {
  ctx.remove(u.u32(D.id!));
}

const O = IOCTLS.OPTION.struct.off;
function option(ctx: IommufdCtx, u: Ucmd): void {
  if (u.u16(O.__reserved!)) kerr(ERRNO.EOPNOTSUPP);
  const optionId = u.u32(O.option_id!);
  const op = u.u16(O.op!);
  const objectId = u.u32(O.object_id!);
  if (optionId === IOMMU_OPTION_RLIMIT_MODE) {
    if (objectId) kerr(ERRNO.EOPNOTSUPP);
    if (op === IOMMU_OPTION_OP_GET) {
      u.setU64(O.val64!, ctx.accountMode === AccountMode.MM ? 1n : 0n);
    } else if (op === IOMMU_OPTION_OP_SET) {
      if (!ctx.proc.hasCapability(CAP_SYS_RESOURCE)) kerr(ERRNO.EPERM);
      if (ctx.objects.size) kerr(ERRNO.EBUSY);
      const v = u.u64(O.val64!);
      if (v === 0n) ctx.accountMode = AccountMode.USER;
      else if (v === 1n) ctx.accountMode = AccountMode.MM;
      else kerr(ERRNO.EINVAL);
    } else {
      kerr(ERRNO.EOPNOTSUPP);
    }
  } else if (optionId === IOMMU_OPTION_HUGE_PAGES) {
    const ioas = ctx.get<IoasObject>(objectId, 'IOAS');
    if (op === IOMMU_OPTION_OP_GET) {
      u.setU64(O.val64!, ioas.iopt.disableLargePages ? 0n : 1n);
    } else if (op === IOMMU_OPTION_OP_SET) {
      const v = u.u64(O.val64!);
      if (v === 0n) ioas.iopt.setLargePages(false);
      else if (v === 1n) ioas.iopt.setLargePages(true);
      else kerr(ERRNO.EINVAL);
    } else {
      kerr(ERRNO.EOPNOTSUPP);
    }
  } else {
    kerr(ERRNO.EOPNOTSUPP);
  }
  u.respondField(O.val64!, 8);
}

const V = IOCTLS.VFIO_IOAS.struct.off;
function vfioIoas(ctx: IommufdCtx, u: Ucmd): void {
  if (u.u16(V.__reserved!)) kerr(ERRNO.EOPNOTSUPP);
  switch (u.u16(V.op!)) {
    case IOMMU_VFIO_IOAS_GET:
      if (!ctx.vfioIoasId) kerr(ERRNO.ENODEV);
      u.setU32(V.ioas_id!, ctx.vfioIoasId);
      u.respond();
      return;
    case IOMMU_VFIO_IOAS_SET: {
      const id = u.u32(V.ioas_id!);
      ctx.get(id, 'IOAS');
      ctx.vfioIoasId = id;
      return;
    }
    case IOMMU_VFIO_IOAS_CLEAR:
      ctx.vfioIoasId = 0;
      return;
    default:
      kerr(ERRNO.EOPNOTSUPP);
  }
}

function buildOps(selftest: boolean): (readonly [IoctlDesc, Handler] | undefined)[] {
  const handlers: Record<string, Handler> = {
    IOMMU_DESTROY: destroy,
    IOMMU_OPTION: option,
    IOMMU_VFIO_IOAS: vfioIoas,
    ...ioasHandlers,
    ...deviceHandlers,
    ...hwptHandlers,
    ...eventqHandlers,
    ...viommuHandlers,
    ...hwQueueHandlers,
  };
  const ops: (readonly [IoctlDesc, Handler] | undefined)[] = [];
  for (const d of Object.values(IOCTLS)) {
    const h = handlers[d.name];
    if (h) ops[d.nr - 0x80] = [d, h];
  }
  if (selftest) ops[IOMMU_TEST_CMD.nr - 0x80] = [IOMMU_TEST_CMD, selftestHandler];
  return Array.from({ length: ops.length }, (_, i) => ops[i]);
}

function nameOf(request: number): string {
  for (const d of [...Object.values(IOCTLS), IOMMU_TEST_CMD]) if (d.request === request) return d.name;
  return VFIO_LEGACY_IOCTL_NAMES[request] ?? `ioctl(0x${request.toString(16)})`;
}
