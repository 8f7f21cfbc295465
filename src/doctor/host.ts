/**
 * The small file system seam `ioasid doctor` reads a host through: the Binding's sysfs calls
 * (readText, readdir, readlink) plus what the Binding does not offer (a file's bytes, stat, whether
 * this process may open a node, RLIMIT_MEMLOCK). On the linux backend it is the running host, read
 * with node:fs (no koffi needed); on the sim it is the simulated machine's file system and process,
 * so `ioasid doctor --machine NAME` runs the same checks on a preset.
 */
import { accessSync, constants, readFileSync, statSync } from 'node:fs';
import { fsCall } from '../backends/linux/binding.js';
import type { SimBinding } from '../backends/sim/index.js';
import { KernelErrno } from '../backends/sim/kernel/errno.js';
import { innermostBinding, type Binding } from '../backends/types.js';
import { orMissing } from '../device/pci.js';
import { IommuError } from '../ioasid/errors.js';

export interface HostStat {
  type: 'file' | 'dir' | 'chr' | 'other';
  /** Permission bits (0o660). */
  mode: number;
  uid: number;
  gid: number;
}

export interface Host {
  /** 'this host' or 'sim machine q35Edu'. */
  readonly description: string;
  /** The Binding the reads go through (the device layer's discovery takes it). */
  readonly binding: Binding;
  /** The calling process's uid. */
  readonly uid: number;
  /** A file's bytes (/proc/config.gz); IommuError as the Binding's reads throw. */
  readBytes(path: string): Uint8Array;
  stat(path: string): HostStat;
  /** Whether this process may open `path` read-write (access(2) with R_OK|W_OK). */
  canOpenRw(path: string): boolean;
  /** RLIMIT_MEMLOCK's soft limit in bytes (Infinity when unlimited). */
  memlockLimit(): number;
}

/**
 * The host a Binding reads: the sim's machine for a SimBinding, else the running host. (Told
 * apart by name, so that reading this host never loads the sim.)
 */
export function hostOf(binding: Binding): Host {
  const inner = innermostBinding(binding);
  return inner.name === 'sim' && 'kernel' in inner ? simHost(inner as SimBinding) : linuxHost(binding);
}

function linuxHost(binding: Binding): Host {
  return {
    description: 'this host',
    binding,
    uid: process.getuid?.() ?? -1,
    readBytes: (path) => fsCall('read', path, () => readFileSync(path)),
    stat: (path) => {
      const st = fsCall('stat', path, () => statSync(path));
      const type = st.isFile() ? 'file' : st.isDirectory() ? 'dir' : st.isCharacterDevice() ? 'chr' : 'other';
      return { type, mode: st.mode & 0o7777, uid: st.uid, gid: st.gid };
    },
    canOpenRw: (path) => {
      try {
        accessSync(path, constants.R_OK | constants.W_OK);
        return true;
      } catch {
        return false;
      }
    },
    memlockLimit: () => {
      const limits = orMissing(() => binding.readText('/proc/self/limits'), '');
      const soft = /^Max locked memory\s+(\S+)/m.exec(limits)?.[1];
      return soft === undefined || soft === 'unlimited' ? Infinity : Number(soft);
    },
  };
}

function simHost(binding: SimBinding): Host {
  const { vfs } = binding.kernel;
  const proc = binding.proc;
  const uid = proc.user.uid;
  return {
    description: `sim machine ${binding.kernel.machine.desc.name}`,
    binding,
    uid,
    readBytes: (path) => sys('read', path, () => vfs.readBytes(path)),
    stat: (path) => sys('stat', path, () => vfs.stat(path)),
    // generic_permission, as the sim's open checks it
    canOpenRw: (path) => {
      const st = orMissing(() => sys('stat', path, () => vfs.stat(path)), null);
      return st !== null && proc.mayAccess(st.mode, st.uid, 6);
    },
    memlockLimit: () => proc.rlimitMemlock,
  };
}

/** A sim file system call; its KernelErrno surfaces as the Binding's calls surface it. */
function sys<T>(syscall: string, path: string, fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    throw e instanceof KernelErrno ? new IommuError(e.errno, syscall, { path }) : e;
  }
}
