/**
 * iopt_pages: the page storage behind one MAP / MAP_FILE (pages.c). It knows where its pages come
 * from (a user VA range of a process, or a memfd range), pins each page at most once however many
 * users (access objects, later domains) need it, and charges pinned pages to the owning user or mm
 * against RLIMIT_MEMLOCK. It never sees object IDs or IOVAs: areas hand it page indexes.
 */
import { ERRNO } from '../../../ioasid/errors.js';
import { kerr } from '../kernel/errno.js';
import { PAGE_SIZE, type PageStore, type SimMemfd } from '../kernel/mm.js';
import type { SimProcess } from '../kernel/process.js';
import { shouldFail } from '../kernel/fault_inject.js';

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
  /** The backing store and page index of each pinned page (what the kernel's pinned_pfns hold). */
  private stores: (PageStore | null)[] = [];
  private index: Float64Array | null = null;
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
      this.index = new Float64Array(this.npages);
      this.stores = new Array<PageStore | null>(this.npages).fill(null);
    }
    const users = this.users;
    // Runs of not-yet-pinned pages are pinned together; on failure the runs done so far are undone.
    const done: number[] = [];
    let fresh = 0;
    try {
      for (let i = first; i <= last; ) {
        if (users[i] !== 0) {
          i++;
          continue;
        }
        let j = i;
        while (j < last && users[j + 1] === 0) j++;
        this.pinRun(i, j, write);
        done.push(i, j);
        fresh += j - i + 1;
        i = j + 1;
      }
      this.charge(fresh);
    } catch (e) {
      for (let k = 0; k < done.length; k += 2) this.releaseRun(done[k]!, done[k + 1]!);
      throw e;
    }
    for (let i = first; i <= last; i++) users[i]!++;
    this.npinned += fresh;
  }

  unpin(first: number, last: number): void {
    const users = this.users;
    if (!users) return;
    let released = 0;
    for (let i = first; i <= last; i++) {
      if (users[i] === 0) continue;
      if (--users[i]! === 0) {
        this.releaseRun(i, i);
        released++;
      }
    }
    this.npinned -= released;
    this.uncharge(released);
  }

  /** Where pinned page `i` lives: its store (null if not pinned) and the store's page index. */
  storeOf(i: number): PageStore | null {
    return this.stores[i] ?? null;
  }

  pageIndexOf(i: number): number {
    return this.index![i]!;
  }

  private pinRun(first: number, last: number, write: boolean): void {
    if (shouldFail()) kerr(ERRNO.ENOMEM); // the pin step (fault injection)
    const src = this.source;
    const n = last - first + 1;
    if (src.kind === 'user') {
      src.proc.mm.pinInto(Number(src.uptr) + first * PAGE_SIZE, n, write, this.stores, this.index!, first);
      return;
    }
    const store: PageStore = src.file.store;
    const p0 = Math.floor(src.start / PAGE_SIZE) + first;
    if ((p0 + n - 1) * PAGE_SIZE >= src.file.size) kerr(ERRNO.EINVAL);
    for (let k = 0; k < n; k++) {
      this.stores[first + k] = store;
      this.index![first + k] = p0 + k;
      store.pins[p0 + k]!++;
    }
  }

  private releaseRun(first: number, last: number): void {
    for (let i = first; i <= last; i++) {
      const s = this.stores[i];
      if (s) s.pins[this.index![i]!]!--;
      this.stores[i] = null;
    }
  }

  /** Read or write bytes at byte offset `off` of this pages' span (iopt_pages_rw_access). */
  rw(off: number, buf: Uint8Array, write: boolean): void {
    const src = this.source;
    if (write && !this.writable) kerr(ERRNO.EPERM);
    if (src.kind === 'user') {
      if (write) src.proc.mm.copyToUser(Number(src.uptr) + off, buf);
      else src.proc.mm.copyFromUser(Number(src.uptr) + off, buf);
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
