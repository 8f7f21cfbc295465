/**
 * The intel-iommu driver's debugfs (drivers/iommu/intel/debugfs.c, CONFIG_INTEL_IOMMU_DEBUGFS, which
 * the test VM's kernel has): /sys/kernel/debug/iommu/intel/<bdf>/domain_translation_struct for
 * every device the unit probed, the dump of the page table translating the device's requests
 * without PASID (domain_translation_struct_show, legacy mode). Each present leaf IOPTE is one line:
 * its IOVA page frame, then the entry of every level on the walk from the top (PML5E, PML4E, PDPE,
 * then PDE and PTE as far as the walk goes: a 2 MiB superpage ends at its PDE, 1 GiB at its PDPE).
 * The vfio selftest vfio_dma_mapping_test reads it to check the level of a mapping's IOPTE.
 *
 * The sim has no physical memory map, so the entries' addresses are stand-ins: a table entry is
 * non-zero with READ|WRITE set, a leaf carries its IOVA as the address, its READ/WRITE bits and,
 * for a superpage, bit 7 (DMA_PTE_LARGE_PAGE). Which entries exist and at which level is the model.
 */
import type { SimVfs } from '../kernel/vfs.js';
import { IOMMU_READ, IOMMU_WRITE, type DmaTarget } from './iommu.js';
import { PagingDomain } from './domain.js';

const VTD_PAGE_SHIFT = 12n;
const VTD_STRIDE_SHIFT = 9n;
const DMA_PTE_READ = 1n;
const DMA_PTE_WRITE = 2n;
const DMA_PTE_LARGE_PAGE = 1n << 7n;

/** The devices the unit probed: their names (the BDF) and what translates their requests now. */
export interface IntelDebugfsDevice {
  readonly name: string;
  translation(): DmaTarget | null;
}

/** intel_iommu_debugfs_create_dev for each device: its directory and domain_translation_struct. */
export function publishIntelDebugfs(vfs: SimVfs, devices: readonly IntelDebugfsDevice[]): void {
  for (const dev of devices) {
    vfs.addAttr(`/sys/kernel/debug/iommu/intel/${dev.name}/domain_translation_struct`, { read: () => dump(dev) });
  }
}

const hex = (v: bigint, width: number): string => `0x${v.toString(16).padStart(width, '0')}`;

/** domain_translation_struct_show: nothing when no paging domain translates the device (context not present). */
function dump(dev: IntelDebugfsDevice): string {
  const domain = dev.translation();
  if (!(domain instanceof PagingDomain)) return '';
  // agaw + 2 levels: enough 9-bit strides above the 4 KiB page for the domain's address width
  const width = BigInt((domain.aperture.last + 1n).toString(2).length - 1);
  const levels = Number((width - VTD_PAGE_SHIFT + VTD_STRIDE_SHIFT - 1n) / VTD_STRIDE_SHIFT);
  const bdf = /^(\w+):(\w+):(\w+)\.(\w)$/.exec(dev.name);
  const lines = [
    `Device ${bdf ? `${bdf[1]}:${bdf[2]}:${bdf[3]}.${bdf[4]}` : dev.name} @${hex(BigInt(levels) << 32n, 0)}`,
    `${'IOVA_PFN'.padEnd(17)}\t${'PML5E'.padEnd(18)}\t${'PML4E'.padEnd(18)}\t${'PDPE'.padEnd(18)}\t${'PDE'.padEnd(18)}\tPTE`,
  ];
  for (const run of domain.mappedRuns()) {
    for (let iova = run.first; iova <= run.last; ) {
      const size = BigInt(domain.pteSizeAt(iova));
      // the level whose directory size the IOPTE is: 1 for 4 KiB, 2 for 2 MiB, 3 for 1 GiB
      let leafLevel = 1;
      while (1n << (VTD_PAGE_SHIFT + VTD_STRIDE_SHIFT * BigInt(leafLevel)) <= size) leafLevel++;
      const path = [0n, 0n, 0n, 0n, 0n, 0n];
      for (let level = levels; level > leafLevel; level--) {
        // a table entry: the next table's (stand-in) address, READ|WRITE
        path[level] = ((BigInt(level) << 28n) | (iova >> (VTD_PAGE_SHIFT + VTD_STRIDE_SHIFT * BigInt(level)) << VTD_PAGE_SHIFT)) + 0x1000n | DMA_PTE_READ | DMA_PTE_WRITE;
      }
      const prot = (run.prot & IOMMU_READ ? DMA_PTE_READ : 0n) | (run.prot & IOMMU_WRITE ? DMA_PTE_WRITE : 0n);
      path[leafLevel] = iova | prot | (leafLevel > 1 ? DMA_PTE_LARGE_PAGE : 0n);
      // dump_page_info
      let line = `${hex(iova >> VTD_PAGE_SHIFT, 13)} |\t${hex(path[5]!, 16)}\t${hex(path[4]!, 16)}\t${hex(path[3]!, 16)}`;
      if (path[2]) {
        line += `\t${hex(path[2]!, 16)}`;
        if (path[1]) line += `\t${hex(path[1]!, 16)}`;
      }
      lines.push(line);
      iova += size;
    }
  }
  return `${lines.join('\n')}\n`;
}
