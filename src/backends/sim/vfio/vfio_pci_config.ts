/**
 * vfio-pci's virtualised configuration space (drivers/vfio/pci/vfio_pci_config.c), ported for the
 * capabilities the sim's functions have: per byte, a "virt" mask (served from the virtual copy)
 * and a "write" mask (writable at all); the standard header, MSI and PCI Express capabilities have
 * their own rules, other known capabilities are read-only passthrough with their list pointers
 * virtualised, unknown ones are hidden, and bytes outside every capability pass straight through.
 *
 * The parts that matter to users: BARs are virtual (sizing works, the real BARs never change),
 * the command register's memory/IO/bus-master bits reach the device, INTx disable is emulated,
 * MSI enable is only possible through VFIO_DEVICE_SET_IRQS, and accesses beyond the config size
 * fail with EFAULT.
 */
import { ERRNO } from '../../../ioasid/errors.js';
import { kerr } from '../kernel/errno.js';
import {
  PCI_BASE_ADDRESS_0, PCI_CAP_ID_EXP, PCI_CAP_ID_MSI, PCI_CAP_ID_MSIX, PCI_CAP_ID_PM, PCI_CAPABILITY_LIST, PCI_CFG_SPACE_SIZE,
  PCI_COMMAND, PCI_COMMAND_INTX_DISABLE, PCI_COMMAND_IO, PCI_COMMAND_MEMORY, PCI_EXP_DEVCAP, PCI_EXP_DEVCAP_FLR,
  PCI_EXP_DEVCTL, PCI_EXP_DEVCTL_BCR_FLR, PCI_EXT_CAP_ID_ACS, PCI_INTERRUPT_LINE, PCI_INTERRUPT_PIN, PCI_MSI_FLAGS,
  PCI_MSI_FLAGS_64BIT, PCI_MSI_FLAGS_ENABLE, PCI_MSI_FLAGS_MASKBIT, PCI_MSI_FLAGS_QMASK, PCI_MSI_FLAGS_QSIZE,
  PCI_ROM_ADDRESS, PCI_STATUS, PCI_STATUS_CAP_LIST, PCI_STD_HEADER_SIZEOF, type PciFunction,
} from '../hw/pci_function.js';

/** The device state the config space rules read and change (a VfioPciDevice). */
export interface VfioConfigHost {
  readonly fn: PciFunction;
  /** VFIO_PCI_*_IRQ_INDEX in use, or VFIO_PCI_NUM_IRQS for none. */
  readonly irqType: number;
  /** log2 of the MSI vectors enabled through SET_IRQS. */
  readonly msiQmax: number;
  virqDisabled: boolean;
  intxMask(): void;
  intxUnmask(): void;
  /** pci_try_reset_function */
  tryResetFunction(): void;
}

const PCI_CAP_ID_BASIC = 0;
const PCI_CAP_ID_INVALID = 0xff;
const PCI_CAP_ID_INVALID_VIRT = 0xfe;
const ALL = 0xffffffff;
const PCI_EXP_DEVCTL_PAYLOAD = 0x00e0;
const PCI_EXP_DEVCTL_READRQ = 0x7000;
const PCI_EXP_DEVCTL_PHANTOM = 0x0200;
const PCI_EXP_DEVCTL2 = 0x28;
const PCI_EXP_DEVCTL2_ARI = 0x0020;

type ReadFn = (cfg: VfioPciConfig, pos: number, count: number, perm: PermBits, offset: number) => number;
type WriteFn = (cfg: VfioPciConfig, pos: number, count: number, perm: PermBits, offset: number, val: number) => void;

/** One capability's permission bits (struct perm_bits). */
class PermBits {
  readonly virt: Uint8Array;
  readonly write: Uint8Array;
  constructor(
    size: number,
    readonly readfn: ReadFn | null = defaultRead,
    readonly writefn: WriteFn | null = defaultWrite,
  ) {
    const n = (size + 3) & ~3;
    this.virt = new Uint8Array(n);
    this.write = new Uint8Array(n);
  }

  setb(off: number, virt: number, write: number): void {
    this.virt[off] = virt & 0xff;
    this.write[off] = write & 0xff;
  }

  setw(off: number, virt: number, write: number): void {
    for (let i = 0; i < 2; i++) this.setb(off + i, virt >>> (8 * i), write >>> (8 * i));
  }

  setd(off: number, virt: number, write: number): void {
    for (let i = 0; i < 4; i++) this.setb(off + i, virt >>> (8 * i), write >>> (8 * i));
  }
}

const mask = (count: number): number => (count === 4 ? ALL : (1 << (count * 8)) - 1);

function bytes(a: Uint8Array, off: number, count: number): number {
  let v = 0;
  for (let i = count - 1; i >= 0; i--) v = v * 256 + (a[off + i] ?? 0);
  return v >>> 0;
}

function setBytes(a: Uint8Array, off: number, count: number, v: number): void {
  for (let i = 0; i < count; i++) a[off + i] = (v >>> (8 * i)) & 0xff;
}

/** vfio_default_config_read: virtual bits from vconfig, the rest from the device. */
function defaultRead(cfg: VfioPciConfig, pos: number, count: number, perm: PermBits, offset: number): number {
  let val = bytes(cfg.vconfig, pos, count);
  const virt = bytes(perm.virt, offset, count);
  if (virt !== mask(count)) {
    const phys = cfg.host.fn.cfgRead(pos, count);
    val = ((phys & ~virt) | (val & virt)) >>> 0;
  }
  return val;
}

/** vfio_default_config_write: writable virtual bits to vconfig, writable real bits to the device. */
function defaultWrite(cfg: VfioPciConfig, pos: number, count: number, perm: PermBits, offset: number, val: number): void {
  const write = bytes(perm.write, offset, count);
  if (!write) return;
  const virt = bytes(perm.virt, offset, count);
  if (write & virt) {
    let v = bytes(cfg.vconfig, pos, count);
    v = ((v & ~(write & virt)) | (val & write & virt)) >>> 0;
    setBytes(cfg.vconfig, pos, count, v);
  }
  if (write & ~virt) {
    let phys = cfg.host.fn.cfgRead(pos, count);
    phys = ((phys & ~(write & ~virt)) | (val & write & ~virt)) >>> 0;
    cfg.host.fn.cfgWrite(pos, count, phys);
  }
}

/** vfio_direct_config_read: the device's bytes, except capability IDs and list pointers. */
function directRead(cfg: VfioPciConfig, pos: number, count: number, _perm: PermBits, offset: number): number {
  let val = cfg.host.fn.cfgRead(pos, count);
  if (pos >= PCI_CFG_SPACE_SIZE) {
    if (offset < 4) val = bytes(cfg.vconfig, pos, count);
  } else if (pos >= PCI_STD_HEADER_SIZEOF) {
    if (offset === 0 && count > 1) {
      const n = Math.min(2, count);
      val = ((val & ~mask(n)) | bytes(cfg.vconfig, pos, n)) >>> 0;
    } else if (offset === 1) {
      val = ((val & ~0xff) | cfg.vconfig[pos]!) >>> 0;
    }
  }
  return val;
}

const rawRead: ReadFn = (cfg, pos, count) => cfg.host.fn.cfgRead(pos, count);
const rawWrite: WriteFn = (cfg, pos, count, _p, _o, val) => cfg.host.fn.cfgWrite(pos, count, val);

const isBar = (off: number): boolean => (off >= PCI_BASE_ADDRESS_0 && off < 0x28) || (off >= PCI_ROM_ADDRESS && off < PCI_ROM_ADDRESS + 4);

/** init_pci_cap_basic_perm */
const basicPerms = ((): PermBits => {
  const p = new PermBits(PCI_STD_HEADER_SIZEOF, (cfg, pos, count, perm, offset) => {
    if (isBar(offset)) cfg.barFixup();
    return defaultRead(cfg, pos, count, perm, offset);
  }, (cfg, pos, count, perm, offset, val) => cfg.basicWrite(pos, count, perm, offset, val));
  p.setw(0, 0xffff, 0);
  p.setw(2, 0xffff, 0);
  p.setw(PCI_COMMAND, PCI_COMMAND_INTX_DISABLE, 0xffff);
  p.setw(PCI_STATUS, PCI_STATUS_CAP_LIST, 0);
  p.setb(0x0c, 0, 0xff);
  p.setb(0x0d, 0, 0xff);
  p.setb(0x0f, 0, 0xff);
  for (let bar = PCI_BASE_ADDRESS_0; bar < 0x28; bar += 4) p.setd(bar, ALL, ALL);
  p.setd(PCI_ROM_ADDRESS, ALL, ALL);
  p.setb(PCI_CAPABILITY_LIST, 0xff, 0);
  p.setb(PCI_INTERRUPT_LINE, 0xff, 0xff);
  p.setb(PCI_INTERRUPT_PIN, 0xff, 0);
  return p;
})();

/** init_pci_cap_exp_perm: device control writable (FLR virtualised and acted on), DEVCTL2 but ARI. */
const expPerms = ((): PermBits => {
  const p = new PermBits(0x3c, defaultRead, (cfg, pos, count, perm, offset, val) => {
    defaultWrite(cfg, pos, count, perm, offset, val);
    const ctrl = pos - offset + PCI_EXP_DEVCTL;
    const v = bytes(cfg.vconfig, ctrl, 2);
    if (v & PCI_EXP_DEVCTL_BCR_FLR) {
      setBytes(cfg.vconfig, ctrl, 2, v & ~PCI_EXP_DEVCTL_BCR_FLR);
      if (cfg.host.fn.cfgRead(pos - offset + PCI_EXP_DEVCAP, 4) & PCI_EXP_DEVCAP_FLR) cfg.host.tryResetFunction();
    }
  });
  p.setb(1, 0xff, 0);
  p.setw(PCI_EXP_DEVCTL, PCI_EXP_DEVCTL_BCR_FLR | PCI_EXP_DEVCTL_PAYLOAD | PCI_EXP_DEVCTL_READRQ, ~PCI_EXP_DEVCTL_PHANTOM);
  p.setw(PCI_EXP_DEVCTL2, 0, ~PCI_EXP_DEVCTL2_ARI);
  return p;
})();

const directRo = new PermBits(4, directRead, null);
const unassigned = new PermBits(4, rawRead, rawWrite);
const virtPerms = new PermBits(4, (cfg, pos, count) => bytes(cfg.vconfig, pos, count), (cfg, pos, count, _p, _o, val) => setBytes(cfg.vconfig, pos, count, val));

/** pci_cap_length: fixed lengths; 0xff = variable; absent = hidden from the user. */
const CAP_LENGTH: Record<number, number> = { [PCI_CAP_ID_PM]: 8, 0x03: 8, [PCI_CAP_ID_MSI]: 0xff, 0x07: 0xff, 0x09: 0xff, [PCI_CAP_ID_EXP]: 0xff, [PCI_CAP_ID_MSIX]: 12, 0x12: 0xff, 0x13: 6 };
/** pci_ext_cap_length for the extended capabilities modelled. */
const ECAP_LENGTH: Record<number, number> = { 0x01: 0x2c, 0x03: 12, 0x04: 0x10, [PCI_EXT_CAP_ID_ACS]: 0xff, 0x0e: 8, 0x0f: 8, 0x10: 0x40, 0x13: 0x10, 0x18: 8 };

export class VfioPciConfig {
  readonly vconfig: Uint8Array;
  /** Capability ID owning each byte (pci_config_map). */
  readonly map: Uint8Array;
  private readonly msiPerm: PermBits | null = null;
  private bardirty = true;
  private extendedCaps = false;
  /** The BARs at open, for restore after a backdoor reset (vdev->rbar). */
  readonly rbar: number[] = [];

  constructor(readonly host: VfioConfigHost) {
    const fn = host.fn;
    const size = fn.cfgSize;
    this.vconfig = new Uint8Array(size);
    this.map = new Uint8Array(size).fill(PCI_CAP_ID_INVALID);
    this.map.fill(PCI_CAP_ID_BASIC, 0, PCI_STD_HEADER_SIZEOF);
    this.fill(0, PCI_STD_HEADER_SIZEOF);
    for (let reg = PCI_BASE_ADDRESS_0; reg < 0x28; reg += 4) this.rbar.push(bytes(this.vconfig, reg, 4));
    this.rbar.push(bytes(this.vconfig, PCI_ROM_ADDRESS, 4));
    this.msiPerm = this.capInit();
    this.ecapInit();
  }

  private fill(off: number, len: number): void {
    for (let i = 0; i < len; i++) this.vconfig[off + i] = this.host.fn.cfgRead(off + i, 1);
  }

  /** vfio_cap_init: copy each kept capability, unlink hidden ones. */
  private capInit(): PermBits | null {
    const fn = this.host.fn;
    let msi: PermBits | null = null;
    if (!(fn.cfgRead(PCI_STATUS, 2) & PCI_STATUS_CAP_LIST)) return null;
    let pos = fn.cfgRead(PCI_CAPABILITY_LIST, 1);
    let prev = PCI_CAPABILITY_LIST;
    let loops = (PCI_CFG_SPACE_SIZE - PCI_STD_HEADER_SIZEOF) / 2;
    let caps = 0;
    while (pos && loops--) {
      const cap = fn.cfgRead(pos, 1);
      const next = fn.cfgRead(pos + 1, 1);
      let len = CAP_LENGTH[cap] ?? 0;
      if (len === 0xff) len = this.capLen(cap, pos);
      if (cap === PCI_CAP_ID_MSI && len) msi = msiPerms(len, fn.cfgRead(pos + PCI_MSI_FLAGS, 2));
      if (!len) {
        this.vconfig[prev] = next;
        pos = next;
        continue;
      }
      this.map.fill(cap, pos, pos + len);
      this.fill(pos, len);
      if (cap === PCI_CAP_ID_PM) {
        // Clear PME_Support, PME_Status, PME_En in the virtual copy.
        setBytes(this.vconfig, pos + 2, 2, bytes(this.vconfig, pos + 2, 2) & ~0xf800);
        setBytes(this.vconfig, pos + 4, 2, bytes(this.vconfig, pos + 4, 2) & ~0x8100);
      }
      prev = pos + 1;
      pos = next;
      caps++;
    }
    if (!caps) setBytes(this.vconfig, PCI_STATUS, 2, bytes(this.vconfig, PCI_STATUS, 2) & ~PCI_STATUS_CAP_LIST);
    return msi;
  }

  private capLen(cap: number, pos: number): number {
    const fn = this.host.fn;
    if (cap === PCI_CAP_ID_MSI) {
      const flags = fn.cfgRead(pos + PCI_MSI_FLAGS, 2);
      return 10 + (flags & PCI_MSI_FLAGS_64BIT ? 4 : 0) + (flags & PCI_MSI_FLAGS_MASKBIT ? 10 : 0);
    }
    if (cap === PCI_CAP_ID_EXP) {
      if (fn.cfgSize > PCI_CFG_SPACE_SIZE) this.extendedCaps = fn.cfgRead(PCI_CFG_SPACE_SIZE, 4) !== 0;
      const flags = fn.cfgRead(pos + 2, 2);
      const rcEnd = ((flags >> 4) & 0xf) === 0x9;
      return (flags & 0xf) === 1 ? (rcEnd ? 0xc : 20) : (rcEnd ? 0x2c : 0x3c);
    }
    if (cap === 0x09) return fn.cfgRead(pos + 2, 1); // vendor specific: length byte
    return 0;
  }

  /** vfio_ecap_init: the extended capability list, hidden ones skipped (the first one anchors as ID 0). */
  private ecapInit(): void {
    if (!this.extendedCaps) return;
    const fn = this.host.fn;
    let epos = PCI_CFG_SPACE_SIZE;
    let prev = -1;
    let ecaps = 0;
    let loops = (fn.cfgSize - PCI_CFG_SPACE_SIZE) / 4;
    while (loops-- && epos >= PCI_CFG_SPACE_SIZE) {
      const header = fn.cfgRead(epos, 4);
      const ecap = header & 0xffff;
      let len = ECAP_LENGTH[ecap] ?? 0;
      if (len === 0xff) len = ecap === PCI_EXT_CAP_ID_ACS ? this.acsLen(epos) : 0;
      let hidden = false;
      if (!len) {
        if (prev >= 0) {
          epos = header >>> 20;
          const v = (bytes(this.vconfig, prev, 4) & ~(0xffc << 20)) | (epos << 20);
          setBytes(this.vconfig, prev, 4, v >>> 0);
          continue;
        }
        len = 4;
        hidden = true;
      }
      this.map.fill(Math.min(ecap, 0xfd), epos, epos + len);
      this.fill(epos, len);
      if (hidden) setBytes(this.vconfig, epos, 4, bytes(this.vconfig, epos, 4) & (0xffc << 20));
      else ecaps++;
      prev = epos;
      epos = header >>> 20;
    }
    if (!ecaps) setBytes(this.vconfig, PCI_CFG_SPACE_SIZE, 4, 0);
  }

  private acsLen(epos: number): number {
    const cap = this.host.fn.cfgRead(epos + 4, 1);
    if (!(cap & 0x20)) return 8;
    const bits = this.host.fn.cfgRead(epos + 5, 1);
    return 8 + (bits ? Math.ceil(bits / 32) * 32 : 256) / 8;
  }

  /** The BARs as the user sees them: sizing masks over the original values (vfio_bar_fixup). */
  barFixup(): void {
    if (!this.bardirty) return;
    const fn = this.host.fn;
    for (let i = 0; i < 6; i++) {
      const reg = PCI_BASE_ADDRESS_0 + 4 * i;
      const bar = fn.bars[i];
      if (!bar || !fn.barAddress(i)) {
        setBytes(this.vconfig, reg, 4, 0);
        continue;
      }
      const lowMask = bar.size >= 2 ** 32 ? 0 : (~(bar.size - 1) >>> 0);
      const flags = bar.type === 'io' ? 1 : (bar.prefetchable ? 8 : 0) | (bar.type === 'mem64' ? 4 : 0);
      setBytes(this.vconfig, reg, 4, ((bytes(this.vconfig, reg, 4) & lowMask) | flags) >>> 0);
      if (bar.type === 'mem64') {
        const hiMask = bar.size > 2 ** 32 ? ~(bar.size / 2 ** 32 - 1) >>> 0 : ALL;
        setBytes(this.vconfig, reg + 4, 4, (bytes(this.vconfig, reg + 4, 4) & hiMask) >>> 0);
        i++;
      }
    }
    setBytes(this.vconfig, PCI_ROM_ADDRESS, 4, 0);
    this.bardirty = false;
  }

  /** vfio_basic_config_write */
  basicWrite(pos: number, count: number, perm: PermBits, offset: number, val: number): void {
    defaultWrite(this, pos, count, perm, offset, val);
    if (offset === PCI_COMMAND) {
      const m = PCI_COMMAND_MEMORY | PCI_COMMAND_IO;
      setBytes(this.vconfig, PCI_COMMAND, 2, (bytes(this.vconfig, PCI_COMMAND, 2) & ~m) | (val & 0xffff & m));
    }
    if (offset >= PCI_COMMAND && offset <= PCI_COMMAND + 1) {
      const disabled = (bytes(this.vconfig, PCI_COMMAND, 2) & PCI_COMMAND_INTX_DISABLE) !== 0;
      if (disabled && !this.host.virqDisabled) {
        this.host.virqDisabled = true;
        this.host.intxMask();
      } else if (!disabled && this.host.virqDisabled) {
        this.host.virqDisabled = false;
        this.host.intxUnmask();
      }
    }
    if (isBar(offset)) this.bardirty = true;
  }

  /** __vfio_pci_memory_enabled: BAR access needs the virtual memory enable bit. */
  get memoryEnabled(): boolean {
    return (bytes(this.vconfig, PCI_COMMAND, 2) & PCI_COMMAND_MEMORY) !== 0;
  }

  get interruptPin(): number {
    return this.vconfig[PCI_INTERRUPT_PIN]!;
  }

  /** vfio_pci_config_rw: read into / write from `buf` at config offset `pos`. */
  rw(buf: Uint8Array, pos: number, write: boolean): number {
    let done = 0;
    while (done < buf.length) done += this.rwSingle(buf, done, pos + done, buf.length - done, write);
    return done;
  }

  /** vfio_pci_config_rw_single: one aligned chunk inside one capability. */
  private rwSingle(buf: Uint8Array, at: number, pos: number, count: number, write: boolean): number {
    const size = this.vconfig.length;
    if (pos < 0 || pos >= size || pos + count > size) kerr(ERRNO.EFAULT);
    count = Math.min(count, this.capRemainingDword(pos));
    if (count >= 4 && !(pos % 4)) count = 4;
    else if (count >= 2 && !(pos % 2)) count = 2;
    else count = 1;
    const capId = this.map[pos]!;
    let perm: PermBits;
    let capStart = 0;
    if (capId === PCI_CAP_ID_INVALID) {
      perm = unassigned;
      capStart = pos;
    } else if (capId === PCI_CAP_ID_INVALID_VIRT) {
      perm = virtPerms;
      capStart = pos;
    } else if (pos >= PCI_CFG_SPACE_SIZE) {
      perm = directRo;
      capStart = this.findCapStart(pos);
    } else {
      perm = capId === PCI_CAP_ID_BASIC ? basicPerms : capId === PCI_CAP_ID_MSI ? this.msiPerm! : capId === PCI_CAP_ID_EXP ? expPerms : directRo;
      if (capId > PCI_CAP_ID_BASIC) capStart = this.findCapStart(pos);
    }
    const offset = pos - capStart;
    if (write) {
      if (!perm.writefn) return count;
      perm.writefn(this, pos, count, perm, offset, bytes(buf, at, count));
    } else {
      const val = perm.readfn ? perm.readfn(this, pos, count, perm, offset) : 0;
      setBytes(buf, at, count, val);
    }
    return count;
  }

  private capRemainingDword(pos: number): number {
    const cap = this.map[pos];
    let i = 1;
    while ((pos + i) % 4 && this.map[pos + i] === cap) i++;
    return i;
  }

  private findCapStart(pos: number): number {
    const cap = this.map[pos];
    if (cap === PCI_CAP_ID_BASIC) return 0;
    const base = pos >= PCI_CFG_SPACE_SIZE ? PCI_CFG_SPACE_SIZE : PCI_STD_HEADER_SIZEOF;
    while (pos - 1 >= base && this.map[pos - 1] === cap) pos--;
    return pos;
  }

  /** vfio_msi_config_read/write hooks, with the host's irq state. */
  msiFlagsRead(pos: number, count: number, offset: number): void {
    if (offset <= PCI_MSI_FLAGS && offset + count >= PCI_MSI_FLAGS) {
      const at = this.findCapStart(pos) + PCI_MSI_FLAGS;
      setBytes(this.vconfig, at, 2, (bytes(this.vconfig, at, 2) & ~PCI_MSI_FLAGS_QMASK) | (this.host.msiQmax << 1));
    }
  }

  msiFlagsWrite(pos: number, count: number, offset: number): void {
    if (!(offset <= PCI_MSI_FLAGS && offset + count >= PCI_MSI_FLAGS)) return;
    const start = this.findCapStart(pos);
    let flags = bytes(this.vconfig, start + PCI_MSI_FLAGS, 2);
    if (this.host.irqType !== 1) flags &= ~PCI_MSI_FLAGS_ENABLE;
    if ((flags & PCI_MSI_FLAGS_QSIZE) >> 4 > this.host.msiQmax) flags = (flags & ~PCI_MSI_FLAGS_QSIZE) | (this.host.msiQmax << 4);
    setBytes(this.vconfig, start + PCI_MSI_FLAGS, 2, flags);
    this.host.fn.cfgWrite(start + PCI_MSI_FLAGS, 2, flags);
  }
}

/** init_pci_cap_msi_perm */
function msiPerms(len: number, flags: number): PermBits {
  const p = new PermBits(len, (cfg, pos, count, perm, offset) => {
    cfg.msiFlagsRead(pos, count, offset);
    return defaultRead(cfg, pos, count, perm, offset);
  }, (cfg, pos, count, perm, offset, val) => {
    defaultWrite(cfg, pos, count, perm, offset, val);
    cfg.msiFlagsWrite(pos, count, offset);
  });
  p.setb(1, 0xff, 0);
  p.setb(PCI_MSI_FLAGS, 0xff, 0xff);
  p.setd(4, ALL, ALL);
  if (flags & PCI_MSI_FLAGS_64BIT) {
    p.setd(8, ALL, ALL);
    p.setw(12, 0xffff, 0xffff);
    if (flags & PCI_MSI_FLAGS_MASKBIT) {
      p.setd(16, 0, ALL);
      p.setd(20, 0, ALL);
    }
  } else {
    p.setw(8, 0xffff, 0xffff);
    if (flags & PCI_MSI_FLAGS_MASKBIT) {
      p.setd(12, 0, ALL);
      p.setd(16, 0, ALL);
    }
  }
  return p;
}
