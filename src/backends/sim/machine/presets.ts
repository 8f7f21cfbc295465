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
 * - `q35Host`: a host whose devices the host itself uses, to test what must not be taken from it
 *   (src/device/host_use.ts): the boot VGA device, a disk with the root file system and swap, a
 *   disk under device-mapper, network interfaces up and down, a PCI serial port that is the
 *   console, an edu sharing an IOMMU group with an interface that is up, a free edu and a free
 *   disk, and NVMe namespaces with native multipath (one path, two paths). Its kernel has vfio-pci
 *   built in, as a module that is not loaded, or not at all.
 * - `mockOnly`: no hardware IOMMU and no PCI devices: only the selftest's mock IOMMU.
 *
 * Each also describes the kernel it boots and the firmware's ACPI tables (kernels.ts), which
 * `ioasid doctor --machine NAME` reads.
 */
import { Edu } from '../hw/edu.js';
import type { HostMount } from '../kernel/host.js';
import type { MachineDesc } from './machine.js';
import { PCI_ACS, REQ_ACS_FLAGS, type PciModel } from '../hw/pci.js';
import { PciFunction, type PciFunctionSpec } from '../hw/pci_function.js';
import { ARM64_ACPI_TABLES, arm64Kernel, q35HostKernel, testVmKernel, withVfioBuild } from './kernels.js';
import { nvme } from '../hw/nvme.js';
import { virtio9p, virtioBlk, virtioNet } from '../hw/virtio.js';

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
export { nvme, virtio9p, virtioBlk, virtioNet };
/** QEMU's std VGA (1234:1111): a 16 MiB framebuffer BAR and a 4 KiB register BAR. */
export const stdVga = fixed({
  vendor: 0x1234, device: 0x1111, classCode: 0x030000, revision: 2, ...QEMU_SUBSYS,
  bars: [{ index: 0, size: 16 << 20, type: 'mem32', prefetchable: true }, { index: 2, size: 4096, type: 'mem32' }],
});
/** QEMU's pci-serial (1b36:0002): one 16550A port. */
export const pciSerial = fixed({
  vendor: 0x1b36, device: 0x0002, classCode: 0x070002, revision: 1, interruptPin: 1, ...QEMU_SUBSYS,
  bars: [{ index: 0, size: 8, type: 'io' }],
});
/** QEMU's pcie-pci-bridge (1b36:000e): a PCIe-to-PCI bridge with a 256-byte SHPC BAR and MSI. */
export const pciePciBridge = fixed({
  vendor: 0x1b36, device: 0x000e, classCode: 0x060400, headerType: 1, interruptPin: 1,
  bars: [{ index: 0, size: 256, type: 'mem64' }], msi: { vectors: 1 },
});
/** QEMU's pcie-root-port (1b36:000c). */
export const pcieRootPort = fixed({ vendor: 0x1b36, device: 0x000c, classCode: 0x060400, headerType: 1, interruptPin: 1, msi: { vectors: 1 } });

/** The pseudo file systems every host mounts. */
const PROC_AND_SYSFS: readonly HostMount[] = [
  { source: 'proc', target: '/proc', fstype: 'proc' },
  { source: 'sysfs', target: '/sys', fstype: 'sysfs' },
];

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
      { slot: 3, kind: 'pci', model: virtio9p('hostroot'), driver: 'virtio-pci', irq: 23 },
      { slot: 4, kind: 'pci', model: virtio9p('results'), driver: 'virtio-pci', irq: 20 },
      { slot: 0x1f, fn: 0, kind: 'pci', model: ich9Lpc, irq: 0 },
      { slot: 0x1f, fn: 2, kind: 'pci', model: ich9Ahci, irq: 10 },
      { slot: 0x1f, fn: 3, kind: 'pci', model: ich9Smbus, irq: 10 },
    ],
    // what the VM's guest-init does before any test runs
    vfioPci: ['0000:00:01.0', '0000:01:01.0', '0000:01:02.0'],
    // and the file systems it mounts (scripts/vm/guest-init.sh; test/host-safety.vm-probe.txt)
    host: {
      mounts: [
        { source: 'hostroot', target: '/', fstype: '9p' },
        { source: 'devtmpfs', target: '/dev', fstype: 'devtmpfs' },
        ...PROC_AND_SYSFS,
        { source: 'tmpfs', target: '/run', fstype: 'tmpfs' },
        { source: 'results', target: '/run/results', fstype: '9p' },
        { source: 'hostroot', target: '/run/hosttmp', fstype: '9p', root: '/tmp' },
        { source: 'tmpfs', target: '/tmp', fstype: 'tmpfs' },
        { source: 'tmpfs', target: '/dev/shm', fstype: 'tmpfs' },
        { source: 'debugfs', target: '/sys/kernel/debug', fstype: 'debugfs' },
      ],
    },
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
 * A host using its devices (see the file comment). `vfioPci`: how its kernel has vfio-pci
 * ('y' built in, default; 'm' an unloaded module; 'n' not at all).
 *
 * | BDF | function | driver | what the host does with it |
 * |---|---|---|---|
 * | 00:01.0 | std VGA | | boot VGA |
 * | 00:02.0 | virtio-blk | virtio-pci | vda1 mounted on /, vda2 swap |
 * | 00:03.0 | virtio-blk | virtio-pci | vdb1 under dm-0, mounted on /home |
 * | 00:04.0 | virtio-net | virtio-pci | eth0 up |
 * | 00:05.0 | virtio-net | virtio-pci | eth1 down |
 * | 00:06.0 | pci-serial | serial | ttyS4, the console |
 * | 00:07.0, 00:07.1 | virtio-net, edu (one group: conventional PCI) | virtio-pci, none | eth2 up |
 * | 00:08.0 | edu | | |
 * | 00:09.0 | virtio-blk | virtio-pci | vdc, unused |
 * | 00:0a.0 | NVMe, multi-controller subsystem | nvme | nvme0n1p1 (a multipath head, one path) mounted on /var |
 * | 00:0b.0, 00:0c.0 | NVMe, two controllers of one subsystem | nvme | nvme1n1p1 (two paths) mounted on /srv |
 */
export function q35Host(opts: { readonly vfioPci?: 'y' | 'm' | 'n' } = {}): MachineDesc {
  const GiB = 2 * 1024 * 1024;
  const dualPorted = { nqn: 'nqn.2019-08.org.qemu:shared', multiController: true, namespaces: [{ nsid: 1, sectors: 2 * GiB, partitions: [GiB] }] };
  return {
    name: 'q35Host',
    iommu: { kind: 'vtd' },
    kernel: q35HostKernel(opts.vfioPci),
    pci: [
      { slot: 0, kind: 'pci', model: q35HostBridge },
      { slot: 1, kind: 'pci', model: stdVga },
      { slot: 2, kind: 'pci', model: virtioBlk({ sectors: 16 * GiB, partitions: [14 * GiB, GiB] }), driver: 'virtio-pci' },
      { slot: 3, kind: 'pci', model: virtioBlk({ sectors: 8 * GiB, partitions: [7 * GiB] }), driver: 'virtio-pci' },
      { slot: 4, kind: 'pci', model: virtioNet('52:54:00:12:34:56'), driver: 'virtio-pci' },
      { slot: 5, kind: 'pci', model: virtioNet('52:54:00:12:34:57'), driver: 'virtio-pci' },
      { slot: 6, kind: 'pci', model: pciSerial, driver: 'serial' },
      { slot: 7, fn: 0, kind: 'pci', model: virtioNet('52:54:00:12:34:58'), driver: 'virtio-pci' },
      { slot: 7, fn: 1, kind: 'pci', model: edu },
      { slot: 8, kind: 'pci', model: edu },
      { slot: 9, kind: 'pci', model: virtioBlk({ sectors: GiB }), driver: 'virtio-pci' },
      { slot: 10, kind: 'pci', model: nvme({ nqn: 'nqn.2019-08.org.qemu:var', multiController: true, namespaces: [{ nsid: 1, sectors: 4 * GiB, partitions: [3 * GiB] }] }), driver: 'nvme' },
      { slot: 11, kind: 'pci', model: nvme(dualPorted), driver: 'nvme' },
      { slot: 12, kind: 'pci', model: nvme(dualPorted), driver: 'nvme' },
    ],
    host: {
      dm: [['vdb1']],
      mounts: [
        { source: 'vda1', target: '/', fstype: 'ext4' },
        ...PROC_AND_SYSFS,
        { source: 'dm-0', target: '/home', fstype: 'ext4' },
        { source: 'nvme0n1p1', target: '/var', fstype: 'xfs' },
        { source: 'nvme1n1p1', target: '/srv', fstype: 'xfs' },
      ],
      swaps: ['vda2'],
      up: ['eth0', 'eth2'],
    },
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
  q35Edu, q35EduBare, q35EduIommufdContainer, q35EduCdevOnly, q35Host, smmuv3Platform, mockOnly,
};

/**
 * The preset called `name`; a RangeError listing the valid names for anything else (`source` says
 * where the name came from, for the message).
 */
export function machinePreset(name: string, source = 'machine'): () => MachineDesc {
  const preset = Object.hasOwn(MACHINES, name) ? MACHINES[name] : undefined;
  if (!preset) throw new RangeError(`${source} ${JSON.stringify(name)} is not a machine preset: valid names are ${Object.keys(MACHINES).join(', ')}`);
  return preset;
}
