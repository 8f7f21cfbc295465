/**
 * Every command of the IOAS slice, fed bad input: the kernel's errno, and no change of state.
 * The state snapshot is what userspace can observe: which ids exist, each IOAS's IOVA ranges and
 * alignment, its huge-page option, its areas (probed by unmapping a copy), the compat IOAS and the
 * RLIMIT mode. Expected errnos follow the kernel's check order (ioas.c, main.c).
 */
import { describe, expect, it } from 'vitest';
import { uapi, type Ioas } from '../src/index.js';
import type { Command } from '../src/ioasid/codec.js';
import { BACKEND, PAGE_SIZE, U64_MAX, expectErrno, useIommufd } from './helpers.js';

const { IOCTLS } = uapi;
const PG = PAGE_SIZE;

describe(`bad input changes nothing [${BACKEND}]`, () => {
  const f = useIommufd();

  function world() {
    const a = f.ctx.allocIoas();
    const b = f.ctx.allocIoas();
    a.mapUser(f.buffer.addr, 4n * PG, { iova: 0x10000n });
    a.mapUser(f.buffer.addr, PG, { iova: 0x20000n, writeable: false });
    f.test.addReserved(a.id, 0x40000n, PG);
    b.allowIovas([{ start: 0x100000n, last: 0x1fffffn }]);
    f.ctx.setVfioIoas(b);
    return { a, b };
  }

  /** Observable state; areas are probed by copying each into a scratch IOAS (COPY needs whole coverage). */
  function snapshot(ioases: Ioas[]) {
    const ids = [1, 2, 3, 4, 5, 6].map((id) => {
      try {
        f.ctx.ioas(id).getHugePages();
        return `${id}:ioas`;
      } catch (e) {
        return `${id}:${(e as { code: string }).code}`;
      }
    });
    const per = ioases.map((io) => {
      const probe = f.ctx.allocIoas();
      const areas = [0x10000n, 0x11000n, 0x20000n, 0x30000n].map((v) => {
        try {
          probe.copyFrom(io, v, PG, { iova: v, writeable: false });
          return 'mapped';
        } catch (e) {
          return (e as { code: string }).code;
        }
      });
      probe.destroy();
      return { ranges: io.iovaRanges(), huge: io.getHugePages(), areas };
    });
    return { ids, per, vfio: f.ctx.getVfioIoas(), mode: f.ctx.getRlimitMode() };
  }

  function refuse(ioases: Ioas[], code: Parameters<typeof expectErrno>[1], c: () => Command) {
    const before = snapshot(ioases);
    expectErrno(() => f.ctx.ioctl(c()), code);
    expect(snapshot(ioases)).toEqual(before);
  }

  it('IOMMU_IOAS_ALLOC: flags EOPNOTSUPP, no id consumed', () => {
    const { a, b } = world();
    refuse([a, b], 'EOPNOTSUPP', () => f.ctx.cmd(IOCTLS.IOAS_ALLOC).u32('flags', 1));
    expect(f.ctx.allocIoas().id).toBe(b.id + 1);
  });

  it('IOMMU_DESTROY: unknown id ENOENT', () => {
    const { a, b } = world();
    refuse([a, b], 'ENOENT', () => f.ctx.cmd(IOCTLS.DESTROY).u32('id', 99));
  });

  it('IOMMU_IOAS_IOVA_RANGES: reserved EOPNOTSUPP, bad id ENOENT, bad pointer EFAULT', () => {
    const { a, b } = world();
    const c = () => f.ctx.cmd(IOCTLS.IOAS_IOVA_RANGES).u32('ioas_id', a.id).u32('num_iovas', 4);
    refuse([a, b], 'EOPNOTSUPP', () => c().u32('__reserved', 1));
    refuse([a, b], 'ENOENT', () => c().u32('ioas_id', 99));
    refuse([a, b], 'EFAULT', () => c().u64('allowed_iovas', 8n));
  });

  it('IOMMU_IOAS_ALLOW_IOVAS: reserved, bad id, bad pointer, start>=last, overlap, reserved clash', () => {
    const { a, b } = world();
    const mem = f.ctx.mmap(4096);
    const dv = new DataView(mem.bytes.buffer, mem.bytes.byteOffset, 4096);
    const put = (i: number, s: bigint, l: bigint) => {
      dv.setBigUint64(i * 16, s, true);
      dv.setBigUint64(i * 16 + 8, l, true);
    };
    const c = (n: number) => f.ctx.cmd(IOCTLS.IOAS_ALLOW_IOVAS).u32('ioas_id', a.id).u32('num_iovas', n).u64('allowed_iovas', mem.addr);
    put(0, 0x1000n, 0x1fffn);
    refuse([a, b], 'EOPNOTSUPP', () => c(1).u32('__reserved', 1));
    refuse([a, b], 'ENOENT', () => c(1).u32('ioas_id', 99));
    refuse([a, b], 'EFAULT', () => c(1).u64('allowed_iovas', 16n));
    put(0, 0x5000n, 0x5000n);
    refuse([a, b], 'EINVAL', () => c(1));
    put(0, 0x5000n, 0x8fffn);
    put(1, 0x8000n, 0x9fffn);
    refuse([a, b], 'EINVAL', () => c(2));
    put(0, 0x3f000n, 0x41fffn); // over the reserved page at 0x40000
    refuse([a, b], 'EADDRINUSE', () => c(1));
    mem.close();
  });

  it('IOMMU_IOAS_MAP: every refusal of the kernel order leaves the IOAS as it was', () => {
    const { a, b } = world();
    const c = () => f.ctx.cmd(IOCTLS.IOAS_MAP).u32('ioas_id', a.id).u32('flags', 7).u64('user_va', f.buffer.addr).u64('length', PG).u64('iova', 0x30000n);
    refuse([a, b], 'EOPNOTSUPP', () => c().u32('flags', 15));
    refuse([a, b], 'EOPNOTSUPP', () => c().u32('__reserved', 1));
    refuse([a, b], 'EOVERFLOW', () => c().u64('iova', U64_MAX));
    refuse([a, b], 'EINVAL', () => c().u32('flags', 1));
    refuse([a, b], 'ENOENT', () => c().u32('ioas_id', 99));
    refuse([a, b], 'EOVERFLOW', () => c().u64('user_va', U64_MAX - 5n));
    refuse([a, b], 'EINVAL', () => c().u64('length', 0n));
    refuse([a, b], 'EINVAL', () => c().u64('iova', 0x40000n)); // reserved
    refuse([a, b], 'EEXIST', () => c().u64('iova', 0x13000n));
    refuse([a, b], 'EOVERFLOW', () => c().u64('iova', U64_MAX - PG + 1n).u64('length', 2n * PG));
  });

  it('IOMMU_IOAS_UNMAP and COPY: refusals leave both IOASes as they were', () => {
    const { a, b } = world();
    const un = () => f.ctx.cmd(IOCTLS.IOAS_UNMAP).u32('ioas_id', a.id).u64('iova', 0x10000n).u64('length', 4n * PG);
    refuse([a, b], 'ENOENT', () => un().u32('ioas_id', 99));
    refuse([a, b], 'EINVAL', () => un().u64('length', 0n));
    refuse([a, b], 'EOVERFLOW', () => un().u64('length', U64_MAX));
    refuse([a, b], 'ENOENT', () => un().u64('length', 2n * PG));
    refuse([a, b], 'ENOENT', () => un().u64('iova', 0x30000n));
    const cp = () => f.ctx.cmd(IOCTLS.IOAS_COPY).u32('flags', 5).u32('src_ioas_id', a.id).u32('dst_ioas_id', b.id)
      .u64('length', PG).u64('src_iova', 0x10000n).u64('dst_iova', 0x100000n);
    refuse([a, b], 'EOPNOTSUPP', () => cp().u32('flags', 13));
    refuse([a, b], 'EOVERFLOW', () => cp().u64('src_iova', U64_MAX));
    refuse([a, b], 'EINVAL', () => cp().u32('flags', 1));
    refuse([a, b], 'ENOENT', () => cp().u32('src_ioas_id', 99));
    refuse([a, b], 'ENOENT', () => cp().u64('src_iova', 0x30000n));
    refuse([a, b], 'ENOENT', () => cp().u32('dst_ioas_id', 99));
    refuse([a, b], 'EEXIST', () => cp().u32('dst_ioas_id', a.id).u64('dst_iova', 0x10000n));
    refuse([a, b], 'EPERM', () => cp().u32('flags', 7).u64('src_iova', 0x20000n));
  });

  it('IOMMU_OPTION: reserved, unknown option, unknown op, bad object, bad value', () => {
    const { a, b } = world();
    const c = () => f.ctx.cmd(IOCTLS.OPTION).u32('option_id', 1).u16('op', 0).u32('object_id', a.id).u64('val64', 0n);
    refuse([a, b], 'EOPNOTSUPP', () => c().u16('__reserved', 1));
    refuse([a, b], 'EOPNOTSUPP', () => c().u32('option_id', 7));
    refuse([a, b], 'EOPNOTSUPP', () => c().u16('op', 2));
    refuse([a, b], 'ENOENT', () => c().u32('object_id', 99));
    refuse([a, b], 'EINVAL', () => c().u64('val64', 2n));
    refuse([a, b], 'EOPNOTSUPP', () => c().u32('option_id', 0).u32('object_id', a.id));
    refuse([a, b], 'EBUSY', () => c().u32('option_id', 0).u32('object_id', 0).u64('val64', 1n));
    // With objects present the kernel answers EBUSY before it looks at the value.
    refuse([a, b], 'EBUSY', () => c().u32('option_id', 0).u32('object_id', 0).u64('val64', 5n));
  });

  it('IOMMU_VFIO_IOAS: reserved, unknown op, SET of a missing IOAS', () => {
    const { a, b } = world();
    const c = () => f.ctx.cmd(IOCTLS.VFIO_IOAS).u32('ioas_id', a.id).u16('op', 1);
    refuse([a, b], 'EOPNOTSUPP', () => c().u16('__reserved', 1));
    refuse([a, b], 'EOPNOTSUPP', () => c().u16('op', 3));
    refuse([a, b], 'ENOENT', () => c().u32('ioas_id', 99));
  });

  it('IOMMU_IOAS_CHANGE_PROCESS: reserved EOPNOTSUPP; a plain (non-file) map makes it EINVAL', () => {
    const { a, b } = world();
    refuse([a, b], 'EOPNOTSUPP', () => f.ctx.cmd(IOCTLS.IOAS_CHANGE_PROCESS).u32('__reserved', 1));
    refuse([a, b], 'EINVAL', () => f.ctx.cmd(IOCTLS.IOAS_CHANGE_PROCESS));
  });
});
