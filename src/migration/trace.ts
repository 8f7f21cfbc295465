/**
 * The trace format for uAPI calls (docs/trace.md): JSON Lines, a header record then one record per
 * call, with each ioctl named and decoded from the one uAPI description (trace_decode.ts), its
 * raw bytes before and after, the result and the errno. `traceBinding` records any session of the
 * library's own API by wrapping the Binding it runs on; `readTrace` reads a trace back, whoever
 * wrote it (this library, or a tool such as an LD_PRELOAD bridge).
 *
 *   const records: TraceRecord[] = [];
 *   using s = IommuSession.init('vfio_type1v2_iommu', traceBinding(openBinding(), records));
 *   ...
 *   writeFileSync('run.jsonl', formatTrace(records));
 *
 * Recording copies the bytes of each call (they are the caller's reusable buffers) and names the
 * fd; naming the ioctl, decoding its fields and the hex are done when a record is read or written.
 */
import { closeSync, openSync, writeSync } from 'node:fs';
import { hostname, release } from 'node:os';
import { innermostBinding, type Binding } from '../backends/types.js';
import { IommuError } from '../ioasid/errors.js';
import { IOCTLS } from '../ioasid/uapi.js';
import { hex } from './modes.js';
import {
  EVENTFD_ANON, FD_MAKING_REQUESTS, decodeArg, fdKind, fromHex, ioctlSpec, memfdPath, toHex, type Decoded, type IoctlSpec,
} from './trace_decode.js';

export { fdKind, type Decoded, type DecodedValue, type FdKind } from './trace_decode.js';

export const TRACE_FORMAT = 'ioasid';
export const TRACE_VERSION = 1;

/** The first record of a trace. */
export interface TraceHeader {
  readonly trace: typeof TRACE_FORMAT;
  readonly version: number;
  /** 'sim', 'linux', or what a producer ran on (an LD_PRELOAD bridge: 'linux' or 'sim'). */
  readonly backend: string;
  /** The sim's machine preset ('q35Edu'), or the host's name. */
  readonly machine: string;
  /** The kernel release (uname -r) on linux. */
  readonly kernel?: string;
  readonly pid: number;
  /** When recording began, ISO 8601 UTC. */
  readonly start: string;
  readonly page_size: number;
  readonly [field: string]: unknown;
}

/**
 * One call. Every record has seq, syscall, result and errno; the other fields depend on the
 * syscall (docs/trace.md lists them). Readers ignore fields they do not know.
 */
export interface TraceCall {
  readonly seq: number;
  /** 'open', 'close', 'ioctl', 'mmap', 'munmap', 'read', 'write', 'pread', 'pwrite', 'eventfd', ... */
  readonly syscall: string;
  readonly fd?: number;
  /** The file `fd` refers to (the path opened, or the kernel's anon inode name), or for path calls the path; null when unknown. */
  readonly path?: string | null;
  readonly request?: number;
  /** The ioctl's uAPI name, or null for a request the uAPI description does not know on that file. */
  readonly name?: string | null;
  /** An integer ioctl argument (VFIO_SET_IOMMU, VFIO_CHECK_EXTENSION). */
  readonly arg?: number;
  /** The argument's fields before and after the call; null when not decodable. */
  readonly in?: Decoded | null;
  readonly out?: Decoded | null;
  /** The argument's bytes before and after the call (ioctl, write/pwrite in, read/pread out); null for a NULL pointer. */
  readonly in_hex?: string | null;
  readonly out_hex?: string | null;
  /** What the call returned: a number, "0x…" for an address, a string or list for the path calls; -1 on failure. */
  readonly result: unknown;
  /** The errno's name ('EINVAL') when the call failed, else null. */
  readonly errno: string | null;
  readonly [field: string]: unknown;
}

export type TraceRecord = TraceHeader | TraceCall;

export const isHeader = (r: TraceRecord): r is TraceHeader => (r as TraceHeader).trace === TRACE_FORMAT;

// ---- records as recorded: cheap fields now, names, fields and hex when read --------------------

const NO_SPEC = Symbol('unresolved');

/** A recorded call: what the call saw, copied; decoding and hex happen on first read (or toJSON). */
class RecordedCall implements TraceCall {
  readonly [field: string]: unknown;
  private spec: IoctlSpec | null | typeof NO_SPEC = NO_SPEC;
  private decoded: [Decoded | null | undefined, Decoded | null | undefined] | null = null;

  constructor(
    readonly seq: number,
    readonly syscall: string,
    private readonly fields: Readonly<Record<string, unknown>>,
    private readonly inBytes: Uint8Array | null | undefined,
    private readonly outBytes: Uint8Array | null | undefined,
    readonly result: unknown,
    readonly errno: string | null,
    private readonly mem: Uint8Array | null = null,
  ) {
    Object.assign(this, fields);
  }

  private get ioctl(): IoctlSpec | null {
    if (this.spec === NO_SPEC) this.spec = ioctlSpec(fdKind(this.fields.path as string | null), this.fields.request as number);
    return this.spec;
  }

  get name(): string | null | undefined {
    return this.syscall === 'ioctl' ? this.ioctl?.name ?? null : undefined;
  }

  /** in and out, decoded once. */
  private get fieldsInOut(): [Decoded | null | undefined, Decoded | null | undefined] {
    if (!this.decoded) {
      const ioctl = this.syscall === 'ioctl' && this.inBytes !== undefined;
      const before = ioctl ? decodeArg(this.ioctl, this.inBytes) : undefined;
      // most commands write nothing back: the same bytes decode to the same fields
      const same = !this.mem && this.inBytes && this.outBytes && Buffer.compare(this.inBytes, this.outBytes) === 0;
      this.decoded = [before, !ioctl ? undefined : same ? before : decodeArg(this.ioctl, this.outBytes!, this.mem)];
    }
    return this.decoded;
  }

  get in(): Decoded | null | undefined {
    return this.fieldsInOut[0];
  }

  get out(): Decoded | null | undefined {
    return this.fieldsInOut[1];
  }

  get in_hex(): string | null | undefined {
    return this.inBytes === undefined ? undefined : this.inBytes && toHex(this.inBytes);
  }

  get out_hex(): string | null | undefined {
    return this.outBytes === undefined ? undefined : this.outBytes && toHex(this.outBytes);
  }

  /** The record as a plain object, fields in the documented order. */
  toJSON(): TraceCall {
    const o: Record<string, unknown> = { seq: this.seq, syscall: this.syscall, ...this.fields };
    if (this.syscall === 'ioctl') {
      o.name = this.name;
      if (this.inBytes !== undefined) {
        o.in = this.in;
        o.out = this.out;
      }
    }
    if (this.inBytes !== undefined) o.in_hex = this.in_hex;
    if (this.outBytes !== undefined) o.out_hex = this.out_hex;
    o.result = this.result;
    o.errno = this.errno;
    return o as TraceCall;
  }
}

// ---- sinks -------------------------------------------------------------------------------------

/** Where records go: an array, a function, or a file (created or truncated, one line per record). */
export type TraceSink = TraceRecord[] | ((record: TraceRecord) => void) | { readonly file: string };

/** One record as its line (no newline). */
export const traceLine = (r: TraceRecord): string => JSON.stringify(r);

/** Records as JSON Lines text. */
export function formatTrace(records: readonly TraceRecord[]): string {
  return records.map((r) => `${traceLine(r)}\n`).join('');
}

/** Lines are written in batches of this many records, and at flush(), end() and process exit. */
const FILE_BATCH = 256;

class FileSink {
  private fd: number | null;
  private pending: TraceRecord[] = [];
  private readonly onExit = (): void => this.end();

  constructor(path: string) {
    this.fd = openSync(path, 'w');
    process.once('exit', this.onExit);
  }

  push(r: TraceRecord): void {
    this.pending.push(r);
    if (this.pending.length >= FILE_BATCH) this.flush();
  }

  flush(): void {
    if (this.fd === null || !this.pending.length) return;
    const text = formatTrace(this.pending);
    this.pending = [];
    writeSync(this.fd, text);
  }

  end(): void {
    this.flush();
    if (this.fd !== null) closeSync(this.fd);
    this.fd = null;
    process.removeListener('exit', this.onExit);
  }
}

// ---- recording ---------------------------------------------------------------------------------

export interface TraceOptions {
  /** Header fields to add or override (a producer's name, the session's mode...). */
  header?: Record<string, unknown>;
}

/** The header for a trace recorded on `binding` now. */
export function traceHeader(binding: Binding, extra: Record<string, unknown> = {}): TraceHeader {
  const inner = innermostBinding(binding) as { kernel?: { machine?: { desc?: { name?: string } } } };
  const simMachine = binding.name === 'sim' ? inner.kernel?.machine?.desc?.name : undefined;
  return {
    trace: TRACE_FORMAT,
    version: TRACE_VERSION,
    backend: binding.name,
    machine: simMachine ?? hostname(),
    ...(binding.name === 'linux' ? { kernel: release() } : {}),
    pid: process.pid,
    start: new Date().toISOString(),
    page_size: binding.pageSize,
    ...extra,
  };
}

const IOVA_RANGES = IOCTLS.IOAS_IOVA_RANGES;
/** Requests whose record needs more than the argument's bytes: ranges written to memory, or a new fd to name. */
const SPECIAL = new Set([IOVA_RANGES.request, ...FD_MAKING_REQUESTS]);

/**
 * A Binding that records every call of `binding` into `sink`: the header first, then one record
 * per syscall (view() is memory access, not a call, and is not recorded). Use it wherever a
 * backend is taken: `Iommufd.open({ backend: traced })`, `VfioContainer.open(traced, …)`,
 * `IommuSession.init(mode, traced)`. Calls that throw something other than an IommuError (a
 * TypeError for a missing argument) are not calls the kernel saw and are not recorded.
 */
export class TracedBinding implements Binding {
  readonly name: Binding['name'];
  readonly header: TraceHeader;
  private seq = 0;
  private readonly paths = new Map<number, string>();
  private readonly emit: (r: TraceRecord) => void;
  private readonly file: FileSink | null;
  private ended = false;

  constructor(
    /** The binding that runs the calls. */
    readonly wraps: Binding,
    sink: TraceSink,
    opts: TraceOptions = {},
  ) {
    this.name = wraps.name;
    this.file = !Array.isArray(sink) && typeof sink === 'object' ? new FileSink(sink.file) : null;
    this.emit = Array.isArray(sink) ? (r) => void sink.push(r) : this.file ? (r) => this.file!.push(r) : (sink as (r: TraceRecord) => void);
    this.header = traceHeader(wraps, opts.header);
    this.emit(this.header);
  }

  get pageSize(): number {
    return this.wraps.pageSize;
  }

  /** Write what a file sink holds. */
  flush(): void {
    this.file?.flush();
  }

  /** Stop recording (calls still run), flush and close a file sink. */
  end(): void {
    this.ended = true;
    this.file?.end();
  }

  private pathOf(fd: number): string | null {
    return this.paths.get(fd) ?? null;
  }

  /** Run one call and record it; `fields` are the record's call-specific fields. */
  private record<T>(
    syscall: string, fields: Record<string, unknown>, fn: () => T,
    out: (v: T) => unknown = (v) => v, inBytes?: Uint8Array | null, outBytes?: () => Uint8Array | null,
  ): T {
    if (this.ended) return fn();
    let v: T;
    try {
      v = fn();
    } catch (e) {
      if (e instanceof IommuError) this.emit(new RecordedCall(this.seq++, syscall, fields, inBytes, outBytes && null, -1, e.code));
      throw e;
    }
    this.emit(new RecordedCall(this.seq++, syscall, fields, inBytes, outBytes?.(), out(v), null));
    return v;
  }

  open(path: string, flags?: number): number {
    const fd = this.record('open', { path, flags: flags ?? null }, () => (flags === undefined ? this.wraps.open(path) : this.wraps.open(path, flags)));
    this.paths.set(fd, path);
    return fd;
  }

  close(fd: number): void {
    this.record('close', { fd, path: this.pathOf(fd) }, () => this.wraps.close(fd), () => 0);
    this.paths.delete(fd);
  }

  /** The hot path: two copies of the argument and one object; naming and decoding wait. */
  ioctl(fd: number, request: number, arg: Uint8Array | null): number {
    if (this.ended) return this.wraps.ioctl(fd, request, arg);
    const path = this.paths.get(fd) ?? null;
    const before = arg && arg.slice();
    let ret: number;
    try {
      ret = this.wraps.ioctl(fd, request, arg);
    } catch (e) {
      if (e instanceof IommuError) this.emit(new RecordedCall(this.seq++, 'ioctl', { fd, path, request }, before, arg && arg.slice(), -1, e.code));
      throw e;
    }
    const after = arg && arg.slice();
    const special = SPECIAL.has(request) ? ioctlSpec(fdKind(path), request) : null;
    const mem = special?.name === IOVA_RANGES.name && after ? this.rangesWritten(after) : null;
    this.emit(new RecordedCall(this.seq++, 'ioctl', { fd, path, request }, before, after, ret, null, mem));
    if (special?.newFd) this.noteNewFd(special, after, ret);
    return ret;
  }

  /** IOMMU_IOAS_IOVA_RANGES wrote num_iovas ranges at allowed_iovas: copy them while they are there. */
  private rangesWritten(after: Uint8Array): Uint8Array | null {
    if (after.length < IOVA_RANGES.minSize) return null;
    const dv = new DataView(after.buffer, after.byteOffset, after.byteLength);
    const off = IOVA_RANGES.struct.off;
    const n = dv.getUint32(off.num_iovas!, true);
    const ptr = dv.getBigUint64(off.allowed_iovas!, true);
    return n && ptr ? this.wraps.view(ptr, n * 16).slice() : null;
  }

  /** Name the fd a command made (GET_DEVICE_FD's result, a fault queue's out_fault_fd...). */
  private noteNewFd(spec: IoctlSpec, after: Uint8Array | null, ret: number): void {
    const made = spec.newFd!;
    if (!made.field) {
      this.paths.set(ret, made.path);
      return;
    }
    const off = spec.struct?.off[made.field];
    if (after && off !== undefined && off + 4 <= after.length) {
      this.paths.set(new DataView(after.buffer, after.byteOffset).getInt32(off, true), made.path);
    }
  }

  ioctlInt(fd: number, request: number, value: number): number {
    return this.record('ioctl', { fd, path: this.pathOf(fd), request, arg: value }, () => this.wraps.ioctlInt(fd, request, value));
  }

  mmap(address: bigint, length: number, prot: number, flags: number, fd: number, offset: number): bigint {
    const fields = { addr: hex(address), length, prot, flags, fd, path: fd >= 0 ? this.pathOf(fd) : null, offset };
    return this.record('mmap', fields, () => this.wraps.mmap(address, length, prot, flags, fd, offset), hex);
  }

  munmap(address: bigint, length: number): void {
    this.record('munmap', { addr: hex(address), length }, () => this.wraps.munmap(address, length), () => 0);
  }

  memfdCreate(name: string, flags?: number): number {
    const fd = this.record('memfd_create', { memfd_name: name, flags: flags ?? null, path: memfdPath(name) },
      () => (flags === undefined ? this.wraps.memfdCreate(name) : this.wraps.memfdCreate(name, flags)));
    this.paths.set(fd, memfdPath(name));
    return fd;
  }

  ftruncate(fd: number, length: number): void {
    this.record('ftruncate', { fd, path: this.pathOf(fd), length }, () => this.wraps.ftruncate(fd, length), () => 0);
  }

  view(address: bigint, length: number): Uint8Array {
    return this.wraps.view(address, length);
  }

  hasCapability(cap: number): boolean {
    return this.record('capable', { cap }, () => this.wraps.hasCapability(cap));
  }

  read(fd: number, buf: Uint8Array): number {
    return this.record('read', { fd, path: this.pathOf(fd), count: buf.length }, () => this.wraps.read(fd, buf), undefined,
      undefined, () => buf.slice());
  }

  write(fd: number, buf: Uint8Array): number {
    return this.record('write', { fd, path: this.pathOf(fd), count: buf.length }, () => this.wraps.write(fd, buf), undefined, buf.slice());
  }

  pread(fd: number, buf: Uint8Array, offset: number): number {
    return this.record('pread', { fd, path: this.pathOf(fd), count: buf.length, offset }, () => this.wraps.pread(fd, buf, offset),
      undefined, undefined, () => buf.slice());
  }

  pwrite(fd: number, buf: Uint8Array, offset: number): number {
    return this.record('pwrite', { fd, path: this.pathOf(fd), count: buf.length, offset }, () => this.wraps.pwrite(fd, buf, offset),
      undefined, buf.slice());
  }

  eventfd(initval: number, flags: number): number {
    const fd = this.record('eventfd', { initval, flags, path: EVENTFD_ANON }, () => this.wraps.eventfd(initval, flags));
    this.paths.set(fd, EVENTFD_ANON);
    return fd;
  }

  poll(fd: number, events: number, timeoutMs: number): number {
    return this.record('poll', { fd, path: this.pathOf(fd), events, timeout_ms: timeoutMs }, () => this.wraps.poll(fd, events, timeoutMs));
  }

  /** An asynchronous wait, recorded as `poll` with `async: true` when it settles (an abort is not a uAPI answer). */
  async pollAsync(fd: number, events: number, signal?: AbortSignal): Promise<number> {
    const fields = { fd, path: this.pathOf(fd), events, async: true };
    let revents: number;
    try {
      revents = await this.wraps.pollAsync(fd, events, signal);
    } catch (e) {
      if (!this.ended && e instanceof IommuError) this.emit(new RecordedCall(this.seq++, 'poll', fields, undefined, null, -1, e.code));
      throw e;
    }
    if (!this.ended) this.emit(new RecordedCall(this.seq++, 'poll', fields, undefined, undefined, revents, null));
    return revents;
  }

  readText(path: string): string {
    return this.record('read_text', { path }, () => this.wraps.readText(path));
  }

  writeText(path: string, text: string): void {
    this.record('write_text', { path, text }, () => this.wraps.writeText(path, text), () => 0);
  }

  readlink(path: string): string {
    return this.record('readlink', { path }, () => this.wraps.readlink(path));
  }

  readdir(path: string): string[] {
    return this.record('readdir', { path }, () => this.wraps.readdir(path), (names) => [...names]);
  }
}

/** Record every call made through the returned Binding into `sink` (see TracedBinding). */
export function traceBinding(binding: Binding, sink: TraceSink, opts?: TraceOptions): TracedBinding {
  return new TracedBinding(binding, sink, opts);
}

// ---- reading -----------------------------------------------------------------------------------

/** A trace that cannot be read: `line` is its 1-based line number. */
export class TraceFormatError extends Error {
  constructor(
    readonly line: number,
    detail: string,
  ) {
    super(`trace line ${line}: ${detail}`);
    this.name = 'TraceFormatError';
  }
}

const isInt = (v: unknown): v is number => Number.isSafeInteger(v);
const isHexOrNull = (v: unknown): boolean => v === undefined || v === null || (typeof v === 'string' && fromHex(v) !== null);
const isObjOrNull = (v: unknown): boolean => v === undefined || v === null || (typeof v === 'object' && !Array.isArray(v));

/** Why a call record is malformed, or ''. */
function callProblem(r: Record<string, unknown>, prevSeq: number): string {
  if (!isInt(r.seq) || r.seq < 0) return 'seq is not a non-negative integer';
  if (r.seq <= prevSeq) return `seq ${r.seq} does not follow ${prevSeq}`;
  if (typeof r.syscall !== 'string' || !r.syscall) return 'syscall is not a name';
  if (!('result' in r)) return 'no result';
  if (r.errno !== null && (typeof r.errno !== 'string' || !/^E[A-Z0-9_]+$/.test(r.errno))) return 'errno is neither null nor an errno name';
  if (r.fd !== undefined && !isInt(r.fd)) return 'fd is not an integer';
  if (r.path !== undefined && r.path !== null && typeof r.path !== 'string') return 'path is not a string';
  if (!isHexOrNull(r.in_hex) || !isHexOrNull(r.out_hex) || !isHexOrNull(r.mem_hex)) return 'in_hex/out_hex/mem_hex is not hex';
  if (r.syscall !== 'ioctl') return '';
  if (!isInt(r.fd)) return 'an ioctl without an fd';
  if (!isInt(r.request) || r.request < 0) return 'an ioctl without a request number';
  if (r.arg !== undefined && !isInt(r.arg)) return 'arg is not an integer';
  if (!isObjOrNull(r.in) || !isObjOrNull(r.out)) return 'in/out are not objects';
  return '';
}

/** Fill what a producer may leave out of a known ioctl (name, in, out), from its path and bytes. */
function completeIoctl(r: Record<string, unknown>): TraceCall {
  const spec = ioctlSpec(fdKind(r.path as string | null | undefined), r.request as number);
  const o = { ...r };
  if (o.name === undefined) o.name = spec?.name ?? null;
  if (o.in === undefined && typeof o.in_hex === 'string') o.in = decodeArg(spec, fromHex(o.in_hex));
  if (o.out === undefined && typeof o.out_hex === 'string') o.out = decodeArg(spec, fromHex(o.out_hex), typeof o.mem_hex === 'string' ? fromHex(o.mem_hex) : null);
  return o as TraceCall;
}

/**
 * The records of a JSON Lines trace: the header (checked: format 'ioasid', a version this reader
 * knows), then the calls, in order. Blank lines are skipped; fields a reader does not know are
 * kept and otherwise ignored; an ioctl record without `name`/`in`/`out` gets them decoded from its
 * path, request and hex. A malformed line is a TraceFormatError naming its line number.
 */
export function readTrace(text: string): TraceRecord[] {
  const out: TraceRecord[] = [];
  let prevSeq = -1;
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!.replace(/\r$/, '');
    if (!line.trim()) continue;
    let v: unknown;
    try {
      v = JSON.parse(line);
    } catch (e) {
      throw new TraceFormatError(i + 1, `not JSON (${(e as Error).message})`);
    }
    if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new TraceFormatError(i + 1, 'not a JSON object');
    const r = v as Record<string, unknown>;
    if (!out.length) {
      if (r.trace !== TRACE_FORMAT) throw new TraceFormatError(i + 1, `the first record is not a header {"trace":"${TRACE_FORMAT}",…}`);
      if (r.version !== TRACE_VERSION) throw new TraceFormatError(i + 1, `version ${JSON.stringify(r.version)}: this reader knows version ${TRACE_VERSION}`);
      out.push(r as TraceHeader);
      continue;
    }
    if ('trace' in r) throw new TraceFormatError(i + 1, 'a second header: one trace per file');
    const problem = callProblem(r, prevSeq);
    if (problem) throw new TraceFormatError(i + 1, problem);
    prevSeq = r.seq as number;
    out.push(r.syscall === 'ioctl' ? completeIoctl(r) : (r as TraceCall));
  }
  if (!out.length) throw new TraceFormatError(1, 'empty: no header');
  return out;
}
