/**
 * Ready-made machines.
 *
 * - `q35Edu`: the project's test VM (QEMU 7.2 q35, intel-iommu intremap=on caching-mode=on), with
 *   what that VM really has on its PCI bus (test/sim-machine.vm-probe.txt): the MCH host bridge,
 *   edu at 00:01.0 (group 1, alone), a pcie-pci-bridge at 00:02.0 with two edus at 01:01.0 and
 *   01:02.0 (all three in group 2), the two virtio-9p functions carrying the VM's file systems
 *   (00:03.0, 00:04.0, bound to virtio-pci) and the ICH9 LPC/SATA/SMBus functions at 00:1f.x
 *   (group 5). Once up, the three edus are handed to vfio-pci (driver_override + drivers_probe),
 *   as the VM's guest-init does; `q35EduBare()` leaves them unbound. Its kernel is built like the
 *   VM's, with VFIO groups and the legacy type1 container; `q35EduIommufdContainer()` has
 *   CONFIG_IOMMUFD_VFIO_CONTAINER instead (/dev/vfio/vfio is an iommufd) and `q35EduCdevOnly()`
 *   CONFIG_VFIO_GROUP=n (no /dev/vfio/N, no /dev/vfio/vfio: devices only through their cdevs).
 * - `smmuv3Platform`: an Arm server-like machine behind an SMMUv3: root ports with ACS, a switch
 *   with ACS downstream ports, PCIe edus in their own groups, and a multifunction endpoint
 *   without ACS whose functions share a group.
 * - `mockOnly`: no hardware IOMMU and no PCI devices: only the selftest's mock IOMMU.
 *
 * Each also describes the kernel it boots and the firmware's ACPI tables (kernels.ts), which
 * `ioasid doctor --machine NAME` reads.
 */
import { Edu } from '../hw/edu.js';
import type { MachineDesc } from './machine.js';
import { PCI_ACS, REQ_ACS_FLAGS, type PciModel } from '../hw/pci.js';
import { PciFunction, type PciFunctionSpec } from '../hw/pci_function.js';
import { ARM64_ACPI_TABLES, arm64Kernel, testVmKernel, withVfioBuild } from './kernels.js';

const QEMU_SUBSYS = { subsystemVendor: 0x1af4, subsystemDevice: 0x1100 } as const;

/** A function model from a fixed spec. */
export function fixed(spec: PciFunctionSpec): PciModel {
  return (init) => new PciFunction(spec, init);
}

export const edu: PciModel = (init) => new Edu(init);

/** QEMU's q35 MCH host bridge (8086:29c0). */
export const q35HostBridge = fixed({ vendor: 0x8086, device: 0x29c0, classCode: 0x060000, ...QEMU_SUBSYS });
/** ICH9 LPC (ISA bridge), AHCI and SMBus functions of slot 0x1f. */
export const ich9Lpc = fixed({ vendor: 0x8086, device: 0x2918, classCode: 0x060100, revision: 2, ...QEMU_SUBSYS });
export const ich9Ahci = fixed({
  vendor: 0x8086, device: 0x2922, classCode: 0x010601, revision: 2, interruptPin: 1, ...QEMU_SUBSYS,
  bars: [{ index: 4, size: 32, type: 'io' }, { index: 5, size: 4096, type: 'mem32' }], msi: { vectors: 1, is64: false },
});
export const ich9Smbus = fixed({
  vendor: 0x8086, device: 0x2930, classCode: 0x0c0500, revision: 2, interruptPin: 1, ...QEMU_SUBSYS,
  bars: [{ index: 4, size: 64, type: 'io' }],
});
/** virtio-9p-pci (transitional, 1af4:1009): how the VM reaches its root file system. */
export const virtio9p = fixed({
  vendor: 0x1af4, device: 0x1009, classCode: 0x000200, subsystemVendor: 0x1af4, subsystemDevice: 0x0009, interruptPin: 1,
  bars: [{ index: 0, size: 64, type: 'io' }, { index: 1, size: 4096, type: 'mem32' }, { index: 4, size: 16384, type: 'mem64', prefetchable: true }],
});
/** QEMU's pcie-pci-bridge (1b36:000e): a PCIe-to-PCI bridge with a 256-byte SHPC BAR and MSI. */
export const pciePciBridge = fixed({
  vendor: 0x1b36, device: 0x000e, classCode: 0x060400, headerType: 1, interruptPin: 1,
  bars: [{ index: 0, size: 256, type: 'mem64' }], msi: { vectors: 1 },
});
/** QEMU's pcie-root-port (1b36:000c). */
export const pcieRootPort = fixed({ vendor: 0x1b36, device: 0x000c, classCode: 0x060400, headerType: 1, interruptPin: 1, msi: { vectors: 1 } });

/** The project's VM. */
export function q35Edu(): MachineDesc {
  return {
    name: 'q35Edu',
    iommu: { kind: 'vtd' },
    pci: [
      { slot: 0, kind: 'pci', model: q35HostBridge, irq: 0 },
      { slot: 1, kind: 'pci', model: edu, irq: 10 },
      {
        slot: 2, kind: 'pcie-to-pci', model: pciePciBridge, irq: 11,
        bus: [
          { slot: 1, kind: 'pci', model: edu, irq: 11 },
          { slot: 2, kind: 'pci', model: edu, irq: 10 },
        ],
      },
      { slot: 3, kind: 'pci', model: virtio9p, driver: 'virtio-pci', irq: 23 },
      { slot: 4, kind: 'pci', model: virtio9p, driver: 'virtio-pci', irq: 20 },
      { slot: 0x1f, fn: 0, kind: 'pci', model: ich9Lpc, irq: 0 },
      { slot: 0x1f, fn: 2, kind: 'pci', model: ich9Ahci, irq: 10 },
      { slot: 0x1f, fn: 3, kind: 'pci', model: ich9Smbus, irq: 10 },
    ],
    // what the VM's guest-init does before any test runs
    vfioPci: ['0000:00:01.0', '0000:01:01.0', '0000:01:02.0'],
  };
}

/** The VM's machine before its init script: nothing bound to vfio-pci. */
export function q35EduBare(): MachineDesc {
  return { ...q35Edu(), name: 'q35EduBare', vfioPci: [] };
}

/** The VM's machine with a kernel built with CONFIG_IOMMUFD_VFIO_CONTAINER: /dev/vfio/vfio opens an iommufd. */
export function q35EduIommufdContainer(): MachineDesc {
  const vfio = { container: 'iommufd' } as const;
  return { ...q35Edu(), name: 'q35EduIommufdContainer', vfio, kernel: withVfioBuild(testVmKernel(), vfio) };
}

/** The VM's machine with a kernel built without CONFIG_VFIO_GROUP: no group nodes and no container, only cdevs. */
export function q35EduCdevOnly(): MachineDesc {
  const vfio = { group: false } as const;
  return { ...q35Edu(), name: 'q35EduCdevOnly', vfio, kernel: withVfioBuild(testVmKernel(), vfio) };
}

const ACS_ALL = REQ_ACS_FLAGS | PCI_ACS.TB;

/** An SMMUv3 platform: where ACS decides the groups. */
export function smmuv3Platform(): MachineDesc {
  return {
    name: 'smmuv3Platform',
    iommu: { kind: 'smmuv3' },
    kernel: arm64Kernel(),
    acpiTables: ARM64_ACPI_TABLES,
    pci: [
      { slot: 0, kind: 'pci', model: fixed({ vendor: 0x1b36, device: 0x0008, classCode: 0x060000 }) },
      // Root port with ACS: the PCIe edu behind it is alone in its group.
      { slot: 1, kind: 'root-port', model: pcieRootPort, acs: { caps: ACS_ALL }, driver: 'pcieport', bus: [{ slot: 0, kind: 'endpoint', model: edu }] },
      // Root port with ACS -> switch: downstream ports with ACS isolate each endpoint.
      {
        slot: 2, kind: 'root-port', model: pcieRootPort, acs: { caps: ACS_ALL }, driver: 'pcieport',
        bus: [{
          slot: 0, kind: 'upstream', driver: 'pcieport',
          bus: [
            { slot: 0, kind: 'downstream', acs: { caps: ACS_ALL }, driver: 'pcieport', bus: [{ slot: 0, kind: 'endpoint', model: edu }] },
            { slot: 1, kind: 'downstream', acs: { caps: ACS_ALL }, driver: 'pcieport', bus: [{ slot: 0, kind: 'endpoint', model: edu }] },
          ],
        }],
      },
      // Root port with ACS -> a two-function endpoint without ACS: both functions share a group.
      {
        slot: 3, kind: 'root-port', model: pcieRootPort, acs: { caps: ACS_ALL }, driver: 'pcieport',
        bus: [{ slot: 0, fn: 0, kind: 'endpoint', model: edu }, { slot: 0, fn: 1, kind: 'endpoint', model: edu }],
      },
    ],
  };
}

/**
 * Only the selftest's mock IOMMU (what IOMMU_TEST_OP_MOCK_DOMAIN devices sit behind): the test
 * VM's kernel on a q35 without `-device intel-iommu` (no DMAR) and without PCI devices.
 */
export function mockOnly(): MachineDesc {
  return { name: 'mockOnly', iommu: null, pci: [] };
}

/** Every machine above by name, as `--machine NAME` of the `ioasid` command takes them. */
export const MACHINES: Readonly<Record<string, () => MachineDesc>> = {
  q35Edu, q35EduBare, q35EduIommufdContainer, q35EduCdevOnly, smmuv3Platform, mockOnly,
};
