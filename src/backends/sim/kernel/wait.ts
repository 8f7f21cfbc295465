/**
 * A wait queue head (include/linux/wait.h, kernel/sched/wait.c): a file whose readiness can
 * change by itself (an eventfd a device signals, a queue a fault lands in) wakes it at each such
 * change, as the kernel's wake_up() does for poll_wait()'s entries. The sim has no threads: a
 * wake-up calls the entries there and then, inside the write or interrupt that changed the state.
 * An entry only re-polls the file and settles a promise; the waiter's code runs later, as a
 * microtask, never inside the sim.
 */
export type WaitQueueEntry = () => void;

export class WaitQueueHead {
  private readonly entries = new Set<WaitQueueEntry>();

  /** add_wait_queue */
  add(e: WaitQueueEntry): void {
    this.entries.add(e);
  }

  /** remove_wait_queue */
  remove(e: WaitQueueEntry): void {
    this.entries.delete(e);
  }

  /** wake_up: every entry, in the order added (an entry may remove itself). */
  wakeUp(): void {
    if (this.entries.size === 0) return;
    for (const e of [...this.entries]) e();
  }
}
