/**
 * A bridged program's address space as the sim kernel sees it (the sim's mm/process_vm_access.c
 * and the program's /proc/PID/maps): user copies go to the real process with
 * process_vm_readv/process_vm_writev, and what can be pinned is decided by the real mappings.
 *
 * Page identity (what MD_CHECK_MAP and MD_CHECK_REFS compare) follows the kernel's: pages of a
 * shared or file mapping are the file's (keyed by device and inode, so a memfd mapped twice, or
 * MAP_SHARED memory seen by a parent and its child, are the same pages); private anonymous pages
 * are the process's own, keyed by the VMA's page offset, which Linux sets to the page number of
 * the address first mapped there and keeps across merges and splits.
 */
import { closeSync, openSync, readFileSync, readSync, writeSync } from 'node:fs';
import { ERRNO } from '../ioasid/errors.js';
import { kerr } from '../backends/sim/kernel/errno.js';
import { PAGE_SIZE, PageStore, rangeAt, SimMm, unmapRanges, type DeviceMapping, type SimMemfd, type Vma, type VmaOps } from '../backends/sim/kernel/mm.js';
import { PROT_READ, PROT_WRITE } from '../backends/types.js';
import { libc } from '../backends/linux/libc.js';
import { setU64 } from './protocol.js';
import { programDma } from './remote_dma.js';

/** x86-64's TASK_SIZE with 4-level page tables. */
const TASK_SIZE = 2 ** 47 - PAGE_SIZE;
/** A page store covers one chunk of 2^18 pages (1 GiB) of its object, so a sparse object costs only what is touched. */
const CHUNK_PAGES = 2 ** 18;
/** The most one process_vm_* call moves through the scratch buffer. */
const SCRATCH = 1 << 20;

/** Pages of one chunk of a mapped object: only pin counts; the bytes stay in the program. */
export class RemotePageStore extends PageStore {
  /** The object (`f:dev:inode`, `a:pid`, `p:pid:dev:inode`: see MapsLine) and its page at this store's page 0. */
  readonly object: string;
  readonly firstPage: number;
  /** Pages that no live process maps any more, kept for devices (remote_dma.ts); by page index. */
  detached: Map<number, Uint8Array> | null = null;

  constructor(
    readonly key: string,
    private readonly registry: StoreRegistry,
  ) {
    super(0);
    const colon = key.lastIndexOf(':');
    this.object = key.slice(0, colon);
    this.firstPage = Number(key.slice(colon + 1)) * CHUNK_PAGES;
  }

  /** A device's DMA reaches the page in the program, wherever it is reachable now (remote_dma.ts). */
  override dmaCopy(write: boolean, offset: number, buf: Uint8Array, at: number, n: number): void {
    programDma(this.registry, this, write, offset, buf.subarray(at, at + n));
  }

  /** Grow the pin counts to cover page index `n - 1`. */
  cover(n: number): void {
    if (n <= this.pins.length) return;
    const pins = new Uint32Array(Math.min(CHUNK_PAGES, Math.max(n, this.pins.length * 2, 64)));
    pins.set(this.pins);
    this.pins = pins;
  }

  override get npages(): number {
    return CHUNK_PAGES;
  }
}

/** The page stores of every bridged process, shared so that shared pages are one store. */
export class StoreRegistry {
  private readonly stores = new Map<string, RemotePageStore>();
  /** The address spaces of the processes still connected. */
  readonly live = new Set<RemoteMm>();
  /** The programs' memfds the sim has used, by object (`f:dev:inode`: one descriptor copy each). */
  readonly memfds = new Map<string, SimMemfd>();

  get(key: string): RemotePageStore {
    let s = this.stores.get(key);
    if (!s) this.stores.set(key, (s = new RemotePageStore(key, this)));
    return s;
  }

  /** Drop a process's private stores that hold no pins (its exit), and kept pages no longer pinned. */
  forgetProcess(pid: number): void {
    for (const [k, s] of this.stores) {
      if (k.startsWith(`a:${pid}:`) && !s.pins.some((n) => n)) this.stores.delete(k);
      else if (s.detached) for (const i of s.detached.keys()) if (!s.pins[i]) s.detached.delete(i);
    }
  }

  /** A live process (other than `except`) that maps page `page` of `object` now: where, and how many pages follow there. */
  mapper(object: string, page: number, except?: RemoteMm): { mm: RemoteMm; addr: number; pages: number } | null {
    for (const mm of this.live) {
      if (mm === except) continue;
      const at = mm.where(object, page);
      if (at) return { mm, ...at };
    }
    return null;
  }

  /** The live processes may have mapped or unmapped memory: read their maps again when asked. */
  invalidate(): void {
    for (const mm of this.live) mm.invalidate();
  }
}

/** A sim file's pages the program mapped, with the driver's VMA operations. */
export interface SimMapping {
  start: number;
  end: number;
  ops: VmaOps;
  /** The page of the driver's pages at `start`. */
  pgoff: number;
  /** A BAR (VM_IO | VM_PFNMAP): its pages, the protection asked for, and the registers behind them. */
  bar?: { store: PageStore; prot: number; io: NonNullable<DeviceMapping['io']> };
}

/** The server's memfd holding each shared sim page store (stores outlive no server). */
const sharedStores = new WeakMap<PageStore, number>();

/**
 * Move a sim page store's bytes into a memfd the program can map: the store's bytes become a view
 * of the server's own mapping of it, so what the sim writes the program reads, and the other way.
 */
function shareStore(store: PageStore): number {
  const known = sharedStores.get(store);
  if (known !== undefined) return known;
  const c = libc();
  const size = Math.max(PAGE_SIZE, Math.ceil(store.bytes.length / PAGE_SIZE) * PAGE_SIZE);
  const fd = c.memfd_create('ioasid-sim-pages', 1 /* MFD_CLOEXEC */);
  if (fd < 0 || c.ftruncate(fd, size) !== 0) kerr(ERRNO.ENOMEM);
  const addr = c.mmap(null, size, PROT_READ | PROT_WRITE, 0x01 /* MAP_SHARED */, fd, 0);
  if (addr === null || addr === 0xffff_ffff_ffff_ffffn) kerr(ERRNO.ENOMEM);
  const bytes = new Uint8Array(c.view(addr, size));
  bytes.set(store.bytes);
  store.bytes = bytes.subarray(0, store.bytes.length);
  sharedStores.set(store, fd);
  return fd;
}

interface MapsLine {
  start: number;
  end: number;
  prot: number;
  shared: boolean;
  /** Page offset in the object (vm_pgoff). */
  pgoff: number;
  /** The object: `f:dev:inode` for a file or shared mapping, `a:pid` for private anonymous memory. */
  object: string;
}

/**
 * Moves bytes between the server and a program: process_vm_readv/process_vm_writev, which keep
 * the page protections as the kernel's user copies do, through one scratch buffer (no allocation
 * per copy). On a kernel built without CROSS_MEMORY_ATTACH (ENOSYS), /proc/PID/mem, which ignores
 * protections: `checksProt` is then false and RemoteMm checks them from the maps. A transfer stops
 * at the first page that faults.
 */
class ProcessVm {
  private static scratchAddr: bigint | undefined;
  private static scratch: Uint8Array;
  /** Whether process_vm_* works here (null: not tried yet). */
  private static crossMemory: boolean | null = null;
  private readonly local = new Uint8Array(16);
  private readonly remote = new Uint8Array(16);
  private readonly lv = new DataView(this.local.buffer);
  private readonly rv = new DataView(this.remote.buffer);
  private memFd = -1;
  /** Whether `local` names the scratch buffer yet. */
  private localSet = false;

  constructor(readonly pid: number) {}

  /** Whether the transfers themselves refuse what the page protections refuse. */
  get checksProt(): boolean {
    return ProcessVm.crossMemory !== false;
  }

  read(addr: number, dst: Uint8Array): number {
    return this.move(false, addr, dst);
  }

  write(addr: number, src: Uint8Array): number {
    return this.move(true, addr, src);
  }

  /**
   * A device's access to pinned pages: read or write, and where the page protections refuse the
   * rest (the program made the page read-only after pinning it writable; a device never sees the
   * CPU's protections, only the IOMMU's), /proc/PID/mem, which does not ask them.
   */
  dma(write: boolean, addr: number, buf: Uint8Array): number {
    const n = this.move(write, addr, buf);
    return n < buf.length && this.checksProt ? n + this.memMove(write, addr + n, buf.subarray(n)) : n;
  }

  close(): void {
    if (this.memFd >= 0) closeSync(this.memFd);
    this.memFd = -1;
  }

  private move(write: boolean, addr: number, buf: Uint8Array): number {
    if (ProcessVm.crossMemory !== false) {
      const n = this.crossMove(write, addr, buf);
      if (n >= 0) return n;
    }
    return this.memMove(write, addr, buf);
  }

  /** process_vm_*: bytes moved, or -1 when the kernel lacks the calls. */
  private crossMove(write: boolean, addr: number, buf: Uint8Array): number {
    const c = libc();
    if (ProcessVm.scratchAddr === undefined) {
      const a = c.mmap(null, SCRATCH, PROT_READ | PROT_WRITE, 0x22 /* MAP_PRIVATE | MAP_ANONYMOUS */, -1, 0);
      if (a === null || a === 0xffff_ffff_ffff_ffffn) throw new Error('bridge: no scratch memory');
      ProcessVm.scratchAddr = a;
      ProcessVm.scratch = new Uint8Array(c.view(a, SCRATCH));
    }
    if (!this.localSet) {
      this.lv.setBigUint64(0, ProcessVm.scratchAddr, true);
      this.localSet = true;
    }
    let done = 0;
    while (done < buf.length) {
      const n = Math.min(SCRATCH, buf.length - done);
      if (write) ProcessVm.scratch.set(buf.subarray(done, done + n));
      setU64(this.lv, 8, n);
      setU64(this.rv, 0, addr + done);
      setU64(this.rv, 8, n);
      const got = write ? c.process_vm_writev(this.pid, this.local, 1, this.remote, 1, 0) : c.process_vm_readv(this.pid, this.local, 1, this.remote, 1, 0);
      if (got < 0 && c.errno() === ERRNO.ENOSYS) {
        ProcessVm.crossMemory = false;
        return -1;
      }
      ProcessVm.crossMemory = true;
      if (got <= 0) break;
      if (!write) buf.set(ProcessVm.scratch.subarray(0, got), done);
      done += got;
      if (got < n) break;
    }
    return done;
  }

  private memMove(write: boolean, addr: number, buf: Uint8Array): number {
    if (this.memFd < 0) {
      try {
        this.memFd = openSync(`/proc/${this.pid}/mem`, 'r+');
      } catch {
        return 0;
      }
    }
    let done = 0;
    while (done < buf.length) {
      let n: number;
      try {
        const part = buf.subarray(done);
        n = write ? writeSync(this.memFd, part, 0, part.length, addr + done) : readSync(this.memFd, part, 0, part.length, addr + done);
      } catch {
        break; // EIO: the first page faults
      }
      if (n <= 0) break;
      done += n;
    }
    return done;
  }
}

export class RemoteMm extends SimMm {
  readonly vm: ProcessVm;
  private maps: MapsLine[] | null = null;
  /** The maps as last read while the process lived: where its shared pages were, after it exits. */
  private lastMaps: MapsLine[] = [];
  /** What its private anonymous memory is called (MapsLine.object). */
  private readonly anonObject: string;

  constructor(
    readonly pid: number,
    private readonly registry: StoreRegistry,
  ) {
    super();
    this.vm = new ProcessVm(pid);
    this.anonObject = `a:${pid}`;
    registry.live.add(this);
  }

  /** The program may have mapped or unmapped memory since the last call: read its maps again when asked. */
  invalidate(): void {
    this.maps = null;
  }

  /** Read up to dst.length bytes: the count before the first fault. */
  readPrefix(addr: number, dst: Uint8Array): number {
    if (!(addr >= 0 && addr < TASK_SIZE)) return 0;
    const n = this.vm.checksProt ? dst.length : this.accessible(addr, dst.length, PROT_READ);
    return n ? this.vm.read(addr, dst.subarray(0, n)) : 0;
  }

  /** How many of `len` bytes from `addr` lie in mappings that allow `prot` (/proc/PID/mem would not ask). */
  private accessible(addr: number, len: number, prot: number): number {
    let a = addr;
    while (a < addr + len) {
      const v = this.find(a);
      if (!v || v.mmio || (v.prot & prot) !== prot) break;
      a = v.end;
    }
    return Math.min(len, a - addr);
  }

  /** copy_to_user: every byte lands in a writable mapping, or false (EFAULT). */
  writeRaw(addr: number, src: Uint8Array): boolean {
    if (!(addr >= 0 && addr + src.length <= TASK_SIZE)) return false;
    if (!this.vm.checksProt && this.accessible(addr, src.length, PROT_WRITE) !== src.length) return false;
    return this.vm.write(addr, src) === src.length;
  }

  override read(addr: number, dst: Uint8Array): void {
    if (!(addr >= 0 && addr + dst.length <= TASK_SIZE)) kerr(ERRNO.EFAULT);
    if (dst.length && this.readPrefix(addr, dst) !== dst.length && !this.throughSharers(false, addr, dst)) kerr(ERRNO.EFAULT);
  }

  override write(addr: number, src: Uint8Array): void {
    if (!this.writeRaw(addr, src) && !this.throughSharers(true, addr, src)) kerr(ERRNO.EFAULT);
  }

  /**
   * The pages of a process that has exited stay as long as something pins them, as the kernel
   * keeps pinned pages of a dead mm. Pages of a shared object are reached through a live process
   * that maps the same object; private pages of a dead process are gone (EFAULT).
   */
  private throughSharers(write: boolean, addr: number, buf: Uint8Array): boolean {
    if (this.registry.live.has(this) && this.readMaps().length) return false; // alive: a real fault
    let done = 0;
    while (done < buf.length) {
      const a = addr + done;
      const line = rangeAt(this.lastMaps, a);
      if (!line?.object.startsWith('f:')) return false;
      const page = line.pgoff + Math.floor((a - line.start) / PAGE_SIZE);
      const via = this.registry.mapper(line.object, page, this);
      if (!via) return false;
      const within = a % PAGE_SIZE;
      const n = Math.min(buf.length - done, line.end - a, via.pages * PAGE_SIZE - within);
      const part = buf.subarray(done, done + n);
      const moved = write ? via.mm.vm.write(via.addr + within, part) : via.mm.vm.read(via.addr + within, part);
      if (moved !== n) return false;
      done += n;
    }
    return true;
  }

  /**
   * Where this process maps page `page` of `object` now: the address, and how many of the
   * object's pages follow there. Only the process itself maps its private objects.
   */
  where(object: string, page: number): { addr: number; pages: number } | null {
    const maps = (this.maps ??= this.readMaps());
    let line: MapsLine | undefined;
    // private anonymous pages are named by address: bisect; others are looked for by object
    if (object === this.anonObject) line = rangeAt(maps, page * PAGE_SIZE);
    else if (object.startsWith('f:') || object.startsWith(`p:${this.pid}:`)) line = maps.find((l) => l.object === object && page >= l.pgoff && page < l.pgoff + (l.end - l.start) / PAGE_SIZE);
    if (line?.object !== object) return null;
    return { addr: line.start + (page - line.pgoff) * PAGE_SIZE, pages: line.pgoff + (line.end - line.start) / PAGE_SIZE - page };
  }

  /** The process is gone (or the server is done with it): its mappings of sim files close. */
  release(): void {
    for (const p of this.pending.values()) p.ops.close();
    this.pending.clear();
    for (const v of this.simMaps) v.ops.close();
    this.simMaps = [];
    this.vm.close();
    this.registry.live.delete(this);
  }

  /** The program's memory is its own: the sim cannot lend a live view of it. */
  override view(): Uint8Array {
    return kerr(ERRNO.EFAULT);
  }

  /** A VMA of the program, cut to one chunk of its object's pages; a BAR it mapped is the device's (VM_PFNMAP). */
  override find(addr: number): Vma | undefined {
    const d = rangeAt(this.simMaps, addr);
    if (d?.bar) return { start: d.start, end: d.end, prot: d.bar.prot, shared: true, store: d.bar.store, pgoff: d.pgoff, file: null, ops: d.ops, mmio: true };
    const m = rangeAt((this.maps ??= this.readMaps()), addr);
    if (!m) return undefined;
    const page = m.pgoff + Math.floor((addr - m.start) / PAGE_SIZE);
    const chunk = Math.floor(page / CHUNK_PAGES);
    const chunkStart = m.start + (chunk * CHUNK_PAGES - m.pgoff) * PAGE_SIZE;
    const start = Math.max(m.start, chunkStart);
    const end = Math.min(m.end, chunkStart + CHUNK_PAGES * PAGE_SIZE);
    const store = this.registry.get(`${m.object}:${chunk}`);
    const pgoff = m.pgoff + (start - m.start) / PAGE_SIZE - chunk * CHUNK_PAGES;
    store.cover(pgoff + (end - start) / PAGE_SIZE);
    return { start, end, prot: m.prot, shared: m.shared, store, pgoff, file: null };
  }

  override phys(addr: number): { store: PageStore; offset: number } {
    const v = this.find(addr);
    if (!v) kerr(ERRNO.EFAULT);
    return { store: v.store, offset: v.pgoff * PAGE_SIZE + (addr - v.start) };
  }

  /** The program maps its own memory through the real kernel: the sim never places anonymous or memfd pages in it. */
  override mmap(): number {
    return kerr(ERRNO.ENODEV);
  }

  /**
   * A sim file's f_op->mmap for the program: the driver checks the request and hands its pages,
   * which move into a memfd of the server's (shareStore) so the program can map them. Returns a
   * token; the program's own mmap then places them, and placed() records where. A BAR's registers
   * are computed on access, so no memory can stand for them (memfd -1): the program maps them
   * inaccessible and sends each load and store it makes there (mmio()).
   */
  override mmapDevice(_addr: number, length: number, prot: number, _flags: number, _offset: number, driverMmap: (len: number) => DeviceMapping): number {
    if (length <= 0) kerr(ERRNO.EINVAL);
    const len = Math.ceil(length / PAGE_SIZE) * PAGE_SIZE;
    const m = driverMmap(len);
    if (m.mmio && !m.io) {
      // device memory whose registers the driver does not name: neither shared memory nor traps can stand for it
      m.ops.close();
      kerr(ERRNO.ENODEV);
    }
    const token = this.nextToken++;
    const bar = m.mmio ? { store: m.store, prot, io: m.io! } : undefined;
    this.pending.set(token, { ops: m.ops, memfd: bar ? -1 : shareStore(m.store), pgoff: m.pgoff ?? 0, bar });
    return token;
  }

  /** What the program needs to map a pending mapping: the server's memfd (-1 for a BAR) and the page offset in it. */
  pendingMapping(token: number): { memfd: number; pgoff: number } | undefined {
    return this.pending.get(token);
  }

  /**
   * A load (`write` false: the value lands in `value`) or store (of `value`) of `size` bytes at
   * `addr` that the program made in a BAR it mapped; the preload's fault handler sends it. The
   * VMA's fault handler decides first (vfio_pci_mmap_huge_fault's VM_FAULT_SIGBUS while memory
   * decode is off: EIO here, SIGBUS for the program), then the access reaches the registers as
   * the region's read and write do. EFAULT where the program has no BAR mapped.
   */
  mmio(addr: number, size: number, write: boolean, value: Uint8Array): void {
    if (size < 1 || size > 8 || size & (size - 1)) kerr(ERRNO.EINVAL);
    const d = rangeAt(this.simMaps, addr);
    if (!d?.bar || addr + size > d.end) kerr(ERRNO.EFAULT);
    if (!(d.ops.fault?.() ?? true)) kerr(ERRNO.EIO);
    d.bar.io(value.subarray(0, size), d.pgoff * PAGE_SIZE + (addr - d.start), write);
  }

  /**
   * The program mapped pending mapping `token` at `addr` (0: its mmap failed, the driver's hold
   * goes). Whatever was recorded there before is gone: a MAP_FIXED mapping replaced it.
   */
  placed(token: number, addr: number, length: number): void {
    const p = this.pending.get(token);
    if (!p) return;
    this.pending.delete(token);
    if (!addr) {
      p.ops.close();
      return;
    }
    this.munmap(addr, length);
    const at = this.simMaps.findIndex((v) => v.start > addr);
    const m: SimMapping = { start: addr, end: addr + Math.ceil(length / PAGE_SIZE) * PAGE_SIZE, ops: p.ops, pgoff: p.pgoff, bar: p.bar };
    this.simMaps.splice(at < 0 ? this.simMaps.length : at, 0, m);
  }

  /** The program unmapped [addr, addr + length): the driver sees its VMAs close or split, as SimMm.munmap does. */
  override munmap(addr: number, length: number): void {
    const end = addr + Math.ceil(length / PAGE_SIZE) * PAGE_SIZE;
    const { kept, closed } = unmapRanges(this.simMaps, addr, end, (v) => ({ ...v, start: end, pgoff: v.pgoff + (end - v.start) / PAGE_SIZE }));
    this.simMaps = kept;
    for (const ops of closed) ops.close();
  }

  /** Before a fork: the child's copies of the mappings, each one more VMA for its driver (dup_mmap's vm_ops->open). */
  forkMappings(): SimMapping[] {
    return this.simMaps.map((v) => {
      v.ops.open();
      return { ...v };
    });
  }

  /** A forked child's mappings, as forkMappings() copied them from its parent. */
  inherit(maps: SimMapping[]): void {
    this.simMaps = maps;
  }

  private nextToken = 1;
  private readonly pending = new Map<number, { ops: VmaOps; memfd: number; pgoff: number; bar: SimMapping['bar'] }>();
  /** The sim files' pages the program has mapped, sorted. */
  private simMaps: SimMapping[] = [];

  private readMaps(): MapsLine[] {
    let text: string;
    try {
      text = readFileSync(`/proc/${this.pid}/maps`, 'latin1');
    } catch {
      return [];
    }
    if (!text) return [];
    const out: MapsLine[] = [];
    for (const line of text.split('\n')) {
      // start-end perms offset dev inode [path]
      const m = /^([0-9a-f]+)-([0-9a-f]+) ([r-])([w-])[x-]([sp]) ([0-9a-f]+) ([0-9a-f]+:[0-9a-f]+) (\d+)\s*(.*)$/.exec(line);
      if (!m) continue;
      const start = parseInt(m[1]!, 16);
      const end = parseInt(m[2]!, 16);
      if (start >= TASK_SIZE) continue; // [vsyscall]
      const shared = m[5] === 's';
      const inode = m[8]!;
      const path = m[9] ?? '';
      // pfnmap/io mappings (a device's BAR, /dev/mem) cannot be pinned: leave them out.
      if (path.startsWith('/dev/') && !path.startsWith('/dev/zero') && !path.startsWith('/dev/shm/')) continue;
      // maps shows a file's offset; an anonymous VMA's is 0 there, so its pages are named by address.
      const anon = inode === '0';
      const object = anon ? this.anonObject : shared ? `f:${m[7]}:${inode}` : `p:${this.pid}:${m[7]}:${inode}`;
      out.push({
        start,
        end,
        prot: (m[3] === 'r' ? PROT_READ : 0) | (m[4] === 'w' ? PROT_WRITE : 0),
        shared,
        pgoff: anon ? start / PAGE_SIZE : parseInt(m[6]!, 16) / PAGE_SIZE,
        object,
      });
    }
    if (out.length) this.lastMaps = out;
    return out;
  }
}
