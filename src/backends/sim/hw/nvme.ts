/**
 * QEMU's NVMe controller (hw/nvme, 1b36:0010, class 0x010802 "NVM Express"): the hardware only,
 * i.e. its IDs, its register BAR and what the controller reports about itself: the subsystem it
 * belongs to (NQN; `multiController` = CMIC bit 1, several controllers can reach the same
 * namespaces) and its namespaces with their partition tables. Two functions naming the same NQN
 * and NSID are two paths to one namespace (a dual-ported drive). The driver is in host_drivers.ts.
 */
import type { PciModel } from './pci.js';
import { PciFunction, type PciFunctionInit, type PciFunctionSpec } from './pci_function.js';

export interface NvmeNamespace {
  readonly nsid: number;
  /** 512-byte sectors. */
  readonly sectors: number;
  /** Partition sizes in sectors, as the namespace's partition table lists them. */
  readonly partitions?: readonly number[];
}

export interface NvmeConfig {
  /** The subsystem NQN (Identify Controller SUBNQN). */
  readonly nqn: string;
  /** CMIC bit 1: the subsystem may have several controllers (Linux then uses native multipath). */
  readonly multiController: boolean;
  readonly namespaces: readonly NvmeNamespace[];
}

export class NvmeFunction extends PciFunction {
  constructor(
    spec: PciFunctionSpec,
    init: PciFunctionInit,
    readonly nvme: NvmeConfig,
  ) {
    super(spec, init);
  }
}

const NVME_SPEC: PciFunctionSpec = {
  vendor: 0x1b36, device: 0x0010, classCode: 0x010802, revision: 2, subsystemVendor: 0x1af4, subsystemDevice: 0x1100,
  interruptPin: 1, bars: [{ index: 0, size: 16384, type: 'mem64' }], msi: { vectors: 1 },
};

/** QEMU's nvme device with the given subsystem and namespaces. */
export function nvme(cfg: NvmeConfig): PciModel {
  return (init) => new NvmeFunction(NVME_SPEC, init, cfg);
}
