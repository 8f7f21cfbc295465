/**
 * What `ioasid bind` took, remembered for `ioasid unbind`: a small JSON file, by PCI address, of
 * the driver ioasid bound and the binding it found before (the DriverState restoreDriver() puts
 * back). A command's process ends, the record outlives it.
 *
 * Where: /run/ioasid/bindings.json for root (a tmpfs: gone at reboot, as the bindings are), else
 * $XDG_RUNTIME_DIR/ioasid/, else <tmpdir>/ioasid-<uid>/. The directory is 0700 and must be this
 * user's own, the file 0600; every write goes to a temporary file renamed over the old one, so a
 * reader sees the old records or the new, never half a file. Records carry the kernel's boot_id:
 * those of an earlier boot (where /run is not a tmpfs) are ignored, and dropped at the next write.
 */
import { chmodSync, closeSync, fsyncSync, lstatSync, mkdirSync, openSync, readFileSync, renameSync, unlinkSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { DriverState } from '../device/pci.js';

/** One function ioasid bound. */
export interface BindRecord {
  /** The driver `ioasid bind` bound. */
  readonly driver: string;
  /** The binding before the first `ioasid bind` (what `ioasid unbind` puts back). */
  readonly previous: DriverState;
  /** /proc/sys/kernel/random/boot_id when it was bound ('' where there is none). */
  readonly bootId: string;
  /** When, as an ISO date. */
  readonly time: string;
}

interface RecordsFile {
  readonly version: 1;
  readonly bindings: Record<string, BindRecord>;
}

/** The records file for this user: see the file comment. */
export function recordsPath(env: NodeJS.ProcessEnv = process.env): string {
  const uid = process.getuid?.() ?? -1;
  const dir = uid === 0 ? '/run/ioasid' : env.XDG_RUNTIME_DIR ? join(env.XDG_RUNTIME_DIR, 'ioasid') : join(tmpdir(), `ioasid-${uid}`);
  return join(dir, 'bindings.json');
}

export class BindRecords {
  constructor(
    /** The JSON file. */
    readonly path: string,
    /** This boot's boot_id: records of another boot do not count. */
    readonly bootId: string,
  ) {}

  /** The record of `bdf` from this boot, or null. */
  get(bdf: string): BindRecord | null {
    const r = this.read()[bdf];
    return r && r.bootId === this.bootId ? r : null;
  }

  /** Record (or with null, forget) `bdf`, rewriting the file atomically. */
  set(bdf: string, record: BindRecord | null): void {
    const bindings = Object.fromEntries(Object.entries(this.read()).filter(([k, r]) => k !== bdf && r.bootId === this.bootId));
    if (record) bindings[bdf] = record;
    this.write({ version: 1, bindings });
  }

  private read(): Record<string, BindRecord> {
    let text: string;
    try {
      text = readFileSync(this.path, 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return {};
      throw e;
    }
    const file = JSON.parse(text) as Partial<RecordsFile>;
    if (file.version !== 1 || typeof file.bindings !== 'object' || file.bindings === null) throw new Error(`${this.path} is not an ioasid records file`);
    return file.bindings;
  }

  private write(file: RecordsFile): void {
    const dir = this.path.slice(0, this.path.lastIndexOf('/'));
    ownDir(dir);
    const tmp = `${this.path}.${process.pid}.tmp`;
    const fd = openSync(tmp, 'w', 0o600);
    try {
      writeSync(fd, `${JSON.stringify(file, null, 2)}\n`);
      fsyncSync(fd);
    } catch (e) {
      closeSync(fd);
      unlinkSync(tmp);
      throw e;
    }
    closeSync(fd);
    renameSync(tmp, this.path);
  }
}

/** Make `dir` (0700) or check that it is a directory of this user's that no one else may write. */
function ownDir(dir: string): void {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const st = lstatSync(dir);
  const uid = process.getuid?.();
  if (!st.isDirectory() || (uid !== undefined && st.uid !== uid)) throw new Error(`${dir} is not a directory of this user's: not writing ioasid's records there`);
  if (st.mode & 0o022) chmodSync(dir, 0o700);
}
