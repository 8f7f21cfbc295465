/**
 * Where the real kernel uAPI headers come from for the C programs this repo compiles (the layout
 * test and the C baseline benchmark): Debian's linux-source-7.3 tree, unpacked by
 * scripts/vm/fetch-source.sh into ${IOASID_CACHE:-$XDG_CACHE_HOME/ioasid or ~/.cache/ioasid}/src.
 *
 * Only linux/iommufd.h is taken from the tree (through a private include directory holding a copy),
 * so a stale /usr/include/linux/iommufd.h from the host's libc headers can never shadow it, while
 * linux/types.h and linux/ioctl.h still come from the host's /usr/include as usual.
 */
import { execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readdirSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const FETCH = join(REPO, 'scripts/vm/fetch-source.sh');

export function cacheDir(): string {
  const xdg = process.env.XDG_CACHE_HOME || join(homedir(), '.cache');
  return process.env.IOASID_CACHE || join(xdg, 'ioasid');
}

/** The unpacked tree if it is already there (same rule as fetch-source.sh), else undefined. */
export function findKernelTree(): string | undefined {
  const src = join(cacheDir(), 'src');
  if (!existsSync(src)) return undefined;
  for (const d of readdirSync(src).sort()) {
    const tree = join(src, d);
    if (d.startsWith('linux-source-7.3') && !d.includes('.tar') && existsSync(join(tree, 'Makefile'))) return tree;
  }
  return undefined;
}

/** The tree, fetching it with scripts/vm/fetch-source.sh (network to Debian's archive) if missing. */
export function fetchKernelTree(): string {
  const out = execFileSync('bash', [FETCH], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 900_000 });
  const tree = out.trim().split('\n').pop() ?? '';
  if (!existsSync(join(tree, 'Makefile'))) throw new Error(`fetch-source.sh printed no tree: ${out}`);
  return tree;
}

export interface KernelHeaders {
  readonly tree: string;
  readonly iommufdH: string;
  /** drivers/iommu/iommufd/iommufd_test.h (the selftest command, CONFIG_IOMMUFD_TEST). */
  readonly iommufdTestH: string;
  /** gcc flags: `-I <dir>` where <dir>/linux/iommufd.h is the tree's header. */
  readonly cflags: readonly string[];
}

/** Prepare `<workdir>/include/linux/iommufd.h` from `tree` and return the gcc flags to use it. */
export function kernelHeaders(tree: string, workdir: string): KernelHeaders {
  const iommufdH = join(tree, 'include/uapi/linux/iommufd.h');
  const iommufdTestH = join(tree, 'drivers/iommu/iommufd/iommufd_test.h');
  for (const f of [iommufdH, iommufdTestH]) if (!existsSync(f)) throw new Error(`missing kernel header ${f}`);
  const inc = join(workdir, 'include');
  mkdirSync(join(inc, 'linux'), { recursive: true });
  copyFileSync(iommufdH, join(inc, 'linux/iommufd.h'));
  return { tree, iommufdH, iommufdTestH, cflags: ['-I', inc] };
}

/** The path of gcc if it runs, else undefined. */
export function findGcc(): string | undefined {
  const cc = process.env.CC || 'gcc';
  try {
    execFileSync(cc, ['--version'], { stdio: 'ignore' });
    return cc;
  } catch {
    return undefined;
  }
}
