/**
 * What a booted kernel tells userspace about itself, and what the firmware left for it to read:
 * the release (/proc/sys/kernel/osrelease, `uname -r`), the command line (/proc/cmdline), the
 * build configuration (/proc/config.gz with CONFIG_IKCONFIG_PROC: gzip of the .config text), and
 * the ACPI tables (/sys/firmware/acpi/tables/<signature>), and for a kernel that loads modules
 * (CONFIG_MODULES=y) its module tree: /proc/modules, kernel.modules_disabled and
 * /lib/modules/<release>/modules.{dep,builtin,alias} for the options the sim knows a module of.
 * `ioasid doctor` and the device layer read these to decide whether a host can serve iommufd and
 * VFIO and what could be loaded; the sim machine publishes them from its description.
 */
import { gzipSync } from 'node:zlib';
import type { SimVfs } from './vfs.js';

export interface KernelDesc {
  /** `uname -r`. */
  readonly release: string;
  /** The boot command line. */
  readonly cmdline: string;
  /** The kernel's .config text (what /proc/config.gz holds). */
  readonly config: string;
}

/**
 * Publish the kernel's self-description and the firmware's ACPI tables. A kernel without the
 * selftest (`selftest` false) is one built without CONFIG_IOMMUFD_TEST, and its config says so.
 */
export function publishBoot(vfs: SimVfs, kernel: KernelDesc, acpiTables: readonly string[], selftest: boolean): void {
  const config = selftest ? kernel.config : kernel.config.replace(/^CONFIG_IOMMUFD_TEST=.*$/m, '# CONFIG_IOMMUFD_TEST is not set');
  vfs.addAttr('/proc/sys/kernel/osrelease', { read: () => `${kernel.release}\n` });
  vfs.addAttr('/proc/cmdline', { read: () => `${kernel.cmdline}\n` });
  if (/^CONFIG_IKCONFIG_PROC=y$/m.test(config)) {
    // Compressed on first read: `ioasid ls` on a sim machine never reads it.
    let gz: Uint8Array | undefined;
    vfs.addAttr('/proc/config.gz', { bytes: () => (gz ??= gzipSync(config.endsWith('\n') ? config : `${config}\n`)).slice() });
  }
  // The signature is all userspace reads here; the table's body stays with the firmware.
  for (const sig of acpiTables) vfs.addAttr(`/sys/firmware/acpi/tables/${sig}`, { bytes: () => new TextEncoder().encode(sig) });
  if (/^CONFIG_MODULES=y$/m.test(config)) publishModules(vfs, kernel.release, config);
}

/** The module files (in the tree, without compression) of the options the sim knows, and their aliases. */
const MODULES: Record<string, { readonly file: string; readonly alias?: string }> = {
  IOMMUFD: { file: 'kernel/drivers/iommu/iommufd/iommufd.ko' },
  VFIO: { file: 'kernel/drivers/vfio/vfio.ko' },
  VFIO_IOMMU_TYPE1: { file: 'kernel/drivers/vfio/vfio_iommu_type1.ko' },
  VFIO_PCI_CORE: { file: 'kernel/drivers/vfio/pci/vfio-pci-core.ko' },
  VFIO_PCI: { file: 'kernel/drivers/vfio/pci/vfio-pci.ko', alias: 'alias vfio_pci:v*d*sv*sd*bc*sc*i* vfio_pci' },
};

/** A modular kernel's tree, none of its modules loaded: `=m` options in modules.dep, `=y` in modules.builtin. */
function publishModules(vfs: SimVfs, release: string, config: string): void {
  const opt = (name: string): string | undefined => new RegExp(`^CONFIG_${name}=(\\w)$`, 'm').exec(config)?.[1];
  const known = Object.entries(MODULES);
  const lines = (want: string, line: (m: { file: string; alias?: string }) => string | undefined): string =>
    known.filter(([name]) => opt(name) === want).map(([, m]) => line(m)).filter(Boolean).map((l) => `${l}\n`).join('');
  const dir = `/lib/modules/${release}`;
  vfs.addAttr('/proc/modules', { read: () => '' });
  vfs.addAttr('/proc/sys/kernel/modules_disabled', { read: () => '0\n' });
  vfs.addAttr(`${dir}/modules.dep`, { read: () => lines('m', (m) => `${m.file}.xz:`) });
  vfs.addAttr(`${dir}/modules.builtin`, { read: () => lines('y', (m) => m.file) });
  vfs.addAttr(`${dir}/modules.alias`, { read: () => lines('m', (m) => m.alias) });
}
