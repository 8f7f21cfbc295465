/**
 * Encoding iommufd commands: one preallocated buffer per command kind, fields written by offset
 * from the uAPI table (no per-call allocation), 64-bit fields as bigint through DataView.
 */
import type { IoctlDesc } from './uapi.js';

export class Command {
  readonly buf: Uint8Array;
  readonly dv: DataView;
  readonly off: Readonly<Record<string, number>>;

  constructor(readonly desc: IoctlDesc) {
    this.buf = new Uint8Array(desc.struct.size);
    this.dv = new DataView(this.buf.buffer);
    this.off = desc.struct.off;
  }

  /** Zero the struct and set `size` (start of every call). */
  reset(): this {
    this.buf.fill(0);
    this.dv.setUint32(0, this.buf.length, true);
    return this;
  }

  u16(f: string, v: number): this {
    this.dv.setUint16(this.off[f]!, v, true);
    return this;
  }
  u32(f: string, v: number): this {
    this.dv.setUint32(this.off[f]!, v, true);
    return this;
  }
  s32(f: string, v: number): this {
    this.dv.setInt32(this.off[f]!, v, true);
    return this;
  }
  u64(f: string, v: bigint): this {
    this.dv.setBigUint64(this.off[f]!, v, true);
    return this;
  }
  get32(f: string): number {
    return this.dv.getUint32(this.off[f]!, true);
  }
  get64(f: string): bigint {
    return this.dv.getBigUint64(this.off[f]!, true);
  }
}

/** A checked bigint -> u64 (RangeError outside [0, 2^64)). */
const U64_MAX = 0xffff_ffff_ffff_ffffn;

export function u64(v: bigint, what: string): bigint {
  if (v < 0n || v > U64_MAX) throw new RangeError(`${what} is not a u64: ${v}`);
  return v;
}
