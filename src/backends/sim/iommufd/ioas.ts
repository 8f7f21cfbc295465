/**
 * The IOAS object and its ioctls (ioas.c): each handler validates the uAPI fields in the kernel's
 * order, then calls io_pagetable. Nothing here touches pages or areas directly.
 */
import { ERRNO } from '../../../ioasid/errors.js';
import {
  IOCTLS, IOMMU_IOAS_MAP_FIXED_IOVA, IOMMU_IOAS_MAP_READABLE, IOMMU_IOAS_MAP_WRITEABLE, U64_MAX,
} from '../../../ioasid/uapi.js';
import type { Span } from './area_list.js';
import { kerr } from '../kernel/errno.js';
import { shouldFailSlab } from '../kernel/fault_inject.js';
import { IOMMU_READ, IOMMU_WRITE, IoPagetable, type Area, type PagesSlice } from './io_pagetable.js';
import type { HwptPaging } from './hw_pagetable.js';
import type { Handler, IommufdCtx, SimObject } from './main.js';
import type { SimFile } from '../kernel/process.js';
import { PAGE_SIZE, SimMemfd } from '../kernel/mm.js';
import { AccountMode, IoptPages, updatePinned } from './pages.js';
import type { Ucmd } from './ucmd.js';

const MAP_FLAGS = IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_WRITEABLE | IOMMU_IOAS_MAP_READABLE;
const MAX = U64_MAX;
const PAGE = BigInt(PAGE_SIZE);
const PAGE_MASK = PAGE - 1n;
const SIZE_MAX_LESS_PAGE = MAX - PAGE;
const SAFE = 1n << 52n;

export class IoasObject implements SimObject {
  id = 0;
  readonly iopt = new IoPagetable();
  /** Paging HWPTs filled from this IOAS (ioas->hwpt_list), automatic ones first-fit reused. */
  readonly hwpts: HwptPaging[] = [];

  destroy(): void {
    this.iopt.unmapRange(0n, MAX, putAreaPages);
    this.iopt.removeReserved(null);
  }
}

function putPages(p: IoptPages): void {
  p.refs--;
}

/** io_pagetable's callback for each removed area (one function, not a closure per call). */
export const putAreaPages = (a: Area): void => putPages(a.pages);

function prot(flags: number): number {
  return (flags & IOMMU_IOAS_MAP_WRITEABLE ? IOMMU_WRITE : 0) | (flags & IOMMU_IOAS_MAP_READABLE ? IOMMU_READ : 0);
}

/** iopt_alloc_pages: EINVAL for a zero or absurd length, ENOMEM when fault injection fails its kzalloc. */
function allocPages(ctx: IommufdCtx, source: IoptPages['source'], pageOffset: number, length: bigint, writable: boolean): IoptPages {
  if (length > SIZE_MAX_LESS_PAGE || length === 0n) kerr(ERRNO.EINVAL);
  if (shouldFailSlab()) kerr(ERRNO.ENOMEM);
  const npages = length < SAFE
    ? Math.ceil((Number(length) + pageOffset) / PAGE_SIZE)
    : Number((length + BigInt(pageOffset) + PAGE - 1n) / PAGE);
  const pages = new IoptPages(source, npages, writable, ctx.proc);
  if (ctx.accountMode === AccountMode.MM && pages.accountMode === AccountMode.USER) pages.accountMode = AccountMode.MM;
  return pages;
}

/** The checks MAP, MAP_FILE and COPY share after their flags: u64 limits, then R/W. */
function checkMapArgs(flags: number, a: bigint, b: bigint, c = 0n): void {
  if (a >= MAX || b >= MAX || c >= MAX) kerr(ERRNO.EOVERFLOW);
  if (!(flags & (IOMMU_IOAS_MAP_WRITEABLE | IOMMU_IOAS_MAP_READABLE))) kerr(ERRNO.EINVAL);
}

/**
 * iopt_map_user_pages: [uptr, uptr+length) of this process at `iova` (null: allocate). EOVERFLOW
 * if uptr + length wraps, then iopt_alloc_pages' and io_pagetable's checks. Returns the IOVA.
 */
export function mapUserRange(ctx: IommufdCtx, iopt: IoPagetable, uptr: bigint, length: bigint, iova: bigint | null, prot: number): bigint {
  if (uptr + length > MAX) kerr(ERRNO.EOVERFLOW);
  const pageOffset = Number(uptr & PAGE_MASK);
  const source = { kind: 'user' as const, proc: ctx.proc, uptr: pageOffset ? uptr - BigInt(pageOffset) : uptr };
  const pages = allocPages(ctx, source, pageOffset, length, !!(prot & IOMMU_WRITE));
  return iopt.mapOne(pages, pageOffset, length, iova, prot);
}

const A = IOCTLS.IOAS_ALLOC.struct.off;
function ioasAlloc(ctx: IommufdCtx, u: Ucmd): void {
  if (u.u32(A.flags!)) kerr(ERRNO.EOPNOTSUPP);
  const ioas = new IoasObject();
  const id = (ioas.id = ctx.add('IOAS', ioas));
  u.setU32(A.out_ioas_id!, id);
  ctx.abortOnError(id, () => u.respond());
}

const R = IOCTLS.IOAS_IOVA_RANGES.struct.off;
function iovaRanges(ctx: IommufdCtx, u: Ucmd): number {
  if (u.u32(R.__reserved!)) kerr(ERRNO.EOPNOTSUPP);
  const ioas = ctx.get<IoasObject>(u.u32(R.ioas_id!), 'IOAS');
  const max = u.u32(R.num_iovas!);
  const uptr = Number(u.u64(R.allowed_iovas!));
  const ranges = ioas.iopt.usableRanges();
  const elm = new Uint8Array(16);
  const dv = new DataView(elm.buffer);
  ranges.forEach((r, i) => {
    if (i >= max) return;
    dv.setBigUint64(0, r.start, true);
    dv.setBigUint64(8, r.last, true);
    ctx.proc.mm.copyToUser(uptr + i * 16, elm);
  });
  u.setU32(R.num_iovas!, ranges.length);
  u.setU64(R.out_iova_alignment!, ioas.iopt.iovaAlignment);
  u.respond();
  if (ranges.length > max) kerr(ERRNO.EMSGSIZE);
  return 0;
}

const W = IOCTLS.IOAS_ALLOW_IOVAS.struct.off;
function allowIovas(ctx: IommufdCtx, u: Ucmd): void {
  if (u.u32(W.__reserved!)) kerr(ERRNO.EOPNOTSUPP);
  const ioas = ctx.get<IoasObject>(u.u32(W.ioas_id!), 'IOAS');
  const num = u.u32(W.num_iovas!);
  const uptr = Number(u.u64(W.allowed_iovas!));
  const elm = new Uint8Array(16);
  const dv = new DataView(elm.buffer);
  const ranges: Span[] = [];
  for (let i = 0; i < num; i++) {
    ctx.proc.mm.copyFromUser(uptr + i * 16, elm);
    const start = dv.getBigUint64(0, true);
    const last = dv.getBigUint64(8, true);
    if (start >= last) kerr(ERRNO.EINVAL);
    if (ranges.some((r) => r.start <= last && r.last >= start)) kerr(ERRNO.EINVAL);
    if (shouldFailSlab()) kerr(ERRNO.ENOMEM); // the iopt_allowed node (fault injection)
    ranges.push({ start, last });
  }
  ranges.sort((a, b) => (a.start < b.start ? -1 : 1));
  ioas.iopt.setAllowed(ranges);
}

const M = IOCTLS.IOAS_MAP.struct.off;
function ioasMap(ctx: IommufdCtx, u: Ucmd): void {
  const flags = u.u32(M.flags!);
  if (flags & ~MAP_FLAGS || u.u32(M.__reserved!)) kerr(ERRNO.EOPNOTSUPP);
  const iova = u.u64(M.iova!);
  const length = u.u64(M.length!);
  checkMapArgs(flags, iova, length);
  const ioas = ctx.get<IoasObject>(u.u32(M.ioas_id!), 'IOAS');
  const fixed = flags & IOMMU_IOAS_MAP_FIXED_IOVA ? iova : null;
  u.setU64(M.iova!, mapUserRange(ctx, ioas.iopt, u.u64(M.user_va!), length, fixed, prot(flags)));
  u.respond();
}

const F = IOCTLS.IOAS_MAP_FILE.struct.off;
function ioasMapFile(ctx: IommufdCtx, u: Ucmd): void {
  const flags = u.u32(F.flags!);
  if (flags & ~MAP_FLAGS) kerr(ERRNO.EOPNOTSUPP);
  const iova = u.u64(F.iova!);
  const length = u.u64(F.length!);
  checkMapArgs(flags, iova, length);
  const ioas = ctx.get<IoasObject>(u.u32(F.ioas_id!), 'IOAS');
  const start = u.u64(F.start!);
  if (!length) kerr(ERRNO.EINVAL);
  if (start + length - 1n > MAX) kerr(ERRNO.EOVERFLOW);
  const file = ctx.proc.file(u.s32(F.fd!));
  const memfd = file instanceof SimMemfdFile ? file.memfd : new SimMemfd('[not shmem]');
  const pageOffset = Number(start & PAGE_MASK);
  const pages = allocPages(ctx, { kind: 'file', file: memfd, start }, pageOffset, length, !!(flags & IOMMU_IOAS_MAP_WRITEABLE));
  const fixed = flags & IOMMU_IOAS_MAP_FIXED_IOVA ? iova : null;
  u.setU64(F.iova!, ioas.iopt.mapOne(pages, pageOffset, length, fixed, prot(flags)));
  u.respond();
}

const C = IOCTLS.IOAS_COPY.struct.off;
function ioasCopy(ctx: IommufdCtx, u: Ucmd): void {
  const flags = u.u32(C.flags!);
  if (flags & ~MAP_FLAGS) kerr(ERRNO.EOPNOTSUPP);
  const length = u.u64(C.length!);
  const srcIova = u.u64(C.src_iova!);
  const dstIova = u.u64(C.dst_iova!);
  checkMapArgs(flags, length, srcIova, dstIova);
  const src = ctx.get<IoasObject>(u.u32(C.src_ioas_id!), 'IOAS');
  const slices: PagesSlice[] = src.iopt.getPages(srcIova, length);
  try {
    const dst = ctx.get<IoasObject>(u.u32(C.dst_ioas_id!), 'IOAS');
    const fixed = flags & IOMMU_IOAS_MAP_FIXED_IOVA ? dstIova : null;
    u.setU64(C.dst_iova!, dst.iopt.mapPages(slices, length, fixed, prot(flags)));
  } catch (e) {
    for (const s of slices) putPages(s.pages);
    throw e;
  }
  u.respond();
}

const U = IOCTLS.IOAS_UNMAP.struct.off;
function ioasUnmap(ctx: IommufdCtx, u: Ucmd): void {
  const ioas = ctx.get<IoasObject>(u.u32(U.ioas_id!), 'IOAS');
  const iova = u.u64(U.iova!);
  const length = u.u64(U.length!);
  let unmapped: bigint;
  if (iova === 0n && length === MAX) {
    unmapped = ioas.iopt.unmapRange(0n, MAX, putAreaPages);
  } else {
    if (iova >= MAX || length >= MAX) kerr(ERRNO.EOVERFLOW);
    if (!length) kerr(ERRNO.EINVAL);
    const last = iova + length - 1n;
    if (last > MAX) kerr(ERRNO.EOVERFLOW);
    unmapped = ioas.iopt.unmapRange(iova, last, putAreaPages);
    if (!unmapped) kerr(ERRNO.ENOENT);
  }
  u.setU64(U.length!, unmapped);
  u.respond();
}

/**
 * iommufd_ioas_change_process: every area of every IOAS must be a file mapping (EINVAL); the pins
 * of pages whose charge belongs elsewhere (need_charge_update) are charged to the caller first,
 * mode by mode (ENOMEM undoes them), then uncharged from their old process, and every pages' source
 * becomes the caller.
 */
const P = IOCTLS.IOAS_CHANGE_PROCESS.struct.off;
function changeProcess(ctx: IommufdCtx, u: Ucmd): void {
  if (u.u32(P.__reserved!)) kerr(ERRNO.EOPNOTSUPP);
  const all = new Set<IoptPages>();
  for (const e of ctx.objects.values()) {
    if (e?.type !== 'IOAS') continue;
    for (const a of (e.obj as IoasObject).iopt.areas.range(0n, MAX)) {
      if (!a.pages.isFile) kerr(ERRNO.EINVAL);
      all.add(a.pages);
    }
  }
  const to = ctx.proc;
  const moving = [...all].filter((p) => p.needsChargeUpdate(to));
  const byMode = [0, 0, 0];
  for (const p of moving) byMode[p.accountMode]! += p.npinned;
  let mode = 0;
  try {
    for (; mode < byMode.length; mode++) updatePinned(to, mode, true, byMode[mode]!, true);
  } catch (e) {
    while (mode-- > 0) updatePinned(to, mode, true, byMode[mode]!, false);
    throw e;
  }
  for (const p of moving) updatePinned(p.owner, p.accountMode, p.pinnedVm, p.npinned, false);
  for (const p of all) p.owner = to;
}

/** A memfd as an open file (so MAP_FILE can resolve the fd). */
/** A memfd's open file: shmem's read/write at f_pos and pread/pwrite. */
export class SimMemfdFile implements SimFile {
  readonly kind = 'memfd';
  /** f_pos for read(2)/write(2). */
  private pos = 0;
  constructor(readonly memfd: SimMemfd) {}

  pread(buf: Uint8Array, offset: number): number {
    return this.memfd.read(buf, offset);
  }

  pwrite(buf: Uint8Array, offset: number): number {
    return this.memfd.write(buf, offset);
  }

  read(buf: Uint8Array): number {
    const n = this.memfd.read(buf, this.pos);
    this.pos += n;
    return n;
  }

  write(buf: Uint8Array): number {
    const n = this.memfd.write(buf, this.pos);
    this.pos += n;
    return n;
  }

  release(): void {}
}

export const ioasHandlers: Record<string, Handler> = {
  IOMMU_IOAS_ALLOC: ioasAlloc,
  IOMMU_IOAS_IOVA_RANGES: iovaRanges,
  IOMMU_IOAS_ALLOW_IOVAS: allowIovas,
  IOMMU_IOAS_MAP: ioasMap,
  IOMMU_IOAS_MAP_FILE: ioasMapFile,
  IOMMU_IOAS_COPY: ioasCopy,
  IOMMU_IOAS_UNMAP: ioasUnmap,
  IOMMU_IOAS_CHANGE_PROCESS: changeProcess,
};
