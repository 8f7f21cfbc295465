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

describe(`file I/O seam [${BACKEND}]`, () => {
  it('eventfd: a write adds to the counter, a read takes it all, an empty non-blocking read is EAGAIN', async () => {
    const { openBinding } = await import('../src/backends/index.js');
    const { EFD_NONBLOCK, POLLIN } = await import('../src/backends/types.js');
    const b = openBinding(BACKEND);
    const fd = b.eventfd(0, EFD_NONBLOCK);
    try {
      const buf = new Uint8Array(8);
      const dv = new DataView(buf.buffer);
      expectErrno(() => b.read(fd, buf), 'EAGAIN');
      expect(b.poll(fd, POLLIN, 0) & POLLIN).toBe(0);
      dv.setBigUint64(0, 3n, true);
      expect(b.write(fd, buf)).toBe(8);
      expect(b.write(fd, buf)).toBe(8);
      expect(b.poll(fd, POLLIN, 0) & POLLIN).toBe(POLLIN);
      buf.fill(0);
      expect(b.read(fd, buf)).toBe(8);
      expect(dv.getBigUint64(0, true)).toBe(6n);
      expectErrno(() => b.read(fd, new Uint8Array(4)), 'EINVAL');
      expectErrno(() => b.pread(fd, buf, 0), 'ESPIPE');
    } finally {
      b.close(fd);
    }
  });

  it('a path that is not there is ENOENT for open, readText, readlink and readdir', async () => {
    const { openBinding } = await import('../src/backends/index.js');
    const b = openBinding(BACKEND);
    const p = '/sys/bus/pci/devices/ffff:ff:1f.7';
    expectErrno(() => b.open(p), 'ENOENT');
    expectErrno(() => b.readText(`${p}/vendor`), 'ENOENT');
    expectErrno(() => b.readlink(`${p}/iommu_group`), 'ENOENT');
    expectErrno(() => b.readdir(p), 'ENOENT');
  });

  it("path lookup follows a link in any component; '.', '..' after a link, repeated and trailing '/' as the kernel's walk takes them", async () => {
    const { openBinding } = await import('../src/backends/index.js');
    const b = openBinding(BACKEND);
    const edu = '/sys/bus/pci/devices/0000:00:01.0';
    expect(b.readText(`${edu}/vendor`)).toBe('0x1234\n');
    // two links deep: the device's iommu_group, then the group's link back to the device
    expect(b.readText(`${edu}/iommu_group/devices/0000:00:01.0/device`)).toBe('0x11e8\n');
    expect(b.readText(`/sys//bus/pci/./devices/0000:00:01.0/./vendor`)).toBe('0x1234\n');
    expect(b.readdir(`${edu}/`)).toContain('vendor');
    // '..' steps up from where the link led (/sys/devices/pci0000:00), not back to /sys/bus/pci/devices,
    // which also lists the function behind the bridge
    const up = b.readdir(`${edu}/..`);
    expect(up).toContain('0000:00:01.0');
    expect(up).not.toContain('0000:01:01.0');
    expect(b.readText(`${edu}/../0000:00:01.0/vendor`)).toBe('0x1234\n');
    expectErrno(() => b.readText(`${edu}/../../pci/devices/0000:00:01.0/vendor`), 'ENOENT');
  });
});
