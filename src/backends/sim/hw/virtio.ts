/**
 * QEMU's virtio PCI functions in their transitional form (vendor 1af4, devices 1000-103f; the
 * subsystem device is the virtio device ID, as virtio_pci_legacy_probe reads it): a disk
 * (virtio-blk-pci), a NIC (virtio-net-pci) and a 9p share (virtio-9p-pci). The hardware only:
 * IDs, BARs, and what the device's own configuration holds (the disk's medium with its partition
 * table, the MAC address, the share's mount tag). The host's drivers that turn them into block
 * devices, interfaces and shares are in host_drivers.ts.
 */
import type { PciModel } from './pci.js';
import { PciFunction, type PciFunctionInit, type PciFunctionSpec } from './pci_function.js';

/** Virtio device IDs (include/uapi/linux/virtio_ids.h). */
export const VIRTIO_ID_NET = 1;
export const VIRTIO_ID_BLOCK = 2;
export const VIRTIO_ID_9P = 9;

export type VirtioConfig =
  /** A disk: `sectors` of 512 bytes; `partitions` (sizes in sectors) as its partition table lists them. */
  | { readonly id: typeof VIRTIO_ID_BLOCK; readonly sectors: number; readonly partitions: readonly number[] }
  | { readonly id: typeof VIRTIO_ID_NET; readonly mac: string }
  | { readonly id: typeof VIRTIO_ID_9P; readonly tag: string };

/** A virtio function: a PCI function plus the device-specific configuration its driver reads. */
export class VirtioFunction extends PciFunction {
  constructor(
    spec: PciFunctionSpec,
    init: PciFunctionInit,
    readonly virtio: VirtioConfig,
  ) {
    super(spec, init);
  }
}

/** The transitional layout QEMU gives every virtio-*-pci: an I/O BAR, MSI-X table BAR, modern BAR. */
function virtioSpec(device: number, classCode: number, virtioId: number, ioSize: number): PciFunctionSpec {
  return {
    vendor: 0x1af4, device, classCode, subsystemVendor: 0x1af4, subsystemDevice: virtioId, interruptPin: 1,
    bars: [{ index: 0, size: ioSize, type: 'io' }, { index: 1, size: 4096, type: 'mem32' }, { index: 4, size: 16384, type: 'mem64', prefetchable: true }],
  };
}

/** virtio-blk-pci (1af4:1001, mass storage): a disk of `sectors` with partitions of the given sizes. */
export function virtioBlk(disk: { readonly sectors: number; readonly partitions?: readonly number[] }): PciModel {
  const parts = disk.partitions ?? [];
  if (parts.reduce((a, b) => a + b, 2048) > disk.sectors) throw new RangeError('partitions larger than the disk');
  const spec = virtioSpec(0x1001, 0x010000, VIRTIO_ID_BLOCK, 128);
  return (init) => new VirtioFunction(spec, init, { id: VIRTIO_ID_BLOCK, sectors: disk.sectors, partitions: parts });
}

/** virtio-net-pci (1af4:1000, Ethernet controller). */
export function virtioNet(mac: string): PciModel {
  const spec = virtioSpec(0x1000, 0x020000, VIRTIO_ID_NET, 32);
  return (init) => new VirtioFunction(spec, init, { id: VIRTIO_ID_NET, mac });
}

/** virtio-9p-pci (1af4:1009): a host directory exported under `tag` (QEMU's mount_tag). */
export function virtio9p(tag: string): PciModel {
  const spec = virtioSpec(0x1009, 0x000200, VIRTIO_ID_9P, 64);
  return (init) => new VirtioFunction(spec, init, { id: VIRTIO_ID_9P, tag });
}
