/**
 * LinuxBinding against the running kernel. Host syscalls (open/close/ioctl errors, mmap, memfd) run
 * on any Linux; the /dev/iommu part runs where iommufd exists (the test VM), and must run there
 * when IOASID_BACKEND=linux.
 */
import { existsSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { IommuError } from '../src/ioasid/errors.js';
import {
  IOCTLS, IOMMU_IOAS_MAP_READABLE, IOMMU_IOAS_MAP_WRITEABLE, IOMMU_TEST_CMD,
  iommu_destroy, iommu_ioas_alloc, iommu_ioas_map, iommu_ioas_unmap,
} from '../src/ioasid/uapi.js';
import { LinuxBinding, ioctl_name, linux } from '../src/backends/linux/index.js';
import {
  MAP_ANONYMOUS, MAP_PRIVATE, MAP_SHARED, O_RDONLY, PROT_READ, PROT_WRITE,
} from '../src/backends/types.js';

const sys = linux();
const DESTROY = IOCTLS.DESTROY.request;

/** Run `fn` and return the IommuError it throws. */
function caught(fn: () => unknown): IommuError {
  try {
    fn();
  } catch (e) {
    if (e instanceof IommuError) return e;
    throw e;
  }
  throw new Error('expected an IommuError');
}

function destroyCmd(id: number): Uint8Array {
  const buf = new Uint8Array(iommu_destroy.size);
  const dv = new DataView(buf.buffer);
  dv.setUint32(iommu_destroy.off.size!, iommu_destroy.size, true);
  dv.setUint32(iommu_destroy.off.id!, id, true);
  return buf;
}

describe('LinuxBinding: host syscalls', () => {
  it('is the linux backend with the system page size', () => {
    expect(sys).toBeInstanceOf(LinuxBinding);
    expect(sys.name).toBe('linux');
    expect(sys.pageSize).toBeGreaterThanOrEqual(4096);
    expect(sys.pageSize & (sys.pageSize - 1)).toBe(0);
  });

  it('surfaces ENOTTY from an iommufd request on /dev/null under the uAPI name', () => {
    const fd = sys.open('/dev/null');
    try {
      const e = caught(() => sys.ioctl(fd, DESTROY, destroyCmd(0)));
      expect(e).toMatchObject({ code: 'ENOTTY', errno: 25, syscall: 'IOMMU_DESTROY' });
      expect(e.message).toBe('IOMMU_DESTROY: ENOTTY (Inappropriate ioctl for device)');
      expect(e.path).toBeUndefined();
      expect(caught(() => sys.ioctl(fd, IOMMU_TEST_CMD.request, null)).syscall).toBe('IOMMU_TEST_CMD');
      expect(caught(() => sys.ioctl(fd, 0x3b7f, null)).syscall).toBe('ioctl(0x3b7f)');
      expect(caught(() => sys.ioctlInt(fd, IOCTLS.IOAS_MAP.request, 0))).toMatchObject({
        code: 'ENOTTY', syscall: 'IOMMU_IOAS_MAP',
      });
    } finally {
      sys.close(fd);
    }
  });

  it('names every iommufd request by its uAPI name', () => {
    for (const d of Object.values(IOCTLS)) expect(ioctl_name(d.request)).toBe(d.name);
    expect(ioctl_name(IOMMU_TEST_CMD.request)).toBe('IOMMU_TEST_CMD');
  });

  it('surfaces EBADF from close(-1) and from an ioctl on a bad fd', () => {
    expect(caught(() => sys.close(-1))).toMatchObject({ code: 'EBADF', errno: 9, syscall: 'close' });
    expect(caught(() => sys.ioctl(-1, DESTROY, destroyCmd(0)))).toMatchObject({
      code: 'EBADF', syscall: 'IOMMU_DESTROY',
    });
    expect(caught(() => sys.ftruncate(-1, 4096))).toMatchObject({ code: 'EBADF', syscall: 'ftruncate' });
  });

  it('surfaces ENOENT from open and the errno of the latest failure, not an older one', () => {
    const e = caught(() => sys.open('/nonexistent/ioasid', O_RDONLY));
    expect(e).toMatchObject({ code: 'ENOENT', syscall: 'open', path: '/nonexistent/ioasid' });
    expect(e.message).toBe('open /nonexistent/ioasid: ENOENT (No such file or directory)');
    expect(caught(() => sys.readText('/nonexistent/ioasid')).message).toBe('read /nonexistent/ioasid: ENOENT (No such file or directory)');
    const fd = sys.open('/dev/null', O_RDONLY);
    sys.close(fd);
    expect(caught(() => sys.close(fd))).toMatchObject({ code: 'EBADF', syscall: 'close' });
  });

  it('maps anonymous memory and reads back what a view wrote', () => {
    const len = sys.pageSize * 2;
    const addr = sys.mmap(0n, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    expect(typeof addr).toBe('bigint');
    expect(addr % BigInt(sys.pageSize)).toBe(0n);
    const a = sys.view(addr, len);
    expect(a.byteLength).toBe(len);
    expect(a.every((b) => b === 0)).toBe(true);
    a[0] = 0xa5;
    a[len - 1] = 0x5a;
    const b = sys.view(addr + BigInt(len - 1), 1);
    expect(b[0]).toBe(0x5a);
    expect(sys.view(addr, 1)[0]).toBe(0xa5);
    expect(sys.view(addr, 0).byteLength).toBe(0);
    sys.munmap(addr, len);
  });

  it('aliases two shared mappings of one memfd, and pread sees the same bytes', () => {
    const len = sys.pageSize;
    const fd = sys.memfdCreate('ioasid-test');
    try {
      sys.ftruncate(fd, len);
      const p1 = sys.mmap(0n, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
      const p2 = sys.mmap(0n, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
      expect(p1).not.toBe(p2);
      const v1 = sys.view(p1, len);
      const v2 = sys.view(p2, len);
      v1.set([1, 2, 3, 4], 100);
      expect([...v2.subarray(100, 104)]).toEqual([1, 2, 3, 4]);
      v2[200] = 0xee;
      expect(v1[200]).toBe(0xee);

      // A subarray passes its own data pointer (byteOffset honoured), as ioctl arguments rely on.
      const host = new Uint8Array(16).fill(0xff);
      expect(sys.pread(fd, host.subarray(4, 8), 100)).toBe(4);
      expect([...host.subarray(0, 10)]).toEqual([0xff, 0xff, 0xff, 0xff, 1, 2, 3, 4, 0xff, 0xff]);
      sys.munmap(p1, len);
      sys.munmap(p2, len);
    } finally {
      sys.close(fd);
    }
  });

  it('surfaces mmap and munmap failures', () => {
    expect(caught(() => sys.mmap(0n, 4096, PROT_READ, MAP_SHARED, -1, 0))).toMatchObject({
      code: 'EBADF', syscall: 'mmap',
    });
    expect(caught(() => sys.mmap(0n, 0, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0))).toMatchObject({
      code: 'EINVAL', syscall: 'mmap',
    });
    expect(caught(() => sys.munmap(1n, 4096))).toMatchObject({ code: 'EINVAL', syscall: 'munmap' });
  });

  it('reads capabilities from the effective set', () => {
    const root = process.getuid?.() === 0;
    expect(typeof sys.hasCapability(24)).toBe('boolean');
    if (!root) expect(sys.hasCapability(24)).toBe(false);
    expect(sys.hasCapability(63)).toBe(false);
  });
});

// ---- /dev/iommu (the test VM) ------------------------------------------------------------------

const HAVE_IOMMUFD = existsSync('/dev/iommu');
const MUST_HAVE_IOMMUFD = process.env.IOASID_BACKEND === 'linux';

describe.runIf(HAVE_IOMMUFD || MUST_HAVE_IOMMUFD)('LinuxBinding: /dev/iommu', () => {
  it('has /dev/iommu (IOASID_BACKEND=linux)', () => {
    expect(HAVE_IOMMUFD, '/dev/iommu is missing: iommufd not built in or not loaded').toBe(true);
  });

  it('IOMMU_DESTROY of id 0 is ENOENT; a NULL argument is EFAULT', () => {
    const fd = sys.open('/dev/iommu');
    try {
      expect(caught(() => sys.ioctl(fd, DESTROY, destroyCmd(0)))).toMatchObject({
        code: 'ENOENT', errno: 2, syscall: 'IOMMU_DESTROY',
      });
      expect(caught(() => sys.ioctl(fd, DESTROY, null))).toMatchObject({
        code: 'EFAULT', errno: 14, syscall: 'IOMMU_DESTROY',
      });
    } finally {
      sys.close(fd);
    }
  });

  it('allocates an IOAS, maps and unmaps one page at an automatic IOVA, and destroys it', () => {
    const fd = sys.open('/dev/iommu');
    const len = sys.pageSize;
    const page = sys.mmap(0n, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    try {
      const alloc = new DataView(new ArrayBuffer(iommu_ioas_alloc.size));
      alloc.setUint32(0, iommu_ioas_alloc.size, true);
      sys.ioctl(fd, IOCTLS.IOAS_ALLOC.request, new Uint8Array(alloc.buffer));
      const ioas = alloc.getUint32(iommu_ioas_alloc.off.out_ioas_id!, true);

      const map = new DataView(new ArrayBuffer(iommu_ioas_map.size));
      map.setUint32(iommu_ioas_map.off.size!, iommu_ioas_map.size, true);
      map.setUint32(iommu_ioas_map.off.flags!, IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE, true);
      map.setUint32(iommu_ioas_map.off.ioas_id!, ioas, true);
      map.setBigUint64(iommu_ioas_map.off.user_va!, page, true);
      map.setBigUint64(iommu_ioas_map.off.length!, BigInt(len), true);
      sys.ioctl(fd, IOCTLS.IOAS_MAP.request, new Uint8Array(map.buffer));
      const iova = map.getBigUint64(iommu_ioas_map.off.iova!, true);
      expect(iova % BigInt(len)).toBe(0n);

      const unmap = new DataView(new ArrayBuffer(iommu_ioas_unmap.size));
      unmap.setUint32(iommu_ioas_unmap.off.size!, iommu_ioas_unmap.size, true);
      unmap.setUint32(iommu_ioas_unmap.off.ioas_id!, ioas, true);
      unmap.setBigUint64(iommu_ioas_unmap.off.iova!, iova, true);
      unmap.setBigUint64(iommu_ioas_unmap.off.length!, BigInt(len), true);
      sys.ioctl(fd, IOCTLS.IOAS_UNMAP.request, new Uint8Array(unmap.buffer));
      expect(unmap.getBigUint64(iommu_ioas_unmap.off.length!, true)).toBe(BigInt(len));

      sys.ioctl(fd, DESTROY, destroyCmd(ioas));
      expect(caught(() => sys.ioctl(fd, DESTROY, destroyCmd(ioas))).code).toBe('ENOENT');
    } finally {
      sys.munmap(page, len);
      sys.close(fd);
    }
  });
});
