/**
 * Builds bench/c/map_unmap.c, the C baseline for the IOAS map/unmap hot path, against the kernel
 * tree's linux/iommufd.h (the same headers test/layout.test.ts checks uapi.ts against).
 *
 *   const bin = compileCLoop();
 *   execFileSync(bin, ['100000', 'fixed'])          // → {"n":…,"ns_per_pair":…,"ns_map":…,"ns_unmap":…}
 *   execFileSync(bin, ['100000', 'auto', 'mock'])   // with the selftest mock domain attached
 *   execFileSync(bin, ['100000', 'auto', '/dev/vfio/devices/vfio0'])  // with a VFIO device attached
 *
 * The binary exits 77 with a message on stderr when /dev/iommu is missing.
 */
import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { fetchKernelTree, findGcc, findKernelTree, kernelHeaders } from './kernel-headers.js';

/** The exit status of the C loop when the kernel has no /dev/iommu. */
export const C_LOOP_EXIT_SKIP = 77;

/** The C source, found from this module whether it runs from bench/ or dist/bench/. */
function source(): string {
  const here = dirname(fileURLToPath(import.meta.url));
  const up = here.endsWith(join('dist', 'bench')) ? join(here, '..', '..', 'bench') : here;
  return join(up, 'c', 'map_unmap.c');
}

/** Compile map_unmap.c with gcc -O2 into a fresh temp directory; returns the binary's path. */
export function compileCLoop(): string {
  const gcc = findGcc();
  if (!gcc) throw new Error('compileCLoop: gcc not found (set CC or install gcc)');
  const work = mkdtempSync(join(tmpdir(), 'ioasid-cloop-'));
  const h = kernelHeaders(findKernelTree() ?? fetchKernelTree(), work);
  // The device modes need the tree's vfio.h (the host's may predate the cdev ioctls) and the
  // selftest command's header; vfio.h as shipped in the tree still has __user and __counted_by.
  copyFileSync(join(h.tree, 'include/uapi/linux/vfio.h'), join(work, 'include/linux/vfio.h'));
  const extra = ['-I', dirname(h.iommufdTestH), '-D__user=', '-D__counted_by(m)='];
  const bin = join(work, 'map_unmap');
  execFileSync(gcc, ['-O2', '-std=gnu11', '-Wall', '-Werror', ...h.cflags, ...extra, '-o', bin, source()], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  return bin;
}
