/**
 * The VGA arbiter's default device (drivers/pci/vgaarb.c vga_is_boot_device), what sysfs shows as
 * `boot_vga` = 1. Without firmware framebuffers or the integrated-GPU preference: the first VGA
 * function that owns the legacy VGA resources (IO and MEMORY decoding on, on the root bus, so no
 * bridge has to forward them), else the first with IO or MEMORY decoding on.
 */
import { PCI_COMMAND_IO, PCI_COMMAND_MEMORY } from '../hw/pci_function.js';
import type { PciDevice } from './pci_device.js';

export function vgaDefaultDevice(devices: readonly PciDevice[]): PciDevice | null {
  const vga = devices.filter((d) => d.fn.isVga);
  const on = (d: PciDevice, bits: number): boolean => (d.fn.command & bits) !== 0;
  return vga.find((d) => d.node.bus.isRoot && on(d, PCI_COMMAND_IO) && on(d, PCI_COMMAND_MEMORY))
    ?? vga.find((d) => on(d, PCI_COMMAND_IO | PCI_COMMAND_MEMORY)) ?? null;
}
