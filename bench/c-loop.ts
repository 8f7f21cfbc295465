/**
 * Builds bench/c/map_unmap.c, the C baseline for the IOAS map/unmap hot path, against the kernel
 * tree's linux/iommufd.h (the same headers test/layout.test.ts checks uapi.ts against).
 *
 *   const bin = compileCLoop();
 *   execFileSync(bin, ['100000', 'fixed'])  // → {"n":…,"ns_per_pair":…,"ns_map":…,"ns_unmap":…}
 *
 * The binary exits 77 with a message on stderr when /dev/iommu is missing.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
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
  const bin = join(work, 'map_unmap');
  execFileSync(gcc, ['-O2', '-std=gnu11', '-Wall', '-Werror', ...h.cflags, '-o', bin, source()], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  return bin;
}
