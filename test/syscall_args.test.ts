/**
 * Every Binding call with numbers Linux would refuse, and numbers no C argument can hold. The
 * expected errnos are Linux's (mm/mmap.c, mm/util.c, fs/open.c, fs/read_write.c, fs/eventfd.c,
 * mm/memfd.c, fs/select.c), seen on the VM's kernel and on the host's; the JS-only rule (NaN,
 * fractions, |n| > 2^53 - 1, negative unsigned values: EINVAL, or EBADF for a descriptor) is the
 * same on both backends and never reaches koffi. Before these checks the sim threw RangeError
 * for a NaN or 2^40-byte mmap and a 2^40-byte ftruncate, and answered several calls unlike Linux.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { openBinding } from '../src/backends/index.js';
import {
  EFD_NONBLOCK, MAP_ANONYMOUS, MAP_FIXED, MAP_NORESERVE, MAP_PRIVATE, MAP_SHARED, POLLIN, POLLOUT, PROT_READ,
  PROT_WRITE, type Binding,
} from '../src/backends/types.js';
import { IOCTLS } from '../src/ioasid/uapi.js';
import { BACKEND, expectErrno } from './helpers.js';

const RW = PROT_READ | PROT_WRITE;
const ANON = MAP_PRIVATE | MAP_ANONYMOUS;
const MAP_SHARED_VALIDATE = 0x03;
const MAP_SYNC = 0x80000;
const MAP_FIXED_NOREPLACE = 0x100000;
const POLLNVAL = 0x20;
const EFD_SEMAPHORE = 1;
const SIM = BACKEND === 'sim';

const u64 = (v: bigint): Uint8Array => {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setBigUint64(0, v, true);
  return b;
};
const readU64 = (b: Binding, fd: number): bigint => {
  const buf = new Uint8Array(8);
  expect(b.read(fd, buf)).toBe(8);
  return new DataView(buf.buffer).getBigUint64(0, true);
};

describe(`Binding calls refuse bad numbers with Linux's errno [${BACKEND}]`, () => {
  let b: Binding;
  const fds: number[] = [];
  const maps: [bigint, number][] = [];
  const track = (fd: number): number => (fds.push(fd), fd);
  const mapped = (addr: bigint, len: number): bigint => (maps.push([addr, len]), addr);

  beforeEach(() => {
    b = openBinding(BACKEND);
  });
  afterEach(() => {
    for (const [a, l] of maps.splice(0)) b.munmap(a, l);
    for (const fd of fds.splice(0)) b.close(fd);
  });

  it('numbers with no C value: NaN, infinities, fractions, beyond 2^53, negative unsigned', () => {
    for (const bad of [NaN, Infinity, 4096.5, 2 ** 53, -1]) {
      expectErrno(() => b.mmap(0n, bad, RW, ANON, -1, 0), 'EINVAL');
      expectErrno(() => b.munmap(0x10000000n, bad), 'EINVAL');
      expectErrno(() => b.view(0x10000000n, bad), 'EINVAL');
      expectErrno(() => b.eventfd(bad, 0), 'EINVAL');
      expectErrno(() => b.ioctl(0, bad, null), 'EINVAL');
    }
    for (const bad of [NaN, -Infinity, 0.5, -(2 ** 53)]) {
      expectErrno(() => b.mmap(0n, 4096, RW, ANON, -1, bad), 'EINVAL');
      expectErrno(() => b.ftruncate(0, bad), 'EINVAL');
      expectErrno(() => b.pread(0, new Uint8Array(1), bad), 'EINVAL');
      expectErrno(() => b.pwrite(0, new Uint8Array(1), bad), 'EINVAL');
      expectErrno(() => b.mmap(0n, 4096, bad, ANON, -1, 0), 'EINVAL');
      expectErrno(() => b.mmap(0n, 4096, RW, bad, -1, 0), 'EINVAL');
      expectErrno(() => b.open('/dev/null', bad), 'EINVAL');
      expectErrno(() => b.memfdCreate('x', bad), 'EINVAL');
      expectErrno(() => b.poll(0, POLLIN, bad), 'EINVAL');
    }
    for (const bad of [NaN, 3.5, 2 ** 31, -(2 ** 31) - 1]) {
      expectErrno(() => b.close(bad), 'EBADF');
      expectErrno(() => b.read(bad, new Uint8Array(8)), 'EBADF');
      expectErrno(() => b.ioctl(bad, IOCTLS.DESTROY.request, new Uint8Array(8)), 'EBADF');
      expectErrno(() => b.mmap(0n, 4096, RW, MAP_SHARED, bad, 0), 'EBADF');
      expectErrno(() => b.poll(bad, POLLIN, 0), 'EBADF');
    }
    expectErrno(() => b.mmap(-1n, 4096, RW, ANON, -1, 0), 'EINVAL');
    expectErrno(() => b.munmap(1n << 64n, 4096), 'EINVAL');
    expectErrno(() => b.ioctlInt(0, 0x3b64, -1), 'EINVAL');
  });

  it('mmap: zero length EINVAL; beyond the address space or RAM ENOMEM; unaligned offset EINVAL; bad map type EINVAL', () => {
    expectErrno(() => b.mmap(0n, 0, RW, ANON, -1, 0), 'EINVAL');
    expectErrno(() => b.mmap(0n, 2 ** 48, RW, ANON, -1, 0), 'ENOMEM');
    // 1 TiB of accountable memory: the overcommit heuristic refuses more than RAM + swap
    expectErrno(() => b.mmap(0n, 2 ** 40, RW, ANON, -1, 0), 'ENOMEM');
    expectErrno(() => b.mmap(0n, 2 ** 40, RW, MAP_SHARED | MAP_ANONYMOUS, -1, 0), 'ENOMEM');
    expectErrno(() => b.mmap(0n, 4096, RW, ANON, -1, 100), 'EINVAL');
    expectErrno(() => b.mmap(0n, 4096, RW, MAP_ANONYMOUS, -1, 0), 'EINVAL');
    expectErrno(() => b.mmap(0n, 4096, RW, MAP_SHARED_VALIDATE | MAP_ANONYMOUS, -1, 0), 'EINVAL');
    expectErrno(() => b.mmap(0n, 4096, RW, MAP_SHARED, -1, 0), 'EBADF');
    expectErrno(() => b.mmap(0n, 4096, RW, MAP_SHARED, 9999, 0), 'EBADF');
    // an anonymous mapping ignores its (aligned) offset, even a negative one
    expect(mapped(b.mmap(0n, 4096, RW, MAP_SHARED | MAP_ANONYMOUS, -1, -4096), 4096)).toBeGreaterThan(0n);
  });

  // TASK_SIZE is 2^47 - 4096 with 4-level paging (the sim, most hosts) and 2^56 - 4096 with 5-level
  // paging (the VM's TCG CPU): the addresses past it are taken beyond both.
  it('mmap at a fixed address: past TASK_SIZE ENOMEM, unaligned EINVAL; MAP_FIXED_NOREPLACE over a mapping EEXIST', () => {
    expectErrno(() => b.mmap(1n << 57n, 4096, RW, ANON | MAP_FIXED, -1, 0), 'ENOMEM');
    expectErrno(() => b.mmap(1n << 63n, 4096, RW, ANON | MAP_FIXED, -1, 0), 'ENOMEM');
    const a = mapped(b.mmap(0n, 8192, RW, ANON, -1, 0), 8192);
    expectErrno(() => b.mmap(a + 1n, 4096, RW, ANON | MAP_FIXED, -1, 0), 'EINVAL');
    expectErrno(() => b.mmap(a, 4096, RW, ANON | MAP_FIXED_NOREPLACE, -1, 0), 'EEXIST');
  });

  it('mmap of files: a memfd at a negative offset EOVERFLOW; unknown flags with MAP_SHARED_VALIDATE EOPNOTSUPP; an eventfd ENODEV', () => {
    const m = track(b.memfdCreate('args', 1));
    b.ftruncate(m, 8192);
    expectErrno(() => b.mmap(0n, 4096, RW, MAP_SHARED, m, -4096), 'EOVERFLOW');
    expectErrno(() => b.mmap(0n, 4096, RW, MAP_SHARED_VALIDATE | MAP_SYNC, m, 0), 'EOPNOTSUPP');
    expectErrno(() => b.mmap(0n, 4096, RW, 0, m, 0), 'EINVAL');
    mapped(b.mmap(0n, 4096, RW, MAP_SHARED_VALIDATE, m, 4096), 4096);
    const e = track(b.eventfd(0, EFD_NONBLOCK));
    expectErrno(() => b.mmap(0n, 4096, RW, MAP_SHARED, e, 0), 'ENODEV');
  });

  it('munmap: zero length, unaligned, or past TASK_SIZE EINVAL; nothing mapped is fine', () => {
    expectErrno(() => b.munmap(0x10000000n, 0), 'EINVAL');
    expectErrno(() => b.munmap(0x10000001n, 4096), 'EINVAL');
    expectErrno(() => b.munmap(1n << 57n, 4096), 'EINVAL');
    b.munmap(0x10000000n, 4096);
  });

  it('ftruncate: negative EINVAL before the descriptor is looked up; not a regular file EINVAL; a closed fd EBADF', () => {
    expectErrno(() => b.ftruncate(9999, -1), 'EINVAL');
    expectErrno(() => b.ftruncate(9999, 0), 'EBADF');
    const e = track(b.eventfd(0, 0));
    expectErrno(() => b.ftruncate(e, 0), 'EINVAL');
  });

  it.skipIf(SIM)(`ftruncate of a memfd to 2^40 and 2^52 bytes succeeds (sparse shmem)${SIM ? ' (skipped: the sim backs every byte and answers EFBIG past 2 GiB)' : ''}`, () => {
    const m = track(b.memfdCreate('sparse', 1));
    b.ftruncate(m, 2 ** 40);
    b.ftruncate(m, 2 ** 52);
  });

  it('pread/pwrite: a negative offset EINVAL before the descriptor; anon-inode files ESPIPE; a memfd reads and writes at offsets', () => {
    expectErrno(() => b.pread(9999, new Uint8Array(8), -1), 'EINVAL');
    expectErrno(() => b.pwrite(9999, new Uint8Array(8), -1), 'EINVAL');
    expectErrno(() => b.pread(9999, new Uint8Array(8), 0), 'EBADF');
    const e = track(b.eventfd(0, 0));
    expectErrno(() => b.pread(e, new Uint8Array(8), 0), 'ESPIPE');
    const m = track(b.memfdCreate('rw', 1));
    b.ftruncate(m, 4096);
    expect(b.pwrite(m, new Uint8Array([1, 2, 3]), 4094)).toBe(3); // grows the file to 4097 bytes
    const got = new Uint8Array(8);
    expect(b.pread(m, got, 4092)).toBe(5);
    expect([...got.subarray(0, 5)]).toEqual([0, 0, 1, 2, 3]);
    expect(b.pread(m, got, 9000)).toBe(0);
    expect(b.write(m, new Uint8Array([9, 8]))).toBe(2);
    expect(b.read(m, got)).toBe(8);
    expect([...got.subarray(0, 2)]).toEqual([0, 0]); // f_pos moved past what write put at 0
    expect(b.pread(m, got, 0)).toBe(8);
    expect([...got.subarray(0, 2)]).toEqual([9, 8]);
  });

  it('pread on an iommufd: EINVAL (a char device has FMODE_PREAD but no read op)', () => {
    const fd = track(b.open('/dev/iommu'));
    expectErrno(() => b.pread(fd, new Uint8Array(8), 0), 'EINVAL');
    expectErrno(() => b.read(fd, new Uint8Array(8)), 'EINVAL');
  });

  it('eventfd: unknown flags EINVAL; writes of exactly 8 bytes; 64-bit counts exact; EAGAIN at the top; EFD_SEMAPHORE reads 1', () => {
    expectErrno(() => b.eventfd(0, 0x100), 'EINVAL');
    const e = track(b.eventfd(0, EFD_NONBLOCK));
    expectErrno(() => b.write(e, new Uint8Array(9)), 'EINVAL');
    expectErrno(() => b.write(e, new Uint8Array(4)), 'EINVAL');
    expect(b.write(e, u64(2n ** 60n + 1n))).toBe(8);
    expect(readU64(b, e)).toBe(2n ** 60n + 1n);
    expectErrno(() => b.write(e, u64(2n ** 64n - 1n)), 'EINVAL');
    expect(b.write(e, u64(2n ** 64n - 2n))).toBe(8);
    expect(b.poll(e, POLLIN | POLLOUT, 0)).toBe(POLLIN); // no room to write
    expectErrno(() => b.write(e, u64(1n)), 'EAGAIN');
    const s = track(b.eventfd(2, EFD_NONBLOCK | EFD_SEMAPHORE));
    expect(readU64(b, s)).toBe(1n);
    expect(readU64(b, s)).toBe(1n);
    expectErrno(() => readU64(b, s), 'EAGAIN');
  });

  it('poll: only the events asked (plus ERR/HUP); a closed fd POLLNVAL; a negative fd is skipped', () => {
    const e = track(b.eventfd(0, EFD_NONBLOCK));
    expect(b.poll(e, POLLIN, 0)).toBe(0);
    expect(b.poll(e, POLLIN | POLLOUT, 0)).toBe(POLLOUT);
    expect(b.poll(9999, POLLIN, 0)).toBe(POLLNVAL);
    expect(b.poll(-1, POLLIN, 0)).toBe(0);
    const m = track(b.memfdCreate('poll', 1));
    expect(b.poll(m, 0xffff, 0)).toBe(0x145); // DEFAULT_POLLMASK: IN OUT RDNORM WRNORM
  });

  it('memfd_create: unknown flags, EXEC with NOEXEC_SEAL, or a name over 249 bytes EINVAL', () => {
    expectErrno(() => b.memfdCreate('x', 0x100), 'EINVAL');
    expectErrno(() => b.memfdCreate('x', 0x18), 'EINVAL');
    expectErrno(() => b.memfdCreate('x'.repeat(250), 1), 'EINVAL');
    track(b.memfdCreate('x'.repeat(249), 1));
  });

  it('close: -1 EBADF', () => {
    expectErrno(() => b.close(-1), 'EBADF');
  });

  it.skipIf(!SIM)(`the sim's backing limits: a 2^40-byte MAP_NORESERVE mapping ENOMEM, a memfd over 128 MiB EFBIG${SIM ? '' : ' (skipped: the sim only; Linux maps and truncates sparsely)'}`, () => {
    expectErrno(() => b.mmap(0n, 2 ** 40, PROT_READ, ANON | MAP_NORESERVE, -1, 0), 'ENOMEM');
    const m = track(b.memfdCreate('big', 1));
    b.ftruncate(m, 2 ** 27);
    expectErrno(() => b.ftruncate(m, 2 ** 27 + 1), 'EFBIG');
    expectErrno(() => b.pwrite(m, new Uint8Array(1), 2 ** 40), 'EFBIG');
    expectErrno(() => b.mmap(0n, 4096, RW, MAP_SHARED, m, 2 ** 40), 'ENOMEM');
  });
});
