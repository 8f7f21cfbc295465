/**
 * Small helpers for reading sysfs and procfs through the Binding (so the sim's machine answers the
 * same paths as Linux): missing files, PCI addresses in paths, the running kernel's release.
 */
import { isErrno } from '../ioasid/errors.js';
import type { Binding } from '../backends/types.js';

export const SYS_PCI_DEVICES = '/sys/bus/pci/devices';
export const SYS_PCI_DRIVERS = '/sys/bus/pci/drivers';
export const SYS_PCI_DRIVERS_PROBE = '/sys/bus/pci/drivers_probe';
export const SYS_IOMMU_GROUPS = '/sys/kernel/iommu_groups';
export const DEV_VFIO_DEVICES = '/dev/vfio/devices';

/** A PCI function's name in sysfs: domain:bus:device.function ("0000:00:01.0"). */
export const BDF = /^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$/;

/** The last path component (of a sysfs symlink target). */
export const basename = (p: string): string => p.slice(p.lastIndexOf('/') + 1);

/** `f()`, or `fallback` when the file or link does not exist (ENOENT). */
export function orMissing<T>(f: () => T, fallback: T): T {
  try {
    return f();
  } catch (e) {
    if (isErrno(e, 'ENOENT')) return fallback;
    throw e;
  }
}

/**
 * The PCI function a sysfs device path lies under: the last component that is a BDF
 * ("../../devices/pci0000:00/0000:00:02.0/0000:01:01.0/nvme/nvme0/nvme0n1" -> "0000:01:01.0"),
 * the function whose driver made that device; null for devices under no PCI function.
 */
export function pciFunctionOf(devicePath: string): string | null {
  const parts = devicePath.split('/');
  for (let i = parts.length - 1; i >= 0; i--) if (BDF.test(parts[i]!)) return parts[i]!;
  return null;
}

/** `uname -r` as /proc shows it ('' when there is no /proc). */
export function osRelease(binding: Binding): string {
  return orMissing(() => binding.readText('/proc/sys/kernel/osrelease').trim(), '');
}

/**
 * Undo the octal escapes procfs uses in paths (seq_path, mangle: "\040" for a space, "\011",
 * "\012", "\134").
 */
export function unescapeProcPath(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_m, o: string) => String.fromCharCode(parseInt(o, 8)));
}
