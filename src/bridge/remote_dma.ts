/**
 * Device DMA into a bridged program's memory. On the kernel a device writes the very page the
 * program pinned, whoever maps it now, and the pin keeps that page alive. Here the page lives in
 * the real process, and a RemotePageStore names it (an object and a page: RemoteMm), so each DMA
 * reaches it where it is reachable now, in this order:
 *
 * 1. A memfd the sim holds a copy of (the descriptor of IOMMU_IOAS_MAP_FILE): pread/pwrite on it
 *    reach its page cache, which every mapping of it shows, with or without a live process.
 * 2. A live process that maps the page: the owner of a private page, or any process mapping the
 *    shared object (a page pinned by a process that has exited stays reachable through another
 *    that maps the same memfd or MAP_SHARED memory). process_vm_readv/process_vm_writev move each
 *    run of pages the process maps contiguously in one call; where they refuse because the
 *    program changed the page's protections since the pin, /proc/PID/mem does (ProcessVm.dma).
 *    A first miss reads every live process's maps again before going on.
 * 3. No live process maps it (a private page of a process that has exited, or memory the program
 *    unmapped while it was still pinned). The kernel keeps such a page, and the device goes on
 *    reading and writing it although nobody sees it. The server cannot reach the real page any
 *    more, so the store keeps one of its own in its place (`detached`): zeros at first, since what
 *    the program left there is gone with its mapping, then whatever DMA writes, which later DMA
 *    reads back. It goes once the page is no longer pinned (StoreRegistry.forgetProcess).
 *
 * A DMA the IOMMU allowed therefore always completes, as on the kernel, where a pinned page cannot
 * fault. What still differs: a device reading a page the program let go reads zeros rather than
 * its last contents; and a private page the program unmapped and then mapped something else at
 * (same address, new memory) is reached at that address, where the kernel would still use the old page.
 */
import { PAGE_SIZE } from '../backends/sim/kernel/mm.js';
import type { RemotePageStore, StoreRegistry } from './remote_mm.js';

/** Move `buf` to (write) or from byte `offset` of `store`'s pages in the program. */
export function programDma(registry: StoreRegistry, store: RemotePageStore, write: boolean, offset: number, buf: Uint8Array): void {
  let fresh = false;
  let done = 0;
  while (done < buf.length) {
    const at = offset + done;
    const rest = buf.subarray(done);
    let n = viaFile(registry, store, write, at, rest) || viaProcess(registry, store, write, at, rest);
    if (!n && !fresh) {
      registry.invalidate(); // the cached maps may be stale: one more look with fresh ones
      fresh = true;
      continue;
    }
    if (!n) n = viaDetached(store, write, at, rest);
    done += n;
  }
}

/** Through the sim's copy of the memfd the pages belong to: bytes moved (0: none here). */
function viaFile(registry: StoreRegistry, store: RemotePageStore, write: boolean, at: number, buf: Uint8Array): number {
  const memfd = registry.memfds.get(store.object);
  if (!memfd) return 0;
  const pos = store.firstPage * PAGE_SIZE + at;
  const n = Math.min(buf.length, memfd.size - pos);
  if (n <= 0) return 0; // truncated away: the pinned page is no longer the file's
  return write ? memfd.write(buf.subarray(0, n), pos) : memfd.read(buf.subarray(0, n), pos);
}

/** Through a live process mapping the pages: bytes moved up to the end of its mapping (0: none maps the first). */
function viaProcess(registry: StoreRegistry, store: RemotePageStore, write: boolean, at: number, buf: Uint8Array): number {
  const within = at % PAGE_SIZE;
  const m = registry.mapper(store.object, store.firstPage + Math.floor(at / PAGE_SIZE));
  if (!m) return 0;
  const n = Math.min(buf.length, m.pages * PAGE_SIZE - within);
  return m.mm.vm.dma(write, m.addr + within, buf.subarray(0, n));
}

/** The store's own copy of a page nobody maps any more: bytes moved, up to the end of the page. */
function viaDetached(store: RemotePageStore, write: boolean, at: number, buf: Uint8Array): number {
  const index = Math.floor(at / PAGE_SIZE);
  const within = at % PAGE_SIZE;
  const pages = (store.detached ??= new Map());
  let page = pages.get(index);
  if (!page) pages.set(index, (page = new Uint8Array(PAGE_SIZE)));
  const n = Math.min(buf.length, PAGE_SIZE - within);
  if (write) page.set(buf.subarray(0, n), within);
  else buf.set(page.subarray(within, within + n));
  return n;
}
