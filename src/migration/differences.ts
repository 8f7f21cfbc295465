/**
 * The known differences between the kernel's type1 driver and iommufd's compat layer
 * (../shared uapi-vfio.md section 7, and what the vfio selftests compare across modes), as data:
 * each difference has a probe, a small program run in one IOMMU mode through IommuSession (plus
 * the mode's own container calls where the difference is about one), that answers with a short
 * outcome string ('ok 0x1000', 'EINVAL', 'ENOSPC at map 3'). Running every probe in every mode
 * gives the mode x difference table of docs/migration.md; test/migration_differences.test.ts checks
 * a fresh run against it on both tiers.
 *
 *   for (const d of DIFFERENCES) for (const m of IOMMU_MODE_NAMES) console.log(d.id, m, await observe(d, m, { bdf }));
 *
 * A cell the concept does not exist for in a mode says why (`notIn`); a difference this machine
 * cannot show at all (`unshown`) carries the reason and a check that the reason still holds.
 */
import { readFileSync } from 'node:fs';
import type { BackendName, Binding } from '../backends/types.js';
import type { VfioDevice } from '../device/vfio_device.js';
import { VfioGroup } from '../compat/group.js';
import { decodeInfo } from '../compat/container.js';
import { IommuError } from '../ioasid/errors.js';
import type { IovaRange } from '../ioasid/ioas.js';
import { U64_MAX } from '../ioasid/uapi.js';
import {
  VFIO_DMA_CC_IOMMU, VFIO_DMA_UNMAP_FLAG_VADDR, VFIO_IOMMU_DIRTY_PAGES, VFIO_IOMMU_DIRTY_PAGES_FLAG_START,
  VFIO_IOMMU_GET_INFO, VFIO_IOMMU_UNMAP_DMA, VFIO_NOIOMMU_IOMMU, VFIO_SPAPR_TCE_IOMMU, VFIO_SPAPR_TCE_v2_IOMMU,
  VFIO_UPDATE_VADDR, vfio_iommu_type1_dma_unmap, vfio_iommu_type1_info,
} from '../ioasid/vfio_uapi.js';
import { IOMMU_MODE_NAMES, IommuSession, hex, type IommuModeName } from './modes.js';

/** What a probe needs from the machine: a device bound to vfio-pci, alone in its IOMMU group. */
export interface ProbeEnv {
  readonly bdf: string;
}

/** The six cells' probe: drives a fresh session of one mode, answers with its outcome. */
export type Probe = (s: IommuSession, env: ProbeEnv) => string;

export interface Difference {
  /** '5', '14a' (the number in uapi-vfio.md section 7), 'S1' (the selftests' comparisons), 'R1' (revealed by runs). */
  readonly id: string;
  readonly title: string;
  /** What it means for a user moving a tool from one mode to another. */
  readonly meaning: string;
  /** Where the kernel decides it (source file and function, or document). */
  readonly ref: string;
  /** Runs in every mode but those of `notIn`; absent when `unshown`. */
  readonly probe?: Probe;
  /** Modes the concept does not exist in, with why (the cell reads `n/a: <why>`). */
  readonly notIn?: Partial<Record<IommuModeName, string>>;
  /**
   * The difference cannot be shown on this machine: why, and a check run in `mode` that is true
   * while the reason holds.
   */
  readonly unshown?: {
    readonly reason: string;
    readonly mode: IommuModeName;
    readonly holds: (s: IommuSession) => boolean;
    /** A kernel option the test VM's kernel (scripts/vm/kernel.config) would need, and lacks. */
    readonly config?: string;
  };
}

const PG = 0x1000n;
const IOVA = 0x10_0000n;
const DMA_ENTRY_LIMIT = '/sys/module/vfio_iommu_type1/parameters/dma_entry_limit';
const MSI_WINDOW = 0xfee0_0000n;
const NO_CONTAINER = 'no container';

/** 'ok' (with a returned number in hex), or the errno name of the refusal. */
export function outcome(fn: () => unknown): string {
  try {
    const r = fn();
    return typeof r === 'bigint' || typeof r === 'number' ? `ok ${hex(r)}` : 'ok';
  } catch (e) {
    if (e instanceof IommuError) return e.code;
    throw e;
  }
}

/** IOVA ranges, short: 'all' for the whole 64-bit space, else 'start-last' in hex, comma separated. */
function ranges(r: readonly IovaRange[]): string {
  if (r.length === 1 && r[0]!.start === 0n && r[0]!.last === U64_MAX) return 'all';
  return r.map((x) => `${x.start.toString(16)}-${x.last.toString(16)}`).join(',');
}

/** The bytes still mapped (UNMAP_ALL), for 'what is left' after a probe's step. */
const left = (s: IommuSession): string => `left ${hex(s.unmapAll())}`;

function container(s: IommuSession) {
  return s.container!;
}

/** `n` pages of fresh memory, mapped at `iova` as one mapping. */
function mapPages(s: IommuSession, iova: bigint, n: number): void {
  s.map({ mem: s.alloc(n * Number(PG)), iova });
}

/**
 * The device's group in the container WITHOUT VFIO_SET_IOMMU (container modes), run `fn`, close
 * the group (and what `fn` opened through it) afterwards.
 */
function groupOnly(s: IommuSession, bdf: string, fn: (g: VfioGroup) => string): string {
  const c = container(s);
  const g = s.call('groupOnly', { bdf }, () => VfioGroup.forDevice(s.binding, bdf, { mode: c.mode }));
  try {
    g.setContainer(c);
    return fn(g);
  } finally {
    g.close();
  }
}

/** A device open, `maps` ([iova, pages]) mapped one by one, then `step`: its outcome and what is left. */
function afterMaps(s: IommuSession, bdf: string, maps: readonly (readonly [bigint, number])[], step: () => string): string {
  s.openDevice(bdf);
  for (const [iova, n] of maps) mapPages(s, iova, n);
  return `${step()}; ${left(s)}`;
}

const unmap = (s: IommuSession, iova: bigint, size: bigint) => (): string => outcome(() => s.unmap({ iova, size }));

/** Before any device: the group attached, then the map's outcome, then the device open's. */
function mapThenOpen(s: IommuSession, bdf: string, map: (s: IommuSession) => void): string {
  s.attachGroup(bdf);
  return `map ${outcome(() => map(s))}; device open ${outcome(() => void s.openDevice(bdf))}`;
}

/** A device got from a group, closed again; its outcome. */
function getDevice(g: VfioGroup, bdf: string): string {
  let dev: VfioDevice | null = null;
  const r = outcome(() => void (dev = g.getDevice(bdf)));
  (dev as VfioDevice | null)?.close();
  return r;
}

/** Raw VFIO_IOMMU_UNMAP_DMA: the errno (or ok) and the size field the kernel left in the struct. */
function rawUnmap(s: IommuSession, flags: number, iova: bigint, size: bigint): string {
  const buf = new Uint8Array(vfio_iommu_type1_dma_unmap.size);
  const dv = new DataView(buf.buffer);
  dv.setUint32(0, buf.length, true);
  dv.setUint32(4, flags, true);
  dv.setBigUint64(8, iova, true);
  dv.setBigUint64(16, size, true);
  const r = outcome(() => void container(s).ioctl(VFIO_IOMMU_UNMAP_DMA, buf));
  return `${r} (size ${hex(dv.getBigUint64(16, true))})`;
}

/** Raw VFIO_IOMMU_GET_INFO with `argsz` (buffer of that size): what came back. */
function rawInfo(s: IommuSession, argsz: number) {
  const buf = new Uint8Array(argsz);
  new DataView(buf.buffer).setUint32(0, argsz, true);
  container(s).ioctl(VFIO_IOMMU_GET_INFO, buf);
  const info = decodeInfo(buf);
  const dv = new DataView(buf.buffer);
  return { argsz: dv.getUint32(0, true), capOffset: dv.getUint32(vfio_iommu_type1_info.off.cap_offset!, true), caps: info.caps.map((c) => c.id) };
}

/** The mode's read of /proc/self/status VmLck and VmPin, in pages (the sim's process counters). */
function vmCounters(b: Binding): { locked: number; pinned: number } {
  if (b.name === 'sim') {
    const mm = (b as unknown as { proc: { mm: { lockedVm: number; pinnedVm: number } } }).proc.mm;
    return { locked: mm.lockedVm, pinned: mm.pinnedVm };
  }
  const status = readFileSync('/proc/self/status', 'utf8');
  const kb = (k: string) => Number(new RegExp(`${k}:\\s+(\\d+) kB`).exec(status)?.[1] ?? NaN);
  return { locked: kb('VmLck') / 4, pinned: kb('VmPin') / 4 };
}

export const DIFFERENCES: readonly Difference[] = [
  {
    id: '1', title: 'MAP_DMA of a device BAR (MMIO, P2P)',
    meaning: 'type1 maps a VFIO BAR mmap for peer-to-peer DMA; iommufd cannot pin it (EFAULT). Natively use VFIO_DEVICE_FEATURE_DMA_BUF + IOMMU_IOAS_MAP_FILE.',
    ref: 'vfio_iommu_type1.c vaddr_get_pfns (follow_fault_pfn); iommufd pages.c pin_user_pages; selftest vfio_dma_mapping_mmio_test',
    probe: (s, { bdf }) => {
      const dev = s.openDevice(bdf);
      let bar;
      try {
        bar = dev.region(0).mmap(0, Number(PG));
      } catch (e) {
        if (e instanceof IommuError) return `mmap ${e.code}`;
        throw e;
      }
      try {
        const r = outcome(() => s.map({ vaddr: bar.addr, iova: IOVA, size: PG }));
        s.unmapAll();
        return r;
      } finally {
        bar.close();
      }
    },
  },
  {
    id: '2', title: 'SPAPR TCE',
    meaning: 'The POWER IOMMU types are type1\'s sibling drivers; iommufd\'s compat does not emulate them.',
    ref: 'drivers/iommu/iommufd/Kconfig IOMMUFD_VFIO_CONTAINER; Documentation/driver-api/vfio.rst',
    unshown: {
      reason: 'x86: no SPAPR driver registers with VFIO (CHECK_EXTENSION(SPAPR_TCE_IOMMU, SPAPR_TCE_v2_IOMMU) answers 0)',
      mode: 'vfio_type1v2_iommu',
      holds: (s) => container(s).checkExtension(VFIO_SPAPR_TCE_IOMMU) === 0 && container(s).checkExtension(VFIO_SPAPR_TCE_v2_IOMMU) === 0,
    },
  },
  {
    id: '3', title: 'UPDATE_VADDR',
    meaning: 'type1 lets a process invalidate and replace the vaddr of a mapping (live update); compat answers the extension 0 and refuses the flag.',
    ref: 'vfio_iommu_type1.c vfio_dma_do_unmap (VFIO_DMA_UNMAP_FLAG_VADDR); vfio_compat.c iommufd_vfio_check_extension, iommufd_vfio_unmap_dma',
    notIn: { iommufd: `${NO_CONTAINER} (IOMMU_IOAS_CHANGE_PROCESS moves memfd-backed mappings to a new mm)` },
    probe: (s, { bdf }) => {
      s.openDevice(bdf);
      const ext = container(s).checkExtension(VFIO_UPDATE_VADDR);
      mapPages(s, IOVA, 1);
      return `ext ${ext}; UNMAP FLAG_VADDR ${rawUnmap(s, VFIO_DMA_UNMAP_FLAG_VADDR, IOVA, PG)}`;
    },
  },
  {
    id: '4', title: 'Dirty tracking through the container',
    meaning: 'type1 reports CAP_MIGRATION and runs VFIO_IOMMU_DIRTY_PAGES (v2 only, v1 EACCES); compat has neither (ENOTTY). With iommufd use a dirty-tracking HWPT (IOMMU_HWPT_ALLOC_DIRTY_TRACKING) where the IOMMU has it (the VM\'s VT-d does not).',
    ref: 'vfio_iommu_type1.c vfio_iommu_type1_dirty_pages; vfio_compat.c iommufd_vfio_ioctl (ENOTTY)',
    probe: (s, { bdf }) => {
      const dev = s.openDevice(bdf);
      if (!s.container) {
        return `HWPT_ALLOC(DIRTY_TRACKING) ${outcome(() => s.iommufd!.allocHwpt({ devId: dev.devId!, ptId: s.ioas!.id, dirtyTracking: true }))}`;
      }
      const buf = new Uint8Array(8);
      new DataView(buf.buffer).setUint32(0, 8, true);
      new DataView(buf.buffer).setUint32(4, VFIO_IOMMU_DIRTY_PAGES_FLAG_START, true);
      const start = outcome(() => void container(s).ioctl(VFIO_IOMMU_DIRTY_PAGES, buf));
      return `START ${start}; ${container(s).info().migration ? 'CAP_MIGRATION' : 'no CAP_MIGRATION'}`;
    },
  },
  {
    id: '5', title: 'DMA entry limit',
    meaning: 'type1 caps a container at dma_entry_limit mappings (module parameter, default 65535; ENOSPC) and reports what is left in DMA_AVAIL; iommufd has no per-mapping limit (DMA_AVAIL U32_MAX). The probe lowers the limit to 2.',
    ref: 'vfio_iommu_type1.c vfio_dma_do_map (dma_avail); vfio_compat.c iommufd_fill_cap_dma_avail',
    probe: (s, { bdf }) => {
      // dma_entry_limit is read when the container's driver is set: lowered to 2 for that moment.
      if (s.container) {
        const saved = s.binding.readText(DMA_ENTRY_LIMIT);
        s.binding.writeText(DMA_ENTRY_LIMIT, '2');
        try {
          s.openDevice(bdf);
        } finally {
          s.binding.writeText(DMA_ENTRY_LIMIT, saved.trim());
        }
      } else {
        s.openDevice(bdf);
      }
      const mem = s.alloc(3 * Number(PG));
      let n = 0;
      let r = 'ok';
      for (; n < 3; n++) {
        r = outcome(() => s.map({ mem, iova: IOVA + BigInt(n) * PG, size: PG }));
        if (r !== 'ok') break;
      }
      const maps = r === 'ok' ? `ok ${n} maps` : `${r} at map ${n + 1}`;
      return s.container ? `${maps}; DMA_AVAIL ${container(s).info().dmaAvail}` : `${maps} (no DMA_AVAIL)`;
    },
  },
  {
    id: '6', title: 'Unmap starting inside a mapping (TYPE1 v1)',
    meaning: 'type1 v1 answers 0 bytes and keeps the mapping; compat TYPE1 cuts out exactly the range; v2 refuses (EINVAL in type1, ENOENT in iommufd).',
    ref: 'vfio_iommu_type1.c vfio_dma_do_unmap (v1 comment); vfio_compat.c iommufd_vfio_unmap_dma (iopt_cut_iova)',
    probe: (s, { bdf }) => afterMaps(s, bdf, [[IOVA, 4]], unmap(s, IOVA + PG, PG)),
  },
  {
    id: '7', title: 'Unmap of a mapping\'s first page only (bisecting)',
    meaning: 'type1 v1 unmaps the whole mapping; type1v2 refuses with EINVAL; compat v2 and native with ENOENT; compat TYPE1 unmaps exactly the page.',
    ref: 'vfio_iommu_type1.c vfio_dma_do_unmap; io_pagetable.c iopt_unmap_iova_range',
    probe: (s, { bdf }) => afterMaps(s, bdf, [[IOVA, 4]], unmap(s, IOVA, PG)),
  },
  {
    id: '8', title: 'Unaligned unmap',
    meaning: 'type1 checks alignment (EINVAL); iommufd does not: ENOENT where it meets a mapping (compat TYPE1: EINVAL, its cut at an unaligned IOVA fails), 0 bytes (compat) or ENOENT (native) where nothing is.',
    ref: 'vfio_iommu_type1.c vfio_dma_do_unmap (pgsize mask); io_pagetable.c iopt_unmap_iova',
    probe: (s, { bdf }) => afterMaps(s, bdf, [[IOVA, 4]], () => `inside ${unmap(s, IOVA + 0x800n, PG)()}; empty ${unmap(s, 0x80_0800n, PG)()}`),
  },
  {
    id: '9', title: 'A refused unmap: what it removed first',
    meaning: 'Unmap of A and half of B: type1v2 checks both ends first and removes nothing; iommufd removes A, then refuses at B and writes the bytes removed back. TYPE1: type1 unmaps both whole, compat TYPE1 exactly the range.',
    ref: 'vfio_iommu_type1.c vfio_dma_do_unmap; io_pagetable.c iopt_unmap_iova_range; vfio_compat.c iommufd_vfio_unmap_dma',
    probe: (s, { bdf }) => afterMaps(s, bdf, [[IOVA, 2], [IOVA + 2n * PG, 2]],
      () => (s.container ? rawUnmap(s, 0, IOVA, 3n * PG) : unmap(s, IOVA, 3n * PG)())),
  },
  {
    id: '10', title: 'MAP_DMA without READ or WRITE',
    meaning: 'type1 refuses (EINVAL); the kernel\'s compat maps it while no device is attached, and then the device cannot attach (EINVAL). The native IOAS_MAP refuses it, and so does ioasid_compat, built on it.',
    ref: 'vfio_iommu_type1.c vfio_dma_do_map; vfio_compat.c iommufd_vfio_map_dma; iommufd ioas.c iommufd_ioas_map',
    probe: (s, { bdf }) => mapThenOpen(s, bdf, () => s.map({ mem: s.alloc(Number(PG)), iova: IOVA, read: false, write: false })),
  },
  {
    id: '11', title: 'Alignment before a device is opened',
    meaning: 'type1 knows its page size from SET_IOMMU and refuses a sub-page map (EINVAL); iommufd\'s IOAS has no alignment until a domain is attached (compat TYPE1 sets PAGE_SIZE when it turns huge pages off), so the map succeeds and the device open fails later (EADDRINUSE).',
    ref: 'vfio_iommu_type1.c vfio_dma_do_map (pgsize); io_pagetable.c iopt_table_add_domain (iova_alignment)',
    probe: (s, { bdf }) => mapThenOpen(s, bdf, () => s.map({ mem: s.alloc(Number(PG)), iova: IOVA, size: 0x800n })),
  },
  {
    id: '12', title: 'When pages are pinned',
    meaning: 'type1 pins at MAP_DMA, so a bad address fails there (EFAULT); iommufd pins when a domain exists, so before the first device the map succeeds and the device open fails.',
    ref: 'vfio_iommu_type1.c vfio_pin_map_dma; io_pagetable.c iopt_map_user_pages, iopt_table_add_domain',
    probe: (s, { bdf }) => mapThenOpen(s, bdf, () => s.map({ vaddr: 0x1000n, iova: IOVA, size: PG })),
  },
  {
    id: '13', title: 'IOVA ranges before a device is opened',
    meaning: 'type1 narrows its IOVA ranges at SET_IOMMU (aperture, reserved regions); iommufd reports the whole space until a device attaches.',
    ref: 'vfio_iommu_type1.c vfio_iommu_type1_attach_group (iova list); io_pagetable.c iopt_table_enforce_dev_resv_regions',
    probe: (s, { bdf }) => {
      s.attachGroup(bdf);
      const before = ranges(s.iovaRanges());
      s.openDevice(bdf);
      return `before ${before}; after ${ranges(s.iovaRanges())}`;
    },
  },
  {
    id: '14a', title: 'SET_IOMMU without a group',
    meaning: 'Legacy: EINVAL; compat: ENODEV (no compat IOAS yet).',
    ref: 'container.c vfio_ioctl_set_iommu; vfio_compat.c iommufd_vfio_set_iommu (selftest set_iommu_cmd)',
    notIn: { iommufd: NO_CONTAINER },
    probe: (s) => outcome(() => container(s).setIommu()),
  },
  {
    id: '14b', title: 'MAP_DMA with a group but before SET_IOMMU',
    meaning: 'Legacy: EINVAL (no driver yet); compat maps at once (the compat IOAS exists from SET_CONTAINER).',
    ref: 'container.c vfio_ioctl_set_iommu / vfio_fops_unl_ioctl; vfio_compat.c get_compat_ioas',
    notIn: { iommufd: NO_CONTAINER },
    probe: (s, { bdf }) => groupOnly(s, bdf, () => {
      const r = outcome(() => mapPages(s, IOVA, 1));
      return r === 'ok' ? `ok; ${left(s)}` : r;
    }),
  },
  {
    id: '14c', title: 'GET_DEVICE_FD before SET_IOMMU',
    meaning: 'Legacy: EINVAL; compat opens the device and attaches it to the compat IOAS.',
    ref: 'group.c vfio_group_ioctl_get_device_fd, vfio_group_use_container (legacy path only)',
    notIn: { iommufd: NO_CONTAINER },
    probe: (s, { bdf }) => groupOnly(s, bdf, (g) => getDevice(g, bdf)),
  },
  {
    id: '14d', title: 'SET_IOMMU twice',
    meaning: 'Legacy: the second is EINVAL; compat allows repeats.',
    ref: 'container.c vfio_ioctl_set_iommu; vfio_compat.c iommufd_vfio_set_iommu',
    notIn: { iommufd: NO_CONTAINER },
    probe: (s, { bdf }) => {
      s.openDevice(bdf);
      return outcome(() => container(s).setIommu());
    },
  },
  {
    id: '15', title: 'SET_IOMMU(TYPE1) with a device and mappings',
    meaning: 'Legacy: EINVAL (driver already set); compat: EINVAL unless huge pages are already off (cannot disable large pages under mappings). Native equivalent: IOMMU_OPTION HUGE_PAGES=0.',
    ref: 'vfio_compat.c iommufd_vfio_set_iommu; io_pagetable.c iopt_disable_large_pages',
    probe: (s, { bdf }) => {
      s.openDevice(bdf);
      mapPages(s, IOVA, 1);
      return s.container ? outcome(() => container(s).setIommu('type1')) : `HUGE_PAGES=0 ${outcome(() => s.ioas!.setHugePages(false))}`;
    },
  },
  {
    id: '16', title: 'Unmap of an empty range',
    meaning: 'Every container mode answers 0 bytes; native IOMMU_IOAS_UNMAP answers ENOENT (QEMU\'s iommufd backend treats that ENOENT as success).',
    ref: 'vfio_compat.c iommufd_vfio_unmap_dma; ioas.c iommufd_ioas_unmap; io_pagetable.c iopt_unmap_iova_range',
    probe: (s, { bdf }) => {
      s.openDevice(bdf);
      return outcome(() => s.unmap({ iova: IOVA, size: PG }));
    },
  },
  {
    id: '17', title: 'GET_INFO capabilities and argsz',
    meaning: 'type1 has the caps MIGRATION (2), DMA_AVAIL (3), IOVA_RANGE (1) and leaves a larger argsz as it was; compat has DMA_AVAIL and IOVA_RANGE and sets argsz to the size needed even when it was larger. Neither links caps into a buffer too small for all.',
    ref: 'vfio_iommu_type1.c vfio_iommu_type1_get_info; vfio_compat.c iommufd_vfio_iommu_get_info',
    notIn: { iommufd: `${NO_CONTAINER} (IOMMU_IOAS_IOVA_RANGES)` },
    probe: (s, { bdf }) => {
      s.openDevice(bdf);
      const big = rawInfo(s, 4096);
      const short = rawInfo(s, vfio_iommu_type1_info.size + 16);
      const caps = (c: number[]) => (c.length ? c.join(',') : 'none');
      return `argsz 4096: caps ${caps(big.caps)}, argsz ${big.argsz}; argsz 40: caps ${caps(short.caps)}, argsz ${short.argsz}`;
    },
  },
  {
    id: '18', title: 'CHECK_EXTENSION(DMA_CC_IOMMU)',
    meaning: 'type1 answers 0 before a driver is set; compat fails with ENODEV before the compat IOAS exists.',
    ref: 'vfio_iommu_type1.c vfio_iommu_type1_check_extension; vfio_compat.c iommufd_vfio_cc_iommu',
    notIn: { iommufd: `${NO_CONTAINER} (the domain's enforce_cache_coherency, IOMMU_GET_HW_INFO)` },
    probe: (s, { bdf }) => {
      const before = outcome(() => container(s).checkExtension(VFIO_DMA_CC_IOMMU));
      s.openDevice(bdf);
      return `no group ${before}; device open ${outcome(() => container(s).checkExtension(VFIO_DMA_CC_IOMMU))}`;
    },
  },
  {
    id: '19', title: 'UNSET_CONTAINER with a device open',
    meaning: 'Legacy refuses while a device of the group is open (EBUSY); with iommufd there is no such check.',
    ref: 'group.c vfio_group_ioctl_unset_container; container.c vfio_group_detach_container',
    notIn: { iommufd: 'no groups' },
    probe: (s, { bdf }) => {
      const g = s.attachGroup(bdf)!;
      s.openDevice(bdf);
      return outcome(() => g.unsetContainer());
    },
  },
  {
    id: '20', title: 'Pin accounting',
    meaning: 'type1 charges locked_vm (VmLck) per mapping even with CAP_IPC_LOCK (this run is root); iommufd counts pins in pinned_vm (VmPin) and charges the user\'s locked_vm (not VmLck) unless CAP_IPC_LOCK. RLIMIT_MEMLOCK is reached at different sizes.',
    ref: 'vfio_iommu_type1.c vfio_lock_acct; iommufd pages.c iopt_pages_update_pinned, iopt_alloc_user_pages (CAP_IPC_LOCK)',
    probe: (s, { bdf }) => {
      s.openDevice(bdf);
      const mem = s.alloc(4 * Number(PG));
      const a = vmCounters(s.binding);
      s.map({ mem, iova: IOVA });
      s.map({ mem, iova: 2n * IOVA });
      const b = vmCounters(s.binding);
      return `same 4 pages mapped twice: VmLck +${b.locked - a.locked}, VmPin +${b.pinned - a.pinned} pages`;
    },
  },
  {
    id: '21', title: 'mdev and emulated-IOMMU users',
    meaning: 'Mediated devices pin through the container (type1) or through iommufd access objects; support through iommufd compat came later and is not in every tool.',
    ref: 'vfio_iommu_type1.c vfio_iommu_type1_pin_pages; iommufd device.c iommufd_access_pin_pages',
    unshown: {
      reason: 'the test VM has no mdev parent (CONFIG_VFIO_MDEV off, no mtty/mbochs): /sys/class/mdev_bus does not exist',
      mode: 'vfio_type1v2_iommu',
      config: 'CONFIG_VFIO_MDEV',
      holds: (s) => {
        try {
          return !s.binding.readdir('/sys/class').includes('mdev_bus');
        } catch (e) {
          if (e instanceof IommuError) return true;
          throw e;
        }
      },
    },
  },
  {
    id: '22', title: 'noiommu',
    meaning: 'VFIO_NOIOMMU_IOMMU (unsafe, no DMA isolation) exists only with CONFIG_VFIO_NOIOMMU; a compat ctx cannot switch to it once it has a compat IOAS.',
    ref: 'container.c vfio_noiommu_ops; vfio_compat.c iommufd_vfio_check_extension, iommufd_vfio_compat_set_no_iommu',
    unshown: {
      reason: 'the test VM\'s kernel has no CONFIG_VFIO_NOIOMMU: CHECK_EXTENSION(VFIO_NOIOMMU_IOMMU) answers 0 on /dev/iommu',
      mode: 'iommufd_compat_type1v2',
      holds: (s) => container(s).checkExtension(VFIO_NOIOMMU_IOMMU) === 0,
      config: 'CONFIG_VFIO_NOIOMMU',
    },
  },
  {
    id: '23', title: 'The extensions each container offers (the documented gap list)',
    meaning: 'iommufd.rst points at iommufd_vfio_check_extension for the gaps: after a device is open type1 answers TYPE1, TYPE1v2, UNMAP_ALL, UPDATE_VADDR; compat the same without UPDATE_VADDR (and DMA_CC_IOMMU when every domain is coherent).',
    ref: 'Documentation/userspace-api/iommufd.rst; vfio_compat.c iommufd_vfio_check_extension; vfio_iommu_type1.c vfio_iommu_type1_check_extension',
    notIn: { iommufd: `${NO_CONTAINER} (IOMMU_GET_HW_INFO describes the IOMMU)` },
    probe: (s, { bdf }) => {
      s.openDevice(bdf);
      const exts = [];
      for (let e = 1; e <= 10; e++) if (container(s).checkExtension(e) > 0) exts.push(e);
      return `extensions ${exts.join(',')}`;
    },
  },
  {
    id: 'S1', title: 'Map, unmap and unmap-all return the bytes mapped',
    meaning: 'The same in every mode (a vfio selftest invariant): unmap returns the mapping\'s size, UNMAP_ALL (left) what is left.',
    ref: 'tools/testing/selftests/vfio/vfio_dma_mapping_test.c',
    probe: (s, { bdf }) => afterMaps(s, bdf, [[IOVA, 4], [2n * IOVA, 2], [3n * IOVA, 1]], unmap(s, IOVA, 4n * PG)),
  },
  {
    id: 'S2', title: 'The last page of the last IOVA range',
    meaning: 'Mappable in every mode (a vfio selftest invariant).',
    ref: 'tools/testing/selftests/vfio/vfio_dma_mapping_test.c (dma_map_unmap_at_end)',
    probe: (s, { bdf }) => {
      s.openDevice(bdf);
      const last = s.iovaRanges().at(-1)!.last;
      const iova = last + 1n - PG;
      return `${hex(iova)}: ${outcome(() => mapPages(s, iova, 1))}`;
    },
  },
  {
    id: 'S3', title: 'Map and unmap across the top of the IOVA space',
    meaning: 'EOVERFLOW in every mode for 2 pages at 2^64 - 4096 (a vfio selftest invariant).',
    ref: 'tools/testing/selftests/vfio/vfio_dma_mapping_test.c (overflow)',
    probe: (s, { bdf }) => {
      s.openDevice(bdf);
      const iova = U64_MAX & ~(PG - 1n);
      const mem = s.alloc(2 * Number(PG));
      return `map ${outcome(() => s.map({ mem, iova }))}; unmap ${outcome(() => s.unmap({ iova, size: 2n * PG }))}`;
    },
  },
  {
    id: 'R1', title: 'MAP_DMA into the MSI window and above the aperture',
    meaning: 'No difference: EINVAL in every mode once a device is open (type1: outside its IOVA list; iommufd: a reserved IOVA).',
    ref: 'vfio_iommu_type1.c vfio_iommu_iova_dma_valid; io_pagetable.c iopt_check_iova / iopt_reserve_iova',
    probe: (s, { bdf }) => {
      s.openDevice(bdf);
      const msi = outcome(() => mapPages(s, MSI_WINDOW, 1));
      const above = outcome(() => mapPages(s, 1n << 39n, 1));
      return `MSI window ${msi}; 2^39 ${above}`;
    },
  },
  {
    id: 'R2', title: 'iova_pgsizes with a device',
    meaning: 'No difference in what GET_INFO reports: compat TYPE1 reports the domain\'s huge page sizes too, although it turned huge IOPTEs off (iommufd_get_pagesizes does not look at it).',
    ref: 'vfio_iommu_type1.c vfio_pgsize_bitmap; vfio_compat.c iommufd_get_pagesizes',
    notIn: { iommufd: `${NO_CONTAINER} (IOMMU_GET_HW_INFO out_capabilities)` },
    probe: (s, { bdf }) => {
      s.openDevice(bdf);
      return hex(container(s).info().pageSizes);
    },
  },
  {
    id: 'R3', title: 'SET_IOMMU of a type no one offers (SPAPR_TCE) with a group',
    meaning: 'Legacy looks for a driver and finds none (ENODEV); compat knows only TYPE1/TYPE1v2 (EINVAL).',
    ref: 'container.c vfio_ioctl_set_iommu; vfio_compat.c iommufd_vfio_set_iommu',
    notIn: { iommufd: NO_CONTAINER },
    probe: (s, { bdf }) => groupOnly(s, bdf, () => outcome(() => container(s).setIommu(VFIO_SPAPR_TCE_IOMMU))),
  },
];

/** The cell of `d` in `mode`: the probe's outcome in a fresh session, or why there is none. */
export function observe(d: Difference, mode: IommuModeName, env: ProbeEnv & { backend?: Binding | BackendName }): string {
  if (d.unshown) return '—';
  const why = d.notIn?.[mode];
  if (why) return `n/a: ${why}`;
  const s = IommuSession.init(mode, env.backend);
  try {
    return d.probe!(s, env);
  } catch (e) {
    if (e instanceof IommuError) return `${e.code} (${e.syscall})`;
    throw e;
  } finally {
    s.close();
  }
}

/** Whether the reason `d` is not shown still holds, checked on `backend`. */
export function unshownHolds(d: Difference, backend?: Binding | BackendName): boolean {
  const u = d.unshown!;
  const s = IommuSession.init(u.mode, backend);
  try {
    return u.holds(s);
  } finally {
    s.close();
  }
}

/** Outcomes by difference id, then by mode. */
export type DifferenceTable = Record<string, Partial<Record<IommuModeName, string>>>;

export const TABLE_BEGIN = '<!-- differences:begin -->';
export const TABLE_END = '<!-- differences:end -->';

const cellText = (s: string): string => {
  if (s.includes('|') || s.includes('\n')) throw new RangeError(`a table cell cannot hold '|' or a newline: ${JSON.stringify(s)}`);
  return s;
};

/**
 * The markdown table of docs/migration.md: a row per difference (its number, title, what it means,
 * then the outcome in each mode), in DIFFERENCES' order. A difference not shown here has '—' cells
 * and its reason in the meaning.
 */
export function renderDifferences(cells: DifferenceTable, modes: readonly IommuModeName[] = IOMMU_MODE_NAMES): string {
  const lines = [
    `| # | difference | what it means | ${modes.map((m) => `\`${m}\``).join(' | ')} |`,
    `|---|---|---|${modes.map(() => '---').join('|')}|`,
  ];
  for (const d of DIFFERENCES) {
    const meaning = d.unshown ? `${d.meaning} *Not shown here: ${d.unshown.reason}.*` : d.meaning;
    const row = modes.map((m) => cellText(cells[d.id]?.[m] ?? '?'));
    lines.push(`| ${d.id} | ${cellText(d.title)} | ${cellText(meaning)} | ${row.join(' | ')} |`);
  }
  return lines.join('\n');
}

/** The table between the markers of a markdown text: its row ids in order, their titles and cells. */
export function parseDifferences(markdown: string): { ids: string[]; titles: Record<string, string>; cells: DifferenceTable } {
  const begin = markdown.indexOf(TABLE_BEGIN);
  const end = markdown.indexOf(TABLE_END);
  if (begin < 0 || end < begin) throw new RangeError(`no ${TABLE_BEGIN} ... ${TABLE_END} section`);
  const rows = markdown.slice(begin + TABLE_BEGIN.length, end).split('\n').filter((l) => l.startsWith('| '));
  const split = (l: string) => l.slice(2, -2).split(' | ');
  const modes = split(rows[0] ?? '| |').slice(3).map((m) => m.replace(/`/g, '') as IommuModeName);
  const ids: string[] = [];
  const titles: Record<string, string> = {};
  const cells: DifferenceTable = {};
  for (const l of rows.slice(1)) {
    const [id, title, , ...outcomes] = split(l);
    ids.push(id!);
    titles[id!] = title!;
    cells[id!] = Object.fromEntries(modes.map((m, i) => [m, outcomes[i]]));
  }
  return { ids, titles, cells };
}
