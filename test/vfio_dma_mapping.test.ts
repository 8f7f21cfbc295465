/**
 * Port of the kernel's tools/testing/selftests/vfio/vfio_dma_mapping_test.c and
 * vfio_dma_mapping_mmio_test.c (linux-source-7.3), line by line where the C allows, each fixture
 * variant in all six modes (the kernel's five and the library's re-expression) on the edu.
 *
 * Expected values are what the kernel answered in the test VM, per mode: the map-limit overflow is
 * EOVERFLOW for map and unmap everywhere; an mmap of the edu's BAR maps for DMA in the vfio_type1*
 * modes (type1 follows the VM_PFNMAP pages, vfio_pin_pages_remote/follow_fault_pfn) and fails
 * EFAULT in the iommufd modes, whose pin_user_pages refuses VM_IO | VM_PFNMAP mappings.
 */
import { describe, expect, it } from 'vitest';
import { MAP_ANONYMOUS, MAP_FIXED, MAP_HUGETLB, MAP_PRIVATE, MAP_SHARED, PROT_READ, PROT_WRITE, type Binding } from '../src/backends/types.js';
import { VFIO_REGION_INFO_FLAG_READ, VFIO_REGION_INFO_FLAG_WRITE } from '../src/device/uapi.js';
import { IommuError } from '../src/ioasid/errors.js';
import { BACKEND, expectErrno } from './helpers.js';
import { IovaAllocator, MODES, PAGE, SZ_1G, SZ_2M, deviceBdf, mmapReserve, title, useVfio, type DmaRegion, type Iommu, type VfioPciBar, type VfioPciDevice } from './libvfio.js';
import { openBinding } from '../src/backends/index.js';
import { exists } from './compat_modes.js';

const MAP_HUGE_SHIFT = 26;
const MAP_HUGE_2MB = 21 << MAP_HUGE_SHIFT;
const MAP_HUGE_1GB = 30 << MAP_HUGE_SHIFT;
const VFIO_TYPE1_IOMMU = 'type1';

/** struct iommu_mapping: the page-table entries on the walk to an IOVA (Intel's debugfs dump). */
interface IommuMapping {
  pgd: bigint;
  p4d: bigint;
  pud: bigint;
  pmd: bigint;
  pte: bigint;
}

const INTEL_DEBUGFS = '/sys/kernel/debug/iommu/intel';

/** Whether the tier's kernel has Intel's IOMMU debugfs (CONFIG_INTEL_IOMMU_DEBUGFS, debugfs mounted). */
const HAS_INTEL_DEBUGFS = exists(openBinding(BACKEND), '/sys/kernel/debug/iommu', 'intel');

/** intel_iommu_mapping_get: the line of `iova`'s page in the device's domain_translation_struct, or 'ENOENT'. */
function intelIommuMappingGet(b: Binding, bdf: string, iova: bigint): IommuMapping | 'ENOENT' {
  const text = b.readText(`${INTEL_DEBUGFS}/${bdf}/domain_translation_struct`);
  for (const line of text.split('\n')) {
    // strtok_r(" \t|\n") then sscanf("0x%lx"): a token that does not parse leaves the value as it was
    const tokens = line.split(/[ \t|]+/).filter(Boolean);
    const value = (t: string | undefined): bigint | null => (t && /^0x[0-9a-f]+/i.test(t) ? BigInt(/^0x[0-9a-f]+/i.exec(t)![0]) : null);
    if (value(tokens[0]) !== iova / PAGE) continue;
    const [pgd, p4d, pud, pmd, pte] = tokens.slice(1, 6).map((t) => value(t) ?? 0n);
    return { pgd: pgd ?? 0n, p4d: p4d ?? 0n, pud: pud ?? 0n, pmd: pmd ?? 0n, pte: pte ?? 0n };
  }
  return 'ENOENT';
}

/** iommu_mapping_get: Intel's dump, or 'EOPNOTSUPP' without it. */
function iommuMappingGet(b: Binding, bdf: string, iova: bigint): IommuMapping | 'ENOENT' | 'EOPNOTSUPP' {
  return HAS_INTEL_DEBUGFS ? intelIommuMappingGet(b, bdf, iova) : 'EOPNOTSUPP';
}

/** mmap through the tier's backend; the errno name when it fails. */
function tryMmap(b: Binding, size: bigint, flags: number): bigint | string {
  try {
    return b.mmap(0n, Number(size), PROT_READ | PROT_WRITE, flags, -1, 0);
  } catch (e) {
    if (e instanceof IommuError) return `${e.code} (${e.errno})`;
    throw e;
  }
}

/** FIXTURE_VARIANT(vfio_dma_mapping_test): size (0 = a page) and mmap flags. */
const VARIANTS = [
  { name: 'anonymous', size: 0n, mmapFlags: 0 },
  { name: 'anonymous_hugetlb_2mb', size: SZ_2M, mmapFlags: MAP_HUGETLB | MAP_HUGE_2MB },
  { name: 'anonymous_hugetlb_1gb', size: SZ_1G, mmapFlags: MAP_HUGETLB | MAP_HUGE_1GB },
].map((v) => {
  // "Skip the test if there aren't enough HugeTLB pages available": asked once at load, so the title says it.
  let skip = '';
  if (v.mmapFlags & MAP_HUGETLB) {
    const b = openBinding(BACKEND);
    const got = tryMmap(b, v.size, MAP_ANONYMOUS | MAP_PRIVATE | v.mmapFlags);
    if (typeof got === 'string') skip = `mmap() failed: ${got}`;
    else b.munmap(got, Number(v.size));
  }
  return { ...v, skip };
});

for (const { name: mode, mode: iommuMode, skip } of MODES) {
  describe.skipIf(!!skip)(title('vfio_dma_mapping_test', mode, skip), () => {
    for (const variant of VARIANTS) {
      describe.skipIf(!!variant.skip)(`${variant.name}${variant.skip ? ` (skipped: ${variant.skip})` : ''}`, () => {
        let allocator: IovaAllocator;
        const f = useVfio(mode, { setup: (x) => void (allocator = new IovaAllocator(x.iommu.iovaRanges())) });
        // The C skips the page-table check silently in these cases; here the title says so.
        const noCheck = iommuMode.iommuType === VFIO_TYPE1_IOMMU
          ? ' (IOPTE level check skipped: VFIO_TYPE1_IOMMU, as the C does)'
          : HAS_INTEL_DEBUGFS ? '' : ` (IOPTE level check skipped: no ${INTEL_DEBUGFS} on the ${BACKEND} tier)`;

        it(`dma_map_unmap${noCheck}`, () => {
          const b = f.iommu.binding;
          const size = variant.size || PAGE;
          const vaddr = tryMmap(b, size, MAP_ANONYMOUS | MAP_PRIVATE | variant.mmapFlags);
          if (typeof vaddr === 'string') throw new Error(`mmap() failed: ${vaddr}`);
          const region: DmaRegion = { vaddr, iova: allocator.alloc(size), size };

          f.iommu.map(region);
          expect(f.iommu.hva2iova(region.vaddr)).toBe(region.iova);

          const mapping = iommuMappingGet(b, deviceBdf!, region.iova);
          if (mapping !== 'EOPNOTSUPP' && iommuMode.iommuType !== VFIO_TYPE1_IOMMU) {
            expect(mapping).not.toBe('ENOENT');
            const m = mapping as IommuMapping;
            switch (size) {
              case 4096n:
                expect(m.pte).not.toBe(0n);
                break;
              case SZ_2M:
                expect(m.pte).toBe(0n);
                expect(m.pmd).not.toBe(0n);
                break;
              case SZ_1G:
                expect(m.pte).toBe(0n);
                expect(m.pmd).toBe(0n);
                expect(m.pud).not.toBe(0n);
                break;
              default:
                throw new Error(`Unrecognized size: 0x${size.toString(16)}`);
            }
          }

          // unmap:
          expect(f.iommu.unmap(region)).toBe(region.size);
          expect(f.iommu.hva2iova(region.vaddr)).toBeNull();
          expect(iommuMappingGet(b, deviceBdf!, region.iova)).toBeTypeOf('string');
          b.munmap(region.vaddr, Number(size));
        });
      });
    }
  });

  describe.skipIf(!!skip)(title('vfio_dma_map_limit_test', mode, skip), () => {
    let region: DmaRegion;
    let mmapSize: bigint;
    // FIXTURE_SETUP: two pages of backing for the overflow case; one page at the last page-aligned IOVA.
    const f = useVfio(mode, {
      setup: (x) => {
        const regionSize = PAGE;
        mmapSize = 2n * regionSize;
        const vaddr = x.iommu.binding.mmap(0n, Number(mmapSize), PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
        const ranges = x.iommu.iovaRanges();
        const lastIova = ranges[ranges.length - 1]!.last;
        region = { vaddr, iova: lastIova & ~(regionSize - 1n), size: regionSize };
      },
      teardown: (x) => x.iommu.binding.munmap(region.vaddr, Number(mmapSize)),
    });

    it('unmap_range', () => {
      f.iommu.map(region);
      expect(f.iommu.hva2iova(region.vaddr)).toBe(region.iova);
      expect(f.iommu.unmap(region)).toBe(region.size);
    });

    it('unmap_all', () => {
      f.iommu.map(region);
      expect(f.iommu.hva2iova(region.vaddr)).toBe(region.iova);
      expect(f.iommu.unmapAll()).toBe(region.size);
    });

    it('overflow: map and unmap of 2 pages at ~0 & ~(PAGE_SIZE - 1) EOVERFLOW', () => {
      region.iova = 0xffff_ffff_ffff_ffffn & ~(region.size - 1n);
      region.size = mmapSize;
      expectErrno(() => f.iommu.map(region), 'EOVERFLOW');
      expectErrno(() => f.iommu.unmap(region), 'EOVERFLOW');
    });
  });

  describe.skipIf(!!skip)(title('vfio_dma_mapping_mmio_test', mode, skip), () => {
    let allocator: IovaAllocator;
    let bar: VfioPciBar | null;
    const f = useVfio(mode, {
      setup: (x) => {
        allocator = new IovaAllocator(x.iommu.iovaRanges());
        bar = largestMappedBar(x.device);
      },
    });
    const typeOne = mode === 'vfio_type1_iommu' || mode === 'vfio_type1v2_iommu';
    const outcome = typeOne ? 'maps and unmaps (type1 follows the VM_PFNMAP pages)' : 'fails EFAULT (iommufd pins pages; a BAR mapping has none)';

    it(`map_full_bar: ${outcome}`, () => {
      expect(bar).not.toBeNull();
      doMmioMapTest(f.iommu, allocator, bar!.vaddr!, bar!.info.size);
    });

    it(`map_partial_bar: ${outcome}`, () => {
      expect(bar).not.toBeNull();
      // edu's BAR0 is 1 MiB: never too small (the C skips BARs under 2 pages)
      expect(bar!.info.size).toBeGreaterThanOrEqual(2n * PAGE);
      doMmioMapTest(f.iommu, allocator, bar!.vaddr!, PAGE);
    });

    it(`map_bar_misaligned (BAR mmap at a VA = PAGE_SIZE mod 1 GiB): ${outcome}`, () => {
      const b = f.iommu.binding;
      const size = bar!.info.size < SZ_1G ? bar!.info.size : SZ_1G;
      let vaddr = mmapReserve(b, size, SZ_1G, PAGE);
      vaddr = b.mmap(vaddr, Number(size), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, f.device.fd.fd, Number(bar!.info.offset));
      expect(vaddr % SZ_1G).toBe(PAGE);
      doMmioMapTest(f.iommu, allocator, vaddr, size);
      b.munmap(vaddr, Number(size));
    });

    it('map_full_bar with memory decode off (not in the C): EFAULT in every mode (vfio-pci\'s fault handler answers SIGBUS)', () => {
      const PCI_COMMAND = 0x04;
      const PCI_COMMAND_MEMORY = 0x2;
      const command = f.device.configReadw(PCI_COMMAND);
      f.device.configWritew(PCI_COMMAND, command & ~PCI_COMMAND_MEMORY);
      const region: DmaRegion = { vaddr: bar!.vaddr!, size: bar!.info.size, iova: allocator.alloc(bar!.info.size) };
      expectErrno(() => f.iommu.map(region), 'EFAULT');
      f.device.configWritew(PCI_COMMAND, command);
      // decode on again: the vfio_type1* modes map it
      if (typeOne) {
        f.iommu.map(region);
        expect(f.iommu.unmap(region)).toBe(region.size);
      }
    });

    /** do_mmio_map_test: the vfio_type1* modes map and unmap; iommufd's (compat or native) refuse. */
    function doMmioMapTest(iommu: Iommu, iovaAllocator: IovaAllocator, vaddr: bigint, size: bigint): void {
      const region: DmaRegion = { vaddr, size, iova: iovaAllocator.alloc(size) };
      if (typeOne) {
        iommu.map(region);
        expect(iommu.unmap(region)).toBe(size);
      } else {
        // The C asserts only a failure; the kernel answers EFAULT (pin_user_pages on VM_IO | VM_PFNMAP).
        expectErrno(() => iommu.map(region), 'EFAULT');
      }
    }
  });
}

/** largest_mapped_bar: the largest BAR mmapped by device init with READ and WRITE (iommu_map maps R|W). */
function largestMappedBar(device: VfioPciDevice): VfioPciBar | null {
  const flags = VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE;
  let largest: VfioPciBar | null = null;
  for (const bar of device.bars) {
    if (!bar.vaddr || (bar.info.flags & flags) !== flags) continue;
    if (!largest || bar.info.size > largest.info.size) largest = bar;
  }
  return largest;
}
