/**
 * iopt_pages: the page storage behind one MAP / MAP_FILE (pages.c). It knows where its pages come
 * from (a user VA range of a process, or a memfd range), pins each page at most once however many
 * users (access objects, later domains) need it, and charges pinned pages to the owning user or mm
 * against RLIMIT_MEMLOCK. It never sees object IDs or IOVAs: areas hand it page indexes.
 */
import { ERRNO } from '../../ioasid/errors.js';
import { kerr } from './errno.js';
import { PAGE_SIZE, unpin, type PageStore, type PinnedPages, type SimMemfd } from './mm.js';
import type { SimProcess } from './process.js';

export const enum AccountMode {
  NONE = 0,
  USER = 1,
  MM = 2,
}

export type PagesSource =
  | { kind: 'user'; proc: SimProcess; uptr: bigint }
  | { kind: 'file'; file: SimMemfd; start: number };

export class IoptPages {
  /** COPY shares one IoptPages between areas; the last area to go releases it. */
  refs = 1;
  accountMode: AccountMode;
  /** Per-page use count by pinning users; a page is pinned while its count is non-zero. */
  private users: Uint32Array | null = null;
  private pinned: (PinnedPages | null)[] | null = null;
  npinned = 0;

  constructor(
    public source: PagesSource,
    /** Number of pages spanned (DIV_ROUND_UP(start_byte + length, PAGE_SIZE)). */
    readonly npages: number,
    readonly writable: boolean,
    /** The process charged for pins: the one that mapped (or last IOAS_CHANGE_PROCESS). */
    public owner: SimProcess,
  ) {
    this.accountMode = owner.ipcLock ? AccountMode.NONE : AccountMode.USER;
  }

  /** Address of the first page's start: uptr rounded down, or the file offset rounded down. */
  get base(): bigint {
    const src = this.source;
    return src.kind === 'user' ? src.uptr : BigInt(src.start - (src.start % PAGE_SIZE));
  }

  get isFile(): boolean {
    return this.source.kind === 'file';
  }

  /**
   * Pin pages [first, last] for one more user. All or nothing: on EFAULT/ENOMEM nothing changes.
   */
  pin(first: number, last: number, write: boolean): void {
    if (write && !this.writable) kerr(ERRNO.EPERM);
    if (!this.users) {
      if (this.npages > 1 << 26) kerr(ERRNO.ENOMEM);
      this.users = new Uint32Array(this.npages);
      this.pinned = new Array<PinnedPages | null>(this.npages).fill(null);
    }
    const users = this.users;
    const fresh: number[] = [];
    for (let i = first; i <= last; i++) if (users[i] === 0) fresh.push(i);
    const got: PinnedPages[] = [];
    try {
      for (const i of fresh) got.push(this.pinOne(i, write));
      this.charge(fresh.length);
    } catch (e) {
      for (const p of got) unpin(p);
      throw e;
    }
    fresh.forEach((i, k) => (this.pinned![i] = got[k]!));
    for (let i = first; i <= last; i++) users[i]!++;
    this.npinned += fresh.length;
  }

  unpin(first: number, last: number): void {
    const users = this.users;
    if (!users) return;
    let released = 0;
    for (let i = first; i <= last; i++) {
      if (users[i] === 0) continue;
      if (--users[i]! === 0) {
        unpin(this.pinned![i]!);
        this.pinned![i] = null;
        released++;
      }
    }
    this.npinned -= released;
    this.uncharge(released);
  }

  private pinOne(i: number, write: boolean): PinnedPages {
    const src = this.source;
    if (src.kind === 'user') return src.proc.mm.pin(Number(src.uptr) + i * PAGE_SIZE, 1, write);
    const store: PageStore = src.file.store;
    const p = Math.floor(src.start / PAGE_SIZE) + i;
    if (p * PAGE_SIZE >= src.file.size) kerr(ERRNO.EINVAL);
    store.pins[p]!++;
    return { stores: [store], index: Float64Array.of(p) };
  }

  /** Read or write bytes at byte offset `off` of this pages' span (iopt_pages_rw_access). */
  rw(off: number, buf: Uint8Array, write: boolean): void {
    const src = this.source;
    if (write && !this.writable) kerr(ERRNO.EPERM);
    if (src.kind === 'user') {
      if (write) src.proc.mm.write(Number(src.uptr) + off, buf);
      else src.proc.mm.read(Number(src.uptr) + off, buf);
      return;
    }
    const at = src.start - (src.start % PAGE_SIZE) + off;
    if (at + buf.length > src.file.size) kerr(ERRNO.EINVAL);
    const bytes = src.file.store.bytes;
    if (write) bytes.set(buf, at);
    else buf.set(bytes.subarray(at, at + buf.length));
  }

  private charge(n: number): void {
    if (n === 0 || this.accountMode === AccountMode.NONE) return;
    const owner = this.owner;
    const limit = Math.floor(owner.rlimitMemlock / PAGE_SIZE);
    if (this.accountMode === AccountMode.USER) {
      if (owner.user.lockedVm + n > limit) kerr(ERRNO.ENOMEM);
      owner.user.lockedVm += n;
    } else {
      if (owner.mm.lockedVm + n > limit && !owner.ipcLock) kerr(ERRNO.ENOMEM);
      owner.mm.lockedVm += n;
    }
    owner.mm.pinnedVm += n; // VmPin, in both modes
  }

  private uncharge(n: number): void {
    if (n === 0 || this.accountMode === AccountMode.NONE) return;
    if (this.accountMode === AccountMode.USER) this.owner.user.lockedVm -= n;
    else this.owner.mm.lockedVm -= n;
    this.owner.mm.pinnedVm -= n;
  }
}
