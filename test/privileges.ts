/**
 * Test-only control of the two things the kernel's pin accounting depends on: CAP_IPC_LOCK in the
 * effective set and RLIMIT_MEMLOCK, plus the VmPin / VmLck counters it moves. On linux through
 * capget/capset and getrlimit/setrlimit (reversible: only the effective set and the soft limit
 * change, and vitest runs each file in its own process); on sim through the simulated process.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import type { Binding } from '../src/backends/types.js';
import { SimBinding } from '../src/backends/sim/index.js';

const require = createRequire(import.meta.url);
const CAP_IPC_LOCK = 14;
const RLIMIT_MEMLOCK = 8;

interface Libc {
  capget: (hdr: Uint32Array, data: Uint32Array) => number;
  capset: (hdr: Uint32Array, data: Uint32Array) => number;
  getrlimit: (res: number, lim: BigUint64Array) => number;
  setrlimit: (res: number, lim: BigUint64Array) => number;
}
let libc: Libc | null = null;
function c(): Libc {
  if (libc) return libc;
  const koffi = require('koffi');
  const lib = koffi.load('libc.so.6');
  return (libc = {
    capget: lib.func('int capget(void *hdr, void *data)'),
    capset: lib.func('int capset(void *hdr, void *data)'),
    getrlimit: lib.func('int getrlimit(int res, void *lim)'),
    setrlimit: lib.func('int setrlimit(int res, void *lim)'),
  });
}

/**
 * Drop (or restore) CAP_IPC_LOCK from the effective set and set the soft RLIMIT_MEMLOCK (left as
 * it is when `memlockBytes` is not given). Returns an undo.
 */
export function restrictPinning(binding: Binding, opts: { ipcLock: boolean; memlockBytes?: number }): () => void {
  if (binding instanceof SimBinding) {
    const p = binding.proc;
    const had = p.caps.has(CAP_IPC_LOCK);
    const oldLimit = p.rlimitMemlock;
    if (!opts.ipcLock) p.caps.delete(CAP_IPC_LOCK);
    p.rlimitMemlock = opts.memlockBytes ?? oldLimit;
    return () => {
      if (had) p.caps.add(CAP_IPC_LOCK);
      p.rlimitMemlock = oldLimit;
    };
  }
  const l = c();
  const hdr = Uint32Array.of(0x20080522, 0); // _LINUX_CAPABILITY_VERSION_3, this process
  const data = new Uint32Array(6);
  if (l.capget(hdr, data) !== 0) throw new Error('capget failed');
  const saved = data.slice();
  if (!opts.ipcLock) data[0] = data[0]! & ~(1 << CAP_IPC_LOCK);
  if (l.capset(hdr, data) !== 0) throw new Error('capset failed');
  const lim = new BigUint64Array(2);
  l.getrlimit(RLIMIT_MEMLOCK, lim);
  const savedLim = lim.slice();
  lim[0] = BigInt(opts.memlockBytes ?? lim[0]!);
  if (lim[0] > lim[1]!) lim[1] = lim[0];
  if (l.setrlimit(RLIMIT_MEMLOCK, lim) !== 0) throw new Error('setrlimit failed');
  return () => {
    l.capset(Uint32Array.of(0x20080522, 0), saved);
    l.setrlimit(RLIMIT_MEMLOCK, savedLim);
  };
}

/** VmPin and VmLck of this process, in pages. */
export function vmCounters(binding: Binding): { pinned: number; locked: number } {
  if (binding instanceof SimBinding) return { pinned: binding.proc.mm.pinnedVm, locked: binding.proc.mm.lockedVm };
  const status = readFileSync('/proc/self/status', 'utf8');
  const kb = (k: string) => Number(new RegExp(`${k}:\\s+(\\d+) kB`).exec(status)?.[1] ?? NaN);
  return { pinned: kb('VmPin') / 4, locked: kb('VmLck') / 4 };
}
