/**
 * vfio-pci's interrupt plumbing (drivers/vfio/pci/vfio_pci_intrs.c): IOC.SET_IRQS.request for
 * INTx (trigger, mask, unmask; automasked on delivery with the device's INTx disable bit, as
 * pci_check_and_mask_intx does), MSI (one eventfd per vector; enabling programs the function's MSI
 * capability), and the error / request eventfds; DATA_NONE / DATA_BOOL triggers loop back.
 * It is also the host's interrupt handler for the function (PciFunction.irqSink).
 */
import { ERRNO } from '../../../ioasid/errors.js';
import { kerr } from '../kernel/errno.js';
import type { SimFile } from '../kernel/process.js';
import {
  PCI_COMMAND, PCI_COMMAND_INTX_DISABLE, PCI_MSI_ADDRESS_LO, PCI_MSI_FLAGS, PCI_MSI_FLAGS_64BIT, PCI_MSI_FLAGS_ENABLE,
  PCI_MSI_FLAGS_QSIZE, PCI_STATUS, PCI_STATUS_INTERRUPT, type IrqSink, type PciFunction,
} from '../hw/pci_function.js';
import {
  VFIO_IRQ_SET_ACTION_MASK, VFIO_IRQ_SET_ACTION_TRIGGER,
  VFIO_IRQ_SET_ACTION_TYPE_MASK, VFIO_IRQ_SET_ACTION_UNMASK, VFIO_IRQ_SET_DATA_BOOL,
  VFIO_IRQ_SET_DATA_EVENTFD, VFIO_IRQ_SET_DATA_NONE, VFIO_PCI_ERR_IRQ_INDEX, VFIO_PCI_INTX_IRQ_INDEX,
  VFIO_PCI_MSI_IRQ_INDEX, VFIO_PCI_MSIX_IRQ_INDEX, VFIO_PCI_NUM_IRQS, VFIO_PCI_REQ_IRQ_INDEX,
} from '../../../device/uapi.js';

/** What an eventfd offers the kernel: eventfd_signal, and eventfd_ctx_put when the reference goes. */
export interface EventfdCtx extends SimFile {
  readonly kind: 'eventfd';
  signal(): void;
  put?(): void;
}

/** eventfd_ctx_put: the reference eventfdCtxFdget took goes. */
function eventfdCtxPut(ctx: EventfdCtx | null | undefined): void {
  ctx?.put?.();
}

/** eventfd_ctx_fdget: EBADF for a closed descriptor, EINVAL for a file that is not an eventfd. */
export function eventfdCtxFdget(lookup: (fd: number) => SimFile | undefined, fd: number): EventfdCtx {
  const f = lookup(fd);
  if (!f) kerr(ERRNO.EBADF);
  if (f.kind !== 'eventfd' || typeof (f as Partial<EventfdCtx>).signal !== 'function') kerr(ERRNO.EINVAL);
  return f as EventfdCtx;
}

interface IntxCtx {
  trigger: EventfdCtx | null;
  masked: boolean;
}

export class VfioPciIrqs implements IrqSink {
  /** VFIO_PCI_*_IRQ_INDEX in use, or VFIO_PCI_NUM_IRQS for none. */
  irqType = VFIO_PCI_NUM_IRQS;
  /** The user's INTx disable bit (virtual command register). */
  virqDisabled = false;
  msiQmax = 0;
  private intxCtx: IntxCtx | null = null;
  private readonly msiCtx = new Map<number, EventfdCtx>();
  private errTrigger: EventfdCtx | null = null;
  reqTrigger: EventfdCtx | null = null;
  /** PCI 2.3 INTx masking through the command register (QEMU's functions have it). */
  readonly pci23 = true;

  constructor(
    readonly fn: PciFunction,
    private readonly lookup: (fd: number) => SimFile | undefined,
  ) {}

  // ---- the host's interrupt handlers -----------------------------------------------------------

  /** vfio_intx_handler: on assertion, mask at the device (if it is ours) and signal. */
  intx(asserted: boolean): void {
    if (!asserted || this.irqType !== VFIO_PCI_INTX_IRQ_INDEX) return;
    const ctx = this.intxCtx!;
    if (!ctx.masked && this.checkAndSetIntxMask(true)) {
      ctx.masked = true;
      this.sendIntx();
    }
  }

  /** vfio_msihandler */
  msi(vector: number): void {
    if (this.irqType !== VFIO_PCI_MSI_IRQ_INDEX) return;
    this.msiCtx.get(vector)?.signal();
  }

  /** vfio_send_intx_eventfd */
  private sendIntx(): void {
    if (this.irqType === VFIO_PCI_INTX_IRQ_INDEX && !this.virqDisabled) this.intxCtx?.trigger?.signal();
  }

  /** pci_check_and_mask_intx / pci_check_and_unmask_intx: change INTx disable only if the pending state agrees. */
  private checkAndSetIntxMask(mask: boolean): boolean {
    const pending = (this.fn.cfgRead(PCI_STATUS, 2) & PCI_STATUS_INTERRUPT) !== 0;
    if (mask !== pending) return false;
    this.pciIntx(!mask);
    return true;
  }

  /** pci_intx(pdev, enable): the INTx disable bit of the real command register. */
  private pciIntx(enable: boolean): void {
    const cmd = this.fn.cfgRead(PCI_COMMAND, 2);
    const want = enable ? cmd & ~PCI_COMMAND_INTX_DISABLE : cmd | PCI_COMMAND_INTX_DISABLE;
    if (want !== cmd) this.fn.cfgWrite(PCI_COMMAND, 2, want);
  }

  /** __vfio_pci_intx_mask */
  intxMask(): void {
    if (this.irqType !== VFIO_PCI_INTX_IRQ_INDEX) {
      if (this.pci23) this.pciIntx(false);
      return;
    }
    if (!this.intxCtx!.masked) {
      this.pciIntx(false);
      this.intxCtx!.masked = true;
    }
  }

  /** __vfio_pci_intx_unmask: unmask unless an interrupt is already pending, which is re-sent instead. */
  intxUnmask(): void {
    if (this.irqType !== VFIO_PCI_INTX_IRQ_INDEX) {
      if (this.pci23) this.pciIntx(true);
      return;
    }
    const ctx = this.intxCtx!;
    if (ctx.masked && !this.virqDisabled) {
      const resend = !this.checkAndSetIntxMask(false);
      ctx.masked = resend;
      if (resend) this.sendIntx();
    }
  }

  // ---- IOC.SET_IRQS.request ---------------------------------------------------------------------

  /** vfio_pci_set_irqs_ioctl: dispatch on index and action; `data` holds count u8 or s32 entries. */
  setIrqs(flags: number, index: number, start: number, count: number, data: Uint8Array | null): void {
    const action = flags & VFIO_IRQ_SET_ACTION_TYPE_MASK;
    switch (index) {
      case VFIO_PCI_INTX_IRQ_INDEX:
        if (action === VFIO_IRQ_SET_ACTION_MASK) return this.setIntxMask(start, count, flags, data);
        if (action === VFIO_IRQ_SET_ACTION_UNMASK) return this.setIntxUnmask(start, count, flags, data);
        if (action === VFIO_IRQ_SET_ACTION_TRIGGER) return this.setIntxTrigger(start, count, flags, data);
        break;
      case VFIO_PCI_MSI_IRQ_INDEX:
      case VFIO_PCI_MSIX_IRQ_INDEX:
        if (action === VFIO_IRQ_SET_ACTION_TRIGGER) return this.setMsiTrigger(index, start, count, flags, data);
        break;
      case VFIO_PCI_ERR_IRQ_INDEX:
      case VFIO_PCI_REQ_IRQ_INDEX:
        if (action === VFIO_IRQ_SET_ACTION_TRIGGER) {
          if (start !== 0 || count > 1) kerr(ERRNO.EINVAL);
          return this.setTriggerSingle(index, count, flags, data);
        }
        break;
    }
    kerr(ERRNO.ENOTTY);
  }

  private setIntxUnmask(start: number, count: number, flags: number, data: Uint8Array | null): void {
    if (this.irqType !== VFIO_PCI_INTX_IRQ_INDEX || start !== 0 || count !== 1) kerr(ERRNO.EINVAL);
    if (flags & VFIO_IRQ_SET_DATA_NONE) this.intxUnmask();
    else if (flags & VFIO_IRQ_SET_DATA_BOOL) {
      if (data![0]) this.intxUnmask();
    } else if (flags & VFIO_IRQ_SET_DATA_EVENTFD) {
      // An unmask irqfd: not modelled; the kernel would unmask whenever that eventfd is signalled.
      kerr(ERRNO.ENOTTY);
    }
  }

  private setIntxMask(start: number, count: number, flags: number, data: Uint8Array | null): void {
    if (this.irqType !== VFIO_PCI_INTX_IRQ_INDEX || start !== 0 || count !== 1) kerr(ERRNO.EINVAL);
    if (flags & VFIO_IRQ_SET_DATA_NONE) this.intxMask();
    else if (flags & VFIO_IRQ_SET_DATA_BOOL) {
      if (data![0]) this.intxMask();
    } else if (flags & VFIO_IRQ_SET_DATA_EVENTFD) kerr(ERRNO.ENOTTY);
  }

  private setIntxTrigger(start: number, count: number, flags: number, data: Uint8Array | null): void {
    const isIntx = this.irqType === VFIO_PCI_INTX_IRQ_INDEX;
    if (isIntx && !count && flags & VFIO_IRQ_SET_DATA_NONE) return this.intxDisable();
    if (!(isIntx || this.irqType === VFIO_PCI_NUM_IRQS) || start !== 0 || count !== 1) kerr(ERRNO.EINVAL);
    if (flags & VFIO_IRQ_SET_DATA_EVENTFD) {
      const fd = s32(data!, 0);
      const trigger = fd >= 0 ? eventfdCtxFdget(this.lookup, fd) : null;
      if (isIntx) {
        eventfdCtxPut(this.intxCtx!.trigger);
        this.intxCtx!.trigger = trigger;
        return;
      }
      try {
        this.intxEnable(trigger);
      } catch (e) {
        // vfio_pci_set_intx_trigger: `if (ret && trigger) eventfd_ctx_put(trigger)`
        eventfdCtxPut(trigger);
        throw e;
      }
      return;
    }
    if (!isIntx) kerr(ERRNO.EINVAL);
    if (flags & VFIO_IRQ_SET_DATA_NONE) this.sendIntx();
    else if (flags & VFIO_IRQ_SET_DATA_BOOL && data![0]) this.sendIntx();
  }

  /** vfio_intx_enable: the initial mask follows the user's INTx disable bit. */
  private intxEnable(trigger: EventfdCtx | null): void {
    if (this.irqType !== VFIO_PCI_NUM_IRQS) kerr(ERRNO.EINVAL);
    if (!this.fn.config[0x3d]) kerr(ERRNO.ENODEV);
    this.intxCtx = { trigger, masked: this.virqDisabled };
    this.irqType = VFIO_PCI_INTX_IRQ_INDEX;
    this.pciIntx(!this.intxCtx.masked);
    // A level interrupt already pending fires as soon as the handler is installed.
    if (!this.intxCtx.masked && this.fn.intxPending) this.intx(true);
  }

  private intxDisable(): void {
    eventfdCtxPut(this.intxCtx?.trigger);
    this.intxCtx = null;
    this.irqType = VFIO_PCI_NUM_IRQS;
  }

  private setMsiTrigger(index: number, start: number, count: number, flags: number, data: Uint8Array | null): void {
    const msix = index === VFIO_PCI_MSIX_IRQ_INDEX;
    if (this.irqType === index && !count && flags & VFIO_IRQ_SET_DATA_NONE) return this.msiDisable();
    if (!(this.irqType === index || this.irqType === VFIO_PCI_NUM_IRQS)) kerr(ERRNO.EINVAL);
    if (flags & VFIO_IRQ_SET_DATA_EVENTFD) {
      if (this.irqType === index) return this.msiSetBlock(start, count, data!);
      if (msix) kerr(ERRNO.EINVAL); // no function here has MSI-X (the count check refused it already)
      this.msiEnable(start + count);
      try {
        this.msiSetBlock(start, count, data!);
      } catch (e) {
        this.msiDisable();
        throw e;
      }
      return;
    }
    if (this.irqType !== index) kerr(ERRNO.EINVAL);
    for (let i = start; i < start + count; i++) {
      const t = this.msiCtx.get(i);
      if (!t) continue;
      if (flags & VFIO_IRQ_SET_DATA_NONE) t.signal();
      else if (flags & VFIO_IRQ_SET_DATA_BOOL && data![i - start]) t.signal();
    }
  }

  /** vfio_msi_enable: pci_alloc_irq_vectors programs the capability (address, data, vectors, enable). */
  private msiEnable(nvec: number): void {
    if (this.irqType !== VFIO_PCI_NUM_IRQS) kerr(ERRNO.EINVAL);
    const cap = this.fn.msiCap;
    const log2 = Math.ceil(Math.log2(nvec));
    const flags = this.fn.cfgRead(cap + PCI_MSI_FLAGS, 2);
    this.writeMsiMsg(0xfee0_0000 | 0x2d8, 0);
    this.fn.cfgWrite(cap + PCI_MSI_FLAGS, 2, (flags & ~PCI_MSI_FLAGS_QSIZE) | (log2 << 4) | PCI_MSI_FLAGS_ENABLE);
    this.irqType = VFIO_PCI_MSI_IRQ_INDEX;
    this.msiQmax = Math.ceil(Math.log2(nvec * 2)) - 1;
  }

  /** vfio_msi_set_block: on a failure every vector set so far (including the failed one) is released. */
  private msiSetBlock(start: number, count: number, data: Uint8Array): void {
    let j = start;
    try {
      for (let i = 0; i < count; i++, j++) this.msiSetVectorSignal(j, s32(data, 4 * i));
    } catch (e) {
      for (let i = start; i <= j; i++) this.msiSetVectorSignal(i, -1);
      throw e;
    }
  }

  private msiSetVectorSignal(vector: number, fd: number): void {
    eventfdCtxPut(this.msiCtx.get(vector));
    this.msiCtx.delete(vector);
    if (fd < 0) return;
    this.msiCtx.set(vector, eventfdCtxFdget(this.lookup, fd));
  }

  /**
   * vfio_msi_disable: vectors released, the capability disabled (pci_msi_shutdown), and the freed
   * vector's message zeroed (msi_domain_deactivate writes an all-zero message).
   */
  private msiDisable(): void {
    for (const ctx of this.msiCtx.values()) eventfdCtxPut(ctx);
    this.msiCtx.clear();
    const cap = this.fn.msiCap;
    if (cap) {
      this.fn.cfgWrite(cap + PCI_MSI_FLAGS, 2, this.fn.cfgRead(cap + PCI_MSI_FLAGS, 2) & ~PCI_MSI_FLAGS_ENABLE);
      this.writeMsiMsg(0, 0);
    }
    this.irqType = VFIO_PCI_NUM_IRQS;
  }

  /** irq_chip_write_msi_msg: the address (high half 0) and data the capability sends. */
  private writeMsiMsg(address: number, data: number): void {
    const cap = this.fn.msiCap;
    const is64 = this.fn.cfgRead(cap + PCI_MSI_FLAGS, 2) & PCI_MSI_FLAGS_64BIT;
    this.fn.cfgWrite(cap + PCI_MSI_ADDRESS_LO, 4, address);
    if (is64) this.fn.cfgWrite(cap + PCI_MSI_ADDRESS_LO + 4, 4, 0);
    this.fn.cfgWrite(cap + (is64 ? 12 : 8), 2, data);
  }

  /** vfio_pci_set_ctx_trigger_single for the error and request eventfds. */
  private setTriggerSingle(index: number, count: number, flags: number, data: Uint8Array | null): void {
    const get = (): EventfdCtx | null => (index === VFIO_PCI_ERR_IRQ_INDEX ? this.errTrigger : this.reqTrigger);
    const set = (t: EventfdCtx | null): void => {
      eventfdCtxPut(get());
      if (index === VFIO_PCI_ERR_IRQ_INDEX) this.errTrigger = t;
      else this.reqTrigger = t;
    };
    if (flags & VFIO_IRQ_SET_DATA_NONE) {
      const t = get();
      if (!t) kerr(ERRNO.EINVAL);
      if (count) t.signal();
      else set(null);
      return;
    }
    if (flags & VFIO_IRQ_SET_DATA_BOOL) {
      if (!count) kerr(ERRNO.EINVAL);
      if (data![0]) get()?.signal();
      return;
    }
    if (flags & VFIO_IRQ_SET_DATA_EVENTFD) {
      if (!count) kerr(ERRNO.EINVAL);
      const fd = s32(data!, 0);
      if (fd === -1) return set(null);
      if (fd >= 0) return set(eventfdCtxFdget(this.lookup, fd));
    }
    kerr(ERRNO.EINVAL);
  }

  /** vfio_pci_core_disable: every interrupt off, error and request eventfds dropped. */
  disableAll(): void {
    if (this.irqType === VFIO_PCI_INTX_IRQ_INDEX) this.intxDisable();
    else if (this.irqType === VFIO_PCI_MSI_IRQ_INDEX) this.msiDisable();
    eventfdCtxPut(this.errTrigger);
    eventfdCtxPut(this.reqTrigger);
    this.errTrigger = null;
    this.reqTrigger = null;
    this.virqDisabled = false;
    this.msiQmax = 0;
  }
}

function s32(b: Uint8Array, off: number): number {
  return new DataView(b.buffer, b.byteOffset + off, 4).getInt32(0, true);
}
