/**
 * What a booted kernel tells userspace about itself, and what the firmware left for it to read:
 * the release (/proc/sys/kernel/osrelease, `uname -r`), the command line (/proc/cmdline), the
 * build configuration (/proc/config.gz with CONFIG_IKCONFIG_PROC: gzip of the .config text), and
 * the ACPI tables (/sys/firmware/acpi/tables/<signature>). `ioasid doctor` reads these to decide
 * whether a host can serve iommufd and VFIO; the sim machine publishes them from its description.
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
    const gz = gzipSync(config.endsWith('\n') ? config : `${config}\n`);
    vfs.addAttr('/proc/config.gz', { bytes: () => gz.slice() });
  }
  // The signature is all userspace reads here; the table's body stays with the firmware.
  for (const sig of acpiTables) vfs.addAttr(`/sys/firmware/acpi/tables/${sig}`, { bytes: () => new TextEncoder().encode(sig) });
}
