/**
 * The kernels the preset machines boot: release, command line and the part of the .config that
 * says what the kernel can do with IOMMUs and VFIO (what `ioasid doctor` reads). `testVmKernel` is
 * the project's test VM: the lines are those of scripts/vm/kernel.config (test/cli.test.ts checks
 * that every IOMMU and VFIO line of that fragment is here, unchanged) and the command line is the
 * one scripts/vm/run-in-guest.sh boots with.
 */
import type { KernelDesc } from '../kernel/boot.js';
import type { VfioBuild } from '../vfio/group.js';

/** Options both preset kernels share: built in (no modules), iommufd, VFIO with cdev and legacy. */
const IOMMUFD_VFIO = [
  'CONFIG_IKCONFIG=y', 'CONFIG_IKCONFIG_PROC=y', '# CONFIG_MODULES is not set',
  'CONFIG_PCI=y', 'CONFIG_PCI_MSI=y', 'CONFIG_PCIEPORTBUS=y', 'CONFIG_DEVTMPFS=y', 'CONFIG_DEVTMPFS_MOUNT=y',
  'CONFIG_IOMMU_SUPPORT=y', 'CONFIG_IOMMUFD=y', 'CONFIG_IOMMUFD_TEST=y',
  'CONFIG_VFIO=y', 'CONFIG_VFIO_GROUP=y', 'CONFIG_VFIO_CONTAINER=y', 'CONFIG_VFIO_IOMMU_TYPE1=y',
  'CONFIG_VFIO_DEVICE_CDEV=y', 'CONFIG_VFIO_PCI=y',
];

/** The test VM's kernel (linux-source-7.3 built by scripts/vm/build-kernel.sh). */
export function testVmKernel(): KernelDesc {
  return {
    release: '7.3.4',
    cmdline: 'console=ttyS0 quiet panic=-1 intel_iommu=on root=hostroot rootfstype=9p '
      + 'rootflags=trans=virtio,version=9p2000.L,msize=262144,cache=loose ro init=scripts/vm/guest-init.sh',
    config: ['CONFIG_64BIT=y', 'CONFIG_ACPI=y', ...IOMMUFD_VFIO,
      'CONFIG_INTEL_IOMMU=y', 'CONFIG_INTEL_IOMMU_DEFAULT_ON=y', 'CONFIG_IRQ_REMAP=y', 'CONFIG_IOMMU_PT_AMDV1=y',
      'CONFIG_IOMMU_DEBUGFS=y', 'CONFIG_INTEL_IOMMU_DEBUGFS=y'].join('\n'),
  };
}

/**
 * A kernel's .config lines for a legacy VFIO build (Kconfig: VFIO_CONTAINER and
 * IOMMUFD_VFIO_CONTAINER depend on VFIO_GROUP and exclude each other): replaces the test VM's
 * group and container lines, so the config the doctor reads and the nodes the machine serves agree.
 */
export function withVfioBuild(kernel: KernelDesc, build: VfioBuild): KernelDesc {
  const group = build.group ?? true;
  const container = build.container ?? (group ? 'vfio' : 'none');
  const set = (name: string, on: boolean) => (on ? `CONFIG_${name}=y` : `# CONFIG_${name} is not set`);
  const lines = kernel.config.split('\n').filter((l) => !/CONFIG_(VFIO_GROUP|VFIO_CONTAINER|VFIO_IOMMU_TYPE1|IOMMUFD_VFIO_CONTAINER)[= ]/.test(l));
  lines.push(set('VFIO_GROUP', group), set('VFIO_CONTAINER', container === 'vfio'), set('VFIO_IOMMU_TYPE1', container === 'vfio'));
  if (group) lines.push(set('IOMMUFD_VFIO_CONTAINER', container === 'iommufd'));
  return { ...kernel, config: lines.join('\n') };
}

/** An arm64 server kernel with the same features behind an SMMUv3 (described by ACPI IORT). */
export function arm64Kernel(): KernelDesc {
  return {
    release: '7.3.4',
    cmdline: 'console=ttyAMA0 root=/dev/vda2 ro',
    config: ['CONFIG_ARM64=y', 'CONFIG_ACPI=y', 'CONFIG_ACPI_IORT=y', ...IOMMUFD_VFIO, 'CONFIG_ARM_SMMU_V3=y'].join('\n'),
  };
}

/**
 * A distribution-style x86 kernel for presets.q35Host: its console on the PCI serial port, root
 * on the virtio disk. `vfioPci`: 'y' built in; 'm' a modular kernel (CONFIG_MODULES=y) with vfio-pci
 * as a module that is not loaded; 'n' built without it (and without modules).
 */
export function q35HostKernel(vfioPci: 'y' | 'm' | 'n' = 'y'): KernelDesc {
  const modules = vfioPci === 'm' ? 'CONFIG_MODULES=y' : '# CONFIG_MODULES is not set';
  const vfio = vfioPci === 'n' ? '# CONFIG_VFIO_PCI is not set' : `CONFIG_VFIO_PCI=${vfioPci}`;
  const lines = IOMMUFD_VFIO.map((l) => (l === '# CONFIG_MODULES is not set' ? modules : l === 'CONFIG_VFIO_PCI=y' ? vfio : l));
  return {
    release: '7.3.4',
    cmdline: 'console=ttyS4,115200 root=/dev/vda1 ro intel_iommu=on',
    config: ['CONFIG_64BIT=y', 'CONFIG_ACPI=y', ...lines, 'CONFIG_INTEL_IOMMU=y', 'CONFIG_IRQ_REMAP=y', 'CONFIG_SWAP=y'].join('\n'),
  };
}

/** QEMU q35's ACPI tables (the VM's, less the DMAR that `-device intel-iommu` adds). */
export const Q35_ACPI_TABLES = ['APIC', 'DSDT', 'FACP', 'FACS', 'HPET', 'MCFG', 'WAET'] as const;
/** An arm64 ACPI server's tables; IORT describes the SMMUs. */
export const ARM64_ACPI_TABLES = ['APIC', 'DSDT', 'FACP', 'GTDT', 'MCFG', 'SPCR'] as const;
