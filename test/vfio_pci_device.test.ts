/**
 * Port of the kernel's tools/testing/selftests/vfio/vfio_pci_device_test.c (linux-source-7.3): the
 * config space, BAR, reset and IRQ tests. The C runs them in its default mode (iommufd); here each
 * fixture runs in all six modes, since a device opened through a container must answer the same.
 *
 * What edu has decides what runs: one MSI vector, no MSI-X (the C skips the msix variant when the
 * count is 0), INTx (which libvfio's irq helpers do not take; the intx variant is this port's
 * addition, marked so), and no function reset (the C skips `reset` without VFIO_DEVICE_FLAGS_RESET;
 * this port also asserts the kernel's answer to VFIO_DEVICE_RESET then, EINVAL).
 */
import { describe, expect, it } from 'vitest';
import { VFIO_PCI_INTX_IRQ_INDEX, VFIO_PCI_MSIX_IRQ_INDEX, VFIO_PCI_MSI_IRQ_INDEX, VFIO_REGION_INFO_FLAG_MMAP } from '../src/device/uapi.js';
import { MAP_SHARED, PROT_READ, PROT_WRITE } from '../src/backends/types.js';
import { IommuSession, iommuMode } from '../src/migration/modes.js';
import { expectErrno } from './helpers.js';
import { MODES, deviceBdf, title, useVfio } from './libvfio.js';

const PCI_VENDOR_ID = 0x00;
const PCI_DEVICE_ID = 0x02;
const PCI_COMMAND = 0x04;
const PCI_COMMAND_MASTER = 0x4;
/** MAX_TEST_MSI: at most this many vectors per test, whatever the device has. */
const MAX_TEST_MSI = 16;

for (const { name: mode, skip } of MODES) {
  describe.skipIf(!!skip)(title('vfio_pci_device_test', mode, skip), () => {
    const f = useVfio(mode);

    /** read_pci_id_from_sysfs */
    const readPciIdFromSysfs = (file: string): number =>
      Number(f.iommu.binding.readText(`/sys/bus/pci/devices/${deviceBdf}/${file}`).trim()) & 0xffff;

    it('config_space_read_write', () => {
      // Check that Vendor and Device match what the kernel reports.
      const vendor = readPciIdFromSysfs('vendor');
      const device = readPciIdFromSysfs('device');
      // vfio_pci_device_match
      expect([f.device.configReadw(PCI_VENDOR_ID), f.device.configReadw(PCI_DEVICE_ID)]).toEqual([vendor, device]);

      let command = f.device.configReadw(PCI_COMMAND);
      expect(command & PCI_COMMAND_MASTER).toBe(0);

      f.device.configWritew(PCI_COMMAND, command | PCI_COMMAND_MASTER);
      command = f.device.configReadw(PCI_COMMAND);
      expect(command & PCI_COMMAND_MASTER).toBe(PCI_COMMAND_MASTER);

      f.device.configWritew(PCI_COMMAND, command & ~PCI_COMMAND_MASTER);
      command = f.device.configReadw(PCI_COMMAND);
      expect(command & PCI_COMMAND_MASTER).toBe(0);
    });

    it('validate_bars: every BAR with the MMAP flag was mmapped by device init (edu: BAR0), the others not', () => {
      for (const bar of f.device.bars) {
        if (!(bar.info.flags & VFIO_REGION_INFO_FLAG_MMAP)) {
          expect(bar.vaddr).toBeNull();
          continue;
        }
        // BARs that support mmap() should be automatically mapped by vfio_pci_device_init().
        expect(bar.vaddr).not.toBeNull();
        expect(bar.info.size).not.toBe(0n);
      }
      // Not in the C: the loop above must have seen a mappable BAR, as the kernel reports edu's BAR0.
      expect(f.device.bars[0]!.vaddr).not.toBeNull();
    });

    it('reset (skips when the device reports no VFIO_DEVICE_FLAGS_RESET, as the C does: edu has no function reset)', (ctx) => {
      if (!f.device.info.reset) ctx.skip();
      f.device.reset();
    });

    it('reset without VFIO_DEVICE_FLAGS_RESET: VFIO_DEVICE_RESET EINVAL (not in the C)', () => {
      expect(f.device.info.reset).toBe(false);
      expectErrno(() => f.device.reset(), 'EINVAL');
    });
  });

  describe.skipIf(!!skip)(title('BAR mmap lifetime (not in the C)', mode, skip), () => {
    const f = useVfio(mode);
    // A legacy container's device fd holds its group file (vfio_group_use_container), so the group
    // cannot be opened again (EBUSY); with an iommufd as the container it does not, the group opens,
    // but the still-bound device keeps the group's DMA ownership: not VIABLE (libvfio's assert, EPERM
    // here); through the cdev, the device is still open and a cdev opens it only once (vfio_df_open EINVAL).
    const compat = iommuMode(mode).compat;
    const busy = compat === 'type1' ? 'EBUSY' : compat === 'kernel-compat' ? 'EPERM' : 'EINVAL';

    it(`a BAR mapping holds the device open after every fd is closed: opening it again fails ${busy} until munmap`, () => {
      const b = f.iommu.binding;
      const bar = f.device.bars[0]!;
      const vaddr = b.mmap(0n, Number(bar.info.size), PROT_READ | PROT_WRITE, MAP_SHARED, f.device.fd.fd, Number(bar.info.offset));
      f.device.cleanup();
      f.iommu.cleanup();
      {
        using again = IommuSession.init(mode, b);
        expectErrno(() => again.openDevice(deviceBdf!), busy);
      }
      b.munmap(vaddr, Number(bar.info.size));
      using again = IommuSession.init(mode, b);
      expect(again.openDevice(deviceBdf!).info().pci).toBe(true);
    });
  });

  describe.skipIf(!!skip)(title('vfio_pci_irq_test', mode, skip), () => {
    const f = useVfio(mode);
    const variants = [
      { name: 'msi', index: VFIO_PCI_MSI_IRQ_INDEX, note: '' },
      { name: 'msix', index: VFIO_PCI_MSIX_IRQ_INDEX, note: ' (skips when the device has no MSI-X, as the C does: edu has none)' },
      { name: 'intx', index: VFIO_PCI_INTX_IRQ_INDEX, note: ' (not in the C: libvfio takes only MSI and MSI-X)' },
    ];
    for (const variant of variants) {
      it(`enable_trigger_disable [${variant.name}]${variant.note}`, (ctx) => {
        const info = variant.index === VFIO_PCI_MSIX_IRQ_INDEX ? f.device.msixInfo
          : variant.index === VFIO_PCI_MSI_IRQ_INDEX ? f.device.msiInfo : f.device.fd.irqInfo(variant.index);
        const count = Math.min(info.count, MAX_TEST_MSI);
        if (!count) ctx.skip();

        f.device.irqEnable(variant.index, 0, count);
        for (let i = 0; i < count; i++) {
          const eventfd = f.device.msiEventfds[i]!;
          // non-blocking: nothing yet (EAGAIN)
          expect(eventfd.read()).toBe(0n);
          f.device.irqTrigger(variant.index, i);
          expect(eventfd.read()).toBe(1n);
        }
        f.device.irqDisable(variant.index);
      });
    }
  });
}
