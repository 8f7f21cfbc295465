/**
 * Fault injection (lib/fault-inject.c's fail_nth): a task arms itself by writing N to
 * /proc/thread-self/fail-nth (process.ts); from then on every failable step its syscalls reach
 * counts N down, and the step that brings it to 0 fails, once. The sim's steps are the kernel's
 * kinds: object and memory allocations (ENOMEM: failslab, fail_page_alloc), page pinning (ENOMEM)
 * and copies from and to user memory (EFAULT: fail_usercopy). Each is one `shouldFail()` check,
 * a single compare while nothing is armed.
 */
import { kstrtobool, kstrtoll, kstrtoull } from './kstrtox.js';
import type { SimVfs } from './vfs.js';

/** What fault injection needs of a task: its task->fail_nth. */
export interface FaultTask {
  failNth: number;
}

/** The task whose syscall is running (the kernel's `current`); null outside a syscall. */
let current: FaultTask | null = null;

/**
 * Syscall entry of `task`: injection points reached until the matching leaveSyscall count against
 * its fail_nth. Returns the task to restore, so a syscall made inside another stays with its caller.
 */
export function enterSyscall(task: FaultTask): FaultTask | null {
  const prev = current;
  current = task;
  return prev;
}

/** The kernel's `current`: the task whose syscall is running, null outside one. */
export function currentTask(): FaultTask | null {
  return current;
}

export function leaveSyscall(prev: FaultTask | null): void {
  current = prev;
}

/**
 * should_fail_ex's fail_nth branch: at a failable step, count the current task's fail_nth down;
 * true (inject the failure) when it reaches 0. Outside a syscall (a device's timer, a test poking
 * the sim directly) nothing counts, as in_task() is false in interrupt context.
 */
export function shouldFail(): boolean {
  const t = current;
  if (t === null || t.failNth === 0) return false;
  return --t.failNth === 0;
}

// ---- mm/failslab.c, mm/fail_page_alloc.c: which allocations may fail ---------------------------

/**
 * failslab.ignore_gfp_reclaim, fail_page_alloc.ignore_gfp_reclaim and .ignore_gfp_highmem: true by
 * default, as in the kernel, so sleeping allocations (GFP_KERNEL: every allocation the sim models)
 * are not failed and do not count until debugfs says `N`, as the iommufd_fail_nth selftest does.
 */
export const faultAttrs = {
  failslabIgnoreGfpWait: true,
  pageAllocIgnoreGfpWait: true,
  pageAllocIgnoreGfpHighmem: true,
};

/** should_failslab for a GFP_KERNEL object (kzalloc, xa_alloc...): a step only when sleeping allocations may fail. */
export function shouldFailSlab(): boolean {
  return !faultAttrs.failslabIgnoreGfpWait && shouldFail();
}

/**
 * should_fail_alloc_page for a GFP_KERNEL page (a page table page) or, with `highmem`, a
 * GFP_HIGHUSER page (a user page faulted in while pinning).
 */
export function shouldFailPage(highmem = false): boolean {
  if (faultAttrs.pageAllocIgnoreGfpWait || (highmem && faultAttrs.pageAllocIgnoreGfpHighmem)) return false;
  return shouldFail();
}

/** The debugfs attributes a fault_attr gets (fault_create_debugfs_attr), each a plain value. */
const COMMON_ATTRS: Record<string, DebugfsKind> = {
  probability: 'ul',
  interval: 'ul',
  times: 'atomic_t',
  space: 'atomic_t',
  verbose: 'ul',
  verbose_ratelimit_interval_ms: 'u32',
  verbose_ratelimit_burst: 'u32',
  'task-filter': 'bool',
};

/** The debugfs_create_* kind of a number file. */
type DebugfsKind = 'ul' | 'u32' | 'atomic_t' | 'bool';

/** The debugfs directories of fault injection (CONFIG_FAULT_INJECTION_DEBUG_FS, FAILSLAB, FAIL_PAGE_ALLOC). */
export function publishFaultDebugfs(vfs: Pick<SimVfs, 'addAttr'>): void {
  const D = '/sys/kernel/debug';
  const defaults: Record<string, bigint> = { interval: 1n, times: 1n, verbose: 2n, verbose_ratelimit_interval_ms: 5000n, verbose_ratelimit_burst: 10n };
  const plain = (kind: DebugfsKind, initial: bigint) => {
    let value = initial;
    return numberAttr(kind, () => value, (v) => (value = v));
  };
  for (const dir of ['failslab', 'fail_page_alloc']) {
    for (const [name, kind] of Object.entries(COMMON_ATTRS)) vfs.addAttr(`${D}/${dir}/${name}`, plain(kind, defaults[name] ?? 0n));
  }
  const flag = (key: keyof typeof faultAttrs) => numberAttr('bool', () => (faultAttrs[key] ? 1n : 0n), (v) => (faultAttrs[key] = v !== 0n));
  vfs.addAttr(`${D}/failslab/ignore-gfp-wait`, flag('failslabIgnoreGfpWait'));
  vfs.addAttr(`${D}/failslab/cache-filter`, plain('bool', 0n));
  vfs.addAttr(`${D}/fail_page_alloc/ignore-gfp-wait`, flag('pageAllocIgnoreGfpWait'));
  vfs.addAttr(`${D}/fail_page_alloc/ignore-gfp-highmem`, flag('pageAllocIgnoreGfpHighmem'));
  vfs.addAttr(`${D}/fail_page_alloc/min-order`, plain('u32', 1n));
}

/**
 * A debugfs number file (fs/debugfs/file.c, lib/fault-inject.c's ul): a bool prints Y/N and takes
 * kstrtobool's words (ignoring others: debugfs_write_file_bool answers the count either way); ul
 * and u32 print "%llu\n" and take kstrtoull, a u32 keeping the low 32 bits (debugfs_u32_set);
 * atomic_t prints "%lld\n" and takes kstrtoll, keeping the low 32 bits as an int (atomic_set), so
 * `times` takes -1, "no limit".
 */
function numberAttr(kind: DebugfsKind, get: () => bigint, set: (v: bigint) => void) {
  return {
    read: () => (kind === 'bool' ? (get() ? 'Y\n' : 'N\n') : `${get()}\n`),
    write: (text: string) => {
      if (kind === 'ul') return set(kstrtoull(text));
      if (kind === 'u32') return set(BigInt.asUintN(32, kstrtoull(text)));
      if (kind === 'atomic_t') return set(BigInt.asIntN(32, kstrtoll(text)));
      const b = kstrtobool(text);
      if (b !== undefined) set(b ? 1n : 0n);
    },
  };
}
