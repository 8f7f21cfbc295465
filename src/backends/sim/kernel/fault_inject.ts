/**
 * Fault injection (lib/fault-inject.c's fail_nth): a task arms itself by writing N to
 * /proc/thread-self/fail-nth (process.ts); from then on every failable step its syscalls reach
 * counts N down, and the step that brings it to 0 fails, once. The sim's steps are the kernel's
 * kinds: object and memory allocations (ENOMEM: failslab, fail_page_alloc), page pinning (ENOMEM)
 * and copies from and to user memory (EFAULT: fail_usercopy). Each is one `shouldFail()` check,
 * a single compare while nothing is armed.
 */

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
