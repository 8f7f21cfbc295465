/**
 * PCI topology: a declarative description (root complex, root ports, switches, PCIe-to-PCI
 * bridges, endpoints, multifunction slots, ACS, DMA alias quirks) and its instance (buses and
 * functions with bus numbers, in the order Linux adds them). The isolation rules over the
 * instance live in groups.ts.
 */
import { PciFunction, type PciFunctionInit, type PciFunctionSpec, type PcieType } from './pci_function.js';

/** ACS capability / control bits (PCI_ACS_*). */
export const PCI_ACS = {
  SV: 0x01,
  TB: 0x02,
  RR: 0x04,
  CR: 0x08,
  UF: 0x10,
  EC: 0x20,
  DT: 0x40,
} as const;
/** The flags Linux requires for isolation (drivers/iommu/iommu.c REQ_ACS_FLAGS). */
export const REQ_ACS_FLAGS = PCI_ACS.SV | PCI_ACS.RR | PCI_ACS.CR | PCI_ACS.UF;

/** The kind of a function: a PCIe device/port type, or 'pci' for conventional PCI (no PCIe capability). */
export type PciKind = PcieType | 'pci' | 'pci-bridge';

export interface PciNodeDesc {
  /** Device number on the parent bus (0-31). */
  readonly slot: number;
  /** Function number (0-7; default 0). */
  readonly fn?: number;
  readonly kind: PciKind;
  /** What the function is: IDs, BARs, MSI, behaviour. Defaults to a generic function of its kind. */
  readonly model?: PciModel;
  /** Bridges: the functions on the secondary bus. */
  readonly bus?: readonly PciNodeDesc[];
  /**
   * An ACS extended capability: `caps` = the capability register; `ctrl` = the control register
   * after boot. Default ctrl: what pci_enable_acs() sets with an IOMMU present (caps & SV|RR|CR|UF).
   */
  readonly acs?: { readonly caps: number; readonly ctrl?: number };
  /** Quirks the kernel applies (drivers/pci/quirks.c). */
  readonly quirks?: PciQuirks;
  /** A kernel driver that binds it at boot ('pcieport', 'virtio-pci', ...). */
  readonly driver?: string;
  /** The header's multifunction bit (default: the slot has more than one function). */
  readonly multifunction?: boolean;
  /** Width of the function's PASID capability in bits (default none). */
  readonly pasidBits?: number;
  /** The IRQ number sysfs shows (default 10 for functions with an INTx pin, else 0). */
  readonly irq?: number;
}

export interface PciQuirks {
  /** DMA alias devfns on the same bus (pci_add_dma_alias: dev->dma_alias_mask). */
  readonly dmaAliases?: readonly number[];
  /** pci_dev_specific_acs_enabled says the function isolates (true) or not (false). */
  readonly acsEnabled?: boolean;
  /** PCI_DEV_FLAGS_PCI_BRIDGE_NO_ALIAS on a PCIe-to-PCI bridge. */
  readonly pciBridgeNoAlias?: boolean;
  /** PCI_DEV_FLAG_PCIE_BRIDGE_ALIAS on a conventional bridge. */
  readonly pcieBridgeAlias?: boolean;
  /** PCI_DEV_FLAGS_BRIDGE_XLATE_ROOT: the IOMMU sits at this bridge. */
  readonly bridgeXlateRoot?: boolean;
}

/** Builds a function model; the topology passes its PCIe type and ACS capability. */
export type PciModel = (init: PciFunctionInit) => PciFunction;

/** A bus: the root bus (no self) or a bridge's secondary bus. */
export class PciBus {
  readonly devices: PciNode[] = [];
  constructor(
    readonly number: number,
    readonly self: PciNode | null,
    readonly parent: PciBus | null,
  ) {}

  get isRoot(): boolean {
    return this.parent === null;
  }
}

/** One function of the topology (Linux's struct pci_dev). */
export class PciNode {
  /** The secondary bus of a bridge. */
  subordinate: PciBus | null = null;
  /** Devfns this function's DMA may also appear as (dma_alias_mask). */
  readonly dmaAliases: ReadonlySet<number>;

  constructor(
    readonly desc: PciNodeDesc,
    readonly bus: PciBus,
    readonly fn: PciFunction,
    readonly multifunction: boolean,
  ) {
    this.dmaAliases = new Set(desc.quirks?.dmaAliases ?? []);
  }

  get devfn(): number {
    return (this.desc.slot << 3) | (this.desc.fn ?? 0);
  }

  get slot(): number {
    return this.desc.slot;
  }

  get kind(): PciKind {
    return this.desc.kind;
  }

  get isPcie(): boolean {
    return this.fn.pcieType !== null;
  }

  /** Requester ID: bus << 8 | devfn (pci_dev_id). */
  get rid(): number {
    return (this.bus.number << 8) | this.devfn;
  }

  /** "0000:01:02.0" */
  get name(): string {
    return bdf(0, this.bus.number, this.devfn);
  }

  get quirks(): PciQuirks {
    return this.desc.quirks ?? {};
  }
}

export function bdf(domain: number, bus: number, devfn: number): string {
  const h = (v: number, w: number): string => v.toString(16).padStart(w, '0');
  return `${h(domain, 4)}:${h(bus, 2)}:${h(devfn >> 3, 2)}.${devfn & 7}`;
}

/** The default function for a kind: a generic device or bridge with made-up IDs (Red Hat's QEMU range). */
export function defaultModel(kind: PciKind): PciModel {
  const bridge = kind === 'root-port' || kind === 'upstream' || kind === 'downstream' || kind === 'pcie-to-pci' ||
    kind === 'pci-to-pcie' || kind === 'pci-bridge';
  const spec: PciFunctionSpec = bridge
    ? { vendor: 0x1b36, device: kind === 'pcie-to-pci' ? 0x000e : 0x000c, classCode: 0x060400, headerType: 1 }
    : { vendor: 0x1b36, device: 0x0005, classCode: 0x00ff00, interruptPin: 1, msi: { vectors: 1 } };
  return (init) => new PciFunction(spec, init);
}

export function pcieTypeOf(kind: PciKind): PcieType | null {
  return kind === 'pci' || kind === 'pci-bridge' ? null : kind;
}

export function isBridgeKind(kind: PciKind): boolean {
  return kind === 'root-port' || kind === 'upstream' || kind === 'downstream' || kind === 'pcie-to-pci' ||
    kind === 'pci-to-pcie' || kind === 'pci-bridge';
}

/** The instantiated topology of one PCI segment. */
export class PciTopology {
  readonly root: PciBus;
  /** Functions in the order Linux adds them (pci_bus_add_devices): every function of a bus, then each bridge's bus. */
  readonly probeOrder: PciNode[] = [];
  private busCount = 0;

  constructor(
    nodes: readonly PciNodeDesc[],
    /** An IOMMU asked for ACS (pci_request_acs): pci_enable_acs turns on SV|RR|CR|UF where capable. */
    private readonly acsRequested = true,
  ) {
    this.root = new PciBus(this.busCount++, null, null);
    this.scan(this.root, nodes);
    this.addDevices(this.root);
  }

  /** Every function, in probe order. */
  get nodes(): readonly PciNode[] {
    return this.probeOrder;
  }

  find(name: string): PciNode | undefined {
    return this.probeOrder.find((n) => n.name === name);
  }

  /** pci_scan_child_bus: functions of the bus in devfn order; bridges get bus numbers depth first. */
  private scan(bus: PciBus, descs: readonly PciNodeDesc[]): void {
    const sorted = [...descs].sort((a, b) => (a.slot << 3 | (a.fn ?? 0)) - (b.slot << 3 | (b.fn ?? 0)));
    const seen = new Set<number>();
    for (const d of sorted) {
      const devfn = (d.slot << 3) | (d.fn ?? 0);
      if (d.slot < 0 || d.slot > 31 || (d.fn ?? 0) < 0 || (d.fn ?? 0) > 7) throw new RangeError(`bad slot/fn ${d.slot}.${d.fn}`);
      if (seen.has(devfn)) throw new Error(`two functions at ${bdf(0, bus.number, devfn)}`);
      seen.add(devfn);
      if (d.bus && !isBridgeKind(d.kind)) throw new Error(`${d.kind} at ${bdf(0, bus.number, devfn)} cannot have a bus`);
      const acs = d.acs ? { caps: d.acs.caps, ctrl: d.acs.ctrl ?? (this.acsRequested ? d.acs.caps & REQ_ACS_FLAGS : 0) } : null;
      const fn = (d.model ?? defaultModel(d.kind))({ pcieType: pcieTypeOf(d.kind), acs });
      const inSlot = sorted.filter((x) => x.slot === d.slot).length;
      const mf = d.multifunction ?? inSlot > 1;
      fn.multifunctionBit = mf;
      bus.devices.push(new PciNode(d, bus, fn, mf));
    }
    for (const node of bus.devices) {
      if (!isBridgeKind(node.kind)) continue;
      const child = new PciBus(this.busCount++, node, bus);
      node.subordinate = child;
      this.scan(child, node.desc.bus ?? []);
    }
  }

  private addDevices(bus: PciBus): void {
    for (const n of bus.devices) this.probeOrder.push(n);
    for (const n of bus.devices) if (n.subordinate) this.addDevices(n.subordinate);
  }
}
