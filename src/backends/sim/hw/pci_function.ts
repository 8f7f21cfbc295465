/**
 * One PCI function as hardware: its configuration space (with QEMU's write masks: header fields,
 * BAR sizing, capabilities; the device-specific area after the header is plain read/write), its
 * BARs with sized MMIO handlers, INTx and MSI signalling, and bus-master DMA through the port its
 * IOMMU gives it. Device models (edu.ts) extend it.
 */
import type { DmaFault, DmaPort } from '../include/iommu.js';

export const PCI_VENDOR_ID = 0x00;
export const PCI_DEVICE_ID = 0x02;
export const PCI_COMMAND = 0x04;
export const PCI_STATUS = 0x06;
export const PCI_REVISION_ID = 0x08;
export const PCI_CLASS_PROG = 0x09;
export const PCI_CACHE_LINE_SIZE = 0x0c;
export const PCI_LATENCY_TIMER = 0x0d;
export const PCI_HEADER_TYPE = 0x0e;
export const PCI_BASE_ADDRESS_0 = 0x10;
export const PCI_PRIMARY_BUS = 0x18;
export const PCI_SECONDARY_BUS = 0x19;
export const PCI_SUBORDINATE_BUS = 0x1a;
export const PCI_SUBSYSTEM_VENDOR_ID = 0x2c;
export const PCI_SUBSYSTEM_ID = 0x2e;
export const PCI_ROM_ADDRESS = 0x30;
export const PCI_CAPABILITY_LIST = 0x34;
export const PCI_INTERRUPT_LINE = 0x3c;
export const PCI_INTERRUPT_PIN = 0x3d;
export const PCI_STD_HEADER_SIZEOF = 0x40;
export const PCI_CFG_SPACE_SIZE = 256;
export const PCI_CFG_SPACE_EXP_SIZE = 4096;

export const PCI_COMMAND_IO = 0x1;
export const PCI_COMMAND_MEMORY = 0x2;
export const PCI_COMMAND_MASTER = 0x4;
export const PCI_COMMAND_PARITY = 0x40;
export const PCI_COMMAND_SERR = 0x100;
export const PCI_COMMAND_INTX_DISABLE = 0x400;
export const PCI_STATUS_INTERRUPT = 0x08;
export const PCI_STATUS_CAP_LIST = 0x10;
/** Error bits of the status register: write 1 to clear. */
const PCI_STATUS_W1C = 0xf900;

export const PCI_CAP_ID_PM = 0x01;
export const PCI_CAP_ID_MSI = 0x05;
export const PCI_CAP_ID_EXP = 0x10;
export const PCI_CAP_ID_MSIX = 0x11;
export const PCI_EXT_CAP_ID_ACS = 0x0d;

export const PCI_MSI_FLAGS = 2;
export const PCI_MSI_FLAGS_ENABLE = 0x1;
export const PCI_MSI_FLAGS_QMASK = 0xe;
export const PCI_MSI_FLAGS_QSIZE = 0x70;
export const PCI_MSI_FLAGS_64BIT = 0x80;
export const PCI_MSI_FLAGS_MASKBIT = 0x100;
export const PCI_MSI_ADDRESS_LO = 4;

export const PCI_EXP_FLAGS = 2;
export const PCI_EXP_DEVCAP = 4;
export const PCI_EXP_DEVCAP_FLR = 1 << 28;
export const PCI_EXP_DEVCTL = 8;
export const PCI_EXP_DEVCTL_BCR_FLR = 0x8000;
export const PCI_ACS_CAP = 4;
export const PCI_ACS_CTRL = 6;

/** PCI_EXP_TYPE_*: the PCIe device/port type in the PCIe capability's flags. */
export const PCI_EXP_TYPE = {
  endpoint: 0x0,
  'legacy-endpoint': 0x1,
  'root-port': 0x4,
  upstream: 0x5,
  downstream: 0x6,
  'pcie-to-pci': 0x7,
  'pci-to-pcie': 0x8,
  'rc-endpoint': 0x9,
  'rc-event-collector': 0xa,
} as const;
export type PcieType = keyof typeof PCI_EXP_TYPE;

/** A BAR's MMIO: accesses of 1, 2, 4 or 8 bytes at an offset inside the BAR. */
export interface Mmio {
  read(offset: number, size: number): bigint;
  write(offset: number, size: number, value: bigint): void;
}

export interface BarSpec {
  readonly index: number;
  /** A power of two. */
  readonly size: number;
  readonly type: 'mem32' | 'mem64' | 'io';
  readonly prefetchable?: boolean;
  /** The register file behind the BAR (reads of unhandled BARs return all ones). */
  readonly mmio?: Mmio;
}

export interface PciFunctionSpec {
  readonly vendor: number;
  readonly device: number;
  /** 24-bit class code: base class, subclass, programming interface (0x00ff00). */
  readonly classCode: number;
  readonly revision?: number;
  readonly subsystemVendor?: number;
  readonly subsystemDevice?: number;
  /** 0 = normal function, 1 = PCI-to-PCI bridge. */
  readonly headerType?: 0 | 1;
  /** 1 = INTA ... 4 = INTD, 0 = no INTx. */
  readonly interruptPin?: number;
  readonly bars?: readonly BarSpec[];
  /** An MSI capability with 2^n vectors (n = log2 of `vectors`), 64-bit, optional per-vector masking. */
  readonly msi?: { readonly vectors: number; readonly is64?: boolean; readonly maskable?: boolean };
  /** Function-level reset: advertised in the PCIe capability (only for PCIe functions). */
  readonly flr?: boolean;
}

/** Where a function's interrupts go: the host's interrupt handlers (the VFIO layer installs them). */
export interface IrqSink {
  /** The INTx line as the interrupt controller sees it (level, after INTx disable). */
  intx(asserted: boolean): void;
  /** An MSI message for `vector`. */
  msi(vector: number): void;
}

/** What the topology decides about a function: its PCIe type (null = conventional PCI) and ACS capability. */
export interface PciFunctionInit {
  readonly pcieType: PcieType | null;
  readonly acs: { readonly caps: number; readonly ctrl: number } | null;
}

export const CONVENTIONAL: PciFunctionInit = { pcieType: null, acs: null };

/** Why a DMA did not happen before reaching the IOMMU: bus mastering is off (the request is never issued). */
export const NO_BUS_MASTER = 'no-bus-master' as const;
export type DmaResult = DmaFault | typeof NO_BUS_MASTER | null;

export class PciFunction {
  readonly config: Uint8Array;
  readonly wmask: Uint8Array;
  readonly w1cmask: Uint8Array;
  readonly bars: (BarSpec | null)[] = [null, null, null, null, null, null];
  /** Offsets of the capabilities (0 = absent). */
  msiCap = 0;
  expCap = 0;
  acsCap = 0;
  /** Where interrupts go; null = nobody handles them (they are lost). */
  irqSink: IrqSink | null = null;
  /** The bus this function's DMA goes out on (its IOMMU unit's port for its requester ID). */
  dmaPort: DmaPort | null = null;
  /** DMA requests dropped because bus mastering was off. */
  masterAborts = 0;
  /** The INTx level the device drives. */
  private intxLevel = false;
  /** What the interrupt controller last saw. */
  private intxLine = false;
  private nextCap = PCI_STD_HEADER_SIZEOF;
  private lastCapNext = PCI_CAPABILITY_LIST;
  private lastExtCap = 0;
  private readonly initial: Uint8Array;

  /** The PCIe type, or null for conventional PCI (no PCIe capability, 256-byte config space). */
  readonly pcieType: PcieType | null;

  constructor(
    readonly spec: PciFunctionSpec,
    init: PciFunctionInit = CONVENTIONAL,
  ) {
    const { pcieType, acs } = init;
    this.pcieType = pcieType;
    const size = pcieType ? PCI_CFG_SPACE_EXP_SIZE : PCI_CFG_SPACE_SIZE;
    this.config = new Uint8Array(size);
    this.wmask = new Uint8Array(size);
    this.w1cmask = new Uint8Array(size);
    const c = this.config;
    this.set16(PCI_VENDOR_ID, spec.vendor);
    this.set16(PCI_DEVICE_ID, spec.device);
    c[PCI_REVISION_ID] = spec.revision ?? 0;
    c[PCI_CLASS_PROG] = spec.classCode & 0xff;
    c[PCI_CLASS_PROG + 1] = (spec.classCode >> 8) & 0xff;
    c[PCI_CLASS_PROG + 2] = (spec.classCode >> 16) & 0xff;
    c[PCI_HEADER_TYPE] = spec.headerType ?? 0;
    this.set16(PCI_COMMAND, 0);
    this.setWmask16(PCI_COMMAND, PCI_COMMAND_IO | PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER | PCI_COMMAND_PARITY |
      PCI_COMMAND_SERR | PCI_COMMAND_INTX_DISABLE);
    this.w1cmask[PCI_STATUS] = PCI_STATUS_W1C & 0xff;
    this.w1cmask[PCI_STATUS + 1] = PCI_STATUS_W1C >> 8;
    this.wmask[PCI_CACHE_LINE_SIZE] = 0xff;
    this.wmask[PCI_LATENCY_TIMER] = 0xff;
    this.wmask[PCI_INTERRUPT_LINE] = 0xff;
    c[PCI_INTERRUPT_PIN] = spec.interruptPin ?? 0;
    if ((spec.headerType ?? 0) === 0) {
      this.set16(PCI_SUBSYSTEM_VENDOR_ID, spec.subsystemVendor ?? 0);
      this.set16(PCI_SUBSYSTEM_ID, spec.subsystemDevice ?? 0);
    } else {
      this.wmask[PCI_PRIMARY_BUS] = this.wmask[PCI_SECONDARY_BUS] = this.wmask[PCI_SUBORDINATE_BUS] = 0xff;
    }
    for (const bar of spec.bars ?? []) this.addBar(bar);
    // QEMU makes the device-specific area writable until capabilities claim parts of it.
    this.wmask.fill(0xff, PCI_STD_HEADER_SIZEOF, PCI_CFG_SPACE_SIZE);
    if (spec.msi) this.addMsi(spec.msi.vectors, spec.msi.is64 ?? true, spec.msi.maskable ?? false);
    if (pcieType) this.addExp(pcieType, spec.flr ?? false);
    if (acs) this.addAcs(acs.caps, acs.ctrl);
    this.initial = c.slice();
  }

  // ---- configuration space -------------------------------------------------------------------

  get cfgSize(): number {
    return this.config.length;
  }

  get command(): number {
    return this.get16(PCI_COMMAND);
  }

  get busMaster(): boolean {
    return (this.command & PCI_COMMAND_MASTER) !== 0;
  }

  get memoryEnabled(): boolean {
    return (this.command & PCI_COMMAND_MEMORY) !== 0;
  }

  /** pci_is_vga: class 0x0300xx (VGA-compatible) or 0x0001xx (VGA before class codes existed). */
  get isVga(): boolean {
    const cls = this.get32(8) >>> 16;
    return cls === 0x0300 || cls === 0x0001;
  }

  get multifunctionBit(): boolean {
    return (this.config[PCI_HEADER_TYPE]! & 0x80) !== 0;
  }

  set multifunctionBit(v: boolean) {
    this.config[PCI_HEADER_TYPE] = (this.config[PCI_HEADER_TYPE]! & 0x7f) | (v ? 0x80 : 0);
    this.initial[PCI_HEADER_TYPE] = this.config[PCI_HEADER_TYPE]!;
  }

  /** A configuration read of 1, 2 or 4 bytes (little-endian), as pci_read_config_* issues it. */
  cfgRead(off: number, size: number): number {
    if (off < 0 || off + size > this.config.length) return size === 4 ? 0xffffffff : (1 << (size * 8)) - 1;
    let v = 0;
    for (let i = size - 1; i >= 0; i--) v = v * 256 + this.config[off + i]!;
    return v;
  }

  /** A configuration write: write-mask, write-1-to-clear, then the side effects of what changed. */
  cfgWrite(off: number, size: number, value: number): void {
    if (off < 0 || off + size > this.config.length) return;
    const oldCmd = this.command;
    const msiFlagsOld = this.msiCap ? this.get16(this.msiCap + PCI_MSI_FLAGS) : 0;
    for (let i = 0; i < size; i++) {
      const b = Math.floor(value / 2 ** (8 * i)) & 0xff;
      const a = off + i;
      const wm = this.wmask[a]!;
      const w1c = this.w1cmask[a]!;
      this.config[a] = ((this.config[a]! & ~wm) | (b & wm)) & ~(b & w1c) & 0xff;
    }
    if (this.expCap && off <= this.expCap + PCI_EXP_DEVCTL + 1 && off + size > this.expCap + PCI_EXP_DEVCTL) {
      const ctl = this.get16(this.expCap + PCI_EXP_DEVCTL);
      if (ctl & PCI_EXP_DEVCTL_BCR_FLR) this.reset();
      return;
    }
    if (this.command !== oldCmd) this.updateIntx();
    if (this.msiCap && this.get16(this.msiCap + PCI_MSI_FLAGS) !== msiFlagsOld) this.updateIntx();
  }

  get16(off: number): number {
    return this.config[off]! | (this.config[off + 1]! << 8);
  }

  get32(off: number): number {
    return (this.config[off]! | (this.config[off + 1]! << 8) | (this.config[off + 2]! << 16) | (this.config[off + 3]! << 24)) >>> 0;
  }

  private set16(off: number, v: number): void {
    this.config[off] = v & 0xff;
    this.config[off + 1] = (v >> 8) & 0xff;
  }

  private set32(off: number, v: number): void {
    for (let i = 0; i < 4; i++) this.config[off + i] = (v >>> (8 * i)) & 0xff;
  }

  private setWmask16(off: number, v: number): void {
    this.wmask[off] = v & 0xff;
    this.wmask[off + 1] = (v >> 8) & 0xff;
  }

  private setWmask32(off: number, v: number): void {
    for (let i = 0; i < 4; i++) this.wmask[off + i] = (v >>> (8 * i)) & 0xff;
  }

  private addBar(bar: BarSpec): void {
    this.bars[bar.index] = bar;
    const reg = PCI_BASE_ADDRESS_0 + 4 * bar.index;
    const flags = bar.type === 'io' ? 1 : (bar.type === 'mem64' ? 4 : 0) | (bar.prefetchable ? 8 : 0);
    this.set32(reg, flags);
    const mask = bar.type === 'io' ? ~(bar.size - 1) & ~3 : ~(bar.size - 1) & ~0xf;
    this.setWmask32(reg, bar.size >= 2 ** 32 ? 0 : mask >>> 0);
    if (bar.type === 'mem64') {
      this.bars[bar.index + 1] = null;
      this.setWmask32(reg + 4, bar.size > 2 ** 32 ? ~(bar.size / 2 ** 32 - 1) >>> 0 : 0xffffffff);
    }
  }

  /** Place the BAR at `addr` (what firmware does at boot). */
  assignBar(index: number, addr: number): void {
    const reg = PCI_BASE_ADDRESS_0 + 4 * index;
    const bar = this.bars[index];
    if (!bar) return;
    const low = this.get32(reg) & (bar.type === 'io' ? 3 : 0xf);
    this.set32(reg, ((addr % 2 ** 32) | low) >>> 0);
    if (bar.type === 'mem64') this.set32(reg + 4, Math.floor(addr / 2 ** 32));
    this.initial.set(this.config.subarray(reg, reg + 8), reg);
  }

  /** The address a BAR decodes at (0 = unassigned). */
  barAddress(index: number): number {
    const bar = this.bars[index];
    if (!bar) return 0;
    const reg = PCI_BASE_ADDRESS_0 + 4 * index;
    const lo = this.get32(reg) & (bar.type === 'io' ? ~3 : ~0xf);
    return (lo >>> 0) + (bar.type === 'mem64' ? this.get32(reg + 4) * 2 ** 32 : 0);
  }

  /** Reserve `size` bytes in the capability area (QEMU's pci_find_space: lowest free, dword aligned). */
  private addCapability(id: number, size: number): number {
    const pos = this.nextCap;
    this.nextCap = (pos + size + 3) & ~3;
    this.config[pos] = id;
    this.config[pos + 1] = 0;
    this.config[this.lastCapNext] = pos;
    this.lastCapNext = pos + 1;
    const status = this.get16(PCI_STATUS) | PCI_STATUS_CAP_LIST;
    this.set16(PCI_STATUS, status);
    this.wmask.fill(0, pos, pos + size);
    return pos;
  }

  private addMsi(vectors: number, is64: boolean, maskable: boolean): void {
    const mmc = Math.max(0, Math.ceil(Math.log2(vectors)));
    const size = 10 + (is64 ? 4 : 0) + (maskable ? 10 : 0);
    const pos = this.addCapability(PCI_CAP_ID_MSI, size);
    const flags = (mmc << 1) | (is64 ? PCI_MSI_FLAGS_64BIT : 0) | (maskable ? PCI_MSI_FLAGS_MASKBIT : 0);
    this.set16(pos + PCI_MSI_FLAGS, flags);
    this.setWmask16(pos + PCI_MSI_FLAGS, PCI_MSI_FLAGS_QSIZE | PCI_MSI_FLAGS_ENABLE);
    this.setWmask32(pos + PCI_MSI_ADDRESS_LO, 0xfffffffc);
    if (is64) this.setWmask32(pos + 8, 0xffffffff);
    const data = pos + (is64 ? 12 : 8);
    this.setWmask16(data, 0xffff);
    if (maskable) this.setWmask32(data + 4, (2 ** vectors - 1) >>> 0);
    this.msiCap = pos;
  }

  private addExp(type: PcieType, flr: boolean): void {
    const pos = this.addCapability(PCI_CAP_ID_EXP, 0x3c);
    this.set16(pos + PCI_EXP_FLAGS, 2 | (PCI_EXP_TYPE[type] << 4));
    this.set32(pos + PCI_EXP_DEVCAP, flr ? PCI_EXP_DEVCAP_FLR : 0);
    this.setWmask16(pos + PCI_EXP_DEVCTL, flr ? PCI_EXP_DEVCTL_BCR_FLR | 0x7fff : 0x7fff);
    this.expCap = pos;
  }

  /** The ACS extended capability at the next free place in extended config space. */
  private addAcs(caps: number, ctrl: number): void {
    const pos = this.lastExtCap ? this.lastExtCap + 0x100 : PCI_CFG_SPACE_SIZE;
    if (pos + 8 > this.config.length) return;
    if (this.lastExtCap) this.set32(this.lastExtCap, this.get32(this.lastExtCap) | (pos << 20));
    this.set32(pos, PCI_EXT_CAP_ID_ACS | (1 << 16));
    this.set16(pos + PCI_ACS_CAP, caps);
    this.set16(pos + PCI_ACS_CTRL, ctrl);
    this.setWmask16(pos + PCI_ACS_CTRL, caps);
    this.lastExtCap = pos;
    this.acsCap = pos;
  }

  get acsCapabilities(): number {
    return this.acsCap ? this.get16(this.acsCap + PCI_ACS_CAP) : 0;
  }

  get acsCtrl(): number {
    return this.acsCap ? this.get16(this.acsCap + PCI_ACS_CTRL) : 0;
  }

  get flrCapable(): boolean {
    return this.expCap !== 0 && (this.get32(this.expCap + PCI_EXP_DEVCAP) & PCI_EXP_DEVCAP_FLR) !== 0;
  }

  // ---- MMIO ----------------------------------------------------------------------------------

  /** An MMIO read inside BAR `index` (all ones where nothing answers). Models override it or give BarSpec.mmio. */
  mmioRead(index: number, offset: number, size: number): bigint {
    const bar = this.bars[index];
    if (!bar?.mmio) return (1n << BigInt(8 * size)) - 1n;
    return bar.mmio.read(offset, size);
  }

  mmioWrite(index: number, offset: number, size: number, value: bigint): void {
    this.bars[index]?.mmio?.write(offset, size, value);
  }

  // ---- interrupts ----------------------------------------------------------------------------

  get msiEnabled(): boolean {
    return this.msiCap !== 0 && (this.get16(this.msiCap + PCI_MSI_FLAGS) & PCI_MSI_FLAGS_ENABLE) !== 0;
  }

  /** Vectors enabled by the MSI Multiple Message Enable field. */
  get msiVectors(): number {
    return this.msiCap ? 1 << ((this.get16(this.msiCap + PCI_MSI_FLAGS) & PCI_MSI_FLAGS_QSIZE) >> 4) : 0;
  }

  /**
   * msi_notify: send vector `v` if MSI is enabled (no-op otherwise). The message is a memory
   * write through the function's bus-master address space (msi_send_message), so with bus
   * mastering off it goes nowhere and the interrupt is lost, as in QEMU (edu in the VM: no count).
   */
  msiNotify(v: number): void {
    if (!this.msiEnabled || v >= this.msiVectors || !this.busMaster) return;
    this.irqSink?.msi(v);
  }

  /** Drive the INTx pin; the interrupt status bit follows the level, the line also honours INTx disable. */
  setIrq(level: boolean): void {
    this.intxLevel = level;
    this.updateIntx();
  }

  get intxPending(): boolean {
    return this.intxLevel;
  }

  private updateIntx(): void {
    const status = this.get16(PCI_STATUS);
    this.set16(PCI_STATUS, this.intxLevel ? status | PCI_STATUS_INTERRUPT : status & ~PCI_STATUS_INTERRUPT);
    const line = this.intxLevel && this.config[PCI_INTERRUPT_PIN] !== 0 && !(this.command & PCI_COMMAND_INTX_DISABLE);
    if (line === this.intxLine) return;
    this.intxLine = line;
    this.irqSink?.intx(line);
  }

  // ---- DMA -----------------------------------------------------------------------------------

  /** Bus-master read of memory at `iova` into `dst`: through the IOMMU, all or nothing. */
  dmaRead(iova: bigint, dst: Uint8Array): DmaResult {
    if (!this.busMaster || !this.dmaPort) return this.masterAbort();
    return this.dmaPort.read(iova, dst);
  }

  /** Bus-master write of `src` to memory at `iova`. */
  dmaWrite(iova: bigint, src: Uint8Array): DmaResult {
    if (!this.busMaster || !this.dmaPort) return this.masterAbort();
    return this.dmaPort.write(iova, src);
  }

  private masterAbort(): typeof NO_BUS_MASTER {
    this.masterAborts++;
    return NO_BUS_MASTER;
  }

  // ---- reset ---------------------------------------------------------------------------------

  /** Function reset: configuration space back to its power-on values (BAR placement kept), device state too. */
  reset(): void {
    this.config.set(this.initial);
    this.intxLevel = false;
    this.updateIntx();
    this.resetDevice();
  }

  /** A model's own state reset (registers, buffers). */
  protected resetDevice(): void {}

  /** The saved state pci_save_state keeps and pci_restore_state writes back. */
  saveState(): Uint8Array {
    return this.config.slice();
  }

  restoreState(saved: Uint8Array): void {
    this.config.set(saved);
    this.updateIntx();
  }
}
