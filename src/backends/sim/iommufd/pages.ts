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
import { shouldFailPage } from '../kernel/fault_inject.js';

export const enum AccountMode {
  NONE = 0,
  USER = 1,
  MM = 2,
}

export type PagesSource =
  | { kind: 'user'; proc: SimProcess; uptr: bigint }
  | { kind: 'file'; file: SimMemfd; start: bigint };

/** Pages per batch of pin state (pfn_reader's batches): allocated on its first pin, freed with its last. */
const BATCH = 512;
const PAGE = BigInt(PAGE_SIZE);

/** Pin state of up to BATCH consecutive pages: users, and where each pinned page lives. */
class PinBatch {
  /** Use count by pinning users; a page is pinned while its count is non-zero. */
  readonly users: Uint32Array;
  /** The backing store and page index of each pinned page (what the kernel's pinned_pfns hold). */
  readonly stores: (PageStore | null)[];
  readonly index: Float64Array;
  /** Pages of the batch with users. */
  pinned = 0;

  constructor(n: number) {
    this.users = new Uint32Array(n);
    this.stores = new Array<PageStore | null>(n).fill(null);
    this.index = new Float64Array(n);
  }
}

export class IoptPages {
  /** COPY shares one IoptPages between areas; the last area to go releases it. */
  refs = 1;
  accountMode: AccountMode;
  /** Pins count in the owner's pinned_vm (VmPin); false only for the type1 driver's use (not an iopt_pages there). */
  pinnedVm = true;
  /** Pin state by batch number: only batches with a pinned page exist (memory follows what is pinned). */
  private readonly batches = new Map<number, PinBatch>();
  /** The batch used last (fills and walks go page by page through the same batch). */
  private cachedKey = -1;
  private cached: PinBatch | undefined;
  npinned = 0;
  /**
   * Take pages of device memory (VM_PFNMAP) as well, as type1's vaddr_get_pfns does through
   * follow_fault_pfn; iommufd's pin_user_pages refuses them (EFAULT).
   */
  followPfnmap = false;

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
    return src.kind === 'user' ? src.uptr : src.start - (src.start % PAGE);
  }

  get isFile(): boolean {
    return this.source.kind === 'file';
  }

  private batch(key: number): PinBatch | undefined {
    if (key !== this.cachedKey) {
      this.cachedKey = key;
      this.cached = this.batches.get(key);
    }
    return this.cached;
  }

  /**
   * Pin pages [first, last] for one more user, batch by batch: pages not yet pinned are pinned
   * (and charged), so the work and memory are those of the pages pinned before a failure. All or
   * nothing: on EFAULT/ENOMEM every batch done is undone.
   */
  pin(first: number, last: number, write: boolean): void {
    if (write && !this.writable) kerr(ERRNO.EPERM);
    let fresh = 0;
    let i = first;
    try {
      while (i <= last) {
        const key = Math.floor(i / BATCH);
        const end = Math.min(last, key * BATCH + BATCH - 1);
        fresh += this.pinBatch(key, i - key * BATCH, end - key * BATCH, write);
        i = end + 1;
      }
      this.charge(fresh);
    } catch (e) {
      if (i > first) this.release(first, i - 1);
      throw e;
    }
    this.npinned += fresh;
  }

  /** One more user on slots [s, e] of a batch, pinning the runs that had none. Returns the pages pinned. */
  private pinBatch(key: number, s: number, e: number, write: boolean): number {
    const b = this.batch(key) ?? new PinBatch(Math.min(BATCH, this.npages - key * BATCH));
    const users = b.users;
    let fresh = 0;
    try {
      for (let k = s; k <= e; ) {
        if (users[k] !== 0) {
          k++;
          continue;
        }
        let j = k;
        while (j < e && users[j + 1] === 0) j++;
        this.pinRun(b, key * BATCH + k, k, j - k + 1, write);
        fresh += j - k + 1;
        k = j + 1;
      }
    } catch (err) {
      for (let k = s; k <= e; k++) if (users[k] === 0 && b.stores[k]) this.releasePage(b, k);
      throw err;
    }
    for (let k = s; k <= e; k++) if (users[k]!++ === 0) b.pinned++;
    if (!this.batches.has(key)) {
      this.batches.set(key, b);
      this.cachedKey = key;
      this.cached = b;
    }
    return fresh;
  }

  unpin(first: number, last: number): void {
    const released = this.release(first, last);
    this.npinned -= released;
    this.uncharge(released);
  }

  /** One user less on pages [first, last]; returns how many are no longer pinned. */
  private release(first: number, last: number): number {
    let released = 0;
    for (let i = first; i <= last; ) {
      const key = Math.floor(i / BATCH);
      const end = Math.min(last, key * BATCH + BATCH - 1);
      const b = this.batch(key);
      if (b) {
        const users = b.users;
        for (let k = i - key * BATCH, e = end - key * BATCH; k <= e; k++) {
          if (users[k] === 0) continue;
          if (--users[k]! === 0) {
            this.releasePage(b, k);
            b.pinned--;
            released++;
          }
        }
        if (b.pinned === 0) {
          this.batches.delete(key);
          this.cached = undefined;
        }
      }
      i = end + 1;
    }
    return released;
  }

  /** Where pinned page `i` lives: its store (null if not pinned) and the store's page index. */
  storeOf(i: number): PageStore | null {
    const b = this.batch(Math.floor(i / BATCH));
    return b ? b.stores[i % BATCH]! : null;
  }

  pageIndexOf(i: number): number {
    return this.batch(Math.floor(i / BATCH))!.index[i % BATCH]!;
  }

  /** Pin `n` pages from page `page` into slots [k, k + n) of a batch. */
  private pinRun(b: PinBatch, page: number, k: number, n: number, write: boolean): void {
    if (shouldFailPage(true)) kerr(ERRNO.ENOMEM); // the pin step: a user page faulted in (GFP_HIGHUSER) (fault injection)
    const src = this.source;
    if (src.kind === 'user') {
      src.proc.mm.pinInto(Number(src.uptr) + page * PAGE_SIZE, n, write, b.stores, b.index, k, this.followPfnmap);
      return;
    }
    const store: PageStore = src.file.store;
    const p0 = Number(src.start / PAGE) + page;
    if ((p0 + n - 1) * PAGE_SIZE >= src.file.size) kerr(ERRNO.EINVAL);
    for (let j = 0; j < n; j++) {
      b.stores[k + j] = store;
      b.index[k + j] = p0 + j;
      store.pins[p0 + j]!++;
    }
  }

  private releasePage(b: PinBatch, k: number): void {
    b.stores[k]!.pins[b.index[k]!]!--;
    b.stores[k] = null;
  }

  /** Read or write bytes from byte `offset` of page `index` of this pages' span (iopt_pages_rw_access). */
  rw(index: number, offset: number, buf: Uint8Array, write: boolean): void {
    const src = this.source;
    if (write && !this.writable) kerr(ERRNO.EPERM);
    // Past 2^53 these addresses are inexact, but then far beyond any mapping or file: EFAULT / EINVAL either way.
    const off = index * PAGE_SIZE + offset;
    if (src.kind === 'user') {
      if (write) src.proc.mm.copyToUser(Number(src.uptr) + off, buf);
      else src.proc.mm.copyFromUser(Number(src.uptr) + off, buf);
      return;
    }
    const at = Number(this.base) + off;
    if (at + buf.length > src.file.size) kerr(ERRNO.EINVAL);
    if (write) src.file.write(buf, at);
    else src.file.read(buf, at);
  }

  private charge(n: number): void {
    updatePinned(this.owner, this.accountMode, this.pinnedVm, n, true);
  }

  private uncharge(n: number): void {
    updatePinned(this.owner, this.accountMode, this.pinnedVm, n, false);
  }

  /** need_charge_update: whether a change of process to `to` moves this pages' charge. */
  needsChargeUpdate(to: SimProcess): boolean {
    if (this.accountMode === AccountMode.NONE) return false;
    if (this.accountMode === AccountMode.MM) return this.owner.mm !== to.mm;
    return this.owner.user !== to.user || this.owner.mm !== to.mm;
  }

}

/**
 * iopt_pages_update_pinned for `owner`: charge (or uncharge) the user or the mm by the account
 * mode (nothing for NONE, the mode of a CAP_IPC_LOCK mapper; ENOMEM past RLIMIT_MEMLOCK), then
 * pinned_vm (VmPin) in every mode.
 */
export function updatePinned(owner: SimProcess, mode: AccountMode, pinnedVm: boolean, n: number, inc: boolean): void {
  if (n === 0) return;
  const d = inc ? n : -n;
  const limit = Math.floor(owner.rlimitMemlock / PAGE_SIZE);
  if (mode === AccountMode.USER) {
    if (inc && owner.user.lockedVm + n > limit) kerr(ERRNO.ENOMEM);
    owner.user.lockedVm += d;
  } else if (mode === AccountMode.MM) {
    if (inc && owner.mm.lockedVm + n > limit && !owner.ipcLock) kerr(ERRNO.ENOMEM);
    owner.mm.lockedVm += d;
  }
  if (pinnedVm) owner.mm.pinnedVm += d;
}
