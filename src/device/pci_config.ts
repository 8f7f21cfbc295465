/**
 * PCI configuration space through vfio-pci's config region (index 7): the registers a userspace
 * driver needs instead of raw offsets (IDs, PCI_COMMAND and its bus-master bit, the capability
 * list). vfio-pci virtualises parts of config space; what reads back is what the kernel lets the
 * user see.
 */
import type { VfioRegion } from './region.js';
import {
  PCI_CAPABILITY_LIST, PCI_CAP_ID_MSI, PCI_CAP_ID_MSIX, PCI_COMMAND, PCI_COMMAND_MASTER, PCI_COMMAND_MEMORY,
  PCI_DEVICE_ID, PCI_MSI_FLAGS, PCI_MSI_FLAGS_QMASK, PCI_MSIX_FLAGS, PCI_MSIX_FLAGS_QSIZE, PCI_STATUS,
  PCI_STATUS_CAP_LIST, PCI_VENDOR_ID,
} from './uapi.js';

export class PciConfig {
  constructor(readonly region: VfioRegion) {}

  get vendor(): number {
    return this.region.read16(PCI_VENDOR_ID);
  }
  get device(): number {
    return this.region.read16(PCI_DEVICE_ID);
  }

  get command(): number {
    return this.region.read16(PCI_COMMAND);
  }
  set command(v: number) {
    this.region.write16(PCI_COMMAND, v);
  }

  /** PCI_COMMAND_MASTER: the device may issue DMA. */
  get busMaster(): boolean {
    return (this.command & PCI_COMMAND_MASTER) !== 0;
  }
  set busMaster(on: boolean) {
    const c = this.command;
    this.command = on ? c | PCI_COMMAND_MASTER : c & ~PCI_COMMAND_MASTER;
  }

  /** PCI_COMMAND_MEMORY: the device decodes its memory BARs. */
  get memoryEnabled(): boolean {
    return (this.command & PCI_COMMAND_MEMORY) !== 0;
  }
  set memoryEnabled(on: boolean) {
    const c = this.command;
    this.command = on ? c | PCI_COMMAND_MEMORY : c & ~PCI_COMMAND_MEMORY;
  }

  /** Offsets of the standard capabilities, in list order, as [id, offset] pairs. */
  capabilities(): [number, number][] {
    if (!(this.region.read16(PCI_STATUS) & PCI_STATUS_CAP_LIST)) return [];
    const out: [number, number][] = [];
    let pos = this.region.read8(PCI_CAPABILITY_LIST) & ~3;
    // A well-formed list has at most 48 entries in the 256-byte header (the kernel's bound).
    for (let ttl = 48; pos >= 0x40 && ttl > 0; ttl--) {
      const id = this.region.read8(pos);
      if (id === 0xff) break;
      out.push([id, pos]);
      pos = this.region.read8(pos + 1) & ~3;
    }
    return out;
  }

  /** The offset of capability `id` (PCI_CAP_ID_*), or null. */
  findCapability(id: number): number | null {
    return this.capabilities().find(([i]) => i === id)?.[1] ?? null;
  }

  /** Vectors the MSI capability offers (1..32), 0 without MSI. */
  get msiVectors(): number {
    const pos = this.findCapability(PCI_CAP_ID_MSI);
    return pos === null ? 0 : 1 << ((this.region.read16(pos + PCI_MSI_FLAGS) & PCI_MSI_FLAGS_QMASK) >> 1);
  }

  /** Vectors the MSI-X capability offers, 0 without MSI-X. */
  get msixVectors(): number {
    const pos = this.findCapability(PCI_CAP_ID_MSIX);
    return pos === null ? 0 : (this.region.read16(pos + PCI_MSIX_FLAGS) & PCI_MSIX_FLAGS_QSIZE) + 1;
  }
}
