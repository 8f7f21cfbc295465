/** The backend under test is the one the tier claims: the real kernel's nodes in the VM, the sim elsewhere. */
import { existsSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { Iommufd } from '../src/index.js';
import { BACKEND, P, expectErrno } from './helpers.js';

describe(`backend [${BACKEND}]`, () => {
  it('the tier runs on the backend it names (linux: the kernel node; sim: the default, no node needed)', () => {
    if (BACKEND === 'linux') expect(existsSync('/dev/iommu')).toBe(true);
    using ctx = Iommufd.open();
    expect(ctx.binding.name).toBe(BACKEND);
    expectErrno(() => ctx.destroy(0), 'ENOENT');
  });

  it('bytes written through a UserMemory view are the bytes the IOAS maps (access_rw reads them back)', async () => {
    const { IommufdTest } = await import('../src/testing.js');
    using ctx = Iommufd.open({ backend: BACKEND });
    const ioas = ctx.allocIoas();
    using mem = ctx.mmap(2 * P);
    mem.bytes.set([1, 2, 3, 4], P - 2);
    const iova = ioas.map(mem);
    const t = new IommufdTest(ctx);
    const fd = t.createAccess(ioas.id);
    using out = ctx.mmap(P);
    t.accessRw(fd, iova + BigInt(P - 2), out.addr, 4n);
    expect([...out.bytes.subarray(0, 4)]).toEqual([1, 2, 3, 4]);
    t.closeAccess(fd);
    mem.close();
    expect(() => mem.bytes).toThrow(/unmapped/);
  });
});
