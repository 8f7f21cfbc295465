/**
 * Process memory to map into an IOAS: anonymous mappings and memfds, made through the same
 * binding as the iommufd (simulated process memory on sim, mmap'd memory on linux). A mapping's
 * byte view is invalidated when it is unmapped: touching real memory after munmap would crash
 * the process, so `bytes` throws instead.
 */
import {
  MAP_ANONYMOUS, MAP_HUGETLB, MAP_POPULATE, MAP_PRIVATE, MAP_SHARED, PROT_READ, PROT_WRITE, type Binding,
} from '../backends/types.js';

export interface MmapOptions {
  /** MAP_SHARED (default) or MAP_PRIVATE. */
  shared?: boolean;
  /** PROT_READ only (default read+write). */
  readonly?: boolean;
  /** Place at this address (MAP_FIXED). */
  fixedAddress?: bigint;
  /** Back with hugetlb pages (MAP_HUGETLB | MAP_POPULATE): needs reserved huge pages on Linux. */
  hugetlb?: boolean;
}

export class UserMemory implements Disposable {
  private view: Uint8Array | null = null;
  private closed = false;
  /** `length` as a bigint, for mapping without a conversion per call. */
  readonly byteLength: bigint;

  constructor(
    readonly binding: Binding,
    /** User virtual address. */
    readonly addr: bigint,
    readonly length: number,
  ) {
    this.byteLength = BigInt(length);
  }

  static anonymous(binding: Binding, length: number, opts: MmapOptions = {}): UserMemory {
    const prot = opts.readonly ? PROT_READ : PROT_READ | PROT_WRITE;
    const flags = (opts.shared === false ? MAP_PRIVATE : MAP_SHARED) | MAP_ANONYMOUS | (opts.fixedAddress ? 0x10 : 0)
      | (opts.hugetlb ? MAP_HUGETLB | MAP_POPULATE : 0);
    const addr = binding.mmap(opts.fixedAddress ?? 0n, length, prot, flags, -1, 0);
    return new UserMemory(binding, addr, length);
  }

  /** The mapping's bytes; throws once the mapping is closed. */
  get bytes(): Uint8Array {
    if (this.closed) throw new Error('UserMemory: mapping was unmapped');
    return (this.view ??= this.binding.view(this.addr, this.length));
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.view = null;
    this.binding.munmap(this.addr, this.length);
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

export class MemFd implements Disposable {
  readonly fd: number;
  private _size = 0;

  constructor(
    readonly binding: Binding,
    name = 'ioasid',
    size = 0,
  ) {
    this.fd = binding.memfdCreate(name, 1 /* MFD_CLOEXEC */);
    if (size) this.truncate(size);
  }

  get size(): number {
    return this._size;
  }

  truncate(size: number): void {
    this.binding.ftruncate(this.fd, size);
    this._size = size;
  }

  /** mmap a window of the file (MAP_SHARED by default, so writes reach the file). */
  map(length = this._size, offset = 0, opts: MmapOptions = {}): UserMemory {
    const prot = opts.readonly ? PROT_READ : PROT_READ | PROT_WRITE;
    const flags = opts.shared === false ? MAP_PRIVATE : MAP_SHARED;
    const addr = this.binding.mmap(0n, length, prot, flags, this.fd, offset);
    return new UserMemory(this.binding, addr, length);
  }

  private closed = false;

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.binding.close(this.fd);
  }

  [Symbol.dispose](): void {
    this.close();
  }
}
